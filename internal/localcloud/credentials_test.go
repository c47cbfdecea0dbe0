package localcloud_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
)

// TestCredentialsFileOpensTheAPI: the file the local cloud writes lets
// Hetzner's client in, and a restart (new token) rewrites it.
func TestCredentialsFileOpensTheAPI(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, localcloud.CredentialsFile)
	for restart := range 2 {
		c := startCloud(t, dir, 0)
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v; it holds a token, so 0600", path, info.Mode().Perm())
		}
		endpoint, token := localcloudtest.Credentials(t, dir)
		if endpoint != c.Endpoint() || token != c.Token() {
			t.Fatalf("start %d: %s names %s, want %s and the current token", restart, path, endpoint, c.Endpoint())
		}
		if _, err := rawClient(endpoint, token).Server.All(context.Background()); err != nil {
			t.Fatalf("start %d: the API refuses the credentials in %s: %v", restart, path, err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
