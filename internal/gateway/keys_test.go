package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/proxy"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

func line(k gossh.PublicKey, comment string) string {
	return testkit.AuthorizedKey(k) + " " + comment + "\n"
}

// newPool returns a machine connection pool with the upstream key, as
// main makes it, quiet.
func newPool(upstream gossh.Signer) *proxy.Pool {
	return proxy.NewPool(proxy.PoolOptions{Key: upstream, Logger: testkit.Quiet})
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "ssh_host_ed25519_key")
	first, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", info.Mode().Perm())
	}
	if dir, _ := os.Stat(filepath.Dir(path)); dir.Mode().Perm() != 0o700 {
		t.Errorf("key folder mode %v, want 0700", dir.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("key folder holds %d files, want only the key", len(entries))
	}
	second, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(first.PublicKey().Marshal()) != string(second.PublicKey().Marshal()) {
		t.Error("second start made a new key instead of reusing the first")
	}
	if first.PublicKey().Type() != gossh.KeyAlgoED25519 {
		t.Errorf("key type %s, want ed25519", first.PublicKey().Type())
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: err = %v, want a refusal naming the fix", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestKeyList(t *testing.T) {
	alice, bob, carol := testkit.NewKey(t).Public(), testkit.NewKey(t).Public(), testkit.NewKey(t).Public()
	path := filepath.Join(t.TempDir(), "users")
	write := func(s string) {
		t.Helper()
		// Write a new file and rename it over the old, as editors do.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("# team\n\n" + line(alice, "alice@laptop") + `restrict,command="true" ` + line(bob, "$(hostile) `comment`"))

	l, err := LoadKeyList(path, testkit.Quiet)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Contains(alice) || !l.Contains(bob) || l.Contains(carol) {
		t.Fatalf("alice %v bob %v carol %v; want true true false", l.Contains(alice), l.Contains(bob), l.Contains(carol))
	}

	write(line(carol, "carol"))
	if l.Contains(alice) || !l.Contains(carol) {
		t.Error("a changed file was not re-read")
	}

	// A broken edit keeps the last good list.
	write(line(carol, "carol") + "this is not a key\n")
	if !l.Contains(carol) || l.Contains(alice) {
		t.Error("a malformed file replaced the last good list")
	}
	if err := l.Reload(); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("Reload of a malformed file: %v, want the line named", err)
	}

	// At start-up there is no last good list: a broken file is an error.
	if _, err := LoadKeyList(path, testkit.Quiet); err == nil {
		t.Error("LoadKeyList accepted a malformed file")
	}
	if _, err := LoadKeyList(filepath.Join(t.TempDir(), "missing"), testkit.Quiet); err == nil {
		t.Error("LoadKeyList accepted a missing file")
	}
	empty, err := LoadKeyList("", testkit.Quiet)
	if err != nil || empty.Contains(alice) {
		t.Errorf("an unset list must contain nobody: %v", err)
	}
}

func TestGatewayCommandRouting(t *testing.T) {
	for cmd, want := range map[string]bool{
		"status":          true,
		"  extend 2h ":    true,
		"destroy --yes":   true,
		"help":            true,
		"statusx":         false,
		"echo status":     false,
		"":                false,
		"ls; status":      false,
		"/usr/bin/status": false,
	} {
		if _, got := gatewayCommand(cmd); got != want {
			t.Errorf("gatewayCommand(%q) = %v, want %v", cmd, got, want)
		}
	}
}

// Two gateways started at once on one new key folder: every caller gets the
// one key that was written, and no temporary file is left behind.
func TestLoadOrCreateKeyConcurrently(t *testing.T) {
	const callers = 8
	for round := range 20 {
		path := filepath.Join(t.TempDir(), "keys", "ssh_host_ed25519_key")
		keys := make([]gossh.Signer, callers)
		errs := make([]error, callers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				<-start
				keys[i], errs[i] = LoadOrCreateKey(path)
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, caller %d: %v", round, i, err)
			}
		}
		onDisk, err := LoadOrCreateKey(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			if string(k.PublicKey().Marshal()) != string(onDisk.PublicKey().Marshal()) {
				t.Fatalf("round %d, caller %d got a key other than the one on disk", round, i)
			}
		}
		if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
			t.Fatalf("round %d: key folder holds %d files, want only the key", round, len(entries))
		}
	}
}
