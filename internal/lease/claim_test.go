package lease

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// claimDomain is a pool domain with a full pool of size, and a person.
func claimDomain(t *testing.T, size int) (*domain, *poolCloud, ssh.PublicKey) {
	t.Helper()
	d, c := newPoolDomain(t, size, 6*time.Hour)
	d.m.cfg.Policy.DefaultTTL = 4 * time.Hour
	d.r.Tick(context.Background())
	if got := readyServers(d); len(got) != size {
		t.Fatalf("%d ready pool machines, want %d", len(got), size)
	}
	return d, c, testkit.NewKey(t).Signer.PublicKey()
}

// ensure runs Ensure for key, recording its progress.
func (d *domain) ensure(t *testing.T, key ssh.PublicKey) (Lease, []string, error) {
	t.Helper()
	var mu sync.Mutex
	var texts []string
	l, err := d.m.Ensure(testkit.Context(t, time.Minute), key, func(s Step) {
		mu.Lock()
		texts = append(texts, s.Text)
		mu.Unlock()
	})
	mu.Lock()
	defer mu.Unlock()
	return l, texts, err
}

// A new person takes the oldest ready machine: their lease has its id,
// server and host key; the machine is personalised with their key beside
// the gateway's and their expiry, under the same instance id and host key;
// its pool label goes; its record goes with the lease's running write;
// no server is created for them, and the keeper is nudged.
func TestClaimTakesTheOldestReadyMachine(t *testing.T) {
	d, _, key := claimDomain(t, 2)
	pool, _ := d.pool.PoolMachines()
	slices.SortFunc(pool, oldestFirst)
	want := pool[0]
	creates := len(d.cloud.made("Create"))

	l, progress, err := d.ensure(t, key)
	if err != nil {
		t.Fatal(err)
	}
	if l.ID != want.ID || l.ServerID != want.ServerID || l.HostKey != want.HostKey || l.Address != want.Address ||
		l.State != StateRunning || l.Fingerprint != Fingerprint(key) || !l.Expires.Equal(d.clock.Now().Add(4*time.Hour)) {
		t.Errorf("lease %+v, want the running claim of %+v", l, want)
	}
	if got := len(d.cloud.made("Create")); got != creates {
		t.Errorf("%d servers created for the claim, want none", got-creates)
	}
	doc, err := bootstrap.Parse([]byte(d.machines.personalised[want.Address]))
	if err != nil {
		t.Fatalf("personalised with %v", err)
	}
	person := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	gateway := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(d.m.cfg.Machine.GatewayKey)))
	if doc.Pool || doc.InstanceID != want.ID || doc.HostKey.Public != want.HostKey ||
		!slices.Equal(doc.AuthorizedKeys, []string{person, gateway}) || doc.ExpiresAt != l.Expires.UTC().Format(time.RFC3339) {
		t.Errorf("personalised with %+v, want the person's document for machine %s", doc, want.ID)
	}
	if got := d.cloud.made("Unpool"); !slices.Equal(got, []string{fmt.Sprintf("Unpool %d", want.ServerID)}) {
		t.Errorf("unpooled %q, want server %d", got, want.ServerID)
	}
	if states := d.pool.states(); len(states) != 1 || states[want.ID] != "" {
		t.Errorf("pool records after the claim: %v, want only the other machine", states)
	}
	if !slices.ContainsFunc(progress, func(s string) bool { return strings.HasPrefix(s, "A machine was ready for you: "+want.ServerName) }) {
		t.Errorf("progress %q does not say a machine was ready", progress)
	}
	select {
	case <-d.m.wake:
	default:
		t.Error("the claim did not nudge the pool keeper")
	}
	if ops, _, _ := d.obs.take(); !slices.ContainsFunc(ops, func(op string) bool { return strings.HasPrefix(op, "claim ok ") }) {
		t.Errorf("operations %q, want a claim that went well", ops)
	}
}

// An empty pool: the person is told, with the time the latest pool
// machine took to boot, and their machine is created.
func TestClaimFromAnEmptyPoolCreates(t *testing.T) {
	d, c := newPoolDomain(t, 1, 6*time.Hour)
	d.machines.waitFn = func(context.Context, string, string) error {
		d.clock.Advance(20 * time.Second) // every boot takes 20s
		return nil
	}
	d.r.Tick(context.Background())
	key := testkit.NewKey(t).Signer.PublicKey()
	first, _, err := d.ensure(t, key)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.next = 200 // the next create is the cold path's
	c.mu.Unlock()
	other := testkit.NewKey(t).Signer.PublicKey()
	l, progress, err := d.ensure(t, other)
	if err != nil {
		t.Fatal(err)
	}
	if l.ServerID != 201 || l.ID == first.ID {
		t.Errorf("second person's lease %+v, want a created server", l)
	}
	if !slices.ContainsFunc(progress, func(s string) bool {
		return s == "No ready machine in the warm pool; creating one (this takes about 20s)"
	}) {
		t.Errorf("progress %q does not say the pool was empty", progress)
	}
}

// Two people at once and one ready machine: one claims it, the other gets
// a machine of their own; none is shared.
func TestClaimNeverSharesAMachine(t *testing.T) {
	d, _, a := claimDomain(t, 1)
	b := testkit.NewKey(t).Signer.PublicKey()
	var wg sync.WaitGroup
	leases := make([]Lease, 2)
	for i, key := range []ssh.PublicKey{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := d.m.Ensure(testkit.Context(t, time.Minute), key, nil)
			if err != nil {
				t.Error(err)
			}
			leases[i] = l
		}()
	}
	wg.Wait()
	if leases[0].ServerID == leases[1].ServerID || leases[0].ID == leases[1].ID {
		t.Errorf("two people share a machine: %+v and %+v", leases[0], leases[1])
	}
	if got := len(d.cloud.made("Unpool")); got != 1 {
		t.Errorf("%d machines unpooled, want one", got)
	}
}

// A machine drained between the listing and the claim write is skipped:
// the claim takes the next.
func TestClaimSkipsAMachineTakenMeanwhile(t *testing.T) {
	d, _, key := claimDomain(t, 2)
	pool, _ := d.pool.PoolMachines()
	slices.SortFunc(pool, oldestFirst)
	taken := pool[0]
	taken.State = PoolDraining
	// Not through the store's CAS: a drain that won the race is stored.
	d.pool.mu.Lock()
	d.pool.machines[d.pool.find(taken.ID)] = taken
	d.pool.mu.Unlock()
	// The claim's listing still says ready, as one read before the drain.
	if _, _, err := d.m.claimPoolMachine(context.Background(), Fingerprint(key), key, func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	lease, _ := d.stored(t, Fingerprint(key))
	if lease.ID != pool[1].ID || lease.State != StateRunning {
		t.Errorf("lease %+v, want the claim of the next machine %s", lease, pool[1].ID)
	}
}

// A failure after the claim write hands nothing out: the person is told a
// ClaimError; the lease stays creating and the record claiming, and the
// next connection finishes the claim (personalising again with the same
// document).
func TestClaimFailureIsFinishedByTheNextConnection(t *testing.T) {
	d, _, key := claimDomain(t, 1)
	refuse := errors.New("ssh: connection refused")
	d.machines.personaliseFn = func(context.Context, string, string, string) error { return refuse }
	_, _, err := d.ensure(t, key)
	var ce *ClaimError
	if !errors.As(err, &ce) || !errors.Is(err, refuse) {
		t.Fatalf("ensure: %v, want a ClaimError", err)
	}
	l, _ := d.stored(t, Fingerprint(key))
	if l.State != StateCreating || d.pool.states()[l.ID] != PoolClaiming {
		t.Fatalf("after a failed claim: lease %s, record %s; want creating and claiming", l.State, d.pool.states()[l.ID])
	}

	d.machines.personaliseFn = nil
	got, progress, err := d.ensure(t, key)
	if err != nil || got.ID != l.ID || got.State != StateRunning {
		t.Fatalf("next connection: %+v, %v; want the claim finished", got, err)
	}
	if !slices.ContainsFunc(progress, func(s string) bool { return strings.Contains(s, "taken from the warm pool") }) {
		t.Errorf("progress %q does not say the claim is being finished", progress)
	}
	if len(d.pool.states()) != 0 || len(d.cloud.made("Create "+l.ServerName)) != 1 {
		t.Errorf("records %v, creates %q: want the claimed record gone and no second server", d.pool.states(), d.cloud.made("Create"))
	}
}

// While a claim is not finished the machine is neither stopped nor
// hibernated, nor its lease extended (the machine takes one document);
// a destroy takes it, and reconcile drains its record: it never returns
// to the pool.
func TestUnfinishedClaimIsNotStoppedAndDestroyDrainsIt(t *testing.T) {
	d, c, key := claimDomain(t, 1)
	d.machines.personaliseFn = func(context.Context, string, string, string) error { return errors.New("no answer") }
	if _, _, err := d.ensure(t, key); err == nil {
		t.Fatal("the claim succeeded without personalising")
	}
	fp := Fingerprint(key)
	var creating *CreatingError
	if _, err := d.m.Stop(context.Background(), fp); !errors.As(err, &creating) {
		t.Errorf("stop: %v, want a CreatingError", err)
	}
	if _, err := d.m.Hibernate(context.Background(), fp); !errors.As(err, &creating) {
		t.Errorf("hibernate: %v, want a CreatingError", err)
	}
	if _, err := d.m.Extend(context.Background(), fp, time.Hour); !errors.As(err, &creating) {
		t.Errorf("extend: %v, want a CreatingError", err)
	}
	if _, err := d.m.Destroy(context.Background(), fp); err != nil {
		t.Fatal(err)
	}
	if err := d.r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if states := d.pool.states(); len(states) != 0 || len(c.serverIDs()) != 0 {
		t.Errorf("pool records %v, servers %v after destroy and reconcile; want none", states, c.serverIDs())
	}
}

// A crash at each step of a claim leaves a lease creating and a record
// claiming; the next gateway's reconcile finishes the claim: the person's
// machine is running, personalised and unpooled, the pool record is gone,
// and no server was made or deleted for it.
func TestClaimCrashAtEachStepIsFinishedByReconcile(t *testing.T) {
	for _, point := range ClaimFaultPoints {
		t.Run(point, func(t *testing.T) {
			d, c, key := claimDomain(t, 1)
			servers := c.serverIDs()
			fp := d.crashedClaim(key, point)

			next := d.restart(t, c)
			if err := next.r.Reconcile(context.Background()); err != nil {
				t.Fatal(err)
			}
			l, ok := next.stored(t, fp)
			if !ok || l.State != StateRunning || !slices.Equal(c.serverIDs(), servers) || l.ServerID != servers[0] {
				t.Fatalf("after reconcile: lease %+v, servers %v; want the claim of server %v finished", l, c.serverIDs(), servers)
			}
			if len(d.pool.states()) != 0 {
				t.Errorf("pool records %v, want the claimed one gone", d.pool.states())
			}
			if _, ok := next.machines.personalised[l.Address]; !ok && point == FaultClaimIntent {
				t.Error("the machine was never personalised")
			}
			if point != FaultClaimUnpooled && len(next.cloud.made("Unpool")) != 1 {
				t.Errorf("unpooled %q after the restart, want once", next.cloud.made("Unpool"))
			}
		})
	}
}

// A claim whose server vanished is closed as any lease whose server
// vanished, and its record drained: the person's next connection gets a
// new machine, and nothing is left claimed.
func TestClaimOfAVanishedServerIsClosed(t *testing.T) {
	d, c, key := claimDomain(t, 1)
	fp := d.crashedClaim(key, FaultClaimIntent)
	c.mu.Lock()
	clear(c.servers)
	c.mu.Unlock()

	next := d.restart(t, c)
	if err := next.r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l, ok := next.stored(t, fp); ok {
		t.Errorf("lease %+v after reconcile, want it closed", l)
	}
	if states := d.pool.states(); len(states) != 0 {
		t.Errorf("pool records %v, want the claimed one drained", states)
	}
}

// A claiming record that no lease names (its lease was closed) is
// drained, never made ready again; one whose lease names it is left to
// its claim.
func TestReconcileDrainsAbandonedClaims(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lease   *Lease // the claimant's, if any
		drained bool
	}{
		{"no lease", nil, true},
		{"a lease of another machine", &Lease{ID: "other", State: StateRunning}, true},
		{"the claim's lease", &Lease{ID: "m1", State: StateCreating}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := PoolMachine{ID: "m1", State: PoolClaiming, ServerID: 5, Claimant: "SHA256:heidi"}
			l := Lease{}
			if tc.lease != nil {
				l = *tc.lease
			}
			if got := claimAbandoned(p, l, tc.lease != nil); got != tc.drained {
				t.Errorf("claimAbandoned = %v, want %v", got, tc.drained)
			}
		})
	}
	ready := PoolMachine{ID: "m2", State: PoolReady}
	if claimAbandoned(ready, Lease{}, false) {
		t.Error("a ready machine was taken for an abandoned claim")
	}
}

// crashedClaim runs the person key's first connection, as Ensure does,
// until the gateway stops at point, and returns their fingerprint.
func (d *domain) crashedClaim(key ssh.PublicKey, point string) string {
	d.m.cfg.Fault = func(p string) {
		if p == point {
			runtime.Goexit() // the gateway stops here: nothing after runs
		}
	}
	fp := Fingerprint(key)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer d.m.localLock(fp)()
		_, _ = d.m.ensure(context.Background(), fp, key, func(string, ...any) {})
	}()
	<-done
	return fp
}

// restart is the next gateway over d's store, pool and cloud c.
func (d *domain) restart(t *testing.T, c *poolCloud) *domain {
	t.Helper()
	next := newDomain(t, Policy{DefaultTTL: 4 * time.Hour}, ReaperConfig{})
	next.m.cfg.WarmPool = d.m.cfg.WarmPool
	next.store, next.m.cfg.Store = d.store, d.store
	next.pool, next.m.cfg.Pool = d.pool, d.pool
	next.m.cfg.Machine = d.m.cfg.Machine
	next.clock.Set(d.clock.Now())
	c.wire(next)
	return next
}

// After a claim, the running reaper refills the pool at once: its next
// pass is an hour away.
func TestClaimWakesTheKeeper(t *testing.T) {
	d, _, key := claimDomain(t, 2)
	d.r.cfg.Interval = time.Hour
	_, _, filled := d.obs.take() // the passes that filled the pool
	if len(filled) == 0 {
		t.Fatal("no pass filled the pool")
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		d.r.Run(ctx)
	}()
	defer func() {
		cancel()
		<-stopped
	}()
	testkit.Eventually(t, time.Minute, func() error { // its first pass, the pool full, is over
		d.obs.mu.Lock()
		defer d.obs.mu.Unlock()
		if len(d.obs.passes) == 0 {
			return errors.New("no pass yet")
		}
		return nil
	})
	l, _, err := d.ensure(t, key)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, func() error {
		if got := readyServers(d); len(got) != 2 || slices.Contains(got, l.ServerID) {
			return fmt.Errorf("ready pool machines on %v, want two others than the claimed %d", got, l.ServerID)
		}
		return nil
	})
}

// A pool machine's cost is the pool's until its claim and the claimant's
// lease's from then on: never counted twice, never as a person's before.
func TestClaimMovesCostFromThePoolToTheLease(t *testing.T) {
	d, _, key := claimDomain(t, 1)
	d.m.cfg.WarmPool.Size = 0 // no refill: the pool's cost is the claimed machine's alone
	d.clock.Advance(90 * time.Minute)
	d.r.Tick(context.Background())
	d.obs.mu.Lock()
	before, leases := d.obs.poolCost, d.obs.cost
	d.obs.mu.Unlock()
	if before <= 0 || leases != 0 {
		t.Fatalf("before the claim: pool cost %v, leases' %v; want the pool's only", before, leases)
	}

	if _, _, err := d.ensure(t, key); err != nil {
		t.Fatal(err)
	}
	d.clock.Advance(3 * time.Hour)
	d.r.Tick(context.Background())
	d.obs.mu.Lock()
	after, leases := d.obs.poolCost, d.obs.cost
	d.obs.mu.Unlock()
	if after != before || leases <= 0 {
		t.Errorf("after the claim: pool cost %v (was %v), leases' %v; want the pool's unchanged and the lease's counted", after, before, leases)
	}
}
