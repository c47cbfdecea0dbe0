package nix_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cc-gateway/cc-gateway/nix"
)

// TestCloudInstanceGivesSessionsTheSecrets: the NixOS module lets sshd read
// the instance user's ~/.ssh/environment, where the gateway writes the
// person's secrets (bootstrap.SecretsFile), into every session. (Evaluating
// the module needs nixpkgs, which is not here: its text is what can be
// checked.)
func TestCloudInstanceGivesSessionsTheSecrets(t *testing.T) {
	b, err := os.ReadFile("modules/cloud-instance.nix")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\n        PermitUserEnvironment yes\n") {
		t.Error("modules/cloud-instance.nix does not set PermitUserEnvironment yes in sshd's extraConfig")
	}
}

// TestCloudInstanceLoginShellsReadTheSecrets: the image's login shells
// source the secrets snippet, so new windows of a persistent tmux session
// see the current secrets.
func TestCloudInstanceLoginShellsReadTheSecrets(t *testing.T) {
	b, err := os.ReadFile("modules/cloud-instance.nix")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "environment.loginShellInit = ''\n      . ${./cloud-instance/secrets-env.sh}\n") {
		t.Error("modules/cloud-instance.nix does not source cloud-instance/secrets-env.sh first in environment.loginShellInit")
	}
}

// TestSecretsEnvScript sources the snippet under dash, bash and zsh as a login
// shell does, starting from the environment an earlier shell left (as a
// new tmux window starts from its server's): set, changed and removed
// secrets follow the file; values are taken literally, never run; lines
// that name no variable are skipped; variables that were never secrets
// stay.
func TestSecretsEnvScript(t *testing.T) {
	// zsh is the instance user's login shell on the NixOS image.
	for _, shell := range []string{"dash", "bash", "zsh"} {
		t.Run(shell, func(t *testing.T) {
			sh := tool(t, shell, shell)
			dir := t.TempDir()
			home := filepath.Join(dir, "home")
			if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
				t.Fatal(err)
			}
			snippet := filepath.Join(dir, "secrets-env.sh")
			if err := os.WriteFile(snippet, []byte(nix.SecretsEnvScript), 0o600); err != nil {
				t.Fatal(err)
			}
			ran := filepath.Join(dir, "ran")
			file := filepath.Join(home, ".ssh", "environment")
			write := func(content string) {
				t.Helper()
				if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// login sources the snippet from environment env and returns
			// the environment it leaves.
			login := func(env map[string]string) map[string]string {
				t.Helper()
				args := []string{"-i", "HOME=" + home, "PATH=" + os.Getenv("PATH")}
				for k, v := range env {
					args = append(args, k+"="+v)
				}
				out, err := runTool(t, "env", append(args, sh, "-c", `. "$0" && env`, snippet)...)
				if err != nil {
					t.Fatalf("source the snippet: %v", err)
				}
				got := map[string]string{}
				for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
					k, v, _ := strings.Cut(line, "=")
					got[k] = v
				}
				// What the shells set themselves.
				for _, k := range []string{"HOME", "PATH", "PWD", "OLDPWD", "SHLVL", "LOGNAME", "_"} {
					delete(got, k)
				}
				return got
			}
			check := func(got, want map[string]string) {
				t.Helper()
				if !reflect.DeepEqual(got, want) {
					t.Errorf("the environment is\n%q\nwant\n%q", got, want)
				}
			}

			hostile := "$(touch " + ran + ") `touch " + ran + "` ${HOME} \\n 'q' \"dq\" ;|&"
			write("# Your secrets\n\nGH_TOKEN=one\nA=b=c\nEMPTY=\nSPACED=  two  words  \nHOSTILE=" + hostile +
				"\nno equals sign\nlower=x\n1ST=x\nBAD-NAME=x\n  INDENTED=x\nCC_GATEWAY_SECRETS=FORGED\n=x\nLAST=no newline")
			// A list of names the snippet did not write is read safely.
			first := login(map[string]string{"KEEP": "mine", "GONE": "x", "CC_GATEWAY_SECRETS": "  GONE  bad-name * KEEP2 "})
			check(first, map[string]string{
				"GH_TOKEN": "one", "A": "b=c", "EMPTY": "", "SPACED": "  two  words  ", "HOSTILE": hostile,
				"LAST": "no newline", "KEEP": "mine",
				"CC_GATEWAY_SECRETS": "GH_TOKEN A EMPTY SPACED HOSTILE LAST",
			})
			if _, err := os.Stat(ran); err == nil {
				t.Error("a value was run as a command")
			}

			// Changed and removed since that shell started.
			write("GH_TOKEN=two\nNEW=new\n")
			second := login(first)
			check(second, map[string]string{"GH_TOKEN": "two", "NEW": "new", "KEEP": "mine", "CC_GATEWAY_SECRETS": "GH_TOKEN NEW"})

			// All removed, then the file gone: nothing of them is left.
			write("# Your secrets\n")
			check(login(second), map[string]string{"KEEP": "mine", "CC_GATEWAY_SECRETS": ""})
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
			check(login(second), map[string]string{"KEEP": "mine", "CC_GATEWAY_SECRETS": ""})
		})
	}
}
