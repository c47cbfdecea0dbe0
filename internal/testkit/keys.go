package testkit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// Key is a fresh ed25519 key in the forms tests hand to SSH code.
type Key struct {
	Private ed25519.PrivateKey
	Signer  gossh.Signer
	PEM     []byte // OpenSSH private key format, as ssh -i and host keys want it
}

// NewKey generates a key.
func NewKey(t testing.TB) Key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keyOf(t, priv)
}

// FixedKey is the key made from seed, the same in every run: for fuzz
// seeds, which should not change from one run to the next.
func FixedKey(t testing.TB, seed byte) Key {
	t.Helper()
	return keyOf(t, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
}

func keyOf(t testing.TB, priv ed25519.PrivateKey) Key {
	t.Helper()
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return Key{Private: priv, Signer: signer, PEM: pem.EncodeToMemory(block)}
}

// Public is the key's public half.
func (k Key) Public() gossh.PublicKey { return k.Signer.PublicKey() }

// AuthorizedKey is the public half in authorized_keys form, without a
// comment: how leases and bootstrap documents hold keys.
func (k Key) AuthorizedKey() string { return AuthorizedKey(k.Public()) }

// WriteFile writes the private key where OpenSSH accepts it (mode 0600) and
// returns path.
func (k Key) WriteFile(t testing.TB, path string) string {
	t.Helper()
	if err := os.WriteFile(path, k.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// AuthorizedKey is pub in authorized_keys form, without a comment.
func AuthorizedKey(pub gossh.PublicKey) string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub)))
}
