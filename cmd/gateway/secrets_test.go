package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
)

// TestSecretsReachTheMachineAndNothingElse: a secret set through the
// gateway with the real ssh client (its value on stdin, as `echo` gives
// it) is in the environment of exec sessions and of an interactive shell
// on the person's machine, a change reaches the running machine at once,
// and the value is nowhere else: not in the gateway's log, not in the
// bytes of its database file or of any file under its data folder (the
// local cloud's state and user_data among them) but the machine's own
// secrets file, not in `secret list` or `status --json`. On both kinds of
// local machine.
func TestSecretsReachTheMachineAndNothingElse(t *testing.T) {
	for kind, user := range map[string]func(testing.TB) string{
		"builtin": func(testing.TB) string { return "claude" },
		"openssh": localcloudtest.OpenSSHUser,
	} {
		t.Run(kind, func(t *testing.T) {
			lg := newLocalGateway(t, "--local-machines", kind, "--instance-user", user(t))
			g := lg.start(t)
			p := newPerson(t, t.TempDir())
			const first, second, other = "ghp_first-VALUE-4711", "ghp_second-VALUE-0815", "sk-ant-other-VALUE-42"

			// Set before the machine exists: it gets it when created.
			r := p.ssh(g, first+"\n", "secret", "set", "GH_TOKEN")
			if r.code != 0 || r.stdout != "Set GH_TOKEN; your machine gets it when you next connect.\n" || r.stderr != "" {
				t.Fatalf("secret set: %+v", r)
			}
			if r := p.ssh(g, "", "printenv GH_TOKEN"); r.code != 0 || r.stdout != first+"\n" {
				t.Fatalf("printenv GH_TOKEN on the new machine: %+v", r)
			}
			// An interactive shell has it too (the typed line holds no value).
			// A plain one: keys piped into a brand-new tmux session can end it
			// before tmux draws the output; persistent sessions have their own
			// test (TestSecretsReachNewWindowsOfAPersistentSession).
			r = p.ssh(g, "echo \"[$GH_TOKEN]\"; exit\n", "-tt", "shell")
			if !strings.Contains(r.stdout, "["+first+"]") {
				t.Errorf("an interactive shell printed %q; want [%s]", r.stdout, first)
			}

			// Changed while the machine runs: the next session sees it.
			r = p.ssh(g, second, "secret", "set", "GH_TOKEN")
			if r.code != 0 || r.stdout != "Set GH_TOKEN; new sessions on your machine see it now.\n" {
				t.Fatalf("secret set on a running machine: %+v", r)
			}
			if r := p.ssh(g, "", "printenv GH_TOKEN"); r.stdout != second+"\n" {
				t.Errorf("after the change printenv GH_TOKEN printed %+v", r)
			}
			if r := p.ssh(g, other, "secret", "set", "ANTHROPIC_API_KEY"); r.code != 0 {
				t.Fatalf("secret set ANTHROPIC_API_KEY: %+v", r)
			}
			r = p.ssh(g, "", "secret", "list")
			if r.code != 0 || !strings.Contains(r.stdout, "\nANTHROPIC_API_KEY ") || !strings.Contains(r.stdout, "\nGH_TOKEN ") {
				t.Errorf("secret list: %+v; want both names", r)
			}
			listed := r.stdout
			status := p.ssh(g, "", "status", "--json").stdout

			r = p.ssh(g, "", "secret", "rm", "GH_TOKEN")
			if r.code != 0 || r.stdout != "Removed GH_TOKEN; new sessions on your machine see it now.\n" {
				t.Fatalf("secret rm: %+v", r)
			}
			if r := p.ssh(g, "", "printenv GH_TOKEN || echo none; printenv ANTHROPIC_API_KEY"); r.stdout != "none\n"+other+"\n" {
				t.Errorf("after rm the machine's sessions print %q", r.stdout)
			}

			values := []string{first, second, other}
			for what, text := range map[string]string{"secret list": listed, "status --json": status, "the gateway's log": g.logs.String()} {
				for _, v := range values {
					if strings.Contains(text, v) {
						t.Errorf("%s holds the value %q", what, v)
					}
				}
			}
			if !strings.Contains(g.logs.String(), "GH_TOKEN") {
				t.Error("the gateway's log does not name the secret that was set")
			}
			// Every file of the gateway, read raw; only the machine's
			// secrets file may hold a value (the one it still has).
			data := filepath.Join(lg.dir, "data")
			db, err := os.ReadFile(filepath.Join(data, "gateway.db"))
			if err != nil || len(db) == 0 {
				t.Fatalf("read gateway.db: %v", err)
			}
			found := 0
			err = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				b, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				for _, v := range values {
					if !bytes.Contains(b, []byte(v)) {
						continue
					}
					if !strings.HasSuffix(path, "/home/.ssh/environment") || v != other {
						t.Errorf("%s holds the value %q", path, v)
					}
					found++
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if found != 1 {
				t.Errorf("the value still set was found in %d files, want 1 (the machine's)", found)
			}
		})
	}
}

// TestSecretsReachNewWindowsOfAPersistentSession: the persistent
// session's tmux server keeps the environment of the connection that
// started it, yet a window opened in it after a secret was changed or
// removed from another connection has the secret as it is now. On both
// kinds of local machine, with the real ssh client in the test's tmux and
// the machine's tmux opening the windows (its prefix key, then c).
func TestSecretsReachNewWindowsOfAPersistentSession(t *testing.T) {
	t.Run("builtin", func(t *testing.T) { testSecretsInNewWindows(t, newRigOf(t, "builtin", "claude")) })
	t.Run("openssh", func(t *testing.T) { testSecretsInNewWindows(t, newRig(t)) })
}

func testSecretsInNewWindows(t *testing.T, r *rig) {
	set := func(value string) {
		t.Helper()
		if res := r.ssh(strings.NewReader(value+"\n"), "gw", "secret", "set", "GH_TOKEN"); res.code != 0 {
			t.Fatalf("secret set: %+v", res)
		}
	}
	set("first-VALUE-1")
	term := newTerminals(t, r)
	term.open("laptop", "exec ssh -F "+r.config+" gw")
	// The typed lines hold no value: only the shell's output matches.
	term.keys("laptop", `echo "${TMUX:+tmux}[$GH_TOKEN]"`, "Enter")
	term.waitFor("laptop", "tmux[first-VALUE-1]")

	set("second-VALUE-2")
	term.keys("laptop", "C-b", "c")
	term.keys("laptop", `echo "${TMUX:+tmux}[$GH_TOKEN]"`, "Enter")
	term.waitFor("laptop", "tmux[second-VALUE-2]")

	if res := r.ssh(nil, "gw", "secret", "rm", "GH_TOKEN"); res.code != 0 {
		t.Fatalf("secret rm: %+v", res)
	}
	term.keys("laptop", "C-b", "c")
	term.keys("laptop", `echo "${TMUX:+tmux}[${GH_TOKEN-removed}]"`, "Enter")
	term.waitFor("laptop", "tmux[removed]")

	// Each shell ends before the test removes HOME, which it writes its
	// history to on the way out.
	term.keys("laptop", "exit", "Enter")
	term.waitGone("laptop", "tmux[removed]")
	term.keys("laptop", "exit", "Enter")
	term.waitGone("laptop", "tmux[second-VALUE-2]")
	term.keys("laptop", "exit", "Enter")
	term.waitClosed("laptop")
}

// TestLooseSecretsKeyFileStopsTheStart: a secrets key file others may read
// stops the gateway before it listens, with the one line that says what to
// do, and is left as it was.
func TestLooseSecretsKeyFileStopsTheStart(t *testing.T) {
	lg := newLocalGateway(t)
	key := filepath.Join(t.TempDir(), "secrets.key")
	if err := os.WriteFile(key, make([]byte, 32), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runGateway([]string{"HCLOUD_TOKEN="}, append(lg.args, "--secrets-key-file", key)...)
	if err == nil || !strings.Contains(out, "the secrets key file "+key+" has mode 0644, which lets others read it; make it 0600 (chmod 600 "+key+")") {
		t.Fatalf("gateway with a 0644 secrets key file: %v\n%s", err, out)
	}
	if strings.Contains(out, "msg=listening") {
		t.Errorf("the gateway listened with a loose secrets key file:\n%s", out)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("the key file was changed: %v, %v", st, err)
	}
}
