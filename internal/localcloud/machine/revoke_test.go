package machine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
)

// TestGatewayRevokesKey runs the gateway's revocation, as the gateway does
// when a key leaves its allow list, through the real ssh client with the
// gateway's key: on either kind of machine the revoked key is refused from
// then on, across a restart, while the gateway's key still works; the
// revocation is idempotent.
func TestGatewayRevokesKey(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		if r := f.ssh(t, f.user, f.kind.user, nil, "true"); r.code != 0 {
			t.Fatalf("before the revocation: exit %d, stderr %q", r.code, r.stderr)
		}
		for range 2 {
			res := f.ssh(t, f.gateway, f.kind.user, nil, bootstrap.RevokeKeyCommand(f.user.AuthorizedKey()))
			if res.code != 0 {
				t.Fatalf("revocation: exit %d, stderr %q", res.code, res.stderr)
			}
		}
		got, err := os.ReadFile(filepath.Join(f.cfg.Dir, RevokedKeys))
		if err != nil || string(got) != f.user.AuthorizedKey()+"\n" {
			t.Fatalf("revoked keys: %q, %v; want the key once", got, err)
		}
		refused := func(when string) {
			t.Helper()
			r := f.ssh(t, f.user, f.kind.user, nil, "true")
			if r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
				t.Errorf("revoked key %s: exit %d, stderr %q; want it refused", when, r.code, r.stderr)
			}
			if r := f.ssh(t, f.gateway, f.kind.user, nil, "true"); r.code != 0 {
				t.Errorf("gateway key %s: exit %d, stderr %q", when, r.code, r.stderr)
			}
		}
		refused("after the revocation")

		if err := f.m.Close(); err != nil {
			t.Fatal(err)
		}
		f.start(t)
		refused("after a restart")
	})
}

// TestRevokedKeysUnreadable: as with sshd, a machine whose revoked keys
// file cannot be read lets no key in.
func TestRevokedKeysUnreadable(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		file := filepath.Join(f.cfg.Dir, RevokedKeys)
		if err := os.Remove(file); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(file, 0o700); err != nil {
			t.Fatal(err)
		}
		if r := f.ssh(t, f.gateway, f.kind.user, nil, "true"); r.code != 255 {
			t.Errorf("with the file unreadable: exit %d, stderr %q; want refused", r.code, r.stderr)
		}
	})
}
