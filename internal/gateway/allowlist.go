package gateway

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// KeyList is an authorized_keys file that re-reads itself when it changes.
// A file that becomes unreadable or malformed keeps the last good list (and
// logs why), so a bad edit never locks everyone out or lets anyone in.
type KeyList struct {
	path string
	log  *slog.Logger

	mu    sync.Mutex
	keys  map[string]bool // by wire form
	stamp fileStamp
}

type fileStamp struct {
	size    int64
	modTime time.Time
	inode   uint64
}

// LoadKeyList reads path; an empty path is an empty list. A broken file at
// start-up is an error: there is no last good list to fall back on.
func LoadKeyList(path string, log *slog.Logger) (*KeyList, error) {
	k := &KeyList{path: path, log: log, keys: map[string]bool{}}
	if path == "" {
		return k, nil
	}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Contains reports whether key is on the list, re-reading the file first if
// it changed since the last read.
func (k *KeyList) Contains(key gossh.PublicKey) bool {
	if k.path == "" {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if st, err := stampOf(k.path); err != nil || st != k.stamp {
		if err := k.reloadLocked(); err != nil {
			k.log.Error("allow list unchanged: could not re-read it", "path", k.path, "err", err)
		}
	}
	return k.keys[string(key.Marshal())]
}

// Len is the number of keys on the list.
func (k *KeyList) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys)
}

// Reload re-reads the file now (on SIGHUP).
func (k *KeyList) Reload() error {
	if k.path == "" {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reloadLocked()
}

func (k *KeyList) reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reloadLocked()
}

func (k *KeyList) reloadLocked() error {
	st, err := stampOf(k.path)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(k.path)
	if err != nil {
		return fmt.Errorf("read allow list: %w", err)
	}
	keys, err := parseAuthorizedKeys(data)
	if err != nil {
		return fmt.Errorf("allow list %s: %w", k.path, err)
	}
	k.keys, k.stamp = keys, st
	k.log.Info("allow list loaded", "path", k.path, "keys", len(keys))
	return nil
}

// parseAuthorizedKeys reads authorized_keys lines; options and comments are
// allowed and ignored. Any line that is not a key fails the whole file, with
// its line number.
func parseAuthorizedKeys(data []byte) (map[string]bool, error) {
	keys := map[string]bool{}
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		key, _, _, _, err := gossh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d is not a public key in authorized_keys form", i+1)
		}
		keys[string(key.Marshal())] = true
	}
	return keys, nil
}

func stampOf(path string) (fileStamp, error) {
	info, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, fmt.Errorf("read allow list: %w", err)
	}
	return fileStamp{size: info.Size(), modTime: info.ModTime(), inode: inodeOf(info)}, nil
}
