package gateway

import (
	"bytes"
	"maps"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
	gossh "golang.org/x/crypto/ssh"
)

// FuzzParseAuthorizedKeys: every line that is neither blank nor a comment
// either gives a key or is skipped with its own number, never both; a line
// that is not a key is always skipped; and the keys read, written back one
// per line, read back the same.
func FuzzParseAuthorizedKeys(f *testing.F) {
	alice := testkit.FixedKey(f, 5).AuthorizedKey() + "\n"
	bob := testkit.FixedKey(f, 6).AuthorizedKey()
	for _, seed := range []string{
		"", "\n\n", "# only a comment\n", alice, alice + alice,
		bob + " bob@laptop\r\n# admins\n\n  " + alice,
		`no-pty,command="echo hi" ` + bob + " with options\n",
		"ssh-ed25519\n", "ssh-ed25519 AAAA\n", "ssh-ed25519 !!!! bob\n", bob[:len(bob)-4] + "\n",
		alice + "garbage line\n", "\x00\xff\n" + alice, "ssh-dss AAAAB3NzaC1kc3M= old\n" + alice,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, problems := parseAuthorizedKeys(data)
		lines := bytes.Split(data, []byte("\n"))
		skipped := map[int]bool{}
		for _, p := range problems {
			if p.line < 1 || p.line > len(lines) || skipped[p.line] {
				t.Fatalf("problem %q names line %d of %d, or names it twice", p, p.line, len(lines))
			}
			skipped[p.line] = true
		}
		for i, line := range lines {
			line = bytes.TrimSpace(line)
			if len(line) == 0 || line[0] == '#' {
				if skipped[i+1] {
					t.Fatalf("line %d is blank or a comment, yet skipped: %q", i+1, line)
				}
				continue
			}
			key, _, _, _, err := gossh.ParseAuthorizedKey(line)
			switch {
			case err != nil && !skipped[i+1]:
				t.Fatalf("line %d is not a key, yet not skipped: %q", i+1, line)
			case err == nil && !skipped[i+1] && !keys[string(key.Marshal())]:
				t.Fatalf("line %d is a key, neither read nor skipped: %q", i+1, line)
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
		again, problems := parseAuthorizedKeys(written.Bytes())
		if len(problems) > 0 || !maps.Equal(keys, again) {
			t.Fatalf("%d keys written back read as %d, %v", len(keys), len(again), problems)
		}
	})
}
