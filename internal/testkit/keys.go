package testkit

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"os"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// Key is a fresh key (ed25519 unless made by NewRSAKey) in the forms tests
// hand to SSH code.
type Key struct {
	Private ed25519.PrivateKey // nil for an RSA key
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

// NewRSAKey generates a 2048-bit RSA key, for what only RSA keys meet
// (their choice of signature hash); Private stays nil.
func NewRSAKey(t testing.TB) Key {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return keyOf(t, priv)
}

func keyOf(t testing.TB, priv crypto.Signer) Key {
	t.Helper()
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	ed, _ := priv.(ed25519.PrivateKey)
	return Key{Private: ed, Signer: signer, PEM: pem.EncodeToMemory(block)}
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
