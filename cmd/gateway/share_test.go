package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/store/etcd"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// sharedGateways is two gateways, a and b, on one etcd cluster and one
// local cloud (in hcloud mode), with the same keys, as docs/ha.md says to
// run them. a starts first and is elected before b starts, so a runs the
// reaper for as long as it lives: what it decides must reach b's sessions.
type sharedGateways struct {
	cluster *testkit.Etcd
	a, b    *gatewayProc
	people  []*person
}

func startSharedGateways(t *testing.T, names []string, extra ...string) *sharedGateways {
	t.Helper()
	cluster := testkit.StartEtcd(t, 3)
	dir := t.TempDir()
	cloudDir := filepath.Join(dir, "cloud")
	_, _, endpoint := startLocalCloud(t, cloudDir)
	_, token := localcloudtest.Credentials(t, cloudDir)
	sg := &sharedGateways{cluster: cluster}
	for _, name := range names {
		sg.people = append(sg.people, newPerson(t, filepath.Join(dir, name)))
	}
	users := writeKeyList(t, filepath.Join(dir, "users"), sg.people...)
	// One folder for both: the same host key, upstream key and secrets key.
	args := append([]string{"--cloud", "hcloud", "--hcloud-endpoint", endpoint, "--users", users,
		"--etcd-endpoints", strings.Join(cluster.Endpoints(), ","), "--etcd-prefix", "/shared/"}, extra...)
	sg.a = newLocalGatewayIn(t, filepath.Join(dir, "gw"), args...).start(t, "HCLOUD_TOKEN="+token)
	leader(t, sg.a)
	sg.b = newLocalGatewayIn(t, filepath.Join(dir, "gw"), args...).start(t, "HCLOUD_TOKEN="+token)
	return sg
}

// session is a person's ssh running in the background.
type session struct {
	*testkit.Process
	stdin          io.WriteCloser
	stdout, stderr *testkit.Buffer
}

// sshStart starts the real ssh through g with args as ssh would take them
// (options first), and leaves it running; the test's end kills it.
func (p *person) sshStart(g *gatewayProc, args ...string) *session {
	p.t.Helper()
	dir, err := os.MkdirTemp(p.dir, "ssh")
	if err != nil {
		p.t.Fatal(err)
	}
	config := testkit.WriteSSHConfig(p.t, dir, "person", p.keyPath, []testkit.Host{{Alias: "gw", Addr: g.addr, HostKey: g.hostKey}})
	opts := []string{"-F", config}
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		opts, args = append(opts, args[0]), args[1:]
	}
	s := &session{stdout: &testkit.Buffer{}, stderr: &testkit.Buffer{}}
	cmd := exec.Command("ssh", append(append(opts, "gw"), args...)...)
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		p.t.Fatal(err)
	}
	if s.Process, err = testkit.StartProcess(cmd); err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { s.Stop(os.Kill, time.Minute) })
	return s
}

// wait waits for the session's ssh to end, at most limit.
func (s *session) wait(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(limit):
		t.Fatalf("ssh still runs after %s; stdout %q stderr %q", limit, s.stdout, s.stderr)
	}
}

// ticker is a command that writes a line every half second, forever:
// traffic, so activity.
const ticker = "while :; do echo tick; sleep 0.5; done"

// TestSharedGateways: two gateways share an etcd cluster and a local
// cloud; the reaper runs on a only.
//   - alice, busy only through b past twice the idle timeout, keeps her
//     machine: a's reaper sees b's activity;
//   - bob, with a session through each, has 2 sessions in status on either;
//   - alice, silent through b, sees a's idle warning and her session ends;
//   - b killed, status on a counts bob's 1 session within the TTL.
func TestSharedGateways(t *testing.T) {
	t.Parallel()
	sg := startSharedGateways(t, []string{"alice", "bob"}, "--idle-timeout", "6s", "--warn-before", "4s", "--reaper-interval", "1s")
	alice, bob := sg.people[0], sg.people[1]

	bobA := bob.sshStart(sg.a, ticker)
	if !bobA.stdout.WaitFor("tick", 2*time.Minute) {
		t.Fatalf("bob's session through a: stdout %q stderr %q", bobA.stdout, bobA.stderr)
	}
	bobB := bob.sshStart(sg.b, ticker)
	if !bobB.stdout.WaitFor("tick", time.Minute) {
		t.Fatalf("bob's session through b: stdout %q stderr %q", bobB.stdout, bobB.stderr)
	}

	// 30 lines over 15 s: more than twice the idle timeout, busy on b.
	r := alice.ssh(sg.b, "", "for i in $(seq 1 30); do echo $i; sleep 0.5; done")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 30 {
		t.Fatalf("alice's busy session through b: exit %d, %d lines, stderr %q; want exit 0 and 30 lines",
			r.code, strings.Count(r.stdout, "\n"), r.stderr)
	}
	if st := alice.status(sg.a); st.State != "running" {
		t.Fatalf("alice's machine after her busy session through b: %+v, want running", st)
	}

	for _, g := range []*gatewayProc{sg.a, sg.b} {
		testkit.Eventually(t, 30*time.Second, func() error {
			if st := bob.status(g); st.Sessions != 2 {
				return fmt.Errorf("bob's status through %s says %d sessions, want 2", g.addr, st.Sessions)
			}
			return nil
		})
	}

	quiet := alice.sshStart(sg.b, "sleep 600")
	quiet.wait(t, time.Minute)
	if err := quiet.stderr.String(); !strings.Contains(err, "will be stopped in") || !strings.Contains(err, "it had no activity for") {
		t.Errorf("alice's quiet session through b ended with stderr %q; want a's warning, then the end of the session", err)
	}

	sg.b.Stop(os.Kill, time.Minute)
	testkit.Eventually(t, etcd.PresenceTTL+20*time.Second, func() error {
		if st := bob.status(sg.a); st.Sessions != 1 {
			return fmt.Errorf("bob's status through a says %d sessions after b died, want 1", st.Sessions)
		}
		return nil
	})
	if st := bob.status(sg.a); st.State != "running" {
		t.Errorf("bob's machine: %+v, want running (his session through a is busy)", st)
	}
}

// echoes checks that an interactive session still answers: a line written
// to its cat comes back.
func (s *session) echoes(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(s.stdin, line+"\n"); err != nil {
		t.Fatalf("write %q to the session: %v", line, err)
	}
	if !s.stdout.WaitFor(line, time.Minute) {
		t.Fatalf("the session did not echo %q: stdout %q stderr %q", line, s.stdout, s.stderr)
	}
}

// TestSharedGatewaysQuorum: with one etcd member of three stopped, nobody
// notices; with two, bob's open sessions through both gateways keep
// working while a new status is told the store is temporarily unavailable;
// with the members back, new connections work and status counts bob's
// sessions on both gateways again, with no restart.
func TestSharedGatewaysQuorum(t *testing.T) {
	t.Parallel()
	sg := startSharedGateways(t, []string{"bob"})
	bob := sg.people[0]
	onA := bob.sshStart(sg.a, "cat")
	onA.echoes(t, "first-a")
	onB := bob.sshStart(sg.b, "cat")
	onB.echoes(t, "first-b")
	sessions := func(want int) {
		t.Helper()
		for _, g := range []*gatewayProc{sg.a, sg.b} {
			testkit.Eventually(t, 30*time.Second, func() error {
				if st := bob.status(g); st.Sessions != want {
					return fmt.Errorf("bob's status through %s says %d sessions, want %d", g.addr, st.Sessions, want)
				}
				return nil
			})
		}
	}
	sessions(2)

	sg.cluster.Members[0].Stop()
	if r := bob.ssh(sg.b, "", "echo", "one-down"); r.code != 0 || r.stdout != "one-down\n" {
		t.Errorf("a command with one member stopped: %+v", r)
	}
	onA.echoes(t, "one-down-a")
	sessions(2)

	sg.cluster.Members[1].Stop()
	onA.echoes(t, "no-quorum-a")
	onB.echoes(t, "no-quorum-b")
	for _, g := range []*gatewayProc{sg.a, sg.b} {
		if r := bob.ssh(g, "", "status"); r.code != 1 || !strings.Contains(r.stderr, "the gateway's store is temporarily unavailable; try again") {
			t.Errorf("status through %s without quorum: %+v, want exit 1 and the store temporarily unavailable", g.addr, r)
		}
	}
	onA.echoes(t, "still-a")
	onB.echoes(t, "still-b")

	sg.cluster.Members[0].Start()
	sg.cluster.Members[1].Start()
	if r := bob.ssh(sg.b, "", "echo", "back"); r.code != 0 || r.stdout != "back\n" {
		t.Errorf("a command with quorum back: %+v", r)
	}
	sessions(2)
	onA.echoes(t, "after-a")
	onB.echoes(t, "after-b")
}
