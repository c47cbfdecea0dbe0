package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/preflight"
)

// KeyList is an authorized_keys file that re-reads itself when it changes.
// As sshd does, a line that is not a usable key is skipped with an error
// naming the file and the line, and the rest applies: one bad line never
// keeps a removed key alive. A file that cannot be read at all keeps the
// last list read (and logs why), so a file mid-replacement never locks
// everyone out.
//
// A line's options are enforced (see keyOptions); a line with an option the
// gateway does not enforce is skipped like any bad line.
type KeyList struct {
	path string
	log  *slog.Logger

	mu       sync.Mutex
	keys     map[string][]keyLine // by wire form; a key's lines in file order
	stamp    fileStamp
	onRemove func([]gossh.PublicKey)
	failure  string // the last re-read's error, logged once
	skipped  int    // lines of the last read that were not usable keys
}

// keyLine is one usable line of an allow list.
type keyLine struct {
	line int // from 1
	keyOptions
}

// errNotListed: the key is on no line of the list.
var errNotListed = errors.New("it is not on the allow list")

type fileStamp struct {
	size    int64
	modTime time.Time
	inode   uint64
}

// LoadKeyList reads path; an empty path is an empty list. A file that cannot
// be read at start-up is an error: there is no last list to fall back on.
func LoadKeyList(path string, log *slog.Logger) (*KeyList, error) {
	k := &KeyList{path: path, log: log, keys: map[string][]keyLine{}}
	if path == "" {
		return k, nil
	}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Contains reports whether key is on some line of the list, whatever the
// line's options say, re-reading the file first if it changed since the
// last read.
func (k *KeyList) Contains(key gossh.PublicKey) bool {
	return len(k.lines(key)) > 0
}

// Admit reports what the list lets key do on a connection from remote at
// now: as sshd does, the first of the key's lines whose from= and
// expiry-time= admit the connection decides. The error says why none does.
func (k *KeyList) Admit(key gossh.PublicKey, remote net.Addr, now time.Time) (Permit, error) {
	lines := k.lines(key)
	if len(lines) == 0 {
		return Permit{}, errNotListed
	}
	var why error
	for _, l := range lines {
		if why = l.admits(remote, now); why == nil {
			return l.permit, nil
		}
	}
	return Permit{}, why
}

// lines returns key's lines, re-reading the file first if it changed.
func (k *KeyList) lines(key gossh.PublicKey) []keyLine {
	if k.path == "" {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refreshLocked()
	return k.keys[string(key.Marshal())]
}

// Refresh re-reads the file if it changed since the last read, so that a
// removal takes effect without waiting for the next login.
func (k *KeyList) Refresh() {
	if k.path == "" {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refreshLocked()
}

func (k *KeyList) refreshLocked() {
	if st, err := stampOf(k.path); err != nil || st != k.stamp {
		err := k.reloadLocked()
		// Once per new failure: the file is looked at every few seconds.
		if err != nil && err.Error() != k.failure {
			k.log.Error("allow list unchanged: could not re-read it", "path", k.path, "err", err)
		}
		k.failure = ""
		if err != nil {
			k.failure = err.Error()
		}
	}
}

// OnRemove has fn called, in a goroutine of its own, with the keys that
// each re-read finds gone from the file.
func (k *KeyList) OnRemove(fn func([]gossh.PublicKey)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.onRemove = fn
}

// Len is the number of keys on the list.
func (k *KeyList) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys)
}

// CheckAllowList reads the allow list given to --option (an empty path is
// no list) for `gateway preflight`: how many keys it holds and how many
// lines it skipped; log gets each skipped line's reason.
func CheckAllowList(option, path string, log *slog.Logger) preflight.Check {
	name := "--" + option
	if path == "" {
		return preflight.Passed(name, "not set")
	}
	list, err := LoadKeyList(path, log)
	if err != nil {
		return preflight.Failed(name, "cannot read %s (%v): fix the file or the path given to --%s", path, err, option)
	}
	return preflight.Passed(name, "%s: %d key(s), %d line(s) skipped", path, list.Len(), list.Skipped())
}

// Skipped is the number of lines of the last read that were skipped as
// not usable keys (each logged with its reason).
func (k *KeyList) Skipped() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.skipped
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
	keys, problems := parseAuthorizedKeys(data, time.Local)
	for _, p := range problems {
		k.log.Error("allow list line skipped", "path", k.path, "line", p.line, "err", p.err)
	}
	var removed []gossh.PublicKey
	for wire := range k.keys {
		if _, ok := keys[wire]; !ok {
			if key, err := gossh.ParsePublicKey([]byte(wire)); err == nil {
				removed = append(removed, key)
			}
		}
	}
	k.keys, k.stamp, k.skipped = keys, st, len(problems)
	if len(removed) > 0 && k.onRemove != nil {
		go k.onRemove(removed)
	}
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
// ignored. A line that is not a key, or has an option that is malformed or
// not enforced, is skipped and reported with its number; the others apply.
// Expiry times are in loc unless they say otherwise.
func parseAuthorizedKeys(data []byte, loc *time.Location) (map[string][]keyLine, []lineProblem) {
	keys := map[string][]keyLine{}
	var problems []lineProblem
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		key, _, options, _, err := gossh.ParseAuthorizedKey(line)
		if err != nil {
			problems = append(problems, lineProblem{i + 1, errors.New("not a public key in authorized_keys form")})
			continue
		}
		opts, err := parseKeyOptions(options, loc)
		if err != nil {
			problems = append(problems, lineProblem{i + 1, err})
			continue
		}
		wire := string(key.Marshal())
		keys[wire] = append(keys[wire], keyLine{line: i + 1, keyOptions: opts})
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
