package gateway

import (
	"bytes"
	"maps"
	"regexp"
	"strconv"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
	gossh "golang.org/x/crypto/ssh"
)

var badLine = regexp.MustCompile(`^line (\d+) is not a public key in authorized_keys form$`)

// FuzzParseAuthorizedKeys: an allow list is refused as a whole with the
// number of a line that is truly not a key, or read into keys that, written
// back one per line, read back the same.
func FuzzParseAuthorizedKeys(f *testing.F) {
	alice := testkit.FixedKey(f, 5).AuthorizedKey() + "\n"
	bob := testkit.FixedKey(f, 6).AuthorizedKey()
	for _, seed := range []string{
		"", "\n\n", "# only a comment\n", alice, alice + alice,
		bob + " bob@laptop\r\n# admins\n\n  " + alice,
		`no-pty,command="echo hi" ` + bob + " with options\n",
		"ssh-ed25519\n", "ssh-ed25519 AAAA\n", "ssh-ed25519 !!!! bob\n", bob[:len(bob)-4] + "\n",
		alice + "garbage line\n", "\x00\xff\n" + alice,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseAuthorizedKeys(data)
		if err != nil {
			m := badLine.FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("refusal %q does not name a line", err)
			}
			n, _ := strconv.Atoi(m[1])
			lines := bytes.Split(data, []byte("\n"))
			if n < 1 || n > len(lines) {
				t.Fatalf("refusal names line %d of %d", n, len(lines))
			}
			line := bytes.TrimSpace(lines[n-1])
			if len(line) == 0 || line[0] == '#' {
				t.Fatalf("refusal names line %d, which is blank or a comment: %q", n, line)
			}
			if _, _, _, _, err := gossh.ParseAuthorizedKey(line); err == nil {
				t.Fatalf("refusal names line %d, which is a key: %q", n, line)
			}
			return
		}
		var written bytes.Buffer
		for wire := range keys {
			k, err := gossh.ParsePublicKey([]byte(wire))
			if err != nil {
				t.Fatalf("a key read from the list is not a key: %v", err)
			}
			written.Write(gossh.MarshalAuthorizedKey(k))
		}
		again, err := parseAuthorizedKeys(written.Bytes())
		if err != nil || !maps.Equal(keys, again) {
			t.Fatalf("%d keys written back read as %d, %v", len(keys), len(again), err)
		}
	})
}
