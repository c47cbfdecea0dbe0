package localcloud_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
)

// readCredentials parses the cloud's api.env as hcloud's CLI would.
func readCredentials(t *testing.T, dir string) map[string]string {
	t.Helper()
	path := filepath.Join(dir, localcloud.CredentialsFile)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v; it holds a token, so 0600", path, info.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// TestCredentialsFileOpensTheAPI: the file the local cloud writes lets
// Hetzner's client in, and a restart (new token) rewrites it.
func TestCredentialsFileOpensTheAPI(t *testing.T) {
	dir := t.TempDir()
	for restart := range 2 {
		c := startCloud(t, dir, 0)
		env := readCredentials(t, dir)
		if env["HCLOUD_ENDPOINT"] != c.Endpoint() || env["HCLOUD_TOKEN"] != c.Token() {
			t.Fatalf("start %d: api.env holds %v, want endpoint %s and the current token", restart, env, c.Endpoint())
		}
		client := rawClient(env["HCLOUD_ENDPOINT"], env["HCLOUD_TOKEN"])
		if _, err := client.Server.All(context.Background()); err != nil {
			t.Fatalf("start %d: the API refuses the credentials in api.env: %v", restart, err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
