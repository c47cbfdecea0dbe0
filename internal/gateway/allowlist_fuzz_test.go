package gateway

import (
	"bytes"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
	gossh "golang.org/x/crypto/ssh"
)

// FuzzParseAuthorizedKeys: every line that is neither blank nor a comment
// either gives one entry for its key or is skipped with its own number,
// never both; a line that is not a key is always skipped; a line means the
// same alone as among others; and the keys read, written back one per line
// without options, read back the same.
func FuzzParseAuthorizedKeys(f *testing.F) {
	alice := testkit.FixedKey(f, 5).AuthorizedKey() + "\n"
	bob := testkit.FixedKey(f, 6).AuthorizedKey()
	for _, seed := range []string{
		"", "\n\n", "# only a comment\n", alice, alice + alice,
		bob + " bob@laptop\r\n# admins\n\n  " + alice,
		`no-pty,command="echo hi" ` + bob + " with options\n",
		"ssh-ed25519\n", "ssh-ed25519 AAAA\n", "ssh-ed25519 !!!! bob\n", bob[:len(bob)-4] + "\n",
		alice + "garbage line\n", "\x00\xff\n" + alice, "ssh-dss AAAAB3NzaC1kc3M= old\n" + alice,
		`from="10.0.0.0/8,!10.1.*,::1",expiry-time="20300101Z" ` + bob + "\n" + `restrict,pty ` + alice,
		`FROM="127.0.0.?",No-Pty,expiry-time="203001011200" ` + bob, `from=10.0.0.1 ` + bob, `from="host.example.com" ` + bob,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, problems := parseAuthorizedKeys(data, time.UTC)
		lines := bytes.Split(data, []byte("\n"))
		skipped := map[int]bool{}
		for _, p := range problems {
			if p.line < 1 || p.line > len(lines) || skipped[p.line] {
				t.Fatalf("problem %q names line %d of %d, or names it twice", p, p.line, len(lines))
			}
			skipped[p.line] = true
		}
		entries := map[int]keyLine{}
		for _, ls := range keys {
			for _, l := range ls {
				if _, twice := entries[l.line]; twice || skipped[l.line] {
					t.Fatalf("line %d gives two entries, or an entry and a problem", l.line)
				}
				entries[l.line] = l
			}
		}
		for i, line := range lines {
			line = bytes.TrimSpace(line)
			if len(line) == 0 || line[0] == '#' {
				if _, ok := entries[i+1]; ok || skipped[i+1] {
					t.Fatalf("line %d is blank or a comment, yet read: %q", i+1, line)
				}
				continue
			}
			_, ok := entries[i+1]
			if ok == skipped[i+1] {
				t.Fatalf("line %d is neither read nor skipped: %q", i+1, line)
			}
			if _, _, _, _, err := gossh.ParseAuthorizedKey(line); err != nil && ok {
				t.Fatalf("line %d is not a key, yet read: %q", i+1, line)
			}
			alone, _ := parseAuthorizedKeys(line, time.UTC)
			var again []keyLine
			for _, ls := range alone {
				again = ls
			}
			if ok != (len(again) == 1) || ok && !reflect.DeepEqual(again[0].keyOptions, entries[i+1].keyOptions) {
				t.Fatalf("line %d reads differently alone: %q", i+1, line)
			}
		}
		var written bytes.Buffer
		for wire := range keys {
			k, err := gossh.ParsePublicKey([]byte(wire))
			if err != nil {
				t.Fatalf("a key read from the list is not a key: %v", err)
			}
			written.Write(gossh.MarshalAuthorizedKey(k))
		}
		again, problems := parseAuthorizedKeys(written.Bytes(), time.UTC)
		if len(problems) > 0 || !slices.Equal(slices.Sorted(maps.Keys(keys)), slices.Sorted(maps.Keys(again))) {
			t.Fatalf("%d keys written back read as %d, %v", len(keys), len(again), problems)
		}
	})
}
