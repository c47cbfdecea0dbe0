package main

import (
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestPersistentSessions: a plain interactive `ssh gw` lands in the
// persistent session main, which outlives a client killed mid-session,
// shows the same screen in two terminals, follows resizes and ends with
// its shell; `attach NAME` and `sessions` work beside it. On both kinds of
// local machine, with the real ssh client in terminals of the test's tmux.
func TestPersistentSessions(t *testing.T) {
	t.Run("builtin", func(t *testing.T) { testPersistentSessions(t, newRigOf(t, "builtin", "claude")) })
	t.Run("openssh", func(t *testing.T) { testPersistentSessions(t, newRig(t)) })
}

func testPersistentSessions(t *testing.T, r *rig) {
	term := newTerminals(t, r)
	sshGW := "exec ssh -F " + r.config + " gw"

	// The shell state and a running program survive the client's death.
	term.open("laptop", sshGW)
	term.keys("laptop", "echo in=${TMUX:+tmux}$((40+2))", "Enter")
	term.waitFor("laptop", "in=tmux42")
	term.keys("laptop", "MARK=kept$((1+1)); sleep 4242 &", "Enter")
	term.keys("laptop", "clear; jobs", "Enter")
	term.waitFor("laptop", "sleep 4242")
	if err := syscall.Kill(term.pid("laptop"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	term.waitClosed("laptop")
	waitSessions(t, r, `(?m)^main +[0-9]+[smhd][0-9hm]* +no$`)

	term.open("desktop", sshGW)
	term.keys("desktop", "clear; echo mark=$MARK; jobs", "Enter")
	term.waitFor("desktop", "mark=kept2")
	term.waitFor("desktop", "sleep 4242")

	// A second terminal on the same session sees the same screen.
	term.open("tablet", sshGW)
	term.keys("tablet", "clear; echo SHARED$((3*3))", "Enter")
	term.waitFor("desktop", "SHARED9")

	// Another named session, on its own, follows its terminal's size.
	term.open("build", "exec ssh -t -F "+r.config+" gw attach build")
	term.keys("build", "echo cols=$(stty size | cut -d' ' -f2)", "Enter")
	term.waitFor("build", "cols=80")
	term.resize("build", 100, 30)
	term.keys("build", "clear; echo cols=$(stty size | cut -d' ' -f2)", "Enter")
	term.waitFor("build", "cols=100")
	waitSessions(t, r, `(?m)^build +\S+ +yes \(1\)$`, `(?m)^main +\S+ +yes \(2\)$`)

	if res := r.ssh(nil, "gw", "attach", "build"); res.code != 1 || !strings.Contains(res.stderr, "attach: needs a terminal: `") {
		t.Errorf("attach without a terminal: %+v", res)
	}
	if res := r.ssh(nil, "-t", "gw", "attach", "'x;touch injected'"); res.code != 1 || !strings.Contains(res.stderr, "attach: give one session name") {
		t.Errorf("attach with a bad name: %+v", res)
	}

	// exit ends the session in every terminal; the next attach is fresh.
	term.keys("desktop", "kill %1; exit", "Enter")
	term.waitClosed("desktop")
	term.waitClosed("tablet")
	term.open("again", sshGW)
	term.keys("again", "echo fresh=[$MARK]$((2*2))", "Enter")
	term.waitFor("again", "fresh=[]4")
	term.keys("again", "exit", "Enter")
	term.waitClosed("again")
	term.keys("build", "exit", "Enter")
	term.waitClosed("build")
	if res := r.ssh(nil, "gw", "sessions"); res.code != 0 || res.stdout != "no persistent sessions on your machine\n" {
		t.Errorf("sessions after every exit: %+v", res)
	}
}

// waitSessions waits until `ssh gw sessions` shows lines matching each of
// patterns: the machine learns of a lost client as its connection ends.
func waitSessions(t *testing.T, r *rig, patterns ...string) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, func() error {
		res := r.ssh(nil, "gw", "sessions")
		for _, p := range patterns {
			if !regexp.MustCompile(p).MatchString(res.stdout) {
				return fmt.Errorf("sessions printed %q (stderr %q); want a line matching %s", res.stdout, res.stderr, p)
			}
		}
		return nil
	})
}

// TestPlainSessions: with --persistent-sessions=false, `ssh gw` is a plain
// login shell as before, and the commands for persistent sessions say
// they are off.
func TestPlainSessions(t *testing.T) {
	r := newRigOf(t, "builtin", "claude", "--persistent-sessions=false")
	term := newTerminals(t, r)
	term.open("t", "exec ssh -F "+r.config+" gw")
	term.keys("t", "echo tmux=[$TMUX]$((40+2))", "Enter")
	term.waitFor("t", "tmux=[]42")
	term.keys("t", "exit", "Enter")
	term.waitClosed("t")
	if res := r.ssh(nil, "gw", "help"); res.code != 0 || strings.Contains(res.stdout, "attach") || !strings.Contains(res.stdout, "  shell ") {
		t.Errorf("help lists the persistent sessions' commands, or not shell: %+v", res)
	}
	for _, cmd := range []string{"sessions", "attach"} {
		if res := r.ssh(nil, "-t", "gw", cmd, "main"); res.code != 1 || !strings.Contains(res.stderr, cmd+": persistent sessions are off on this gateway") {
			t.Errorf("%s: %+v", cmd, res)
		}
	}
}
