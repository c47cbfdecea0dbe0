package testkit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

func TestKeys(t *testing.T) {
	a, b := NewKey(t), NewKey(t)
	if a.AuthorizedKey() == b.AuthorizedKey() {
		t.Error("two new keys are the same")
	}
	seven, again, eight := FixedKey(t, 7), FixedKey(t, 7), FixedKey(t, 8)
	if seven.AuthorizedKey() != again.AuthorizedKey() || seven.AuthorizedKey() == eight.AuthorizedKey() {
		t.Error("fixed keys do not follow their seed")
	}
	// The file holds the same key, as OpenSSH reads it.
	data, err := os.ReadFile(a.WriteFile(t, filepath.Join(t.TempDir(), "id")))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := gossh.ParsePrivateKey(data)
	if err != nil || !bytes.Equal(parsed.PublicKey().Marshal(), a.Public().Marshal()) {
		t.Errorf("the written key reads back as %v, %v", parsed, err)
	}
}
