package gateway

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/secrets"
	"github.com/cc-gateway/cc-gateway/internal/store/bolt"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// Fuzz targets for what a person types after `ssh HOST`. Their seeds run
// in every `go test`; docs/operations.md says how to fuzz longer.

// FuzzCommand runs whatever a person may send as an exec request through
// the gateway's command dispatch, for a person without a machine (an
// admin or not), on a real lease manager and bbolt store. A gateway
// command either succeeds quietly on stderr or is refused with exit 1 and
// one line that names the command; nothing a person types looks like a
// fault of the gateway (a line with a reference), and nothing panics.
func FuzzCommand(f *testing.F) {
	admin := testkit.FixedKey(f, 1).Signer
	dir := f.TempDir()
	path := filepath.Join(dir, "admins")
	if err := os.WriteFile(path, gossh.MarshalAuthorizedKey(admin.PublicKey()), 0o600); err != nil {
		f.Fatal(err)
	}
	admins, err := LoadKeyList(path, testkit.Quiet)
	if err != nil {
		f.Fatal(err)
	}
	store, err := bolt.Open(filepath.Join(dir, "gateway.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	box, err := secrets.LoadKeyFile(filepath.Join(dir, "secrets.key"))
	if err != nil {
		f.Fatal(err)
	}
	users, _ := LoadKeyList("", testkit.Quiet)
	g, err := New(Options{
		HostKey: testkit.FixedKey(f, 2).Signer, Pool: newPool(testkit.FixedKey(f, 3).Signer), Users: users, Admins: admins,
		Leases: lease.NewManager(lease.Config{Store: store, Logger: testkit.Quiet, Sealer: box}), Logger: testkit.Quiet,
		Invocation: "ssh gw",
	})
	if err != nil {
		f.Fatal(err)
	}
	person := testkit.FixedKey(f, 4).Signer

	for _, seed := range []string{
		"status", "status --json", "status --yaml", "extend 2h", "extend", "extend 2h 3h", "extend -1h",
		"extend 1d", "extend 9999999999h", "stop", "stop now", "destroy", "destroy --yes", "destroy --yes --no",
		"help", "help me", "admin", "admin list", "admin list all", "admin events", "admin events 0",
		"admin events 99999999999999999999", "admin refusals", "admin refusals 0", "admin stop cc-nobody", "admin extend cc-nobody 2h",
		"admin extend cc-nobody soon", "admin frobnicate", "  status\t--json ", "echo status", "",
		"status\x00", "extend \u00a02h", "extend 1h\n", "statusx",
		"secret", "secret list", "secret list all", "secret set GH_TOKEN", "secret set PATH", "secret set gh", "secret rm GH_TOKEN", "secret rm NOPE",
		"notify", "notify list", "notify add https://ntfy.sh/t", "notify remove x", "notify test", "notify add",
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, cmd string, isAdmin bool) {
		// The exec payload carries the command unchanged.
		if got := execCommand(gossh.Marshal(struct{ Command string }{cmd})); got != cmd {
			t.Fatalf("execCommand round trip: %q became %q", cmd, got)
		}
		args, ok := gatewayCommand(cmd)
		fields := strings.Fields(cmd)
		if !ok {
			if len(fields) > 0 {
				if _, isCommand := commands[fields[0]]; isCommand {
					t.Fatalf("%q names a gateway command but goes to the machine", cmd)
				}
			}
			return
		}
		key := person.PublicKey()
		if isAdmin {
			key = admin.PublicKey()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		code := g.runCommand(ctx, call{args: args, key: key, fingerprint: lease.Fingerprint(key), trace: g.newConnTrace(),
			stdin: strings.NewReader("a secret value\n"), stdout: &stdout, stderr: &stderr})
		switch code {
		case 0:
			if stderr.Len() != 0 {
				t.Fatalf("%q succeeded with %q on stderr", cmd, stderr.String())
			}
		case 1:
			line := stderr.String()
			if stdout.Len() != 0 {
				t.Errorf("%q was refused but printed %q on stdout", cmd, stdout.String())
			}
			if !strings.HasPrefix(line, args[0]+": ") || !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
				t.Errorf("%q was refused with %q, want one line starting with %q", cmd, line, args[0]+": ")
			}
			if refPattern.MatchString(line) {
				t.Errorf("%q was refused as a gateway fault: %q", cmd, line)
			}
		default:
			t.Fatalf("%q exited %d; gateway commands exit 0 or 1", cmd, code)
		}
		if args[0] == "admin" && !isAdmin && code != 1 {
			t.Errorf("%q ran for a key that is not an admin's", cmd)
		}
	})
}

// FuzzParseDuration: what extend accepts, and how status prints durations.
// A refused duration is quoted in the refusal; an accepted one prints (as
// lease.FormatDuration does, to the second or, from an hour on, to the
// minute) as something extend accepts back.
func FuzzParseDuration(f *testing.F) {
	for _, seed := range []string{"2h", "90m", "1h30m", "45s", "0", "-1h", "1d", "2 h", "", "1.5h", "300ms",
		"9223372036854775807ns", "-9223372036854775808ns", "2562047h47m16.854775807s", "1h\n"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDuration(s)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("refusal %q does not quote the input %q", err, s)
			}
			return
		}
		want := d.Truncate(time.Second)
		if want >= time.Hour || want <= -time.Hour {
			want = d.Truncate(time.Minute)
		}
		printed := lease.FormatDuration(d)
		back, err := parseDuration(printed)
		if err != nil || back != want {
			t.Fatalf("%q (%v) prints as %q, which reads back as %v, %v; want %v", s, d, printed, back, err, want)
		}
	})
}
