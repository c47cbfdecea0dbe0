package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDecideReap(t *testing.T) {
	now := t0
	p := Policy{IdleTimeout: 30 * time.Minute}
	running := Lease{State: StateRunning, Expires: now.Add(time.Hour), LastActivity: now.Add(-10 * time.Minute)}
	with := func(l Lease, change func(*Lease)) Lease { change(&l); return l }
	expiry := deadline{"expiry", now.Add(time.Hour)}
	idleAt := deadline{"idle", now.Add(20 * time.Minute)}

	for _, tc := range []struct {
		name   string
		lease  Lease
		policy Policy
		want   reapDecision
	}{
		{"expires exactly now", with(running, func(l *Lease) { l.Expires = now }), p,
			reapDecision{action: reapExpire}},
		{"expired a while ago, stopped", with(running, func(l *Lease) { l.Expires = now.Add(-time.Hour); l.State = StateStopped }), p,
			reapDecision{action: reapExpire}},
		{"running and active: both deadlines ahead", running, p,
			reapDecision{deadlines: []deadline{expiry, idleAt}}},
		{"stopped: only the expiry", with(running, func(l *Lease) { l.State = StateStopped }), p,
			reapDecision{deadlines: []deadline{expiry}}},
		{"no idle timeout: only the expiry", running, Policy{},
			reapDecision{deadlines: []deadline{expiry}}},
		{"idle exactly at the timeout", with(running, func(l *Lease) { l.LastActivity = now.Add(-30 * time.Minute) }), p,
			reapDecision{action: reapIdle, deadlines: []deadline{expiry}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decideReap(tc.lease, tc.policy, now)
			if got.action != tc.want.action || !slices.Equal(got.deadlines, tc.want.deadlines) {
				t.Errorf("decideReap = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestWarningsOncePerLeadTime(t *testing.T) {
	d := newDomain(t, Policy{WarnBefore: []time.Duration{30 * time.Minute, 5 * time.Minute}}, ReaperConfig{})
	d.reconciled()
	l := d.running(t, "a", 1)
	ctx := context.Background()

	d.r.Tick(ctx)
	if got := d.notify.to("warn", l.Fingerprint); len(got) != 0 {
		t.Fatalf("warned 4h ahead: %q", got)
	}
	d.clock.Set(l.Expires.Add(-29 * time.Minute))
	d.r.Tick(ctx)
	d.r.Tick(ctx)
	d.clock.Set(l.Expires.Add(-(4*time.Minute + 59*time.Second)))
	d.r.Tick(ctx)
	d.clock.Set(l.Expires.Add(-30 * time.Second))
	d.r.Tick(ctx)

	want := []string{
		"your machine cc-a expires in 29m and will then be deleted with its files; run `ssh gw extend 2h` to keep it.",
		"your machine cc-a expires in 5m and will then be deleted with its files; run `ssh gw extend 2h` to keep it.",
	}
	if got := d.notify.to("warn", l.Fingerprint); !slices.Equal(got, want) {
		t.Errorf("warnings:\n%q\nwant\n%q", got, want)
	}
	if got := d.store.kinds(l.Fingerprint); len(got) != 2 || !strings.HasPrefix(got[0], "warning: your machine cc-a expires in 29m") ||
		!strings.HasSuffix(got[0], "(to 1 sessions)") {
		t.Errorf("events: %q, want one warning event per warning sent", got)
	}

	// Nobody connected: the warning is not recorded as given.
	d.notify.sessions = 0
	m := d.running(t, "b", 2)
	d.clock.Set(m.Expires.Add(-time.Minute))
	d.r.Tick(ctx)
	if got := d.notify.to("warn", m.Fingerprint); len(got) != 1 {
		t.Errorf("warnings to b: %q", got)
	}
	if got := d.store.kinds(m.Fingerprint); len(got) != 0 {
		t.Errorf("events of a warning to nobody: %q", got)
	}
}

func TestIdleWarningNamesTheAction(t *testing.T) {
	d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute, IdleAction: IdleHibernate, WarnBefore: []time.Duration{5 * time.Minute}}, ReaperConfig{})
	d.reconciled()
	l := d.running(t, "a", 1)
	d.clock.Advance(26 * time.Minute)
	d.r.Tick(context.Background())
	want := []string{"your machine cc-a will be hibernated in 4m: it has had no activity for 26m. Any activity keeps it."}
	if got := d.notify.to("warn", l.Fingerprint); !slices.Equal(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
	if len(d.cloud.made("PowerOff")) != 0 {
		t.Errorf("calls before the idle timeout: %q", d.cloud.made(""))
	}
}

func TestIdleActions(t *testing.T) {
	for _, tc := range []struct {
		action    IdleAction
		calls     []string // to the provider, in order
		state     State    // after; "" for no lease
		ended     string
		lastEvent string
	}{
		{IdleStop, []string{"PowerOff 1"}, StateStopped,
			"your machine cc-a is being stopped: it had no activity for 30m. `ssh gw` starts it again.", "stop: idle for 31m"},
		{IdleHibernate, []string{"PowerOff 1", "Snapshot 1", "Delete 1"}, StateHibernated,
			"your machine cc-a is being hibernated: it had no activity for 30m. `ssh gw` starts it again.", "hibernate: snapshot 77 (3.5 GB)"},
		{IdleDestroy, []string{"Delete 1"}, "",
			"your machine cc-a is being destroyed: it had no activity for 30m. `ssh gw` starts it again.", "destroy: idle for 31m; it cost 0.0100 EUR"},
	} {
		t.Run(string(tc.action), func(t *testing.T) {
			d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute, IdleAction: tc.action}, ReaperConfig{})
			d.reconciled()
			d.cloud.snapshotFn = func(_ context.Context, id int64, leaseID string) (Image, error) {
				return Image{ID: 77, LeaseID: leaseID, SizeGB: 3.5}, nil
			}
			l := d.running(t, "a", 1)
			l.ServerCreated = d.clock.Now().Add(-10 * time.Minute)
			d.put(t, l)
			d.clock.Advance(31 * time.Minute)
			d.r.Tick(context.Background())

			if calls := d.cloud.changes(); !slices.Equal(calls, tc.calls) {
				t.Errorf("provider calls %q, want %q", calls, tc.calls)
			}
			after, ok := d.stored(t, l.Fingerprint)
			if tc.state == "" && ok || tc.state != "" && after.State != tc.state {
				t.Errorf("lease after: %+v (kept %v), want state %q", after, ok, tc.state)
			}
			if got := d.notify.to("end", l.Fingerprint); !slices.Equal(got, []string{tc.ended}) {
				t.Errorf("sessions ended with %q, want %q", got, tc.ended)
			}
			if ev := d.store.kinds(l.Fingerprint); len(ev) == 0 || ev[len(ev)-1] != tc.lastEvent {
				t.Errorf("events %q, want the last %q", ev, tc.lastEvent)
			}
		})
	}
}

func TestHibernatedMachineBooksItsServer(t *testing.T) {
	d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute, IdleAction: IdleHibernate}, ReaperConfig{})
	d.reconciled()
	d.cloud.snapshotFn = func(_ context.Context, id int64, leaseID string) (Image, error) {
		return Image{ID: 77, LeaseID: leaseID, SizeGB: 3.5}, nil // no creation time: the clock's
	}
	l := d.running(t, "a", 1) // its server created an hour ago
	d.clock.Advance(31 * time.Minute)
	d.r.Tick(context.Background())
	after, _ := d.stored(t, l.Fingerprint)
	if after.ServerID != 0 || after.Address != "" || !after.ServerCreated.IsZero() {
		t.Errorf("hibernated lease still names its server: %+v", after)
	}
	if after.ImageID != 77 || after.ImageSizeGB != 3.5 || !after.ImageCreated.Equal(d.clock.Now()) {
		t.Errorf("hibernated lease's snapshot: %+v", after)
	}
	// 1h31m of server, two started hours at 0.01.
	if after.Spent < 0.0199 || after.Spent > 0.0201 {
		t.Errorf("spent %.4f, want the server's two hours booked: 0.02", after.Spent)
	}
}

func TestBusyMachineIsLeftRunning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cpu     float64
		err     error
		stopped bool
		touched bool
	}{
		{"busy", 80, nil, false, true},
		{"at the threshold", 50, nil, false, true},
		{"quiet", 10, nil, true, false},
		{"unknown", 0, errors.New("metrics down"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute, BusyCPU: 50}, ReaperConfig{BusyWindow: 7 * time.Minute})
			d.reconciled()
			d.cloud.cpuUsageFn = func(_ context.Context, id int64, window time.Duration) (float64, error) {
				if window != 7*time.Minute {
					t.Errorf("cpu window %s, want the configured 7m", window)
				}
				return tc.cpu, tc.err
			}
			l := d.running(t, "a", 1)
			d.clock.Advance(40 * time.Minute)
			d.r.Tick(context.Background())

			after, _ := d.stored(t, l.Fingerprint)
			if stopped := after.State == StateStopped; stopped != tc.stopped {
				t.Errorf("state %s, want stopped %v", after.State, tc.stopped)
			}
			st, err := d.m.Status(l.Fingerprint)
			if err != nil {
				t.Fatal(err)
			}
			if touched := st.LastActivity.Equal(d.clock.Now()); touched != tc.touched {
				t.Errorf("last activity %s, want touched now %v", st.LastActivity, tc.touched)
			}
			if got := d.notify.to("end", l.Fingerprint); (len(got) == 1) != tc.stopped {
				t.Errorf("ended sessions: %q", got)
			}
			if tc.touched {
				want := fmt.Sprintf("busy: idle for 40m but using %.0f%% CPU; left running", tc.cpu)
				if ev := d.store.kinds(l.Fingerprint); !slices.Equal(ev, []string{want}) {
					t.Errorf("events %q, want %q", ev, want)
				}
			}
		})
	}
}

func TestExpiredLeaseIsDestroyed(t *testing.T) {
	d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute}, ReaperConfig{})
	d.reconciled()
	l := d.running(t, "a", 1)
	l.State, l.ImageID, l.Spent = StateStopped, 0, 0.5
	d.put(t, l)
	d.clock.Set(l.Expires)
	d.r.Tick(context.Background())

	if _, ok := d.stored(t, l.Fingerprint); ok {
		t.Error("an expired lease is still stored")
	}
	if got := d.cloud.made("Delete"); !slices.Equal(got, []string{"Delete 1"}) {
		t.Errorf("deletes %q", got)
	}
	want := "your machine cc-a expired at 2026-11-25T13:00:00Z and is being deleted."
	if got := d.notify.to("end", l.Fingerprint); !slices.Equal(got, []string{want}) {
		t.Errorf("sessions ended with %q, want %q", got, want)
	}
	// 0.5 spent before, five started hours of the server since.
	if ev := d.store.kinds(l.Fingerprint); !slices.Equal(ev, []string{"destroy: expired; it cost 0.5500 EUR"}) {
		t.Errorf("events %q", ev)
	}
}

// TestReaperIsNotHeldHostage: while one lease's destroy is stuck on the
// cloud, the same pass still warns and stops the others. The stuck Delete
// returns only once it has seen both; were the pass sequential, it would
// return at its deadline instead and the lease would not be destroyed.
func TestReaperIsNotHeldHostage(t *testing.T) {
	d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute, WarnBefore: []time.Duration{10 * time.Minute}},
		ReaperConfig{LeaseTimeout: 5 * time.Second})
	d.reconciled()
	now := d.clock.Now()
	stuck := d.running(t, "a-stuck", 1) // listed, and so handed out, first
	stuck.Expires = now.Add(-time.Minute)
	d.put(t, stuck)
	warned := d.running(t, "b-warned", 2)
	warned.LastActivity = now.Add(-25 * time.Minute)
	d.put(t, warned)
	idle := d.running(t, "c-idle", 3)
	idle.LastActivity = now.Add(-31 * time.Minute)
	d.put(t, idle)

	bWarned, cStopped := make(chan struct{}), make(chan struct{})
	d.notify.hook = func(kind string, n notice) {
		if kind == "warn" && n.fingerprint == warned.Fingerprint {
			close(bWarned)
		}
	}
	d.cloud.powerOffFn = func(_ context.Context, id int64) error {
		if id == 3 {
			close(cStopped)
		}
		return nil
	}
	d.cloud.deleteFn = func(ctx context.Context, id int64) error {
		for _, seen := range []chan struct{}{bWarned, cStopped} {
			select {
			case <-seen:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	d.r.Tick(context.Background())

	if l, ok := d.stored(t, stuck.Fingerprint); ok {
		t.Errorf("the stuck lease was not destroyed (%s): the others waited for it", l.State)
	}
	if l, _ := d.stored(t, idle.Fingerprint); l.State != StateStopped {
		t.Errorf("idle lease %s, want stopped", l.State)
	}
}

// TestLaterPassSkipsAStuckLease: a pass does not wait for a lease a worker
// from an earlier pass still holds, nor start on it again.
func TestLaterPassSkipsAStuckLease(t *testing.T) {
	d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute}, ReaperConfig{})
	d.reconciled()
	stuck := d.running(t, "a-stuck", 1)
	stuck.Expires = d.clock.Now()
	d.put(t, stuck)
	deleting, release := make(chan struct{}), make(chan struct{})
	d.cloud.deleteFn = func(ctx context.Context, id int64) error {
		close(deleting)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	firstDone := make(chan struct{})
	go func() {
		d.r.Tick(context.Background())
		close(firstDone)
	}()
	<-deleting

	idle := d.running(t, "b-idle", 2)
	d.clock.Advance(31 * time.Minute)
	d.r.Tick(context.Background()) // returns although the first pass has not

	if l, _ := d.stored(t, idle.Fingerprint); l.State != StateStopped {
		t.Errorf("idle lease %s, want stopped by the second pass", l.State)
	}
	close(release)
	<-firstDone
	if got := d.cloud.made("Delete"); !slices.Equal(got, []string{"Delete 1"}) {
		t.Errorf("deletes %q, want the stuck one once", got)
	}
	if _, ok := d.stored(t, stuck.Fingerprint); ok {
		t.Error("the stuck lease was not destroyed once released")
	}
}

// TestWorkersAreBounded: with two workers, two stops run at once and never
// more. Each stop waits until two are running, so a reaper without
// concurrency fails at the deadline.
func TestWorkersAreBounded(t *testing.T) {
	d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute}, ReaperConfig{Workers: 2, LeaseTimeout: 5 * time.Second})
	d.reconciled()
	for i, name := range []string{"a", "b", "c", "d", "e"} {
		d.running(t, name, int64(i+1))
	}
	d.clock.Advance(31 * time.Minute)
	var (
		mu           sync.Mutex
		active, peak int
		full         = make(chan struct{})
		once         sync.Once
	)
	d.cloud.powerOffFn = func(ctx context.Context, id int64) error {
		mu.Lock()
		active++
		peak = max(peak, active)
		if active == 2 {
			once.Do(func() { close(full) })
		}
		mu.Unlock()
		defer func() { mu.Lock(); active--; mu.Unlock() }()
		select {
		case <-full:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d.r.Tick(context.Background())
	if peak != 2 {
		t.Errorf("%d stops at once, want 2", peak)
	}
	if got := d.cloud.made("PowerOff"); len(got) != 5 {
		t.Errorf("stops %q, want all five", got)
	}
}

// TestLeaseDeadline: a lease whose work outlives its deadline is cut off,
// left in its recorded intent, and finished by a later pass.
func TestLeaseDeadline(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{LeaseTimeout: 20 * time.Millisecond})
	d.reconciled()
	l := d.running(t, "a", 1)
	d.clock.Set(l.Expires)
	hang := true
	d.cloud.deleteFn = func(ctx context.Context, id int64) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("a lease's work has no deadline")
		}
		if !hang {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	}
	d.r.Tick(context.Background())
	if after, ok := d.stored(t, l.Fingerprint); !ok || after.State != StateDestroying {
		t.Fatalf("after a destroy cut off: %+v (kept %v), want the intent kept", after, ok)
	}
	hang = false
	d.r.Tick(context.Background())
	if _, ok := d.stored(t, l.Fingerprint); ok {
		t.Error("the next pass did not finish the destroy")
	}
}

// TestRunPassesAtOnceAndWaitsForItsWork: Run makes a pass at start, and
// returns after ctx ends only once its workers have.
func TestRunPassesAtOnceAndWaitsForItsWork(t *testing.T) {
	d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute}, ReaperConfig{Interval: time.Hour})
	d.running(t, "a", 1)
	d.clock.Advance(31 * time.Minute)
	stopping := make(chan struct{})
	var once sync.Once
	// Set by the worker before Run returns. The term's first reconcile,
	// beside the worker, may finish the stop cut off, and power off too.
	var returned atomic.Bool
	d.cloud.powerOffFn = func(ctx context.Context, id int64) error {
		once.Do(func() { close(stopping) })
		<-ctx.Done()
		returned.Store(true)
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		d.r.Run(ctx)
		close(done)
	}()
	<-stopping
	cancel()
	<-done
	if !returned.Load() {
		t.Error("Run returned before its worker")
	}
}

func TestReconcileOncePerInterval(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{ReconcileEvery: 5 * time.Minute})
	fail := errors.New("api down")
	d.cloud.listFn = func(context.Context) ([]Server, error) { return nil, fail }
	ctx := context.Background()
	lists := func() int { return len(d.cloud.made("List")) }

	d.r.Tick(ctx) // fails: tried again next pass
	d.r.Tick(ctx)
	if got := lists(); got != 2 {
		t.Fatalf("%d reconciles after two failing passes, want 2", got)
	}
	d.cloud.listFn = nil
	d.r.Tick(ctx) // succeeds
	d.clock.Advance(4 * time.Minute)
	d.r.Tick(ctx)
	if got := lists(); got != 3 {
		t.Errorf("%d reconciles, want none within 5m of a good one", got)
	}
	d.clock.Advance(time.Minute)
	d.r.Tick(ctx)
	if got := lists(); got != 4 {
		t.Errorf("%d reconciles, want one once 5m passed", got)
	}
}
