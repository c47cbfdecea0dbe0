package lease

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

func TestDecideSettle(t *testing.T) {
	on := &Server{ID: 7, Status: "running"}
	off := &Server{ID: 7, Status: "off"}
	booting := &Server{ID: 7, Status: "initializing"}
	lease := func(s State) Lease { return Lease{State: s, ServerID: 7, ImageID: 9} }
	for _, tc := range []struct {
		name      string
		lease     Lease
		srv       *Server
		imageKept bool
		want      settleDecision
		claiming  bool // its pool record is claiming
	}{
		{"destroying", lease(StateDestroying), on, true, settleDecision{action: settleDestroy,
			why: "interrupted destroy finished", found: []string{"finishing an interrupted destroy"}}, false},
		{"hibernating", lease(StateHibernating), nil, true, settleDecision{action: settleHibernate,
			found: []string{"finishing an interrupted hibernation"}}, false},
		{"stopping, server there", lease(StateStopping), on, false, settleDecision{action: settleStop,
			found: []string{"finishing an interrupted stop"}}, false},
		{"stopping, server gone", lease(StateStopping), nil, false, settleDecision{action: settleDestroy,
			why: "server vanished", forgetServer: true,
			found: []string{"finishing an interrupted stop", "server 7 vanished; closing the lease"}}, false},
		{"hibernated, snapshot kept", lease(StateHibernated), nil, true, settleDecision{}, false},
		{"hibernated, snapshot gone", lease(StateHibernated), nil, false, settleDecision{action: settleDestroy,
			why: "snapshot vanished", forgetImage: true, found: []string{"snapshot 9 vanished; closing the lease"}}, false},
		{"creating from a kept snapshot, no server", lease(StateCreating), nil, true, settleDecision{action: settleState,
			state: StateHibernated, found: []string{"no server was made; back to hibernated"}}, false},
		{"creating, no server", lease(StateCreating), nil, false, settleDecision{action: settleDestroy,
			why: "creation never reached the provider", found: []string{"no server was made; closing the lease"}}, false},
		{"creating, server booting", lease(StateCreating), booting, false, settleDecision{action: settleState,
			state: StateStarting, adopt: true,
			found: []string{"adopting server 7", "state creating but the server is initializing; now starting"}}, false},
		{"running, server gone", lease(StateRunning), nil, true, settleDecision{action: settleDestroy,
			why: "server vanished", forgetServer: true, found: []string{"server 7 vanished; closing the lease"}}, false},
		{"running, server running", lease(StateRunning), on, false, settleDecision{}, false},
		{"running, server off", lease(StateRunning), off, false, settleDecision{action: settleState,
			state: StateStopped, found: []string{"state running but the server is off; now stopped"}}, false},
		{"starting, server running", lease(StateStarting), on, false, settleDecision{action: settleState,
			state: StateRunning, found: []string{"state starting but the server is running; now running"}}, false},
		{"stopped, server off", lease(StateStopped), off, false, settleDecision{}, false},
		{"claim cut short, server there", lease(StateCreating), booting, false, settleDecision{action: settleClaim,
			found: []string{"finishing the claim of a warm pool machine"}}, true},
		{"claim cut short, server gone", lease(StateCreating), nil, false, settleDecision{action: settleDestroy,
			why: "the claimed pool machine's server vanished", forgetServer: true,
			found: []string{"the claimed pool machine's server 7 vanished; closing the lease"}}, true},
		{"claimed and running: no claim left", lease(StateRunning), on, false, settleDecision{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decideSettle(tc.lease, tc.srv, tc.imageKept, tc.claiming)
			same := got.action == tc.want.action && got.why == tc.want.why && got.state == tc.want.state &&
				got.adopt == tc.want.adopt && got.forgetServer == tc.want.forgetServer &&
				got.forgetImage == tc.want.forgetImage && slices.Equal(got.found, tc.want.found)
			if !same {
				t.Errorf("decideSettle =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestDecideOrphan(t *testing.T) {
	grace := 10 * time.Minute
	orphan := orphanFacts{age: time.Hour, seen: true, seenFor: grace}
	with := func(change func(*orphanFacts)) orphanFacts {
		f := orphan
		change(&f)
		return f
	}
	for _, tc := range []struct {
		name   string
		facts  orphanFacts
		policy Orphans
		want   orphanVerdict
	}{
		{"claimed", with(func(f *orphanFacts) { f.claimed = true }), OrphansDelete, orphanKeep},
		{"its lease is being created", with(func(f *orphanFacts) { f.inProgress = true }), OrphansDelete, orphanKeep},
		{"young", with(func(f *orphanFacts) { f.age, f.seen, f.seenFor = 9*time.Minute, false, 0 }), OrphansDelete, orphanWait},
		{"first seen, running", with(func(f *orphanFacts) { f.seen, f.seenFor, f.running = false, 0, true }), OrphansDelete, orphanPowerOff},
		{"first seen, off", with(func(f *orphanFacts) { f.seen, f.seenFor = false, 0 }), OrphansDelete, orphanWatch},
		{"exactly the grace old, first seen", with(func(f *orphanFacts) { f.age, f.seen, f.seenFor = grace, false, 0 }), OrphansDelete, orphanWatch},
		{"seen less than a grace ago", with(func(f *orphanFacts) { f.seenFor = grace - time.Second }), OrphansDelete, orphanWatch},
		{"seen a grace ago, off", orphan, OrphansDelete, orphanDelete},
		{"seen a grace ago, switched on again", with(func(f *orphanFacts) { f.running = true }), OrphansDelete, orphanPowerOff},
		{"kept by policy", with(func(f *orphanFacts) { f.running = true }), OrphansKeep, orphanSpare},
		{"kept by policy, but young", with(func(f *orphanFacts) { f.age = time.Minute }), OrphansKeep, orphanWait},
		{"claimed, orphans kept", with(func(f *orphanFacts) { f.claimed = true }), OrphansKeep, orphanKeep},
	} {
		if got := decideOrphan(tc.facts, grace, tc.policy); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestServerOfAndImageKept(t *testing.T) {
	servers := []Server{
		{ID: 1, Labels: map[string]string{LeaseLabel: "x"}},
		{ID: 2, Labels: map[string]string{LeaseLabel: "y"}},
	}
	if s := serverOf(Lease{ID: "x", ServerID: 2}, servers); s == nil || s.ID != 2 {
		t.Errorf("a recorded server is found by id, not label: %+v", s)
	}
	if s := serverOf(Lease{ID: "y"}, servers); s == nil || s.ID != 2 {
		t.Errorf("an unrecorded server is found by label: %+v", s)
	}
	if s := serverOf(Lease{ID: "x", ServerID: 3}, servers); s != nil {
		t.Errorf("a vanished server found: %+v", s)
	}
	images := []Image{{ID: 9}}
	if !imageKept(Lease{ImageID: 9}, images) || imageKept(Lease{ImageID: 8}, images) || imageKept(Lease{}, []Image{{ID: 0}}) {
		t.Error("imageKept")
	}
}

// TestReconcileSettles drives crashed and drifted leases through Reconcile
// and checks what it did to the provider and the store.
func TestReconcileSettles(t *testing.T) {
	for _, tc := range []struct {
		name    string
		state   State
		image   int64
		servers []Server // the cloud's; the lease's server is 1
		images  []Image
		calls   []string // to the provider, List and Images aside
		after   State    // "" when the lease is gone
	}{
		{"an interrupted destroy is finished", StateDestroying, 0, []Server{{ID: 1, Status: "off"}}, nil,
			[]string{"Delete 1"}, ""},
		{"an interrupted stop is finished", StateStopping, 0, []Server{{ID: 1, Status: "running"}}, nil,
			[]string{"PowerOff 1"}, StateStopped},
		{"an interrupted hibernation is finished", StateHibernating, 0, []Server{{ID: 1, Status: "off"}}, nil,
			[]string{"PowerOff 1", "Snapshot 1", "Delete 1"}, StateHibernated},
		{"a vanished server closes the lease", StateRunning, 0, nil, nil,
			nil, ""},
		{"a vanished snapshot closes the lease", StateHibernated, 9, nil, nil,
			nil, ""},
		{"a kept snapshot is left alone", StateHibernated, 9, nil, []Image{{ID: 9}},
			nil, StateHibernated},
		{"a server switched off behind our back", StateRunning, 0, []Server{{ID: 1, Status: "off"}}, nil,
			nil, StateStopped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDomain(t, Policy{}, ReaperConfig{})
			l := d.running(t, "a", 1)
			l.State, l.ImageID = tc.state, tc.image
			if tc.image != 0 {
				l.ServerID, l.ServerCreated = 0, time.Time{}
			}
			d.put(t, l)
			d.cloud.listFn = func(context.Context) ([]Server, error) { return tc.servers, nil }
			d.cloud.imagesFn = func(context.Context) ([]Image, error) { return tc.images, nil }
			d.cloud.snapshotFn = func(_ context.Context, id int64, leaseID string) (Image, error) {
				return Image{ID: 5, LeaseID: leaseID}, nil
			}
			if err := d.r.Reconcile(context.Background()); err != nil {
				t.Fatal(err)
			}
			if calls := d.cloud.changes(); !slices.Equal(calls, tc.calls) {
				t.Errorf("provider calls %q, want %q", calls, tc.calls)
			}
			after, ok := d.stored(t, l.Fingerprint)
			if tc.after == "" && ok || tc.after != "" && after.State != tc.after {
				t.Errorf("lease after: state %q (kept %v), want %q", after.State, ok, tc.after)
			}
			if ev := d.store.kinds(l.Fingerprint); tc.calls != nil && (len(ev) == 0 || !strings.HasPrefix(ev[0], "reconcile: ")) {
				t.Errorf("events %q, want what reconcile found first", ev)
			}
		})
	}
}

// TestReconcileStateChangeIsOneWrite: a lease that only follows its
// server's power is written once, with what reconcile found.
func TestReconcileStateChangeIsOneWrite(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	l := d.running(t, "a", 1)
	d.cloud.listFn = func(context.Context) ([]Server, error) { return []Server{{ID: 1, Status: "off"}}, nil }
	before := d.store.writes
	if err := d.r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := d.store.writes - before; got != 1 {
		t.Errorf("%d writes, want 1", got)
	}
	if ev := d.store.kinds(l.Fingerprint); len(ev) != 1 || !strings.HasPrefix(ev[0], "reconcile: ") {
		t.Errorf("events %q, want one from reconcile", ev)
	}
}

func TestReconcileAdoptsAServerACrashLeftUnrecorded(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	l := d.running(t, "a", 0)
	l.State, l.ServerID, l.Address, l.ServerCreated = StateCreating, 0, "", time.Time{}
	d.put(t, l)
	created := d.clock.Now().Add(-time.Minute)
	d.cloud.listFn = func(context.Context) ([]Server, error) {
		return []Server{{ID: 4, IPv4: "192.0.2.4", Status: "running", Created: created, Labels: map[string]string{LeaseLabel: "a"}}}, nil
	}
	d.clock.Advance(time.Hour) // the server is past its orphan grace: only the lease's claim keeps it
	if err := d.r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, _ := d.stored(t, l.Fingerprint)
	if after.ServerID != 4 || after.Address != "192.0.2.4:22" || after.State != StateRunning ||
		!after.ServerCreated.Equal(created) || !after.LastActivity.Equal(d.clock.Now()) {
		t.Errorf("adopted lease %+v", after)
	}
	if got := d.cloud.made("Delete"); len(got) != 0 {
		t.Errorf("deleted %q", got)
	}
}

// labelled is a server of the lease named lease, created at created.
func labelled(id int64, lease, status string, created time.Time) Server {
	return Server{ID: id, Name: "s", Status: status, Created: created, Labels: map[string]string{LeaseLabel: lease}}
}

// inUse records an event, so the store is no longer new and reconcile
// treats orphans by its policy.
func (d *domain) inUse() { d.m.Record(Event{Kind: "test", Detail: "in use"}) }

// details returns the detail of every event stored, oldest first.
func (d *domain) details() []string {
	events, _ := d.store.Events(0)
	var out []string
	for _, e := range events {
		out = append(out, e.Detail)
	}
	return out
}

func TestReconcileDeletesOrphans(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{OrphanGrace: 10 * time.Minute, OrphanDeletes: 10})
	old := d.clock.Now().Add(-time.Hour)
	young := func() time.Time { return d.clock.Now().Add(-time.Minute) }
	d.running(t, "kept", 1)
	flying := d.running(t, "flying", 0, in(StateCreating)) // an Ensure is creating its server
	d.m.flights[flying.Fingerprint] = &flight{}
	status3 := "running"
	d.cloud.listFn = func(context.Context) ([]Server, error) {
		return []Server{
			labelled(1, "kept", "running", old),
			labelled(2, "flying", "running", old),   // its lease is on its way to recording it
			labelled(3, "gone", status3, old),       // orphan
			labelled(4, "gone", "running", young()), // maybe a create on its way
			labelled(5, "gone", "off", old),         // orphan, deleted by someone else meanwhile
			labelled(6, "gone", "off", old),         // orphan the provider will not delete
		}, nil
	}
	d.cloud.imagesFn = func(context.Context) ([]Image, error) {
		return []Image{{ID: 20, LeaseID: "gone", Created: old}, {ID: 21, LeaseID: "gone", Created: young()},
			{ID: 22, LeaseID: "flying", Created: old}, {ID: 23, LeaseID: "gone", Created: old}}, nil
	}
	d.cloud.powerOffFn = func(_ context.Context, id int64) error {
		if id == 3 {
			status3 = "off"
		}
		return nil
	}
	refused := errors.New("locked")
	d.cloud.deleteFn = func(_ context.Context, id int64) error {
		switch id {
		case 5:
			return ErrServerNotFound
		case 6:
			return refused
		}
		return nil
	}
	d.cloud.deleteImageFn = func(_ context.Context, id int64) error {
		if id == 23 {
			return ErrImageNotFound
		}
		return nil
	}

	// First sighting: the running orphan is powered off, nothing deleted.
	if err := d.r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := d.cloud.changes(); !slices.Equal(got, []string{"PowerOff 3"}) {
		t.Errorf("first reconcile: provider calls %q, want only the running orphan powered off", got)
	}
	if want := []string{"powered off orphan server s (3); deleting it if no lease claims it 10m from now"}; !slices.Equal(d.details(), want) {
		t.Errorf("events %q, want %q", d.details(), want)
	}

	// Less than a grace later: still nothing deleted.
	d.clock.Advance(9 * time.Minute)
	if err := d.r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := d.cloud.made("Delete"); len(got) != 0 {
		t.Errorf("deleted %q less than a grace after the first sighting", got)
	}

	// A grace after the first sighting, still orphaned and off: deleted.
	d.clock.Advance(time.Minute)
	err := d.r.Reconcile(context.Background())
	if !errors.Is(err, refused) || !strings.Contains(err.Error(), "delete orphan server s (6)") {
		t.Errorf("Reconcile: %v, want the refused delete reported", err)
	}
	if got := d.cloud.made("Delete "); !slices.Equal(got, []string{"Delete 3", "Delete 5", "Delete 6"}) {
		t.Errorf("server deletes %q", got)
	}
	if got := d.cloud.made("DeleteImage"); !slices.Equal(got, []string{"DeleteImage 20", "DeleteImage 23"}) {
		t.Errorf("snapshot deletes %q", got)
	}
	if got := d.details()[1:]; !slices.Equal(got, []string{"deleted orphan server s (3)", "deleted orphan snapshot 20"}) {
		t.Errorf("events %q: only deletes that happened ", got)
	}
}

// TestReconcileDeletesAFewOrphansAPass: however many orphans a listing
// shows, one reconcile deletes at most OrphanDeletes of them.
func TestReconcileDeletesAFewOrphansAPass(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{OrphanGrace: 10 * time.Minute, OrphanDeletes: 2})
	d.inUse()
	log, logs := testkit.Logger()
	d.m.log = log
	old := d.clock.Now().Add(-time.Hour)
	var servers []Server
	for id := int64(1); id <= 5; id++ {
		servers = append(servers, labelled(id, "gone", "off", old))
	}
	d.cloud.listFn = func(context.Context) ([]Server, error) { return slices.Clone(servers), nil }
	d.cloud.deleteFn = func(_ context.Context, id int64) error {
		servers = slices.DeleteFunc(servers, func(s Server) bool { return s.ID == id })
		return nil
	}
	var perPass []int
	for range 4 {
		before := len(d.cloud.made("Delete "))
		if err := d.r.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		perPass = append(perPass, len(d.cloud.made("Delete "))-before)
		d.clock.Advance(10 * time.Minute)
	}
	if !slices.Equal(perPass, []int{0, 2, 2, 1}) {
		t.Errorf("deletes per reconcile %v, want none at the first sighting, then at most 2 a pass", perPass)
	}
	if !strings.Contains(logs.String(), "orphans left for a later reconcile") || !strings.Contains(logs.String(), "left=3") {
		t.Errorf("the orphans left over are not logged:\n%s", logs)
	}
}

// TestReconcileForgetsOrphansOnRestart: a new reaper (a restarted gateway)
// has not seen any orphan yet, so it waits a grace period again.
func TestReconcileForgetsOrphansOnRestart(t *testing.T) {
	rc := ReaperConfig{OrphanGrace: 10 * time.Minute}
	d := newDomain(t, Policy{}, rc)
	d.inUse()
	old := d.clock.Now().Add(-time.Hour)
	d.cloud.listFn = func(context.Context) ([]Server, error) { return []Server{labelled(3, "gone", "off", old)}, nil }
	if err := d.r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.clock.Advance(10 * time.Minute)
	d.r = NewReaper(d.m, d.notify, rc)
	if err := d.r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := d.cloud.made("Delete"); len(got) != 0 {
		t.Errorf("a restarted gateway deleted %q at its first reconcile", got)
	}
	d.clock.Advance(10 * time.Minute)
	if err := d.r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := d.cloud.made("Delete"); !slices.Equal(got, []string{"Delete 3"}) {
		t.Errorf("deletes %q, want the orphan deleted a grace after the restart's first sighting", got)
	}
}

// TestReconcileForgetsAnOrphanClaimedAgain: an orphan a lease claims
// between two reconciles starts its wait over if it is orphaned again.
func TestReconcileForgetsAnOrphanClaimedAgain(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{OrphanGrace: 10 * time.Minute})
	d.inUse()
	old := d.clock.Now().Add(-time.Hour)
	claimed := false
	d.cloud.listFn = func(context.Context) ([]Server, error) {
		if claimed {
			return []Server{labelled(3, "a", "off", old)}, nil
		}
		return []Server{labelled(3, "gone", "off", old)}, nil
	}
	reconcile := func() {
		t.Helper()
		if err := d.r.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		d.clock.Advance(10 * time.Minute)
	}
	reconcile() // first sighting
	l := d.running(t, "a", 3, in(StateStopped))
	claimed = true
	reconcile() // claimed
	if err := d.store.Delete(l.Fingerprint); err != nil {
		t.Fatal(err)
	}
	claimed = false
	reconcile() // orphaned again: a first sighting
	if got := d.cloud.made("Delete"); len(got) != 0 {
		t.Errorf("deleted %q at the first sighting after a claim", got)
	}
	reconcile()
	if got := d.cloud.made("Delete"); !slices.Equal(got, []string{"Delete 3"}) {
		t.Errorf("deletes %q", got)
	}
}

func TestReconcileKeepsOrphansWhenTold(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{OrphanGrace: 10 * time.Minute, Orphans: OrphansKeep})
	d.inUse()
	log, logs := testkit.Logger()
	d.m.log = log
	old := d.clock.Now().Add(-time.Hour)
	d.cloud.listFn = func(context.Context) ([]Server, error) { return []Server{labelled(3, "gone", "running", old)}, nil }
	d.cloud.imagesFn = func(context.Context) ([]Image, error) { return []Image{{ID: 20, LeaseID: "gone", Created: old}}, nil }
	for range 3 {
		if err := d.r.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		d.clock.Advance(time.Hour)
	}
	if got := d.cloud.changes(); len(got) != 0 {
		t.Errorf("provider calls %q, want orphans left alone", got)
	}
	if n := strings.Count(logs.String(), "keeping servers and snapshots"); n != 3 {
		t.Errorf("orphans reported in %d of 3 reconciles:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "server s (3), snapshot 20") {
		t.Errorf("the report does not name the orphans:\n%s", logs)
	}
}

// TestReconcileTouchesNothingOnANewStore: a gateway that started on a new
// store without being able to list the cloud must not take the machines it
// finds later for orphans.
func TestReconcileTouchesNothingOnANewStore(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{OrphanGrace: 10 * time.Minute})
	log, logs := testkit.Logger()
	d.m.log = log
	old := d.clock.Now().Add(-time.Hour)
	d.cloud.listFn = func(context.Context) ([]Server, error) { return []Server{labelled(3, "gone", "running", old)}, nil }
	for range 3 {
		if err := d.r.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		d.clock.Advance(time.Hour)
	}
	if got := d.cloud.changes(); len(got) != 0 {
		t.Errorf("provider calls %q on a new store", got)
	}
	if !strings.Contains(logs.String(), "the lease database is new but the cloud holds 1 server and 0 snapshots") {
		t.Errorf("not reported:\n%s", logs)
	}
}

func TestCheckStore(t *testing.T) {
	old := t0.Add(-time.Hour)
	twoServers := func(context.Context) ([]Server, error) {
		return []Server{labelled(3, "x", "running", old), labelled(4, "y", "off", old)}, nil
	}
	oneImage := func(context.Context) ([]Image, error) { return []Image{{ID: 20, LeaseID: "z", Created: old}}, nil }

	t.Run("new store, machines in the cloud: refused", func(t *testing.T) {
		d := newDomain(t, Policy{}, ReaperConfig{})
		d.cloud.listFn, d.cloud.imagesFn = twoServers, oneImage
		err := d.m.CheckStore(context.Background(), OrphansDelete)
		if !errors.Is(err, ErrNewStore) {
			t.Fatalf("CheckStore: %v, want ErrNewStore", err)
		}
		for _, want := range []string{"2 servers and 1 snapshot labelled as this gateway's", "restore the database", "--orphans keep"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q: %v", want, err)
			}
		}
		if got := d.cloud.changes(); len(got) != 0 {
			t.Errorf("provider calls %q", got)
		}
	})
	t.Run("new store, machines kept", func(t *testing.T) {
		d := newDomain(t, Policy{}, ReaperConfig{})
		d.cloud.listFn, d.cloud.imagesFn = twoServers, oneImage
		if err := d.m.CheckStore(context.Background(), OrphansKeep); err != nil {
			t.Fatal(err)
		}
		if want := []string{"new lease database: kept 2 servers and 1 snapshot labelled as this gateway's without leases"}; !slices.Equal(d.details(), want) {
			t.Errorf("events %q, want %q", d.details(), want)
		}
	})
	t.Run("new store, empty cloud", func(t *testing.T) {
		d := newDomain(t, Policy{}, ReaperConfig{})
		if err := d.m.CheckStore(context.Background(), OrphansDelete); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a store in use is not asked about", func(t *testing.T) {
		d := newDomain(t, Policy{}, ReaperConfig{})
		d.m.Record(Event{Kind: "destroy", Detail: "the last lease went"})
		d.cloud.listFn = twoServers
		if err := d.m.CheckStore(context.Background(), OrphansDelete); err != nil {
			t.Fatal(err)
		}
		if got := d.cloud.made("List"); len(got) != 0 {
			t.Errorf("a store in use listed the cloud: %q", got)
		}
	})
	t.Run("the cloud cannot be listed: started, with a warning", func(t *testing.T) {
		d := newDomain(t, Policy{}, ReaperConfig{})
		log, logs := testkit.Logger()
		d.m.log = log
		d.cloud.listFn = func(context.Context) ([]Server, error) { return nil, errors.New("503") }
		if err := d.m.CheckStore(context.Background(), OrphansDelete); err != nil {
			t.Errorf("CheckStore: %v", err)
		}
		if !strings.Contains(logs.String(), "cannot be listed") || !strings.Contains(logs.String(), "503") {
			t.Errorf("no warning:\n%s", logs)
		}
	})
}

func TestReconcileReportsAProviderItCannotList(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	down := errors.New("503")
	d.cloud.listFn = func(context.Context) ([]Server, error) { return nil, down }
	if err := d.r.Reconcile(context.Background()); !errors.Is(err, down) || !strings.HasPrefix(err.Error(), "list servers") {
		t.Errorf("Reconcile: %v", err)
	}
	d.cloud.listFn = nil
	d.cloud.imagesFn = func(context.Context) ([]Image, error) { return nil, down }
	if err := d.r.Reconcile(context.Background()); !errors.Is(err, down) || !strings.HasPrefix(err.Error(), "list snapshots") {
		t.Errorf("Reconcile: %v", err)
	}
}

func TestReconcileReportsALeaseItCannotSettle(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	l := d.running(t, "a", 1, in(StateStopping))
	stuck := errors.New("action failed")
	d.cloud.powerOffFn = func(context.Context, int64) error { return stuck }
	err := d.r.Reconcile(context.Background())
	if !errors.Is(err, stuck) || !strings.Contains(err.Error(), "lease a: stop server cc-a") {
		t.Errorf("Reconcile: %v", err)
	}
	if after, _ := d.stored(t, l.Fingerprint); after.State != StateStopping {
		t.Errorf("state %s, want the intent kept for the next try", after.State)
	}
}

// TestReconcileLeavesALeaseChangedAfterTheListing: a reap that stops a
// machine while reconcile lists the servers must not be undone by the
// listing, which may show the server still running.
func TestReconcileLeavesALeaseChangedAfterTheListing(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	l := d.running(t, "a", 1)
	d.cloud.listFn = func(context.Context) ([]Server, error) {
		stopped := l
		stopped.State = StateStopped // the reap's stop lands after the listing
		d.put(t, stopped)
		return []Server{{ID: 1, Status: "running"}}, nil
	}
	if err := d.r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after, _ := d.stored(t, l.Fingerprint); after.State != StateStopped {
		t.Errorf("state %s, want the stop kept", after.State)
	}
	if ev := d.store.kinds(l.Fingerprint); len(ev) != 0 {
		t.Errorf("events %q", ev)
	}
}

// TestReconcileGuardsMachines: reconcile has the provider put its guard
// back, records each repair, and goes on settling leases when the guard
// cannot be kept, reporting that too.
func TestReconcileGuardsMachines(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{OrphanGrace: 10 * time.Minute})
	ctx := testkit.Context(t, 10*time.Second)
	d.cloud.guardFn = func(context.Context) ([]string, error) {
		return []string{"applied firewall fw to server s (7)"}, nil
	}
	if err := d.r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := d.details(); !slices.Contains(got, "applied firewall fw to server s (7)") {
		t.Errorf("events %q, want the repair recorded", got)
	}

	l := d.running(t, "gone", 3)
	d.cloud.listFn = func(context.Context) ([]Server, error) { return nil, nil }
	broken := errors.New("firewall API down")
	d.cloud.guardFn = func(context.Context) ([]string, error) { return nil, broken }
	if err := d.r.Reconcile(ctx); !errors.Is(err, broken) {
		t.Errorf("reconcile with a broken guard: %v, want it reported", err)
	}
	if got, ok := d.stored(t, l.Fingerprint); ok {
		t.Errorf("lease whose server vanished is still %s after reconcile; the broken guard kept it from being settled", got.State)
	}
}
