package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
	"github.com/cc-gateway/cc-gateway/nix"
)

// TestMachinesRevokeKey runs the machine's revoke command on a real sshd,
// and reports the refusal of something that is not a key.
func TestMachinesRevokeKey(t *testing.T) {
	key := testkit.NewKey(t).Signer
	dir, bin := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, bootstrap.RevokeKeyProgram), []byte(nix.RevokeKeyScript), 0o755); err != nil {
		t.Fatal(err)
	}
	s := startSSHD(t, key.PublicKey(), "SetEnv CLOUD_INSTANCE_DIR="+dir+" PATH="+bin+":"+os.Getenv("PATH"))
	m := NewMachines(newTestPool(t, key, PoolOptions{}), s.user)
	person := testkit.NewKey(t).AuthorizedKey()
	if err := m.RevokeKey(testCtx(t, 20*time.Second), s.addr, authorized(s.hostKey), person); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "revoked_keys"))
	if err != nil || string(got) != person+"\n" {
		t.Errorf("revoked keys %q, %v; want the key", got, err)
	}

	err = m.RevokeKey(testCtx(t, 20*time.Second), s.addr, authorized(s.hostKey), "not a key")
	if err == nil || !strings.Contains(err.Error(), "exit status") || !strings.Contains(err.Error(), "not a public key") {
		t.Errorf("revoking something that is not a key: %v, want the script's refusal", err)
	}
}
