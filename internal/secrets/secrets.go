// Package secrets seals people's secret values at rest with AES-256-GCM,
// under a key kept in a file of its own. The person's fingerprint and the
// secret's name are bound to every sealed value as additional data, so a
// value copied to another person or another name does not open.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// KeySize is the size of a key file: an AES-256 key, raw.
const KeySize = 32

// version is the first byte of every sealed value, so the format can change.
const version = 1

// Box seals and opens secrets under one key.
type Box struct {
	aead cipher.AEAD
}

// NewBox returns a Box sealing under key, which must be KeySize bytes.
func NewBox(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("a secrets key is %d bytes, not %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	return &Box{aead: aead}, nil
}

// LoadKeyFile returns the Box of the key in path, creating the file with a
// fresh random key and mode 0600 when it does not exist. A key file that
// others may read, or of the wrong size, is refused: the operator must fix
// it, never the gateway guess.
func LoadKeyFile(path string) (*Box, error) {
	key, err := readKey(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := createKey(path); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		// Read back what is there, even if another process made it first.
		key, err = readKey(path)
	}
	if err != nil {
		return nil, err
	}
	return NewBox(key)
}

func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secrets key file: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("the secrets key file %s has mode %04o, which lets others read it; make it 0600 (chmod 600 %s)", path, perm, path)
	}
	// One byte more than a key, to see a file that is too long.
	key, err := io.ReadAll(io.LimitReader(f, KeySize+1))
	if err != nil {
		return nil, fmt.Errorf("read secrets key file %s: %w", path, err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("the secrets key file %s is not a %d-byte key; restore the right file, or remove it and set every secret again", path, KeySize)
	}
	return key, nil
}

// createKey writes a new random key to path, failing with an error wrapping
// os.ErrExist when the file is there already.
func createKey(path string) error {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("make secrets key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create secrets key folder: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create secrets key file: %w", err)
	}
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// A half-written key would be refused at every start after.
		os.Remove(path)
		return fmt.Errorf("write secrets key file %s: %w", path, err)
	}
	return nil
}

// additionalData binds a sealed value to its person and name.
func additionalData(fingerprint, name string) []byte {
	return []byte("cc-gateway secret\x00" + fingerprint + "\x00" + name)
}

// Seal returns value sealed for the person with fingerprint, under name.
func (b *Box) Seal(fingerprint, name string, value []byte) ([]byte, error) {
	out := make([]byte, 1+b.aead.NonceSize(), 1+b.aead.NonceSize()+len(value)+b.aead.Overhead())
	out[0] = version
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("seal secret: %w", err)
	}
	return b.aead.Seal(out, out[1:], value, additionalData(fingerprint, name)), nil
}

// ErrOpen is the error of a sealed value that does not open: another key,
// another person or name, or damaged bytes.
var ErrOpen = errors.New("the sealed secret does not open with this key for this person and name")

// Open returns the value Seal sealed for fingerprint and name.
func (b *Box) Open(fingerprint, name string, sealed []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != version {
		return nil, ErrOpen
	}
	value, err := b.aead.Open(nil, sealed[1:1+n], sealed[1+n:], additionalData(fingerprint, name))
	if err != nil {
		return nil, ErrOpen
	}
	return value, nil
}
