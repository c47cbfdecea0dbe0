package lease

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Bounds of what a person keeps as secrets.
const (
	MaxSecrets        = 32       // per person
	MaxSecretSize     = 64 << 10 // bytes of one value
	MaxSecretNameSize = 64
)

// Sealer seals secret values for keeping at rest (internal/secrets). A
// value is sealed for one person and one name: opened as another's, or
// under another name, it fails.
type Sealer interface {
	Seal(fingerprint, name string, value []byte) ([]byte, error)
	Open(fingerprint, name string, sealed []byte) ([]byte, error)
}

// SecretValue is a secret in the clear, on its way to the person's machine.
type SecretValue struct {
	Name  string
	Value []byte
}

// SecretError refuses a secret a person asked to set or remove; it is a
// sentence for them.
type SecretError struct{ Sentence string }

func (e *SecretError) Error() string { return e.Sentence }

// deniedSecretNames and deniedSecretPrefixes are the variables a secret may
// not set: the ones sshd, the login, the shell, tmux or the gateway's own
// machine commands set or rely on, which a secret would break or hijack.
var (
	deniedSecretNames = []string{
		"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "MAIL", "PWD", "OLDPWD",
		"TMPDIR", "TZ", "LANG", "LANGUAGE", "DISPLAY", "IFS", "ENV", "BASH_ENV",
		"CDPATH", "SHLVL", "HOSTNAME", "PS1", "PS2", "PS4", "PROMPT_COMMAND",
		"COLORTERM", "NO_COLOR", "CLOUD_INSTANCE_DIR", "CC_GATEWAY_SECRETS",
	}
	deniedSecretPrefixes = []string{"LD_", "SSH_", "LC_", "XDG_", "TMUX", "NSS_WRAPPER_"}
)

// CheckSecretName refuses a name that is not an environment variable's
// ([A-Z_][A-Z0-9_]*, at most MaxSecretNameSize long) or that would break
// sessions on the machine.
func CheckSecretName(name string) error {
	if name == "" || len(name) > MaxSecretNameSize {
		return &SecretError{fmt.Sprintf("a secret's name is 1 to %d characters, like GH_TOKEN", MaxSecretNameSize)}
	}
	for i, r := range name {
		if !(r >= 'A' && r <= 'Z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return &SecretError{fmt.Sprintf("%q is not a secret name: use capital letters, digits and _, not starting with a digit, like GH_TOKEN", name)}
		}
	}
	if slices.Contains(deniedSecretNames, name) {
		return &SecretError{fmt.Sprintf("%s is set by the machine itself and cannot be a secret; choose another name", name)}
	}
	for _, p := range deniedSecretPrefixes {
		if strings.HasPrefix(name, p) {
			return &SecretError{fmt.Sprintf("names starting with %s are set by the machine itself and cannot be secrets; choose another name", p)}
		}
	}
	return nil
}

// CheckSecretValue returns the value of a secret as read from the person's
// input: one trailing line break (what `echo` adds) removed. It refuses an
// empty value, one over MaxSecretSize, and one with a line break or NUL
// inside, which a line of the machine's environment file cannot hold.
func CheckSecretValue(raw []byte) ([]byte, error) {
	v := bytes.TrimSuffix(raw, []byte("\n"))
	v = bytes.TrimSuffix(v, []byte("\r"))
	switch {
	case len(v) == 0:
		return nil, &SecretError{"the value is empty; give it on standard input, for example: echo \"$GH_TOKEN\" | ssh HOST secret set GH_TOKEN"}
	case len(v) > MaxSecretSize:
		return nil, &SecretError{fmt.Sprintf("the value is over %d KiB, the most a secret may be", MaxSecretSize>>10)}
	case bytes.ContainsAny(v, "\n\r\x00"):
		return nil, &SecretError{"the value holds a line break or a NUL byte; a secret is one line"}
	}
	return v, nil
}

// errNoSealer is the failure of a secret command on a Manager without a
// Sealer.
var errNoSealer = errors.New("this gateway keeps no secrets: it has no secrets key")

// Secrets returns the names of the person's secrets and when they were
// set, sorted by name; never their values, sealed or not.
func (m *Manager) Secrets(fp string) ([]Secret, error) {
	p, err := m.cfg.Store.Person(fp)
	if err != nil {
		return nil, fmt.Errorf("read person: %w", err)
	}
	out := make([]Secret, 0, len(p.Secrets))
	for _, s := range p.Secrets {
		out = append(out, Secret{Name: s.Name, Set: s.Set})
	}
	slices.SortFunc(out, func(a, b Secret) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// SetSecret seals value (checked by CheckSecretValue first) as the
// person's secret name, replacing one of that name, and hands the person's
// secrets to their machine at once if it runs. delivered says whether it
// did; if not, the machine gets them when it next starts or is attached to.
func (m *Manager) SetSecret(ctx context.Context, fp, name string, value []byte) (delivered bool, err error) {
	if err := CheckSecretName(name); err != nil {
		return false, err
	}
	if value, err = CheckSecretValue(value); err != nil {
		return false, err
	}
	if m.cfg.Sealer == nil {
		return false, errNoSealer
	}
	unlock, err := m.lock(ctx, fp)
	if err != nil {
		return false, err
	}
	defer unlock()
	p, _, err := m.changePerson(fp, func(p *Person) error {
		// A copy: the store's own slice is never changed in place.
		p.Secrets = slices.Clone(p.Secrets)
		i := slices.IndexFunc(p.Secrets, func(s Secret) bool { return s.Name == name })
		if i < 0 && len(p.Secrets) >= MaxSecrets {
			return &SecretError{fmt.Sprintf("you have %d secrets, the most allowed; remove one first", MaxSecrets)}
		}
		sealed, err := m.cfg.Sealer.Seal(fp, name, value)
		if err != nil {
			return err
		}
		s := Secret{Name: name, Sealed: sealed, Set: m.cfg.Clock.Now()}
		if i < 0 {
			p.Secrets = append(p.Secrets, s)
		} else {
			p.Secrets[i] = s
		}
		return nil
	}, m.secretEvent(ctx, fp, "secret-set", name))
	if err != nil {
		return false, err
	}
	return m.secretsChanged(ctx, p, "secret-set", name), nil
}

// RemoveSecret removes the person's secret name, from their machine too at
// once if it runs; delivered says whether it did.
func (m *Manager) RemoveSecret(ctx context.Context, fp, name string) (delivered bool, err error) {
	unlock, err := m.lock(ctx, fp)
	if err != nil {
		return false, err
	}
	defer unlock()
	p, _, err := m.changePerson(fp, func(p *Person) error {
		i := slices.IndexFunc(p.Secrets, func(s Secret) bool { return s.Name == name })
		if i < 0 {
			return &SecretError{fmt.Sprintf("you have no secret named %q; `secret list` shows yours", name)}
		}
		p.Secrets = slices.Delete(slices.Clone(p.Secrets), i, i+1)
		return nil
	}, m.secretEvent(ctx, fp, "secret-rm", name))
	if err != nil {
		return false, err
	}
	return m.secretsChanged(ctx, p, "secret-rm", name), nil
}

// secretEvent is the audit event of a change to the person's secret name:
// it names the secret, never its value.
func (m *Manager) secretEvent(ctx context.Context, fp, kind, name string) Event {
	return Event{Time: m.cfg.Clock.Now(), Kind: kind, Fingerprint: fp, Conn: ConnOf(ctx), Detail: name}
}

// secretsChanged logs a change written to p's secrets and hands them to
// the person's running machine, reporting whether it did. Called with the
// person's lease lock held.
func (m *Manager) secretsChanged(ctx context.Context, p Person, kind, name string) bool {
	m.logFor(ctx).Info(kind, "fingerprint", p.Fingerprint, "name", name)
	l, err := m.cfg.Store.Get(p.Fingerprint)
	if err != nil || l.State != StateRunning {
		// No running machine: it gets them when it starts.
		return false
	}
	return m.deliverSecrets(ctx, l, p)
}

// sentSecrets remembers, per person, which secrets this Manager last
// handed to which server, so attaching to a running machine hands them
// over only when they changed or the gateway restarted.
type sentSecrets struct {
	mu   sync.Mutex // a leaf: held for the map alone
	sent map[string][32]byte
}

func (s *sentSecrets) get(fp string) ([32]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.sent[fp]
	return v, ok
}

func (s *sentSecrets) set(fp string, v [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent == nil {
		s.sent = map[string][32]byte{}
	}
	s.sent[fp] = v
}

func (s *sentSecrets) forget(fp string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sent, fp)
}

// secretsDigest names what a delivery of p's secrets to l's server holds.
func secretsDigest(l Lease, p Person) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00", l.ServerID)
	for _, s := range p.Secrets {
		fmt.Fprintf(h, "%s\x00%x\x00", s.Name, s.Sealed)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// syncSecrets hands the person's secrets to l's running machine unless it
// already has them: after every start (waitReady forgets what the machine
// had), and on an attach after a change the machine missed or a restart of
// the gateway. Without a Sealer the gateway keeps no secrets and hands
// none over. A failure is logged, never fatal: the person still gets their
// machine, and the next attach tries again. Called with the person's lock
// held.
func (m *Manager) syncSecrets(ctx context.Context, l Lease) {
	if m.cfg.Sealer == nil || l.State != StateRunning {
		return
	}
	p, err := m.cfg.Store.Person(l.Fingerprint)
	if err != nil {
		m.logFor(ctx).Warn("could not read the person's secrets for their machine", "server", l.ServerName, "err", err)
		return
	}
	if sent, ok := m.sent.get(l.Fingerprint); ok && sent == secretsDigest(l, p) {
		return
	}
	m.deliverSecrets(ctx, l, p)
}

// deliverSecrets opens p's secrets and replaces those of l's running
// machine with them, reporting whether it did. A secret that does not open
// (the key file was replaced) is left out and logged by name.
func (m *Manager) deliverSecrets(ctx context.Context, l Lease, p Person) bool {
	values := make([]SecretValue, 0, len(p.Secrets))
	for _, s := range p.Secrets {
		v, err := m.cfg.Sealer.Open(p.Fingerprint, s.Name, s.Sealed)
		if err != nil {
			m.logFor(ctx).Error("a secret does not open; the person must set it again", "fingerprint", p.Fingerprint, "name", s.Name, "err", err)
			continue
		}
		values = append(values, SecretValue{Name: s.Name, Value: v})
	}
	probe, cancel := context.WithTimeout(ctx, m.cfg.SSHProbeTimeout)
	defer cancel()
	if err := m.cfg.Machines.SetSecrets(probe, l.Address, l.HostKey, values); err != nil {
		m.logFor(ctx).Warn("could not hand the secrets to the machine; trying again at the next attach", "server", l.ServerName, "err", err)
		return false
	}
	m.sent.set(p.Fingerprint, secretsDigest(l, p))
	return true
}
