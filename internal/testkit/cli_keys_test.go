package testkit

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	k := NewKey(t)
	got := LoadKey(t, k.WriteFile(t, filepath.Join(dir, "openssh")))
	if got.AuthorizedKey() != k.AuthorizedKey() || !got.Private.Equal(k.Private) {
		t.Errorf("OpenSSH format: loaded %s, wrote %s", got.AuthorizedKey(), k.AuthorizedKey())
	}

	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pkcs8")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := LoadKey(t, path); got.AuthorizedKey() != k.AuthorizedKey() {
		t.Errorf("PKCS #8: loaded %s, wrote %s", got.AuthorizedKey(), k.AuthorizedKey())
	}
}
