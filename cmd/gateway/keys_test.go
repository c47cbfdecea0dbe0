package main

// The keys on the allow list: what their signatures and options let in,
// through the real OpenSSH client.

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// newRSAPerson is newPerson with an RSA key.
func newRSAPerson(t *testing.T, dir string) *person {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "id_rsa")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := gossh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &person{t: t, keyPath: keyPath, pub: pub, dir: dir}
}

// TestRSASignatures: an RSA key on the list gets in signing with SHA-2, and
// not when its client will only sign with SHA-1 (ssh-rsa), as with OpenSSH
// 8.8 and later.
func TestRSASignatures(t *testing.T) {
	dir := t.TempDir()
	rita := newRSAPerson(t, filepath.Join(dir, "rita"))
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte(rita.authorizedLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lg := newLocalGateway(t, "--users", users)
	g := lg.start(t)

	for _, algo := range []string{"rsa-sha2-256", "rsa-sha2-512"} {
		if r := rita.ssh(g, lg.hostKeys, "", "-oPubkeyAcceptedAlgorithms="+algo, "status"); r.code != 0 {
			t.Errorf("signing with %s: code %d stderr %q; want in", algo, r.code, r.stderr)
		}
	}
	r := rita.ssh(g, lg.hostKeys, "", "-oPubkeyAcceptedAlgorithms=ssh-rsa", "status")
	if r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("signing with ssh-rsa: code %d stderr %q; want refused", r.code, r.stderr)
	}
}
