package lease

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// recObserver records what an Observer is told, as text.
type recObserver struct {
	mu      sync.Mutex
	ops     []string // "op result took"
	actions []string
	passes  []string // "end took ok"
	cost    float64
	// poolCost is the warm pool's, apart; homeCost the homes'.
	poolCost     float64
	homeCost     float64
	unattributed int
}

func (o *recObserver) Operation(op Operation, result Result, took time.Duration) {
	o.mu.Lock()
	o.ops = append(o.ops, fmt.Sprintf("%s %s %s", op, result, took))
	o.mu.Unlock()
}

func (o *recObserver) ReaperAction(a ReaperAction) {
	o.mu.Lock()
	o.actions = append(o.actions, string(a))
	o.mu.Unlock()
}

func (o *recObserver) ReaperPass(end time.Time, took time.Duration, ok bool) {
	o.mu.Lock()
	o.passes = append(o.passes, fmt.Sprintf("%s %s %v", end.Format("15:04"), took, ok))
	o.mu.Unlock()
}

func (o *recObserver) Cost(amount float64, currency string)     { o.add(&o.cost, amount, currency) }
func (o *recObserver) PoolCost(amount float64, currency string) { o.add(&o.poolCost, amount, currency) }
func (o *recObserver) HomeCost(amount float64, currency string) { o.add(&o.homeCost, amount, currency) }

func (o *recObserver) UnattributedVolumes(n int) {
	o.mu.Lock()
	o.unattributed = n
	o.mu.Unlock()
}

func (o *recObserver) add(to *float64, amount float64, currency string) {
	if currency != "EUR" {
		panic("cost in " + currency)
	}
	o.mu.Lock()
	*to += amount
	o.mu.Unlock()
}

// take returns and forgets what was recorded.
func (o *recObserver) take() (ops, actions, passes []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ops, actions, passes = o.ops, o.actions, o.passes
	o.ops, o.actions, o.passes = nil, nil, nil
	return ops, actions, passes
}

func (o *recObserver) costSoFar() float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cost
}

// TestOperationsObserved: each operation is reported once, with its
// result and its time on the clock; the first-shell wait is the whole
// Ensure, and a refusal by the rules is no error.
func TestOperationsObserved(t *testing.T) {
	d := newDomain(t, Policy{DefaultTTL: time.Hour}, ReaperConfig{})
	d.m.cfg.Machine.User = "claude"
	d.cloud.createFn = func(_ context.Context, spec CreateSpec) (Server, error) {
		d.clock.Advance(90 * time.Second)
		return Server{ID: 5, Name: spec.Name, IPv4: "192.0.2.5"}, nil
	}
	key := testkit.NewKey(t).Signer.PublicKey()
	if _, err := d.m.Ensure(context.Background(), key, nil); err != nil {
		t.Fatal(err)
	}
	ops, _, _ := d.obs.take()
	if want := []string{"create ok 1m30s", "first_shell ok 1m30s"}; !slices.Equal(ops, want) {
		t.Errorf("a new machine: %q, want %q", ops, want)
	}

	fp := Fingerprint(key)
	d.cloud.powerOffFn = func(context.Context, int64) error { return errors.New("503") }
	if _, err := d.m.Stop(context.Background(), fp); err == nil {
		t.Fatal("a failed power off stopped the machine")
	}
	d.cloud.powerOffFn = func(context.Context, int64) error { d.clock.Advance(20 * time.Second); return nil }
	if _, err := d.m.Stop(context.Background(), fp); err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.Stop(context.Background(), fp); err != nil { // stopped already: no operation
		t.Fatal(err)
	}
	ops, _, _ = d.obs.take()
	if want := []string{"stop error 0s", "stop ok 20s"}; !slices.Equal(ops, want) {
		t.Errorf("stops: %q, want %q", ops, want)
	}

	d.clock.Advance(2 * time.Hour) // the lease expired
	if _, err := d.m.Ensure(context.Background(), key, nil); err == nil {
		t.Fatal("an expired lease's machine was started")
	}
	ops, _, _ = d.obs.take()
	if want := []string{"first_shell refused 0s"}; !slices.Equal(ops, want) {
		t.Errorf("an expired lease: %q, want %q", ops, want)
	}
}

// TestStartAndResumeObserved: powering a stopped server on is a start,
// restoring a hibernated machine from its snapshot a resume.
func TestStartAndResumeObserved(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	d.m.cfg.Machine.User = "claude"
	key := testkit.NewKey(t).Signer.PublicKey()
	d.cloud.getFn = func(context.Context, int64) (Server, error) { return Server{ID: 1, Status: "off"}, nil }
	d.cloud.powerOnFn = func(context.Context, int64) error { d.clock.Advance(10 * time.Second); return nil }
	hostPEM, hostPub, err := newHostKey()
	if err != nil {
		t.Fatal(err)
	}
	d.running(t, "a", 1, in(StateStopped), func(l *Lease) {
		l.Fingerprint, l.PublicKey = Fingerprint(key), testkit.AuthorizedKey(key)
		l.HostKey, l.HostKeyPEM = hostPub, hostPEM
	})
	if _, err := d.m.Ensure(context.Background(), key, nil); err != nil {
		t.Fatal(err)
	}
	ops, _, _ := d.obs.take()
	if want := []string{"start ok 10s", "first_shell ok 10s"}; !slices.Equal(ops, want) {
		t.Errorf("a stopped machine: %q, want %q", ops, want)
	}

	d.cloud.snapshotFn = func(_ context.Context, id int64, leaseID string) (Image, error) {
		return Image{ID: 77, LeaseID: leaseID, SizeGB: 3.5}, nil
	}
	if _, err := d.m.Hibernate(context.Background(), Fingerprint(key)); err != nil {
		t.Fatal(err)
	}
	d.cloud.createFn = func(_ context.Context, spec CreateSpec) (Server, error) {
		d.clock.Advance(time.Minute)
		return Server{ID: 6, Name: spec.Name, IPv4: "192.0.2.6"}, nil
	}
	if _, err := d.m.Ensure(context.Background(), key, nil); err != nil {
		t.Fatal(err)
	}
	ops, _, _ = d.obs.take()
	if want := []string{"hibernate ok 0s", "resume ok 1m0s", "first_shell ok 1m0s"}; !slices.Equal(ops, want) {
		t.Errorf("hibernated and restored: %q, want %q", ops, want)
	}
}

// TestReaperObserved: the reaper reports each action it carried out and
// each pass; a pass in which one lease's action fails is no success.
func TestReaperObserved(t *testing.T) {
	d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute, WarnBefore: []time.Duration{5 * time.Minute}}, ReaperConfig{})
	d.reconciled()
	d.running(t, "a", 1)
	d.running(t, "b", 2)
	d.clock.Advance(26 * time.Minute)
	d.r.Tick(context.Background())
	_, actions, passes := d.obs.take()
	if want := []string{"warn", "warn"}; !slices.Equal(actions, want) {
		t.Errorf("actions %q, want %q", actions, want)
	}
	if want := []string{"09:26 0s true"}; !slices.Equal(passes, want) {
		t.Errorf("passes %q, want %q", passes, want)
	}

	d.cloud.powerOffFn = func(_ context.Context, id int64) error {
		if id == 2 {
			return errors.New("503")
		}
		return nil
	}
	d.clock.Advance(5 * time.Minute)
	d.r.Tick(context.Background())
	_, actions, passes = d.obs.take()
	if want := []string{"stop"}; !slices.Equal(actions, want) {
		t.Errorf("actions %q, want one stop: the other failed", actions)
	}
	if want := []string{"09:31 0s false"}; !slices.Equal(passes, want) {
		t.Errorf("passes %q, want %q", passes, want)
	}

	// The failed stop is left to reconcile: nothing fails any more.
	d.clock.Advance(time.Minute)
	d.r.Tick(context.Background())
	_, actions, passes = d.obs.take()
	if len(actions) != 0 {
		t.Errorf("actions %q, want none", actions)
	}
	if want := []string{"09:32 0s true"}; !slices.Equal(passes, want) {
		t.Errorf("passes %q, want %q", passes, want)
	}
}

// TestReaperPassFailsWhileReconcileDoes: a failed reconcile fails its
// pass and the passes after it, until a reconcile succeeds.
func TestReaperPassFailsWhileReconcileDoes(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{ReconcileEvery: 10 * time.Minute})
	d.cloud.imagesFn = func(context.Context) ([]Image, error) { return nil, nil }
	d.cloud.listFn = func(context.Context) ([]Server, error) { return nil, errors.New("503") }
	d.r.Tick(context.Background())
	d.clock.Advance(time.Minute) // no reconcile due
	d.r.Tick(context.Background())
	d.cloud.listFn = func(context.Context) ([]Server, error) { return nil, nil }
	d.r.Tick(context.Background()) // a failed reconcile is due again at once
	d.clock.Advance(time.Minute)
	d.r.Tick(context.Background())
	_, _, passes := d.obs.take()
	if want := []string{"09:00 0s false", "09:01 0s false", "09:01 0s true", "09:02 0s true"}; !slices.Equal(passes, want) {
		t.Errorf("passes %q, want %q", passes, want)
	}
}

// TestReaperPassFailsWhenTheStoreDoes: a pass that cannot list the leases
// did nothing, and says so.
func TestReaperPassFailsWhenTheStoreDoes(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	d.reconciled()
	d.store.mu.Lock()
	d.store.failList = errors.New("disk on fire")
	d.store.mu.Unlock()
	d.r.Tick(context.Background())
	if _, _, passes := d.obs.take(); !slices.Equal(passes, []string{"09:00 0s false"}) {
		t.Errorf("passes %q, want one failed", passes)
	}
}

// TestCostAccrues: the reaper reports what every lease accrued since its
// last pass, at the cached prices. Leases older than the gateway's start
// count from the first pass (their earlier cost was counted before a
// restart); newer ones count whole; a destroyed lease's last hours count.
func TestCostAccrues(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	d.reconciled()
	d.running(t, "old", 1) // created an hour before the Manager started
	d.r.Tick(context.Background())
	if got := d.obs.costSoFar(); got != 0 {
		t.Fatalf("first pass reported %.4f EUR of a lease older than the start", got)
	}
	approx := func(what string, want float64) {
		t.Helper()
		if got := d.obs.costSoFar(); math.Abs(got-want) > 1e-9 {
			t.Errorf("%s: %.4f EUR, want %.4f", what, got, want)
		}
	}

	d.clock.Advance(30 * time.Minute) // its second hour started
	d.r.Tick(context.Background())
	approx("a started hour", 0.01)
	d.clock.Advance(20 * time.Minute)
	d.r.Tick(context.Background())
	approx("within the started hour", 0.01)

	// Created after the start: all of it counts.
	d.running(t, "new", 2, func(l *Lease) {
		l.Created, l.ServerCreated = d.clock.Now().Add(-10*time.Minute), d.clock.Now().Add(-10*time.Minute)
	})
	d.r.Tick(context.Background())
	approx("a new lease", 0.02)

	// Expired: destroyed two hours later; its last two started hours
	// count, and nothing after.
	l, _ := d.stored(t, "SHA256:new")
	l.Expires = d.clock.Now().Add(90 * time.Minute)
	d.put(t, l)
	d.clock.Advance(2 * time.Hour)
	d.r.Tick(context.Background())
	if _, ok := d.stored(t, "SHA256:new"); ok {
		t.Fatal("the expired lease is still there")
	}
	approx("two more hours of both", 0.06)
	d.r.Tick(context.Background())
	approx("a pass at the same time", 0.06)
}
