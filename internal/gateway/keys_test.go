package gateway

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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
	write("# team\n\n" + line(alice, "alice@laptop") + `restrict,pty ` + line(bob, "$(hostile) `comment`"))

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

	// One edit removes carol and adds a line that is not a usable key (a
	// DSA key): the bad line is skipped and named, and carol is out.
	const dsa = "ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4EddRIpUt9KnC7s5Of2EbdSPO9EAMMeP4C2USZpRV1AIlH7WT2NWPq/xfW6MPbLm1Vs14E7gB00b/JmYLdrmVClpJ+f6AR7ECLCT7up1/63xhv4O1fnxqimFQ8E+4P208UewwI1VBNaFpEy9nXzrith1yrv8iIDGZ3RSAHHAAAAFQCXYFCPFSMLzLKSuYKi64QL8Fgc9QAAAIEA9+GghdabPd7LvKtcNrhXuXmUr7v6OuqC+VdMCz0HgmdRWVeOutRZT+ZxBxCBgLRJFnEj6EwoFhO3zwkyjMim4TwWeotUfI0o4KOuHiuzpnWRbqN/C/ohNWLx+2J6ASQ7zKTxvqhRkImog9/hWuWfBpKLZl6Ae1UlZAFMO/7PSSoAAACBAPhs9Yo9rsGk6VOdZxmh3dIRX/gtsM+3S5vUpr5vMOFWxl8hXOJ2X+IvN9O+PBmrHFGOn7rCNe1iC9UhOJRW3Na1RnjJ4aoxnHqjmVbuxA/DWiFGV0c7Ju5vsTi5pm2ciKUE0Pj7BhDRRfXUlNJpR0E4cQPvLoKBp/e/3kOsf/RV dsa@old\n"
	log, logs := testkit.Logger()
	l, err = LoadKeyList(path, log)
	if err != nil {
		t.Fatal(err)
	}
	write(line(alice, "alice") + line(carol, "carol"))
	if !l.Contains(carol) {
		t.Fatal("carol was not let in")
	}
	write(line(alice, "alice") + dsa)
	if l.Contains(carol) || !l.Contains(alice) {
		t.Errorf("after removing carol beside a bad line: carol %v alice %v; want false true", l.Contains(carol), l.Contains(alice))
	}
	if !strings.Contains(logs.String(), "path="+path+" line=2 ") {
		t.Errorf("the skipped line is not named with its file in the log:\n%s", logs)
	}
	if err := l.Reload(); err != nil {
		t.Errorf("Reload of a file with a bad line: %v; want the rest applied", err)
	}

	// A file that cannot be read keeps the last list read.
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() != 0 {
		if err := l.Reload(); err == nil || !l.Contains(alice) {
			t.Errorf("unreadable file: Reload %v, alice %v; want an error and the last list kept", err, l.Contains(alice))
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := l.Reload(); err == nil || !l.Contains(alice) {
		t.Errorf("removed file: Reload %v, alice %v; want an error and the last list kept", err, l.Contains(alice))
	}
	write(line(alice, "alice") + dsa)

	// At start-up a bad line is skipped too; only a missing file is an error.
	if l, err := LoadKeyList(path, testkit.Quiet); err != nil || !l.Contains(alice) {
		t.Errorf("LoadKeyList of a file with a bad line: %v; want the rest applied", err)
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

// TestKeyOptions: a line's options decide where from, until when and with
// what its key gets in, in order as sshd reads them; a line with an option
// the gateway does not enforce is skipped, never read as granting more.
func TestKeyOptions(t *testing.T) {
	key := testkit.FixedKey(t, 7).Public()
	now := time.Date(2026, 6, 2, 12, 0, 0, 0, time.UTC)
	listOf := func(data string) *KeyList {
		t.Helper()
		path := filepath.Join(t.TempDir(), "users")
		writeFile(t, path, data)
		l, err := LoadKeyList(path, testkit.Quiet)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	from := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 50000} }
	all, none := permitAll, Permit{}
	for _, c := range []struct {
		options string
		remote  string
		want    *Permit // nil: kept out
	}{
		{"", "127.0.0.1", &all},
		{`from="10.9.9.9",expiry-time="20000101"`, "127.0.0.1", nil},
		{`from="10.9.9.9"`, "10.9.9.9", &all},
		{`from="10.0.0.0/8"`, "10.200.1.2", &all},
		{`from="10.0.0.0/8"`, "11.0.0.1", nil},
		{`from="10.0.0.0/8,!10.1.0.0/16"`, "10.1.2.3", nil},
		{`from="!10.1.0.0/16,10.0.0.0/8"`, "10.2.2.3", &all},
		{`from="127.0.0.*"`, "127.0.0.1", &all},
		{`from="127.0.0.?"`, "127.0.0.12", nil},
		{`from="*,!127.0.0.1"`, "127.0.0.1", nil},
		{`from="::1"`, "::1", &all},
		{`from="127.0.0.1"`, "::ffff:127.0.0.1", &all},
		{`from="fd00::/8"`, "127.0.0.1", nil},
		{`expiry-time="20260601"`, "127.0.0.1", nil},
		{`expiry-time="202606021201Z"`, "127.0.0.1", &all},
		{`expiry-time="20260602115959Z"`, "127.0.0.1", nil},
		{`expiry-time="20300101Z",expiry-time="20260101Z"`, "127.0.0.1", nil},
		{`restrict`, "127.0.0.1", &none},
		{`restrict,pty`, "127.0.0.1", &Permit{PTY: true}},
		{`pty,restrict`, "127.0.0.1", &none},
		{`restrict,port-forwarding,agent-forwarding`, "127.0.0.1", &Permit{PortForwarding: true, AgentForwarding: true}},
		{`no-port-forwarding`, "127.0.0.1", &Permit{AgentForwarding: true, PTY: true}},
		{`no-agent-forwarding,no-x11-forwarding`, "127.0.0.1", &Permit{PortForwarding: true, PTY: true}},
		{`NO-PTY`, "127.0.0.1", &Permit{PortForwarding: true, AgentForwarding: true}},
	} {
		l := listOf(c.options + " " + testkit.AuthorizedKey(key) + "\n")
		got, err := l.Admit(key, from(c.remote), now)
		switch {
		case c.want == nil && err == nil:
			t.Errorf("%s from %s: admitted with %+v, want kept out", c.options, c.remote, got)
		case c.want != nil && (err != nil || got != *c.want):
			t.Errorf("%s from %s: %+v, %v; want %+v", c.options, c.remote, got, err, *c.want)
		}
	}

	for _, bad := range []string{
		`command="echo hi"`, `permitopen="localhost:80"`, `environment="A=b"`, `no-user-rc`, `x11-forwarding`,
		`cert-authority`, `principals="alice"`, `tunnel="1"`, `restrict=yes`, `from=10.0.0.1`, `from=""`,
		`from="10.0.0.1/8"`, `from="10.0.0.0/33"`, `from="host.example.com"`, `from="!*.example.com,*"`,
		`from="1.2.3.4",from="5.6.7.8"`, `from="10.0.0.1,,10.0.0.2"`, `expiry-time="2030"`, `expiry-time="20301301"`,
	} {
		keys, problems := parseAuthorizedKeys([]byte(bad+" "+testkit.AuthorizedKey(key)+"\n"), time.UTC)
		if len(keys) != 0 || len(problems) != 1 || problems[0].line != 1 {
			t.Errorf("%s: read as %v, problems %v; want the line skipped", bad, keys, problems)
		}
	}

	// Of a key's lines, the first that admits the connection decides.
	data := `from="10.0.0.1" ` + testkit.AuthorizedKey(key) + "\n" + `restrict ` + testkit.AuthorizedKey(key) + "\n"
	l := listOf(data)
	if got, err := l.Admit(key, from("10.0.0.1"), now); err != nil || got != permitAll {
		t.Errorf("from the first line's address: %+v, %v; want everything", got, err)
	}
	if got, err := l.Admit(key, from("127.0.0.1"), now); err != nil || got != none {
		t.Errorf("from elsewhere: %+v, %v; want the restricted second line", got, err)
	}
}

// TestKeyListReportsRemovals: a re-read reports the keys gone from the
// file, once, and not those that stayed or came.
func TestKeyListReportsRemovals(t *testing.T) {
	alice, bob, carol := testkit.NewKey(t).Public(), testkit.NewKey(t).Public(), testkit.NewKey(t).Public()
	path := filepath.Join(t.TempDir(), "users")
	writeFile(t, path, line(alice, "alice")+line(bob, "bob"))
	l, err := LoadKeyList(path, testkit.Quiet)
	if err != nil {
		t.Fatal(err)
	}
	removed := make(chan []gossh.PublicKey, 4)
	l.OnRemove(func(keys []gossh.PublicKey) { removed <- keys })

	writeFile(t, path, line(bob, "bob")+line(carol, "carol")+"not a key\n")
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case keys := <-removed:
		if len(keys) != 1 || !bytes.Equal(keys[0].Marshal(), alice.Marshal()) {
			t.Errorf("removed %d keys; want alice alone", len(keys))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no removal reported")
	}
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	l.Refresh()
	select {
	case keys := <-removed:
		t.Errorf("a re-read of the same file reported %d more removals", len(keys))
	default:
	}
}
