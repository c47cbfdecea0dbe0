package testkit

import (
	"crypto/ed25519"
	"os"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// LoadKey reads an ed25519 private key file, such as the host key a gateway
// or sshd wrote, so a test can pin its public half.
func LoadKey(t testing.TB, path string) Key {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := gossh.ParseRawPrivateKey(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var priv ed25519.PrivateKey
	switch k := raw.(type) {
	case *ed25519.PrivateKey: // OpenSSH's own format
		priv = *k
	case ed25519.PrivateKey: // PKCS #8
		priv = k
	default:
		t.Fatalf("%s holds a %T, not an ed25519 key", path, raw)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return Key{Private: priv, Signer: signer, PEM: data}
}
