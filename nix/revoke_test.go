package nix_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
	"github.com/cc-gateway/cc-gateway/nix"
)

// revokeKey runs the revoke script as the gateway's command line does, with
// the machine's folder dir, and returns its error and stderr.
func revokeKey(t *testing.T, dir, key string) error {
	t.Helper()
	bin := t.TempDir()
	script := filepath.Join(bin, bootstrap.RevokeKeyProgram)
	if err := os.WriteFile(script, []byte(nix.RevokeKeyScript), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := runTool(t, "env", "PATH="+bin+":"+os.Getenv("PATH"), "CLOUD_INSTANCE_DIR="+dir,
		"sh", "-c", bootstrap.RevokeKeyCommand(key))
	return err
}

// TestRevokeKeyScript: the script adds a valid key once, and refuses
// anything else without touching the file.
func TestRevokeKeyScript(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "revoked_keys")
	a, b := testkit.NewKey(t).AuthorizedKey(), testkit.NewRSAKey(t).AuthorizedKey()
	for _, k := range []string{a, b, a} {
		if err := revokeKey(t, dir, k); err != nil {
			t.Fatalf("revoke %s: %v", k, err)
		}
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := a + "\n" + b + "\n"; string(got) != want {
		t.Fatalf("revoked keys:\n%s\nwant each key once:\n%s", got, want)
	}

	fields := strings.Fields(a)
	for name, bad := range map[string]string{
		"comment":         a + " alice@laptop",
		"options":         `restrict ` + a,
		"two lines":       a + "\n" + b,
		"type only":       fields[0],
		"wrong type":      "ssh-rsa " + fields[1],
		"truncated":       fields[0] + " " + fields[1][:20],
		"shell":           "$(touch " + filepath.Join(dir, "x") + ") AAAA",
		"empty":           "",
		"revoke all keys": "*",
	} {
		t.Run(name, func(t *testing.T) {
			err := revokeKey(t, dir, bad)
			if err == nil || !strings.Contains(err.Error(), "cc-instance-revoke-key: ") {
				t.Errorf("revoke %q: %v; want the script's refusal", bad, err)
			}
			if now, _ := os.ReadFile(file); string(now) != string(got) {
				t.Errorf("revoked keys after a refusal:\n%s\nwant unchanged:\n%s", now, got)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("the script ran a command from its argument")
	}
}

// TestCloudInstanceRevokesKeys: the NixOS module gives sshd the revoked
// keys file, makes it, installs the command on PATH and lets the instance
// user run exactly its root half through sudo. (Evaluating the module needs
// nixpkgs, which is not here: its text is what can be checked.)
func TestCloudInstanceRevokesKeys(t *testing.T) {
	b, err := os.ReadFile("modules/cloud-instance.nix")
	if err != nil {
		t.Fatal(err)
	}
	module := string(b)
	for _, want := range []string{
		`revokedKeys = "/etc/ssh/revoked_keys";`,
		"RevokedKeys ${revokedKeys}",
		`"f ${revokedKeys} 0644 root root -"`,
		`pkgs.writeScriptBin "` + bootstrap.RevokeKeyProgram + `"`,
		`exec ${config.security.wrapperDir}/sudo -n ${revokeKeyRoot} "$@"`,
		`exec ${pkgs.dash}/bin/dash ${./cloud-instance/revoke-key.sh} "$@"`,
		"unset CLOUD_INSTANCE_DIR",
		`command = "${revokeKeyRoot}";`,
		`options = [ "NOPASSWD" ];`,
		"environment.systemPackages = [ revokeKey ]",
	} {
		if !strings.Contains(module, want) {
			t.Errorf("modules/cloud-instance.nix lacks %q", want)
		}
	}
}
