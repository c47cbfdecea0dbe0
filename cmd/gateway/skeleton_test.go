package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestWalkingSkeleton follows one person through the whole product: first
// connection creates the machine, commands run on it, the gateway's own
// commands answer, a restart loses nothing, stop and resume keep files, and
// destroy removes the machine. Each command's refusals and help are in the
// scripts, testdata/script.
func TestWalkingSkeleton(t *testing.T) {
	lg := newLocalGateway(t)
	g := lg.start(t)
	alice := newPerson(t, filepath.Join(lg.dir, "alice"))

	// First connection: progress on stderr only, stdout stays clean.
	r := alice.ssh(g, "", "echo hi; exit 3")
	if r.code != 3 || r.stdout != "hi\n" {
		t.Fatalf("exec: code %d stdout %q stderr %q; want 3 and \"hi\\n\"", r.code, r.stdout, r.stderr)
	}
	for _, step := range []string{"Creating your machine", "Waiting for SSH", "is ready"} {
		if !strings.Contains(r.stderr, step) {
			t.Errorf("progress on stderr lacks %q:\n%s", step, r.stderr)
		}
	}
	if !regexpMatch(`\[\s*\d+s\] Creating your machine`, r.stderr) {
		t.Errorf("progress steps carry no elapsed seconds:\n%s", r.stderr)
	}

	st := alice.status(g)
	if st.State != "running" || st.Name == "" || st.LeaseID == "" {
		t.Fatalf("status after create: %+v", st)
	}
	// The first started hour is billed at once, at the price the API reports.
	if st.Cost <= 0 || st.Currency != "EUR" {
		t.Errorf("cost so far: %v %q; want the first hour in EUR", st.Cost, st.Currency)
	}
	if st.ExpiresIn < int64((4*time.Hour-time.Minute).Seconds()) || st.ExpiresIn > int64((4*time.Hour).Seconds()) {
		t.Errorf("a new lease expires in %ds, want the 4h default", st.ExpiresIn)
	}
	text := alice.ssh(g, "", "status")
	for _, want := range []string{st.Name, "running", "Expires", "Idle for"} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("status text lacks %q:\n%s", want, text.stdout)
		}
	}

	// A PTY session: the shell runs what is typed and its output comes back.
	// The plain shell: a persistent session starts its shell in tmux, which
	// need not see keys piped in before it is ready (sessions_test.go waits).
	r = alice.ssh(g, "echo $((6*7))x\nexit\n", "-tt", "shell")
	if !strings.Contains(r.stdout, "42x") {
		t.Errorf("pty shell output lacks 42x: %q (stderr %q)", r.stdout, r.stderr)
	}

	// extend moves the expiry by exactly the duration.
	r = alice.ssh(g, "", "extend", "2h")
	if r.code != 0 || !strings.Contains(r.stdout, "now expires at") {
		t.Fatalf("extend 2h: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if got := alice.status(g).Expires.Sub(st.Expires); got != 2*time.Hour {
		t.Errorf("extend 2h moved the expiry by %s", got)
	}

	// Files in the home folder survive a gateway restart.
	if r := alice.ssh(g, "", "echo kept > notes.txt"); r.code != 0 {
		t.Fatalf("write file: %+v", r)
	}
	g.stop()
	g = lg.start(t)
	if r := alice.ssh(g, "", "cat notes.txt"); r.code != 0 || r.stdout != "kept\n" {
		t.Fatalf("after restart: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if again := alice.status(g); again.LeaseID != st.LeaseID {
		t.Errorf("restart changed the lease: %s, then %s", st.LeaseID, again.LeaseID)
	}

	// stop powers off; the next connection resumes the same machine.
	if r := alice.ssh(g, "", "stop"); r.code != 0 || !strings.Contains(r.stdout, "is stopped") {
		t.Fatalf("stop: %+v", r)
	}
	if s := alice.status(g); s.State != "stopped" {
		t.Fatalf("state after stop = %q", s.State)
	}
	r = alice.ssh(g, "", "cat notes.txt")
	if r.code != 0 || r.stdout != "kept\n" || !strings.Contains(r.stderr, "Starting your machine") {
		t.Fatalf("resume: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}

	// destroy removes the machine and its files.
	if r := alice.ssh(g, "", "destroy", "--yes"); r.code != 0 || !strings.Contains(r.stdout, "is destroyed") {
		t.Fatalf("destroy --yes: %+v", r)
	}
	if s := alice.status(g); s.State != "none" {
		t.Errorf("status after destroy: %+v", s)
	}
	if r := alice.ssh(g, "", "extend", "1h"); r.code != 1 || !strings.Contains(r.stderr, "no machine") {
		t.Errorf("extend without a machine: %+v", r)
	}
	if n := countServers(t, lg); n != 0 {
		t.Errorf("%d servers left after destroy", n)
	}
	if _, err := os.Stat(filepath.Join(lg.dir, "data", "localcloud", "machines", st.Name)); !os.IsNotExist(err) {
		t.Errorf("machine folder survived destroy: %v", err)
	}
}

// TestInteractiveFirstConnection: a PTY session that creates the machine
// shows the progress on the terminal, then the shell, which gets the
// client's LANG.
func TestInteractiveFirstConnection(t *testing.T) {
	lg := newLocalGateway(t)
	g := lg.start(t)
	frank := newPerson(t, filepath.Join(lg.dir, "frank"))
	t.Setenv("LANG", "C.UTF-8")
	t.Setenv("LC_TIME", "C")
	// The plain shell: a persistent session's tmux exits 0 whatever its
	// shell's status (sessions_test.go tests those).
	r := frank.ssh(g, "echo lang=$LANG time=$LC_TIME\nexit 7\n", "-tt", "-oSendEnv=LANG LC_*", "shell")
	if r.code != 7 {
		t.Errorf("exit code %d, want 7 (stdout %q)", r.code, r.stdout)
	}
	for _, want := range []string{"Creating your machine", "is ready\r\n", "lang=C.UTF-8 time=C"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, r.stdout)
		}
	}
}

// TestShutdownTellsSessions: SIGTERM tells open sessions why they end,
// ends them within the grace period, and exits cleanly.
func TestShutdownTellsSessions(t *testing.T) {
	lg := newLocalGateway(t, "--shutdown-grace", "1s")
	g := lg.start(t)
	grace := newPerson(t, filepath.Join(lg.dir, "grace"))
	if r := grace.ssh(g, "", "true"); r.code != 0 {
		t.Fatalf("create: %+v", r)
	}

	done := make(chan result, 1)
	go func() { done <- grace.ssh(g, "", "echo started; exec sleep 120") }()
	testkit.Eventually(t, 30*time.Second, func() error {
		if n := grace.status(g).Sessions; n != 1 {
			return fmt.Errorf("status shows %d sessions, want the long one", n)
		}
		return nil
	})
	g.stop()
	select {
	case r := <-done:
		if r.code == 0 || !strings.Contains(r.stderr, "shutting down") {
			t.Errorf("session at shutdown: code %d stderr %q; want non-zero and the reason", r.code, r.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("session still open 30s after the gateway stopped")
	}
}

// TestInfectProvisioning: with --provisioning infect the server gets the
// infect script as user_data (the local cloud reads the document inside it)
// and the person lands on a working machine.
func TestInfectProvisioning(t *testing.T) {
	lg := newLocalGateway(t, "--provisioning", "infect", "--infect-flake", "github:me/machines?dir=nix")
	g := lg.start(t)
	kim := newPerson(t, filepath.Join(lg.dir, "kim"))
	if r := kim.ssh(g, "", "echo ready"); r.code != 0 || r.stdout != "ready\n" {
		t.Fatalf("infect-provisioned machine: %+v", r)
	}
	state, err := os.ReadFile(filepath.Join(lg.dir, "data", "localcloud", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(state), `#!/bin/sh\n# cc-gateway user_data for instance`) {
		t.Errorf("the server's user_data is not the infect script")
	}
}
