package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// KeyList is an authorized_keys file that re-reads itself when it changes.
// As sshd does, a line that is not a usable key is skipped with an error
// naming the file and the line, and the rest applies: one bad line never
// keeps a removed key alive. A file that cannot be read at all keeps the
// last list read (and logs why), so a file mid-replacement never locks
// everyone out.
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

// LoadKeyList reads path; an empty path is an empty list. A file that cannot
// be read at start-up is an error: there is no last list to fall back on.
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

// Reload re-reads the file now (on SIGHUP). It fails only when the file
// cannot be read; bad lines are logged and skipped.
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
	keys, problems := parseAuthorizedKeys(data)
	for _, p := range problems {
		k.log.Error("allow list line skipped", "path", k.path, "line", p.line, "err", p.err)
	}
	k.keys, k.stamp = keys, st
	k.log.Info("allow list loaded", "path", k.path, "keys", len(keys), "skipped_lines", len(problems))
	return nil
}

// lineProblem is why one line of an allow list was skipped.
type lineProblem struct {
	line int // from 1
	err  error
}

func (p lineProblem) Error() string { return fmt.Sprintf("line %d: %v", p.line, p.err) }

// parseAuthorizedKeys reads authorized_keys lines; comments are allowed and
// ignored. A line that is not a key is skipped and reported with its
// number; the others apply.
func parseAuthorizedKeys(data []byte) (map[string]bool, []lineProblem) {
	keys := map[string]bool{}
	var problems []lineProblem
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		key, _, _, _, err := gossh.ParseAuthorizedKey(line)
		if err != nil {
			problems = append(problems, lineProblem{i + 1, errors.New("not a public key in authorized_keys form")})
			continue
		}
		keys[string(key.Marshal())] = true
	}
	return keys, problems
}

func stampOf(path string) (fileStamp, error) {
	info, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, fmt.Errorf("read allow list: %w", err)
	}
	return fileStamp{size: info.Size(), modTime: info.ModTime(), inode: inodeOf(info)}, nil
}
