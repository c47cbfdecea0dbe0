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
	// ServerTypes and Locations are where new machines may go, in the
	// provider's order of preference. A new lease records the first of
	// each until the provider says where its server really went.
	ServerTypes []string
	Locations   []string
	// Infect, when set, provisions machines from a stock image whose
	// user_data installs NixOS (bootstrap.RenderInfect) instead of from a
	// prebuilt NixOS snapshot.
	Infect *bootstrap.InfectOptions
}

// Config wires a Manager.
type Config struct {
	Store Store
	// Pool keeps the warm pool's records (pool.go); nil when the store
	// keeps none, as in tests without a pool.
	Pool PoolStore
	// WarmPool sizes the warm pool the reaper keeps beside its passes and
	// new people claim from; the zero value keeps none (and drains what a
	// larger one left).
	WarmPool PoolConfig
	Provider Provider
	Machines Machines
	Clock    Clock
	Policy   Policy
	Machine  MachineSpec
	// Home gives people homes that outlive their machines (home.go); the
	// zero value gives none.
	Home   HomeConfig
	Logger *slog.Logger
	// OperationTimeout bounds one create or resume, including waiting for SSH.
	OperationTimeout time.Duration
	// SSHProbeTimeout bounds the check that a running machine answers SSH
	// before it is restarted, and telling a machine its expiry; default 15s.
	SSHProbeTimeout time.Duration
	// Fault, if set, is called at each named step of every operation (see
	// faultPoints). Tests use it to crash the gateway between two steps.
	Fault func(point string)
	// Observer, if set, is told of operations, reaper passes and cost.
	Observer Observer
	// Teller, if set, tells people things out of band (their notification
	// targets), whether or not they are connected.
	Teller Teller
	// Sealer, if set, seals people's secrets at rest; without one the
	// gateway keeps no secrets.
	Sealer Sealer
	// Coordinator serialises each person's operations with the other
	// gateways on the store and elects the one that reaps; default
	// SoleGateway.
	Coordinator Coordinator
}

// Manager creates, resumes, extends, stops and destroys machines. All
// changes to one person's lease are serialised; concurrent Ensure calls for
// one person share a single flight and all see its progress.
type Manager struct {
	cfg Config
	log *slog.Logger

	// Lock order: a person's keyLock, then mu. A subscriber's delivery
	// lock, then flight.mu. mu and flight.mu guard memory only: nothing
	// calls out (store, provider, machines, subscribers) while holding
	// them. A keyLock is held across a person's whole operation, provider
	// and machine calls included: serialising those is its purpose.
	mu       sync.Mutex
	flights  map[string]*flight
	locks    map[string]*keyLock
	activity map[string]time.Time // in memory; written to the store with the next change
	touched  map[string]bool      // people whose activity moved since their last flush
	prices   map[string]cachedPrices
	// accrued is each lease's cost as last reported to the Observer, and
	// started when this Manager began reporting (see accrue).
	accrued map[string]float64
	started time.Time
	// poolBoot is how long the latest pool machine took from its create
	// to ready: what a new person waits when the pool is empty.
	poolBoot time.Duration

	// wake nudges the pool keeper to refill after a claim; buffered, so a
	// nudge never blocks and nudges while one waits are one.
	wake chan struct{}

	refusals refusals    // has its own lock, a leaf
	sent     sentSecrets // has its own lock, a leaf
	// person serialises changes to Person records (read, change, write),
	// apart from the lease locks: a slow create must not hold them up. A leaf.
	person sync.Mutex
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
	if cfg.SSHProbeTimeout == 0 {
		cfg.SSHProbeTimeout = 15 * time.Second
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Teller == nil {
		cfg.Teller = nopTeller{}
	}
	if cfg.Coordinator == nil {
		cfg.Coordinator = SoleGateway{}
	}
	return &Manager{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "lease"),
		flights:  map[string]*flight{},
		locks:    map[string]*keyLock{},
		activity: map[string]time.Time{},
		touched:  map[string]bool{},
		prices:   map[string]cachedPrices{},
		accrued:  map[string]float64{},
		started:  cfg.Clock.Now(),
		wake:     make(chan struct{}, 1),
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
	start := m.cfg.Clock.Now()
	fp := Fingerprint(key)
	m.mu.Lock()
	f, ok := m.flights[fp]
	if !ok {
		f = &flight{start: m.cfg.Clock.Now(), done: make(chan struct{}), subs: map[int]*subscriber{}}
		m.flights[fp] = f
		// The work outlives the caller's context but keeps its
		// connection: the one that caused it.
		go m.fly(WithConn(context.Background(), ConnOf(ctx)), fp, key, f)
	}
	m.mu.Unlock()
	// A flight that ends meanwhile keeps its steps, so the replay is whole.
	unsubscribe := f.subscribe(progress)
	defer unsubscribe()

	select {
	case <-f.done:
		m.observe(OpFirstShell, start, f.err)
		return f.lease, f.err
	case <-ctx.Done():
		return Lease{}, ctx.Err()
	}
}

func (m *Manager) fly(ctx context.Context, fp string, key ssh.PublicKey, f *flight) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OperationTimeout)
	defer cancel()
	report := func(format string, args ...any) {
		f.publish(Step{Elapsed: m.cfg.Clock.Now().Sub(f.start), Text: fmt.Sprintf(format, args...)})
	}
	l, err := m.ensureLocked(ctx, fp, key, report)
	if err != nil {
		var expired *ExpiredError
		if errors.As(err, &expired) {
			// A refusal by the rules, not a fault: the person is told.
			m.logFor(ctx).Info("ensure machine refused", "fingerprint", fp, "reason", err)
		} else {
			m.logFor(ctx).Error("ensure machine", "fingerprint", fp, "err", err)
		}
	}
	m.mu.Lock()
	delete(m.flights, fp)
	m.mu.Unlock()
	f.lease, f.err = l, err
	close(f.done)
}

// ensureLocked runs ensure under the person's lock. ensure reads the
// lease only once the lock is held, so a flight that waited for another
// gateway's sees the machine that one made rather than making a second.
func (m *Manager) ensureLocked(ctx context.Context, fp string, key ssh.PublicKey, report func(string, ...any)) (Lease, error) {
	unlock, err := m.lock(ctx, fp)
	if err != nil {
		return Lease{}, err
	}
	defer unlock()
	l, err := m.ensure(ctx, fp, key, report)
	if err == nil {
		m.syncSecrets(ctx, l)
	}
	return l, err
}

// Touch records activity on the person's machine. It is cheap: the time is
// kept in memory and reaches the store with the lease's next write, or the
// reaper's next pass (activityFlush).
func (m *Manager) Touch(fp string) { m.touchAt(fp, m.cfg.Clock.Now()) }

func (m *Manager) touchAt(fp string, t time.Time) {
	m.mu.Lock()
	if t.After(m.activity[fp]) {
		m.activity[fp] = t
		m.touched[fp] = true
	}
	m.mu.Unlock()
}

// activityFlush is how stale the stored last activity may be before the
// reaper writes it: coarse, so traffic never means a write per packet.
const activityFlush = time.Minute

// flushActivity merges in-memory activity into l and stores it when the
// stored time is more than activityFlush behind.
func (m *Manager) flushActivity(l Lease) (Lease, error) {
	merged := m.withActivity(l)
	if merged.LastActivity.Sub(l.LastActivity) < activityFlush {
		return merged, nil
	}
	return merged, m.put(merged)
}

// busy reports whether an Ensure is working on the person's lease.
func (m *Manager) busy(fp string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.flights[fp]
	return ok
}

func (m *Manager) withActivity(l Lease) Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.activity[l.Fingerprint]; ok && t.After(l.LastActivity) {
		l.LastActivity = t
	}
	return l
}

// put writes l, with the activity seen since, and events recording the
// change: one write.
func (m *Manager) put(l Lease, events ...Event) error {
	if err := m.cfg.Store.Put(m.withActivity(l), events...); err != nil {
		return fmt.Errorf("save lease: %w", err)
	}
	return nil
}

// lock serialises changes to one person's lease, in this process and
// then across gateways (the Coordinator), and returns the unlock. It
// fails when ctx ends before the Coordinator's lock is taken, or the
// Coordinator cannot be reached.
func (m *Manager) lock(ctx context.Context, fp string) (func(), error) {
	unlock := m.localLock(fp)
	shared, err := m.cfg.Coordinator.Lock(ctx, fp)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("lock the lease of %s: %w", fp, err)
	}
	return func() {
		shared()
		unlock()
	}, nil
}

// localLock serialises one person's operations in this process.
func (m *Manager) localLock(fp string) func() {
	m.mu.Lock()
	k, ok := m.locks[fp]
	if !ok {
		k = &keyLock{}
		m.locks[fp] = k
	}
	k.refs++
	m.mu.Unlock()
	k.Lock()
	return m.unlocker(fp, k)
}

// tryLock is lock without the wait: ok is false when someone holds it.
func (m *Manager) tryLock(fp string) (unlock func(), ok bool) {
	m.mu.Lock()
	if _, held := m.locks[fp]; held {
		m.mu.Unlock()
		return nil, false
	}
	k := &keyLock{refs: 1}
	k.Lock()
	m.locks[fp] = k
	m.mu.Unlock()
	return m.unlocker(fp, k), true
}

func (m *Manager) unlocker(fp string, k *keyLock) func() {
	return func() {
		k.Unlock()
		m.mu.Lock()
		if k.refs--; k.refs == 0 {
			delete(m.locks, fp)
		}
		m.mu.Unlock()
	}
}

// keyLock serialises one person's operations; see Manager.mu for the order.
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

	mu      sync.Mutex // before nothing; see Manager.mu
	steps   []Step     // only ever appended to
	subs    map[int]*subscriber
	nextSub int
}

// subscriber is one receiver of a flight's steps. Its delivery lock is
// held while fn runs, so fn sees every step once and in order whether the
// step came by replay or by publish, and never after unsubscribing.
type subscriber struct {
	mu     sync.Mutex // delivery lock, before flight.mu
	fn     func(Step)
	sent   int  // steps fn has seen
	closed bool // unsubscribed
}

// subscribe replays the steps so far to fn and sends it every later one,
// until the returned function is called.
func (f *flight) subscribe(fn func(Step)) (unsubscribe func()) {
	if fn == nil {
		return func() {}
	}
	s := &subscriber{fn: fn}
	f.mu.Lock()
	id := f.nextSub
	f.nextSub++
	f.subs[id] = s
	f.mu.Unlock()
	f.deliver(s)
	return func() {
		f.mu.Lock()
		delete(f.subs, id)
		f.mu.Unlock()
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
	}
}

func (f *flight) publish(st Step) {
	f.mu.Lock()
	f.steps = append(f.steps, st)
	subs := make([]*subscriber, 0, len(f.subs))
	for _, s := range f.subs {
		subs = append(subs, s)
	}
	f.mu.Unlock()
	for _, s := range subs {
		f.deliver(s)
	}
}

// deliver sends s the steps it has not seen yet, outside flight.mu.
func (f *flight) deliver(s *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	f.mu.Lock()
	pending := f.steps[s.sent:len(f.steps):len(f.steps)]
	f.mu.Unlock()
	for _, st := range pending {
		s.fn(st)
	}
	s.sent += len(pending)
}

// newIdentity is a new machine's: a fresh id to name and label it, and a
// fresh host key.
func newIdentity() (id string, hostPEM []byte, hostPub string, err error) {
	if id, err = newID(); err != nil {
		return "", nil, "", err
	}
	hostPEM, hostPub, err = newHostKey()
	return id, hostPEM, hostPub, err
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
