package machine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
)

// TestSecretsReachEverySession runs the gateway's secrets update through
// the real ssh client with the gateway's key, as the gateway does, then
// looks for the secrets in the environment of the sessions that follow: on
// either kind of machine they are there, as sshd gives them on NixOS, and
// the machine's own variables stay its own.
func TestSecretsReachEverySession(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		file := "# a comment\nGH_TOKEN=ghp_a b=c\n  ANTHROPIC_API_KEY=sk-1\nPATH=/nowhere\nnot a line\n"
		res := f.ssh(t, f.gateway, f.kind.user, strings.NewReader(file), bootstrap.SecretsCommand)
		if res.code != 0 {
			t.Fatalf("secrets update: exit %d, stderr %q", res.code, res.stderr)
		}
		path := filepath.Join(f.cfg.Dir, HomeDir, bootstrap.SecretsFile)
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("secrets file: %v, %v; want mode 0600", st, err)
		}
		res = f.ssh(t, f.user, f.kind.user, nil, `printenv GH_TOKEN; printenv ANTHROPIC_API_KEY; command -v sh`)
		if res.code != 0 || !strings.HasPrefix(res.stdout, "ghp_a b=c\nsk-1\n/") {
			t.Errorf("a session printed %q (exit %d, stderr %q); want both secrets and a working PATH", res.stdout, res.code, res.stderr)
		}

		// Emptied, the next session has none.
		if res := f.ssh(t, f.gateway, f.kind.user, strings.NewReader(""), bootstrap.SecretsCommand); res.code != 0 {
			t.Fatalf("secrets update: exit %d, stderr %q", res.code, res.stderr)
		}
		if res := f.ssh(t, f.user, f.kind.user, nil, `printenv GH_TOKEN`); res.code == 0 {
			t.Errorf("after emptying the file a session still has GH_TOKEN=%q", res.stdout)
		}
	})
}

// TestLoginShellsReadCurrentSecrets: a login shell started from an older
// environment, as a persistent session's new window is from its tmux
// server's, has the secrets file's current values and not the removed
// ones, through the .profile and .zprofile a machine gives a HOME without
// them; a person's own .profile is kept across a restart.
func TestLoginShellsReadCurrentSecrets(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		if res := f.ssh(t, f.gateway, f.kind.user, strings.NewReader("GH_TOKEN=now\n"), bootstrap.SecretsCommand); res.code != 0 {
			t.Fatalf("secrets update: exit %d, stderr %q", res.code, res.stderr)
		}
		// The host's login shell, and zsh (the NixOS image's) through .zprofile.
		for _, shell := range []string{`"$SHELL"`, "zsh"} {
			res := f.ssh(t, f.user, f.kind.user, nil,
				`GH_TOKEN=stale OLD=gone-VALUE CC_GATEWAY_SECRETS="GH_TOKEN OLD" exec `+shell+` -lc 'echo "[$GH_TOKEN][${OLD-removed}]"'`)
			if res.code != 0 || res.stdout != "[now][removed]\n" {
				t.Errorf("a login shell (%s) printed %q (exit %d, stderr %q); want [now][removed]", shell, res.stdout, res.code, res.stderr)
			}
		}

		own := []byte("# mine\n")
		if err := os.WriteFile(filepath.Join(f.home(), ".profile"), own, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := f.m.Close(); err != nil {
			t.Fatal(err)
		}
		f.start(t)
		if got, err := os.ReadFile(filepath.Join(f.home(), ".profile")); err != nil || string(got) != string(own) {
			t.Errorf("after a restart .profile holds %q, %v; want the person's own", got, err)
		}
	})
}
