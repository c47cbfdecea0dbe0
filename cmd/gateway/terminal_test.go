package main

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// terminals stands in for a person's terminal windows: a tmux server of the
// test's own (its own socket, no config), each of its sessions one window
// running one command, typically ssh, that the test types into and reads.
type terminals struct {
	t    *testing.T
	r    *rig
	sock string
}

func newTerminals(t *testing.T, r *rig) *terminals {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux not installed")
	}
	ts := &terminals{t: t, r: r, sock: filepath.Join(shortTempDir(t), "tmux")}
	t.Cleanup(func() { ts.tmux("kill-server") })
	return ts
}

func (ts *terminals) tmux(args ...string) result {
	ts.t.Helper()
	return ts.r.run(nil, nil, "tmux", append([]string{"-S", ts.sock, "-f", "/dev/null"}, args...)...)
}

// open starts window name, 80 by 24, running command through sh.
func (ts *terminals) open(name, command string) {
	ts.t.Helper()
	if res := ts.tmux("new-session", "-d", "-s", name, "-x", "80", "-y", "24", command); res.code != 0 {
		ts.t.Fatalf("tmux new-session: %+v", res)
	}
}

func (ts *terminals) screen(name string) string {
	ts.t.Helper()
	return ts.tmux("capture-pane", "-p", "-t", name).stdout
}

func (ts *terminals) waitFor(name, want string) {
	ts.t.Helper()
	testkit.Eventually(ts.t, 30*time.Second, func() error {
		if s := ts.screen(name); !strings.Contains(s, want) {
			return fmt.Errorf("terminal %s does not show %q:\n%s", name, want, s)
		}
		return nil
	})
}

func (ts *terminals) waitGone(name, gone string) {
	ts.t.Helper()
	testkit.Eventually(ts.t, 30*time.Second, func() error {
		if s := ts.screen(name); strings.Contains(s, gone) {
			return fmt.Errorf("terminal %s still shows %q:\n%s", name, gone, s)
		}
		return nil
	})
}

// waitClosed waits until window name's command has ended.
func (ts *terminals) waitClosed(name string) {
	ts.t.Helper()
	testkit.Eventually(ts.t, 30*time.Second, func() error {
		if ts.tmux("has-session", "-t", name).code == 0 {
			return errors.New("terminal " + name + " still runs its command")
		}
		return nil
	})
}

func (ts *terminals) keys(name string, k ...string) {
	ts.t.Helper()
	if res := ts.tmux(append([]string{"send-keys", "-t", name}, k...)...); res.code != 0 {
		ts.t.Fatalf("send-keys: %+v", res)
	}
}

func (ts *terminals) resize(name string, columns, lines int) {
	ts.t.Helper()
	if res := ts.tmux("resize-window", "-t", name, "-x", strconv.Itoa(columns), "-y", strconv.Itoa(lines)); res.code != 0 {
		ts.t.Fatalf("resize-window: %+v", res)
	}
}

// pid is the process id of window name's command.
func (ts *terminals) pid(name string) int {
	ts.t.Helper()
	res := ts.tmux("display-message", "-p", "-t", name, "#{pane_pid}")
	pid, err := strconv.Atoi(strings.TrimSpace(res.stdout))
	if err != nil {
		ts.t.Fatalf("pid of terminal %s: %+v", name, res)
	}
	return pid
}
