package lease

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
)

// MachineSpec is what every machine gets, whoever it belongs to.
type MachineSpec struct {
	User       string        // the instance user people land as
	SSHPort    int           // the machines' sshd port
	GatewayKey ssh.PublicKey // the gateway's upstream key, authorized beside the person's
	ServerType string        // recorded in new leases
	Location   string        // recorded in new leases
}

// Config wires a Manager.
type Config struct {
	Store    Store
	Provider Provider
	Clock    Clock
	Policy   Policy
	Machine  MachineSpec
	Logger   *slog.Logger
	// OperationTimeout bounds one create or resume, including waiting for SSH.
	OperationTimeout time.Duration
}

// Manager creates, resumes, extends, stops and destroys machines. All
// changes to one person's lease are serialised; concurrent Ensure calls for
// one person share a single flight and all see its progress.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	flights  map[string]*flight
	locks    map[string]*keyLock
	activity map[string]time.Time // in memory; written to the store with the next change
}

// Step is one line of progress while a machine is prepared.
type Step struct {
	Elapsed time.Duration
	Text    string
}

// NewManager returns a Manager; it does no I/O.
func NewManager(cfg Config) *Manager {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OperationTimeout == 0 {
		cfg.OperationTimeout = 10 * time.Minute
	}
	return &Manager{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "lease"),
		flights:  map[string]*flight{},
		locks:    map[string]*keyLock{},
		activity: map[string]time.Time{},
	}
}

// Fingerprint names a person by their key.
func Fingerprint(key ssh.PublicKey) string { return ssh.FingerprintSHA256(key) }

// Ensure returns the person's running machine, creating or resuming it.
// progress, if not nil, receives every step of the work, including steps
// that happened before this caller joined. Cancelling ctx stops waiting but
// not the work: another connection may be waiting on it too, and half-done
// work is worse than finished work.
func (m *Manager) Ensure(ctx context.Context, key ssh.PublicKey, progress func(Step)) (Lease, error) {
	fp := Fingerprint(key)
	m.mu.Lock()
	f, ok := m.flights[fp]
	if !ok {
		f = &flight{start: m.cfg.Clock.Now(), done: make(chan struct{}), subs: map[int]func(Step){}}
		m.flights[fp] = f
		go m.fly(fp, key, f)
	}
	unsubscribe := f.subscribe(progress)
	m.mu.Unlock()
	defer unsubscribe()

	select {
	case <-f.done:
		return f.lease, f.err
	case <-ctx.Done():
		return Lease{}, ctx.Err()
	}
}

func (m *Manager) fly(fp string, key ssh.PublicKey, f *flight) {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.OperationTimeout)
	defer cancel()
	report := func(format string, args ...any) {
		f.publish(Step{Elapsed: m.cfg.Clock.Now().Sub(f.start), Text: fmt.Sprintf(format, args...)})
	}
	unlock := m.lock(fp)
	l, err := m.ensure(ctx, fp, key, report)
	unlock()
	if err != nil {
		m.log.Error("ensure machine", "fingerprint", fp, "err", err)
	}
	m.mu.Lock()
	delete(m.flights, fp)
	m.mu.Unlock()
	f.lease, f.err = l, err
	close(f.done)
}

func (m *Manager) ensure(ctx context.Context, fp string, key ssh.PublicKey, report func(string, ...any)) (Lease, error) {
	l, err := m.cfg.Store.Get(fp)
	switch {
	case errors.Is(err, ErrNotFound):
		if l, err = m.newLease(fp, key); err != nil {
			return Lease{}, err
		}
	case err != nil:
		return Lease{}, fmt.Errorf("read lease: %w", err)
	}

	if l.State == StateDestroying {
		// A destroy was interrupted: finish it, then start afresh.
		if err := m.destroy(ctx, l); err != nil {
			return Lease{}, err
		}
		if l, err = m.newLease(fp, key); err != nil {
			return Lease{}, err
		}
	}

	if l.State != StateCreating && l.ServerID != 0 {
		srv, err := m.cfg.Provider.Get(ctx, l.ServerID)
		switch {
		case errors.Is(err, ErrServerNotFound):
			// The server vanished behind our back; the person gets a fresh one.
			m.log.Warn("lease server vanished, creating a new one", "lease", l.ID, "server", l.ServerID)
			l.State, l.ServerID, l.Address = StateCreating, 0, ""
		case err != nil:
			return l, fmt.Errorf("look up server %s: %w", l.ServerName, err)
		case srv.Status == "running" && l.State == StateRunning:
			return l, nil
		default:
			l.State = StateStarting
		}
	}

	switch l.State {
	case StateCreating:
		return m.create(ctx, l, report)
	default:
		return m.resume(ctx, l, report)
	}
}

func (m *Manager) newLease(fp string, key ssh.PublicKey) (Lease, error) {
	id, err := newID()
	if err != nil {
		return Lease{}, err
	}
	hostPEM, hostPub, err := newHostKey()
	if err != nil {
		return Lease{}, err
	}
	now := m.cfg.Clock.Now()
	l := Lease{
		Fingerprint:  fp,
		PublicKey:    strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))),
		ID:           id,
		State:        StateCreating,
		ServerName:   "cc-" + id,
		HostKey:      hostPub,
		HostKeyPEM:   hostPEM,
		ServerType:   m.cfg.Machine.ServerType,
		Location:     m.cfg.Machine.Location,
		Created:      now,
		Expires:      now.Add(m.cfg.Policy.DefaultTTL),
		LastActivity: now,
	}
	// Record the intent before asking the provider for anything.
	return l, m.put(l)
}

func (m *Manager) create(ctx context.Context, l Lease, report func(string, ...any)) (Lease, error) {
	userData, err := m.bootstrap(l)
	if err != nil {
		return l, err
	}
	report("Creating your machine %s (%s in %s)", l.ServerName, l.ServerType, l.Location)
	srv, err := m.cfg.Provider.Create(ctx, CreateSpec{
		Name: l.ServerName, LeaseID: l.ID, UserData: userData, PublicKey: l.PublicKey,
	})
	if err != nil {
		return l, fmt.Errorf("create server %s: %w", l.ServerName, err)
	}
	l.ServerID = srv.ID
	l.Address = net.JoinHostPort(srv.IPv4, strconv.Itoa(m.cfg.Machine.SSHPort))
	if err := m.put(l); err != nil {
		return l, err
	}
	return m.waitReady(ctx, l, report)
}

func (m *Manager) resume(ctx context.Context, l Lease, report func(string, ...any)) (Lease, error) {
	l.State = StateStarting
	if err := m.put(l); err != nil {
		return l, err
	}
	report("Starting your machine %s", l.ServerName)
	if err := m.cfg.Provider.PowerOn(ctx, l.ServerID); err != nil {
		return l, fmt.Errorf("start server %s: %w", l.ServerName, err)
	}
	return m.waitReady(ctx, l, report)
}

func (m *Manager) waitReady(ctx context.Context, l Lease, report func(string, ...any)) (Lease, error) {
	report("Waiting for SSH on %s", l.Address)
	if err := m.cfg.Provider.WaitSSH(ctx, l.Address, l.HostKey); err != nil {
		return l, fmt.Errorf("wait for ssh on %s: %w", l.Address, err)
	}
	l.State = StateRunning
	if err := m.put(l); err != nil {
		return l, err
	}
	report("Machine %s is ready", l.ServerName)
	return l, nil
}

func (m *Manager) bootstrap(l Lease) (string, error) {
	person, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l.PublicKey))
	if err != nil {
		return "", fmt.Errorf("parse lease key: %w", err)
	}
	keys := []ssh.PublicKey{person}
	if m.cfg.Machine.GatewayKey != nil {
		keys = append(keys, m.cfg.Machine.GatewayKey)
	}
	doc, err := bootstrap.New(l.ID, l.ServerName, m.cfg.Machine.User, l.Expires, m.cfg.Machine.SSHPort, keys, l.HostKeyPEM)
	if err != nil {
		return "", err
	}
	return doc.Render()
}

// Status returns the person's lease, with activity seen since it was last
// written.
func (m *Manager) Status(fp string) (Lease, error) {
	l, err := m.cfg.Store.Get(fp)
	if err != nil {
		return Lease{}, err
	}
	return m.withActivity(l), nil
}

// List returns every lease.
func (m *Manager) List() ([]Lease, error) {
	ls, err := m.cfg.Store.List()
	for i := range ls {
		ls[i] = m.withActivity(ls[i])
	}
	return ls, err
}

// Extend pushes the expiry of the person's lease by d, within policy.
func (m *Manager) Extend(fp string, d time.Duration) (Lease, error) {
	defer m.lock(fp)()
	l, err := m.cfg.Store.Get(fp)
	if err != nil {
		return Lease{}, err
	}
	next, err := m.cfg.Policy.NewExpiry(l, d, m.cfg.Clock.Now())
	if err != nil {
		return l, err
	}
	l.Expires = next
	return l, m.put(l)
}

// Stop powers the person's machine off, keeping its disk.
func (m *Manager) Stop(ctx context.Context, fp string) (Lease, error) {
	defer m.lock(fp)()
	l, err := m.cfg.Store.Get(fp)
	if err != nil {
		return Lease{}, err
	}
	if l.State == StateStopped {
		return l, nil
	}
	if l.ServerID == 0 {
		return l, fmt.Errorf("machine %s is still being created; try again in a minute", l.ServerName)
	}
	l.State = StateStopping
	if err := m.put(l); err != nil {
		return l, err
	}
	if err := m.cfg.Provider.PowerOff(ctx, l.ServerID); err != nil && !errors.Is(err, ErrServerNotFound) {
		return l, fmt.Errorf("stop server %s: %w", l.ServerName, err)
	}
	l.State = StateStopped
	return l, m.put(l)
}

// Destroy deletes the person's machine and its lease.
func (m *Manager) Destroy(ctx context.Context, fp string) (Lease, error) {
	defer m.lock(fp)()
	l, err := m.cfg.Store.Get(fp)
	if err != nil {
		return Lease{}, err
	}
	return l, m.destroy(ctx, l)
}

func (m *Manager) destroy(ctx context.Context, l Lease) error {
	l.State = StateDestroying
	if err := m.put(l); err != nil {
		return err
	}
	if l.ServerID != 0 {
		if err := m.cfg.Provider.Delete(ctx, l.ServerID); err != nil && !errors.Is(err, ErrServerNotFound) {
			return fmt.Errorf("delete server %s: %w", l.ServerName, err)
		}
	}
	if err := m.cfg.Store.Delete(l.Fingerprint); err != nil {
		return fmt.Errorf("delete lease: %w", err)
	}
	m.mu.Lock()
	delete(m.activity, l.Fingerprint)
	m.mu.Unlock()
	return nil
}

// Touch records activity on the person's machine. It is cheap: the time is
// kept in memory and reaches the store with the lease's next write.
func (m *Manager) Touch(fp string) {
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	m.activity[fp] = now
	m.mu.Unlock()
}

func (m *Manager) withActivity(l Lease) Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.activity[l.Fingerprint]; ok && t.After(l.LastActivity) {
		l.LastActivity = t
	}
	return l
}

func (m *Manager) put(l Lease) error {
	if err := m.cfg.Store.Put(m.withActivity(l)); err != nil {
		return fmt.Errorf("save lease: %w", err)
	}
	return nil
}

// lock serialises changes to one person's lease and returns the unlock.
func (m *Manager) lock(fp string) func() {
	m.mu.Lock()
	k, ok := m.locks[fp]
	if !ok {
		k = &keyLock{}
		m.locks[fp] = k
	}
	k.refs++
	m.mu.Unlock()
	k.Lock()
	return func() {
		k.Unlock()
		m.mu.Lock()
		if k.refs--; k.refs == 0 {
			delete(m.locks, fp)
		}
		m.mu.Unlock()
	}
}

type keyLock struct {
	sync.Mutex
	refs int // guarded by Manager.mu
}

// flight is one Ensure in progress, shared by everyone waiting on it.
type flight struct {
	start time.Time
	done  chan struct{}
	lease Lease // set before done closes
	err   error

	mu      sync.Mutex
	steps   []Step
	subs    map[int]func(Step)
	nextSub int
}

// subscribe replays the steps so far to fn and sends it every later one,
// until the returned function is called.
func (f *flight) subscribe(fn func(Step)) (unsubscribe func()) {
	if fn == nil {
		return func() {}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.steps {
		fn(s)
	}
	id := f.nextSub
	f.nextSub++
	f.subs[id] = fn
	return func() {
		f.mu.Lock()
		delete(f.subs, id)
		f.mu.Unlock()
	}
}

func (f *flight) publish(s Step) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.steps = append(f.steps, s)
	for _, fn := range f.subs {
		fn(s)
	}
}

func newID() (string, error) {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate lease id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// newHostKey makes a machine's ed25519 host key: the private half in
// OpenSSH PEM for the bootstrap document, the public half to pin.
func newHostKey() (pemBytes []byte, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generate machine host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, "", fmt.Errorf("encode machine host key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, "", fmt.Errorf("encode machine host key: %w", err)
	}
	return pem.EncodeToMemory(block), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))), nil
}
