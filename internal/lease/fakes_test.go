package lease

// Small fakes for the domain's own tests: an in-memory Store, a Provider
// with one function field per method, a Notifier that records. The real
// parts (bbolt, the Hetzner provider on the local cloud) are tested in
// manager_test.go and in their own packages.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// memStore is a Store in memory.
type memStore struct {
	mu     sync.Mutex
	leases map[string]Lease
	people map[string]Person
	events []Event
	// refusals are kept as a list of the batches written, to see the writes.
	refusals [][]Refusal
	writes   int // Puts, Deletes, AppendEvents and AppendRefusals: what would be fsyncs
	// failPut, if set, fails every Put with its error; failList every List.
	failPut  error
	failList error
}

func newMemStore() *memStore {
	return &memStore{leases: map[string]Lease{}, people: map[string]Person{}}
}

func (s *memStore) Person(fp string) (Person, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.people[fp]; ok {
		return p, nil
	}
	return Person{Fingerprint: fp}, nil
}

func (s *memStore) PutPerson(p Person, events ...Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.people[p.Fingerprint] = p
	s.events = append(s.events, events...)
	s.writes++
	return nil
}

func (s *memStore) Get(fp string) (Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[fp]
	if !ok {
		return Lease{}, ErrNotFound
	}
	return l, nil
}

func (s *memStore) Put(l Lease, events ...Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failPut != nil {
		return s.failPut
	}
	s.leases[l.Fingerprint] = l
	s.events = append(s.events, events...)
	s.writes++
	return nil
}

func (s *memStore) Delete(fp string, events ...Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.leases, fp)
	s.events = append(s.events, events...)
	s.writes++
	return nil
}

func (s *memStore) People() ([]Person, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Person
	for _, p := range s.people {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Person) int { return strings.Compare(a.Fingerprint, b.Fingerprint) })
	return out, nil
}

// List returns the leases ordered by fingerprint, so tests know the order.
func (s *memStore) List() ([]Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failList != nil {
		return nil, s.failList
	}
	var out []Lease
	for _, l := range s.leases {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return strings.Compare(a.Fingerprint, b.Fingerprint) })
	return out, nil
}

func (s *memStore) AppendEvent(e Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
	s.writes++
	return nil
}

func (s *memStore) Events(n int) ([]Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 || n > len(s.events) {
		n = len(s.events)
	}
	return slices.Clone(s.events[len(s.events)-n:]), nil
}

func (s *memStore) AppendRefusals(rs []Refusal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refusals = append(s.refusals, slices.Clone(rs))
	s.writes++
	return nil
}

func (s *memStore) Refusals(n int) ([]Refusal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := slices.Concat(s.refusals...)
	if n <= 0 || n > len(all) {
		n = len(all)
	}
	return all[len(all)-n:], nil
}

// kinds returns "kind: detail" of every event about fp, oldest first.
func (s *memStore) kinds(fp string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		if e.Fingerprint == fp {
			out = append(out, e.Kind+": "+e.Detail)
		}
	}
	return out
}

// memPool is a PoolStore in memory, with the bolt store's
// compare-and-set on every change of state. Claims write their leases to
// leases, under mu: mu, then the memStore's lock.
type memPool struct {
	mu       sync.Mutex
	machines []PoolMachine // sorted by id
	events   []Event
	leases   *memStore
}

func (p *memPool) PoolMachines() ([]PoolMachine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.machines), nil
}

// find returns the index of id's record, or -1.
func (p *memPool) find(id string) int {
	return slices.IndexFunc(p.machines, func(m PoolMachine) bool { return m.ID == id })
}

func (p *memPool) PutPoolMachine(m PoolMachine, from PoolState, events ...Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.put(m, from, events)
}

func (p *memPool) put(m PoolMachine, from PoolState, events []Event) error {
	i := p.find(m.ID)
	var stored PoolState
	if i >= 0 {
		stored = p.machines[i].State
	}
	if stored != from {
		return fmt.Errorf("pool machine %s is %q, not %q: %w", m.ID, stored, from, ErrPoolMachineTaken)
	}
	if i >= 0 {
		p.machines[i] = m
	} else {
		p.machines = append(p.machines, m)
		slices.SortFunc(p.machines, func(a, b PoolMachine) int { return strings.Compare(a.ID, b.ID) })
	}
	p.events = append(p.events, events...)
	return nil
}

func (p *memPool) DeletePoolMachine(id string, events ...Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := p.find(id); i >= 0 {
		p.machines = slices.Delete(p.machines, i, i+1)
	}
	p.events = append(p.events, events...)
	return nil
}

func (p *memPool) ClaimPoolMachine(m PoolMachine, l Lease, events ...Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.put(m, PoolReady, events); err != nil {
		return err
	}
	return p.leases.Put(l)
}

func (p *memPool) FinishPoolClaim(l Lease, events ...Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := p.find(l.ID)
	if i < 0 || p.machines[i].State != PoolClaiming {
		return fmt.Errorf("pool machine %s is not claiming: %w", l.ID, ErrPoolMachineTaken)
	}
	p.machines = slices.Delete(p.machines, i, i+1)
	p.events = append(p.events, events...)
	return p.leases.Put(l)
}

// states returns the state of every record, by id.
func (p *memPool) states() map[string]PoolState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]PoolState{}
	for _, m := range p.machines {
		out[m.ID] = m.State
	}
	return out
}

// fakeProvider is a Provider whose methods call its function fields. A nil
// field of an action (power, delete, wait) succeeds; a nil field of a
// method that must invent data fails the test. Every call is recorded.
type fakeProvider struct {
	t testing.TB

	createFn      func(ctx context.Context, spec CreateSpec) (Server, error)
	getFn         func(ctx context.Context, id int64) (Server, error)
	listFn        func(ctx context.Context) ([]Server, error)
	powerOnFn     func(ctx context.Context, id int64) error
	powerOffFn    func(ctx context.Context, id int64) error
	deleteFn      func(ctx context.Context, id int64) error
	unpoolFn      func(ctx context.Context, id int64) error
	snapshotFn    func(ctx context.Context, serverID int64, leaseID string) (Image, error)
	imagesFn      func(ctx context.Context) ([]Image, error)
	deleteImageFn func(ctx context.Context, id int64) error
	cpuUsageFn    func(ctx context.Context, id int64, window time.Duration) (float64, error)
	pricesFn      func(ctx context.Context, serverType, location string) (Prices, error)
	guardFn       func(ctx context.Context) ([]string, error)
	// volumeFault, if set, is asked before every volume call (its text as
	// recorded) and fails it with what it returns.
	volumeFault func(call string) error

	mu         sync.Mutex
	calls      []string
	volumes    map[int64]Volume // the volumes the fake cloud holds
	nextVolume int64
}

var errUnexpected = errors.New("unexpected provider call")

func (p *fakeProvider) record(format string, args ...any) string {
	call := fmt.Sprintf(format, args...)
	p.mu.Lock()
	p.calls = append(p.calls, call)
	p.mu.Unlock()
	return call
}

// unexpected fails the test (from any goroutine) for a call it did not
// provide for.
func (p *fakeProvider) unexpected(call string) error {
	p.t.Errorf("unexpected provider call %s: set its function field", call)
	return fmt.Errorf("%s: %w", call, errUnexpected)
}

// made returns the calls made so far whose text starts with prefix.
func (p *fakeProvider) made(prefix string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, c := range p.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// changes returns the calls made so far that change something: listings,
// prices and guard checks aside.
func (p *fakeProvider) changes() []string {
	var out []string
	for _, c := range p.made("") {
		if c != "List" && c != "Images" && c != "GuardMachines" && !strings.HasPrefix(c, "Prices ") && !strings.HasPrefix(c, "Volumes ") {
			out = append(out, c)
		}
	}
	return out
}

func (p *fakeProvider) Create(ctx context.Context, spec CreateSpec) (Server, error) {
	call := p.record("Create %s", spec.Name)
	if p.createFn == nil {
		return Server{}, p.unexpected(call)
	}
	return p.createFn(ctx, spec)
}

func (p *fakeProvider) Get(ctx context.Context, id int64) (Server, error) {
	call := p.record("Get %d", id)
	if p.getFn == nil {
		return Server{}, p.unexpected(call)
	}
	return p.getFn(ctx, id)
}

func (p *fakeProvider) List(ctx context.Context) ([]Server, error) {
	p.record("List")
	if p.listFn == nil {
		return nil, nil
	}
	return p.listFn(ctx)
}

func (p *fakeProvider) PowerOn(ctx context.Context, id int64) error {
	p.record("PowerOn %d", id)
	return callOr(p.powerOnFn, ctx, id)
}

func (p *fakeProvider) PowerOff(ctx context.Context, id int64) error {
	p.record("PowerOff %d", id)
	return callOr(p.powerOffFn, ctx, id)
}

func (p *fakeProvider) Delete(ctx context.Context, id int64) error {
	p.record("Delete %d", id)
	return callOr(p.deleteFn, ctx, id)
}

func (p *fakeProvider) Unpool(ctx context.Context, id int64) error {
	p.record("Unpool %d", id)
	return callOr(p.unpoolFn, ctx, id)
}

func (p *fakeProvider) DeleteImage(ctx context.Context, id int64) error {
	p.record("DeleteImage %d", id)
	return callOr(p.deleteImageFn, ctx, id)
}

// GuardMachines repairs nothing unless guardFn says otherwise.
func (p *fakeProvider) GuardMachines(ctx context.Context) ([]string, error) {
	p.record("GuardMachines")
	if p.guardFn == nil {
		return nil, nil
	}
	return p.guardFn(ctx)
}

// volumeCall records call and returns the fault volumeFault has for it.
func (p *fakeProvider) volumeCall(format string, args ...any) error {
	call := p.record(format, args...)
	if p.volumeFault != nil {
		return p.volumeFault(call)
	}
	return nil
}

// CreateVolume keeps one volume per owner, as the real provider does.
func (p *fakeProvider) CreateVolume(ctx context.Context, spec VolumeSpec) (Volume, error) {
	if err := p.volumeCall("CreateVolume %s %s", spec.Name, spec.Location); err != nil {
		return Volume{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range p.volumes {
		if v.Owner == spec.Owner {
			return v, nil
		}
	}
	if p.volumes == nil {
		p.volumes = map[int64]Volume{}
	}
	p.nextVolume++
	v := Volume{ID: 100 + p.nextVolume, Name: spec.Name, Owner: spec.Owner, SizeGB: spec.SizeGB, Location: spec.Location,
		Device: fmt.Sprintf("/dev/disk/by-id/scsi-0HC_Volume_%d", 100+p.nextVolume)}
	p.volumes[v.ID] = v
	return v, nil
}

func (p *fakeProvider) AttachVolume(ctx context.Context, volumeID, serverID int64) error {
	if err := p.volumeCall("AttachVolume %d %d", volumeID, serverID); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.volumes[volumeID]
	switch {
	case !ok:
		return ErrVolumeNotFound
	case v.Server != 0 && v.Server != serverID:
		return fmt.Errorf("volume %d is attached to server %d", volumeID, v.Server)
	}
	v.Server = serverID
	p.volumes[volumeID] = v
	return nil
}

func (p *fakeProvider) DetachVolume(ctx context.Context, volumeID int64) error {
	if err := p.volumeCall("DetachVolume %d", volumeID); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.volumes[volumeID]
	if !ok {
		return ErrVolumeNotFound
	}
	v.Server = 0
	p.volumes[volumeID] = v
	return nil
}

func (p *fakeProvider) DeleteVolume(ctx context.Context, volumeID int64) error {
	if err := p.volumeCall("DeleteVolume %d", volumeID); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.volumes[volumeID]
	switch {
	case !ok:
		return ErrVolumeNotFound
	case v.Server != 0:
		return fmt.Errorf("volume %d is attached to server %d", volumeID, v.Server)
	}
	delete(p.volumes, volumeID)
	return nil
}

func (p *fakeProvider) Volumes(ctx context.Context, owner string) ([]Volume, error) {
	if err := p.volumeCall("Volumes %s", owner); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Volume
	for _, v := range p.volumes {
		if owner == "" || v.Owner == owner {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b Volume) int { return int(a.ID - b.ID) })
	return out, nil
}

// volumeList is the volumes the fake cloud holds, by id.
func (p *fakeProvider) volumeList() []Volume {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Volume
	for _, v := range p.volumes {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b Volume) int { return int(a.ID - b.ID) })
	return out
}

func callOr(fn func(context.Context, int64) error, ctx context.Context, id int64) error {
	if fn == nil {
		return nil
	}
	return fn(ctx, id)
}

// fakeMachines is the Machines a domain test sees: nil fields succeed,
// every call is recorded in the provider's list, so tests see cloud and
// machine calls in one order.
type fakeMachines struct {
	calls       *fakeProvider
	waitFn      func(ctx context.Context, addr, hostKey string) error
	setExpiryFn func(ctx context.Context, addr, hostKey string, expires time.Time) error
	revokeKeyFn func(ctx context.Context, addr, hostKey, key string) error
	agentFn     func(ctx context.Context, addr, hostKey string) (AgentState, time.Time, error)
	// setSecretsFn, when set, answers SetSecrets; secrets holds what each
	// address was last given either way.
	setSecretsFn func(ctx context.Context, addr, hostKey string, secrets []SecretValue) error
	secrets      map[string][]SecretValue
	// personaliseFn, when set, answers Personalise; personalised holds
	// the document each address was last given either way.
	personaliseFn func(ctx context.Context, addr, hostKey string, doc string) error
	personalised  map[string]string
}

// Personalise records the document each address was last given.
func (f *fakeMachines) Personalise(ctx context.Context, addr, hostKey string, doc string) error {
	f.calls.record("Personalise %s", addr)
	if f.personaliseFn != nil {
		if err := f.personaliseFn(ctx, addr, hostKey, doc); err != nil {
			return err
		}
	}
	f.calls.mu.Lock()
	defer f.calls.mu.Unlock()
	if f.personalised == nil {
		f.personalised = map[string]string{}
	}
	f.personalised[addr] = doc
	return nil
}

func (f *fakeMachines) SetSecrets(ctx context.Context, addr, hostKey string, secrets []SecretValue) error {
	f.calls.record("SetSecrets %s", addr)
	if f.setSecretsFn != nil {
		if err := f.setSecretsFn(ctx, addr, hostKey, secrets); err != nil {
			return err
		}
	}
	f.calls.mu.Lock()
	defer f.calls.mu.Unlock()
	if f.secrets == nil {
		f.secrets = map[string][]SecretValue{}
	}
	f.secrets[addr] = secrets
	return nil
}

func (f *fakeMachines) Wait(ctx context.Context, addr, hostKey string) error {
	f.calls.record("Wait %s", addr)
	if f.waitFn == nil {
		return nil
	}
	return f.waitFn(ctx, addr, hostKey)
}

func (f *fakeMachines) SetExpiry(ctx context.Context, addr, hostKey string, expires time.Time) error {
	f.calls.record("SetExpiry %s", addr)
	if f.setExpiryFn == nil {
		return nil
	}
	return f.setExpiryFn(ctx, addr, hostKey, expires)
}

func (f *fakeMachines) RevokeKey(ctx context.Context, addr, hostKey, key string) error {
	f.calls.record("RevokeKey %s", addr)
	if f.revokeKeyFn == nil {
		return nil
	}
	return f.revokeKeyFn(ctx, addr, hostKey, key)
}

func (f *fakeMachines) AgentState(ctx context.Context, addr, hostKey string) (AgentState, time.Time, error) {
	f.calls.record("AgentState %s", addr)
	if f.agentFn == nil {
		return "", time.Time{}, nil
	}
	return f.agentFn(ctx, addr, hostKey)
}

func (p *fakeProvider) Snapshot(ctx context.Context, serverID int64, leaseID string) (Image, error) {
	call := p.record("Snapshot %d", serverID)
	if p.snapshotFn == nil {
		return Image{}, p.unexpected(call)
	}
	return p.snapshotFn(ctx, serverID, leaseID)
}

func (p *fakeProvider) Images(ctx context.Context) ([]Image, error) {
	p.record("Images")
	if p.imagesFn == nil {
		return nil, nil
	}
	return p.imagesFn(ctx)
}

func (p *fakeProvider) CPUUsage(ctx context.Context, id int64, window time.Duration) (float64, error) {
	call := p.record("CPUUsage %d", id)
	if p.cpuUsageFn == nil {
		return 0, p.unexpected(call)
	}
	return p.cpuUsageFn(ctx, id, window)
}

func (p *fakeProvider) Prices(ctx context.Context, serverType, location string) (Prices, error) {
	call := p.record("Prices %s %s", serverType, location)
	if p.pricesFn == nil {
		return Prices{}, p.unexpected(call)
	}
	return p.pricesFn(ctx, serverType, location)
}

var _ Provider = (*fakeProvider)(nil)

// notice is one message to a person's sessions.
type notice struct{ fingerprint, message string }

// recNotifier records warnings and ends; sessions is what Warn reports.
// hook, if set, sees each notice as it is sent ("warn" or "end").
type recNotifier struct {
	sessions int
	hook     func(kind string, n notice)

	mu    sync.Mutex
	warns []notice
	ends  []notice
}

func (r *recNotifier) Warn(fp, message string) int {
	r.mu.Lock()
	r.warns = append(r.warns, notice{fp, message})
	r.mu.Unlock()
	if r.hook != nil {
		r.hook("warn", notice{fp, message})
	}
	return r.sessions
}

func (r *recNotifier) End(fp, message string) {
	r.mu.Lock()
	r.ends = append(r.ends, notice{fp, message})
	r.mu.Unlock()
	if r.hook != nil {
		r.hook("end", notice{fp, message})
	}
}

// to returns the messages of kind ("warn" or "end") sent to fp.
func (r *recNotifier) to(kind, fp string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.warns
	if kind == "end" {
		list = r.ends
	}
	var out []string
	for _, n := range list {
		if n.fingerprint == fp {
			out = append(out, n.message)
		}
	}
	return out
}

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

var testPrices = Prices{Currency: "EUR", ServerHourly: 0.01, ServerMonthly: 5, SnapshotPerGBMonth: 0.011}

// domain is a Manager and a Reaper over the fakes.
type domain struct {
	m        *Manager
	r        *Reaper
	store    *memStore
	pool     *memPool
	cloud    *fakeProvider
	machines *fakeMachines
	clock    *testkit.Clock
	notify   *recNotifier
	obs      *recObserver
}

// newDomain wires a Manager and Reaper with policy and rc over fakes. The
// provider knows testPrices; everything else a test sets on d.cloud.
func newDomain(t *testing.T, policy Policy, rc ReaperConfig) *domain {
	t.Helper()
	d := &domain{
		store:  newMemStore(),
		cloud:  &fakeProvider{t: t},
		clock:  testkit.NewClock(t0),
		notify: &recNotifier{sessions: 1},
		obs:    &recObserver{},
	}
	d.pool = &memPool{leases: d.store}
	d.machines = &fakeMachines{calls: d.cloud}
	d.cloud.pricesFn = func(context.Context, string, string) (Prices, error) { return testPrices, nil }
	d.m = NewManager(Config{
		Store: d.store, Pool: d.pool, Provider: d.cloud, Machines: d.machines, Clock: d.clock, Policy: policy,
		Machine:          MachineSpec{SSHPort: 22, ServerTypes: []string{"cx23"}, Locations: []string{"fsn1"}},
		Logger:           testkit.Quiet,
		OperationTimeout: time.Minute,
		Observer:         d.obs,
	})
	if rc.Invocation == "" {
		rc.Invocation = "ssh gw"
	}
	d.r = NewReaper(d.m, d.notify, rc)
	// The cloud agrees with the store unless a test says otherwise.
	d.cloud.listFn = func(context.Context) ([]Server, error) { return d.serversOfLeases(), nil }
	return d
}

// serversOfLeases is a server for every stored lease that has one, powered
// as its state says.
func (d *domain) serversOfLeases() []Server {
	leases, _ := d.store.List()
	var out []Server
	for _, l := range leases {
		if l.ServerID == 0 {
			continue
		}
		status := "off"
		if l.State == StateRunning {
			status = "running"
		}
		out = append(out, Server{ID: l.ServerID, Name: l.ServerName, Status: status,
			Labels: map[string]string{LeaseLabel: l.ID}, Created: l.ServerCreated})
	}
	return out
}

// reconciled makes the reaper's passes skip reconciling, for tests about
// reaping alone.
func (d *domain) reconciled() {
	d.r.mu.Lock()
	d.r.lastReconcile = d.clock.Now()
	d.r.cfg.ReconcileEvery = 1000 * time.Hour
	d.r.mu.Unlock()
}

// running stores and returns a running lease named name, its server id id,
// created an hour before the clock, expiring in 4h, active now; changes,
// if any, alter it before it is stored.
func (d *domain) running(t *testing.T, name string, id int64, changes ...func(*Lease)) Lease {
	t.Helper()
	now := d.clock.Now()
	l := Lease{
		Fingerprint: "SHA256:" + name, ID: name, State: StateRunning,
		ServerID: id, ServerName: "cc-" + name, Address: fmt.Sprintf("192.0.2.%d:22", id),
		ServerType: "cx23", Location: "fsn1",
		Created: now.Add(-time.Hour), ServerCreated: now.Add(-time.Hour),
		Expires: now.Add(4 * time.Hour), LastActivity: now,
	}
	for _, change := range changes {
		change(&l)
	}
	d.put(t, l)
	return l
}

// in returns a change to state, for running.
func in(state State) func(*Lease) { return func(l *Lease) { l.State = state } }

func (d *domain) put(t *testing.T, l Lease) {
	t.Helper()
	if err := d.store.Put(l); err != nil {
		t.Fatal(err)
	}
}

// stored returns fp's lease, ok false when there is none.
func (d *domain) stored(t *testing.T, fp string) (Lease, bool) {
	t.Helper()
	l, err := d.store.Get(fp)
	if errors.Is(err, ErrNotFound) {
		return Lease{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return l, true
}

// recTeller records what people are told out of band.
type recTeller struct {
	mu   sync.Mutex
	told []string // "fingerprint about: message"
}

func (r *recTeller) Tell(fp, about, message string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.told = append(r.told, fmt.Sprintf("%s %s: %s", fp, about, message))
}

func (r *recTeller) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.told)
}
