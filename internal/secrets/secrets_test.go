package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fp = "SHA256:person"

func newBox(t *testing.T) *Box {
	t.Helper()
	b, err := LoadKeyFile(filepath.Join(t.TempDir(), "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealOpenRoundTrip(t *testing.T) {
	b := newBox(t)
	value := []byte("ghp_abc123")
	sealed, err := b.Seal(fp, "GH_TOKEN", value)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, value) {
		t.Fatalf("sealed value %q holds the value in the clear", sealed)
	}
	got, err := b.Open(fp, "GH_TOKEN", sealed)
	if err != nil || !bytes.Equal(got, value) {
		t.Fatalf("Open = %q, %v; want %q", got, err, value)
	}
	again, _ := b.Seal(fp, "GH_TOKEN", value)
	if bytes.Equal(again, sealed) {
		t.Error("sealing the same value twice gave the same bytes: the nonce is not fresh")
	}
}

func TestOpenRefusesAnotherKeyPersonNameOrDamage(t *testing.T) {
	b := newBox(t)
	sealed, err := b.Seal(fp, "GH_TOKEN", []byte("ghp_abc123"))
	if err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(sealed)
	damaged[len(damaged)-1] ^= 1
	cases := map[string]struct {
		box      *Box
		fp, name string
		sealed   []byte
	}{
		"another key":    {newBox(t), fp, "GH_TOKEN", sealed},
		"another person": {b, "SHA256:someone-else", "GH_TOKEN", sealed},
		"another name":   {b, fp, "ANTHROPIC_API_KEY", sealed},
		"damaged":        {b, fp, "GH_TOKEN", damaged},
		"truncated":      {b, fp, "GH_TOKEN", sealed[:5]},
		"empty":          {b, fp, "GH_TOKEN", nil},
	}
	for name, c := range cases {
		if got, err := c.box.Open(c.fp, c.name, c.sealed); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: Open = %q, %v; want ErrOpen", name, got, err)
		}
	}
}

func TestLoadKeyFileCreatesOnceWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "secrets.key")
	b, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != KeySize {
		t.Fatalf("key file: mode %v, size %d; want 0600 and %d bytes", st.Mode().Perm(), st.Size(), KeySize)
	}
	sealed, err := b.Seal(fp, "GH_TOKEN", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	// A restart reads the same key: what was sealed still opens.
	again, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Open(fp, "GH_TOKEN", sealed); err != nil || string(got) != "v" {
		t.Fatalf("after reloading the key file: Open = %q, %v", got, err)
	}
}

func TestLoadKeyFileRefusesLooseModeOrWrongSize(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		mode    os.FileMode
		size    int
		message string
	}{
		"group readable": {0o640, KeySize, "mode 0640"},
		"world readable": {0o604, KeySize, "mode 0604"},
		"short":          {0o600, KeySize - 1, "not a 32-byte key"},
		"long":           {0o600, KeySize + 1, "not a 32-byte key"},
		"empty":          {0o600, 0, "not a 32-byte key"},
	}
	for name, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(path, make([]byte, c.size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, c.mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadKeyFile(path)
		if err == nil || !strings.Contains(err.Error(), c.message) || strings.Count(err.Error(), "\n") != 0 {
			t.Errorf("%s: LoadKeyFile = %v; want one line saying %q", name, err, c.message)
		}
		// Refused, not replaced: the operator's file is left as it was.
		if st, err := os.Stat(path); err != nil || st.Size() != int64(c.size) {
			t.Errorf("%s: the refused key file changed: %v, %v", name, st, err)
		}
	}
}
