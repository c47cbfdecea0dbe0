package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

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
	// More than one key may hold at once by default.
	lg := newLocalGateway(t, "--max-connections", strconv.Itoa(n))
	g := lg.start(t)
	bob := newPerson(t, filepath.Join(lg.dir, "bob"))

	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = bob.ssh(g, lg.hostKeys, "", "cat /proc/sys/kernel/hostname >/dev/null; echo $HOME")
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
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("# people allowed in\n"+carol.authorizedLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lg := newLocalGateway(t, "--users", users)
	g := lg.start(t)

	if r := carol.ssh(g, lg.hostKeys, "", "status"); r.code != 0 || !strings.Contains(r.stdout, "no machine") {
		t.Errorf("listed key: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	r := mallory.ssh(g, lg.hostKeys, "", "status")
	if r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("unlisted key: code %d stderr %q; want refused", r.code, r.stderr)
	}

	// Adding the key lets it in without a restart.
	if err := os.WriteFile(users, []byte(carol.authorizedLine()+"\n"+mallory.authorizedLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := mallory.ssh(g, lg.hostKeys, "", "status"); r.code != 0 {
		t.Errorf("key added to the list: code %d stderr %q", r.code, r.stderr)
	}
}

// TestHCloudModeNeedsAllowList: with a Hetzner token the gateway refuses to
// start without --users, and with one it refuses unlisted keys. The API
// endpoint is a closed loopback port: nothing here may reach Hetzner.
func TestHCloudModeNeedsAllowList(t *testing.T) {
	dir := t.TempDir()
	env := []string{"HCLOUD_TOKEN=test-token-not-real", "CC_GATEWAY_HCLOUD_ENDPOINT=http://127.0.0.1:1/v1"}
	base := []string{"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--host-key-dir", filepath.Join(dir, "hostkeys")}

	out, err := runGateway(env, base...)
	if err == nil || !strings.Contains(out, "allow list") {
		t.Fatalf("hcloud mode without --users: err %v, output %q", err, out)
	}
	if strings.Contains(out, "test-token-not-real") {
		t.Errorf("the token appears in the output: %q", out)
	}

	dave := newPerson(t, filepath.Join(dir, "dave"))
	eve := newPerson(t, filepath.Join(dir, "eve"))
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte(dave.authorizedLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, env, append(base, "--users", users)...)
	if r := eve.ssh(g, filepath.Join(dir, "hostkeys"), "", "status"); r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("unlisted key in hcloud mode: code %d stderr %q", r.code, r.stderr)
	}
	if r := dave.ssh(g, filepath.Join(dir, "hostkeys"), "", "status"); r.code != 0 || !strings.Contains(r.stdout, "no machine") {
		t.Errorf("listed key in hcloud mode: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(g.logs.String(), "test-token-not-real") {
		t.Errorf("the token appears in the log")
	}
}
