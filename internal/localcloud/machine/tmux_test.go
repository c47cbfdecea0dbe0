package machine

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestTmuxPerMachine: every local machine runs as the same OS user, yet one
// machine's persistent sessions are its own, and powering it off ends them
// as on a real machine.
func TestTmuxPerMachine(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux not installed")
	}
	forKinds(t, func(t *testing.T, f *fixture) {
		other := newFixture(t, f.kind)
		if r := f.ssh(t, f.user, f.kind.user, nil, `tmux new-session -d -s work "sleep 600"`); r.code != 0 {
			t.Fatalf("tmux new-session: %+v", r)
		}
		r := f.ssh(t, f.user, f.kind.user, nil, `tmux list-panes -t work -F "#{pane_pid}"`)
		pid, err := strconv.Atoi(strings.TrimSpace(r.stdout))
		if err != nil {
			t.Fatalf("the session's program: %+v", r)
		}
		if r := other.ssh(t, other.user, f.kind.user, nil, `tmux list-sessions -F "#{session_name}"`); r.stdout != "" {
			t.Errorf("another machine sees the sessions %q", r.stdout)
		}

		dir := strings.TrimSpace(f.ssh(t, f.user, f.kind.user, nil, `echo "$TMUX_TMPDIR"`).stdout)
		if dir == "" {
			t.Fatal("sessions have no TMUX_TMPDIR")
		}
		if err := f.m.Close(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the session's program ends", func() bool { return processGone(pid) })
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("the tmux folder %s outlived Close: %v", dir, err)
		}
	})
}
