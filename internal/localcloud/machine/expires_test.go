package machine

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
)

// TestGatewayUpdatesExpires runs the gateway's expiry update, as the gateway
// does after an extend, through the real ssh client with the gateway's key:
// on either kind of machine it must replace the expires file in the
// machine's folder, as it replaces /etc/cloud-instance/expires on NixOS.
func TestGatewayUpdatesExpires(t *testing.T) {
	forKinds(t, func(t *testing.T, f *fixture) {
		expires := filepath.Join(f.cfg.Dir, ExpiresFile)
		before, err := os.ReadFile(expires)
		if err != nil {
			t.Fatal(err)
		}
		if string(before) != "2030-01-02T03:04:05Z\n" {
			t.Fatalf("expires before the update = %q", before)
		}

		extended := time.Date(2030, 1, 2, 9, 34, 5, 0, time.FixedZone("CET", 3600))
		res := f.ssh(t, f.gateway, f.kind.user, nil, bootstrap.ExpiresCommand(extended))
		if res.code != 0 {
			t.Fatalf("expiry update: exit %d, stderr %q", res.code, res.stderr)
		}
		after, err := os.ReadFile(expires)
		if err != nil {
			t.Fatal(err)
		}
		if string(after) != "2030-01-02T08:34:05Z\n" {
			t.Errorf("expires after the update = %q, want the new time in UTC", after)
		}
		if _, err := os.Stat(expires + ".new"); !os.IsNotExist(err) {
			t.Errorf("the update left %s.new behind (%v)", ExpiresFile, err)
		}
	})
}
