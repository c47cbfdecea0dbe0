package gateway

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// statusLeases answers Status with one lease; sessionStart asks nothing else.
type statusLeases struct {
	Leases
	l   lease.Lease
	err error
}

func (s statusLeases) Status(string) (lease.Lease, error) { return s.l, s.err }

func execRequest(command string) *gossh.Request {
	return &gossh.Request{Type: "exec", Payload: gossh.Marshal(struct{ Command string }{command})}
}

func TestSessionStart(t *testing.T) {
	running := statusLeases{l: lease.Lease{State: lease.StateRunning, ServerName: "cc-1"}}
	for _, tc := range []struct {
		name       string
		start      *gossh.Request
		terminal   bool
		off        bool // --persistent-sessions=false
		leases     Leases
		wantType   string
		wantExec   string // the command the machine runs; "" for the request unchanged
		wantAnswer string // a regexp
		refused    bool
		done       bool
	}{
		{name: "interactive shell attaches to main", start: &gossh.Request{Type: "shell"}, terminal: true,
			wantType: "exec", wantExec: attachScript("main")},
		{name: "shell without a terminal stays a shell", start: &gossh.Request{Type: "shell"},
			wantType: "shell"},
		{name: "persistence off: a plain shell", start: &gossh.Request{Type: "shell"}, terminal: true, off: true,
			wantType: "shell"},
		{name: "a command on the machine is unchanged", start: execRequest("attachment ls"), terminal: true,
			wantType: "exec", wantExec: "attachment ls"},
		{name: "subsystem unchanged", start: &gossh.Request{Type: "subsystem", Payload: gossh.Marshal(struct{ Name string }{"sftp"})},
			wantType: "subsystem"},
		{name: "attach NAME", start: execRequest("attach build-2"), terminal: true,
			wantType: "exec", wantExec: attachScript("build-2")},
		{name: "attach needs a terminal", start: execRequest("attach build"),
			wantAnswer: "^attach: needs a terminal: `ssh gw -t attach build`$", refused: true},
		{name: "attach needs a name", start: execRequest("attach"), terminal: true,
			wantAnswer: "^attach: give one session name", refused: true},
		{name: "attach refuses two names", start: execRequest("attach a b"), terminal: true,
			wantAnswer: "^attach: give one session name", refused: true},
		{name: "attach with persistence off", start: execRequest("attach main"), terminal: true, off: true,
			wantAnswer: "^attach: persistent sessions are off on this gateway; `ssh gw` gives a plain shell$", refused: true},
		{name: "shell command is a plain shell", start: execRequest("shell"), terminal: true,
			wantType: "shell"},
		{name: "shell command works with persistence off", start: execRequest("shell"), terminal: true, off: true,
			wantType: "shell"},
		{name: "shell takes no arguments", start: execRequest("shell ls"),
			wantAnswer: "^shell: takes no arguments", refused: true},
		{name: "sessions on a running machine", start: execRequest("sessions"), leases: running,
			wantType: "exec", wantExec: sessionsScript},
		{name: "sessions on a stopped machine", start: execRequest("sessions"),
			leases:     statusLeases{l: lease.Lease{State: lease.StateStopped, ServerName: "cc-1"}},
			wantAnswer: "^your machine cc-1 is stopped, so no persistent sessions run; `ssh gw` starts it$", done: true},
		{name: "sessions without a machine", start: execRequest("sessions"), leases: statusLeases{err: lease.ErrNotFound},
			wantAnswer: "^you have no machine", done: true},
		{name: "sessions with persistence off", start: execRequest("sessions"), off: true,
			wantAnswer: "^sessions: persistent sessions are off", refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &Gateway{opts: Options{Invocation: "ssh gw", PersistentSessions: !tc.off, Leases: tc.leases}}
			before := *tc.start
			answer, refused, done := g.sessionStart(tc.start, tc.terminal, "SHA256:x")
			if refused != tc.refused || done != tc.done {
				t.Fatalf("refused %v done %v (%q), want %v %v", refused, done, answer, tc.refused, tc.done)
			}
			if tc.refused || tc.done {
				if !regexp.MustCompile(tc.wantAnswer).MatchString(answer) {
					t.Errorf("answer %q, want %q", answer, tc.wantAnswer)
				}
				return
			}
			if answer != "" {
				t.Errorf("answer %q for a session that goes on", answer)
			}
			if tc.start.Type != tc.wantType {
				t.Errorf("start request type %q, want %q", tc.start.Type, tc.wantType)
			}
			switch {
			case tc.wantExec != "":
				if got := execCommand(tc.start.Payload); got != tc.wantExec {
					t.Errorf("machine runs %q, want %q", got, tc.wantExec)
				}
			case tc.wantType == before.Type && string(tc.start.Payload) != string(before.Payload):
				t.Errorf("payload changed for an unchanged request")
			case tc.wantType == "shell" && len(tc.start.Payload) != 0:
				t.Errorf("shell request with payload %q", tc.start.Payload)
			}
		})
	}
}

// TestSessionNames: only names that are safe as they are in a command line
// and for tmux get through; whatever else a person types is refused before
// it reaches the machine.
func TestSessionNames(t *testing.T) {
	for _, name := range []string{"main", "build", "a", "Agent_2", "x-y", strings.Repeat("n", 32)} {
		if !sessionName.MatchString(name) {
			t.Errorf("%q refused", name)
		}
	}
	for _, name := range []string{"", "a.b", "a:b", "$(reboot)", "`id`", "a;b", "'", `"`, "a\\b", "ü", "a/b", strings.Repeat("n", 33)} {
		if sessionName.MatchString(name) {
			t.Errorf("%q accepted", name)
		}
		g := &Gateway{opts: Options{Invocation: "ssh gw", PersistentSessions: true}}
		start := execRequest("attach " + name)
		if _, refused, _ := g.sessionStart(start, true, "SHA256:x"); !refused {
			t.Errorf("attach %q: not refused; the machine would run %q", name, execCommand(start.Payload))
		}
	}
}

// machineShell runs script as the machine's sshd would, through shell -c,
// with a login shell whose profile prints "profile" (as the NixOS image's
// prints the expiry) and keeps PATH (a real login shell might reset it from
// /etc/profile), and tmux's sockets in tmuxDir.
func machineShell(t *testing.T, shell, path, tmuxDir, script string) (stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	login := filepath.Join(dir, "login-shell")
	wrapper := "#!" + shell + "\ncase $1 in -l*) echo profile;; esac\n[ \"$1\" = -l ] && shift\n[ \"$1\" = -lc ] && shift && set -- -c \"$@\"\nexec " + shell + " \"$@\"\n"
	if err := os.WriteFile(login, []byte(wrapper), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(shell, "-c", script)
	cmd.Env = []string{"SHELL=" + login, "PATH=" + path, "HOME=" + dir, "TMUX_TMPDIR=" + tmuxDir}
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v; stderr %q", err, errOut.String())
	}
	return out.String(), errOut.String()
}

// loginShells are the shells on this host that the scripts run in, as
// people's login shells on their machines.
func loginShells(t *testing.T) []string {
	var shells []string
	for _, name := range []string{"sh", "bash", "zsh"} {
		if p, err := exec.LookPath(name); err == nil {
			shells = append(shells, p)
		}
	}
	if len(shells) == 0 {
		t.Fatal("no shell found")
	}
	return shells
}

// newTmuxDir is a TMUX_TMPDIR short enough for a socket path, its server
// killed when the test ends.
func newTmuxDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "tmux")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kill := exec.Command("tmux", "kill-server")
		kill.Env = []string{"TMUX_TMPDIR=" + d}
		kill.Run()
		os.RemoveAll(d)
	})
	return d
}

// TestSessionsScript runs the listing on this host's tmux.
func TestSessionsScript(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux not installed")
	}
	for _, shell := range loginShells(t) {
		t.Run(filepath.Base(shell), func(t *testing.T) {
			path, tmux := os.Getenv("PATH"), newTmuxDir(t)
			out, _ := machineShell(t, shell, path, tmux, sessionsScript)
			if out != "no persistent sessions on your machine\n" {
				t.Errorf("no tmux server: %q", out)
			}

			start := exec.Command("tmux", "-f", "/dev/null", "new-session", "-d", "-s", "build", "sleep 600")
			start.Env = []string{"TMUX_TMPDIR=" + tmux, "PATH=" + path}
			if res, err := start.CombinedOutput(); err != nil {
				t.Fatalf("tmux new-session: %v %s", err, res)
			}
			out, _ = machineShell(t, shell, path, tmux, sessionsScript)
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != 2 || !regexp.MustCompile(`^NAME +AGE +ATTACHED$`).MatchString(lines[0]) ||
				!regexp.MustCompile(`^build +[0-9]+[smhd][0-9hm]* +no$`).MatchString(lines[1]) {
				t.Errorf("one detached session: %q", out)
			}

			out, _ = machineShell(t, shell, t.TempDir(), tmux, sessionsScript)
			if out != "tmux is not installed on your machine, so it keeps no persistent sessions\n" {
				t.Errorf("without tmux: %q", out)
			}
		})
	}
}

// TestAttachWithoutTmux: a machine without tmux gives a plain shell and
// says so in one line, never a broken session.
func TestAttachWithoutTmux(t *testing.T) {
	for _, shell := range loginShells(t) {
		t.Run(filepath.Base(shell), func(t *testing.T) {
			out, errOut := machineShell(t, shell, t.TempDir(), t.TempDir(), attachScript("main"))
			// Both shells are login shells, so PATH and the profile apply.
			if out != "profile\nprofile\n" || errOut != "cc-gateway: tmux is not installed on your machine, so this is a plain shell that ends with the connection\n" {
				t.Errorf("stdout %q stderr %q", out, errOut)
			}
		})
	}
}
