package main

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
)

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// cloudClient is the real hcloud-go client on the local cloud's API, with
// the credentials the local cloud writes for it.
func cloudClient(t *testing.T, lg *localGateway) *hcloud.Client {
	t.Helper()
	endpoint, token := localcloudtest.Credentials(t, filepath.Join(lg.dir, "data", "localcloud"))
	return hcloud.NewClient(hcloud.WithEndpoint(endpoint), hcloud.WithToken(token))
}

// countServers lists the local cloud's servers through its Hetzner API.
func countServers(t *testing.T, lg *localGateway) int {
	t.Helper()
	// A few tries: some tests make the API fail on purpose.
	var err error
	for range 5 {
		var servers []*hcloud.Server
		if servers, err = cloudClient(t, lg).Server.All(context.Background()); err == nil {
			return len(servers)
		}
	}
	t.Fatalf("list servers through the local cloud's API: %v", err)
	return 0
}

// TestConcurrentFirstConnections: fifty connections with one new key at
// once make one server, and every one of them lands on it.
func TestConcurrentFirstConnections(t *testing.T) {
	const n = 50
	// Fifty handshakes at once from one address, with one key, are more
	// than the startup and per-person limits let through
	// (docs/security.md); this test is about the one flight they share.
	lg := newLocalGateway(t, "--max-startups", "100", "--max-startups-per-source", "100",
		"--max-connections", strconv.Itoa(n))
	g := lg.start(t)
	bob := newPerson(t, filepath.Join(lg.dir, "bob"))

	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = bob.ssh(g, "", "cat /proc/sys/kernel/hostname >/dev/null; echo $HOME")
		}()
	}
	wg.Wait()
	home := results[0].stdout
	for i, r := range results {
		if r.code != 0 || r.stdout != home || !strings.Contains(r.stdout, "/home") {
			t.Errorf("connection %d: code %d stdout %q stderr %q", i, r.code, r.stdout, r.stderr)
		}
		// Everyone waiting on the shared creation sees its progress.
		if !strings.Contains(r.stderr, "is ready") {
			t.Errorf("connection %d saw no progress: %q", i, r.stderr)
		}
	}
	if got := countServers(t, lg); got != 1 {
		t.Errorf("%d simultaneous first connections created %d servers, want 1", n, got)
	}
}

// TestAllowList: with --users only listed keys get in, and the list is
// re-read when the file changes.
func TestAllowList(t *testing.T) {
	dir := t.TempDir()
	carol := newPerson(t, filepath.Join(dir, "carol"))
	mallory := newPerson(t, filepath.Join(dir, "mallory"))
	users := writeKeyList(t, filepath.Join(dir, "users"), carol)
	lg := newLocalGateway(t, "--users", users)
	g := lg.start(t)

	if r := carol.ssh(g, "", "status"); r.code != 0 || !strings.Contains(r.stdout, "no machine") {
		t.Errorf("listed key: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	r := mallory.ssh(g, "", "status")
	if r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("unlisted key: code %d stderr %q; want refused", r.code, r.stderr)
	}

	// Adding the key lets it in without a restart.
	writeKeyList(t, users, carol, mallory)
	if r := mallory.ssh(g, "", "status"); r.code != 0 {
		t.Errorf("key added to the list: code %d stderr %q", r.code, r.stderr)
	}
}

// TestHCloudModeNeedsAllowList: with a Hetzner token the gateway refuses to
// start without --users, and with one it refuses unlisted keys. The API
// is a local cloud's: nothing here may reach Hetzner.
func TestHCloudModeNeedsAllowList(t *testing.T) {
	dir := t.TempDir()
	cloud := localcloudtest.Start(t, localcloud.KindBuiltin)
	env := []string{"HCLOUD_TOKEN=" + cloud.Token(), "CC_GATEWAY_HCLOUD_ENDPOINT=" + cloud.Endpoint()}
	lg := newLocalGatewayIn(t, dir)

	out, err := runGateway(env, lg.args...)
	if err == nil || !strings.Contains(out, "allow list") {
		t.Fatalf("hcloud mode without --users: err %v, output %q", err, out)
	}
	if strings.Contains(out, cloud.Token()) {
		t.Errorf("the token appears in the output: %q", out)
	}

	dave := newPerson(t, filepath.Join(dir, "dave"))
	eve := newPerson(t, filepath.Join(dir, "eve"))
	lg.args = append(lg.args, "--users", writeKeyList(t, filepath.Join(dir, "users"), dave))
	g := lg.start(t, env...)
	if r := eve.ssh(g, "", "status"); r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("unlisted key in hcloud mode: code %d stderr %q", r.code, r.stderr)
	}
	if r := dave.ssh(g, "", "status"); r.code != 0 || !strings.Contains(r.stdout, "no machine") {
		t.Errorf("listed key in hcloud mode: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(g.logs.String(), cloud.Token()) {
		t.Errorf("the token appears in the log")
	}
}

// TestSilentFloodLeavesTheDoorOpen: five hundred connections from one
// address that never say a word hold at most --max-startups-per-source (8)
// places, the rest closed at once; meanwhile a person from another address
// gets in with the real ssh.
func TestSilentFloodLeavesTheDoorOpen(t *testing.T) {
	lg := newLocalGateway(t)
	g := lg.start(t)
	taken := 0
	for range 500 {
		conn, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds the test only
		// A connection taken gets the gateway's version line; a dropped one
		// is closed without a word.
		if line, _ := bufio.NewReader(conn).ReadString('\n'); strings.HasPrefix(line, "SSH-2.0-") {
			taken++
		}
	}
	if taken != 8 {
		t.Errorf("500 silent connections from one address: %d held, want 8", taken)
	}
	person := newPerson(t, filepath.Join(lg.dir, "person"))
	if r := person.ssh(g, "", "-oBindAddress=127.0.0.2", "status"); r.code != 0 || !strings.Contains(r.stdout, "no machine") {
		t.Errorf("a person from 127.0.0.2 during the flood: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(g.logs.String(), "dropped a connection before its handshake") {
		t.Errorf("the drops are not in the log:\n%s", g.logs.String())
	}
}
