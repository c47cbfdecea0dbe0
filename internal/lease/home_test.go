package lease

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

const retention = 720 * time.Hour

// homeDomain is a domain whose people get 10 GB homes, with a pool of
// size (0: none), and a person.
func homeDomain(t *testing.T, size int) (*domain, *poolCloud, ssh.PublicKey) {
	t.Helper()
	d, c := newPoolDomain(t, size, 6*time.Hour)
	d.m.cfg.Policy.DefaultTTL = 4 * time.Hour
	d.m.cfg.Home = HomeConfig{SizeGB: 10, Retention: retention}
	if size > 0 {
		d.r.Tick(context.Background())
	}
	return d, c, testkit.NewKey(t).Signer.PublicKey()
}

// restartWithHomes is d.restart keeping the cloud's volumes and the home
// settings.
func (d *domain) restartWithHomes(t *testing.T, c *poolCloud) *domain {
	t.Helper()
	next := d.restart(t, c)
	next.m.cfg.Home = d.m.cfg.Home
	d.cloud.mu.Lock()
	next.cloud.volumes, next.cloud.nextVolume = d.cloud.volumes, d.cloud.nextVolume
	d.cloud.mu.Unlock()
	next.reconciled()
	return next
}

func (d *domain) home(t *testing.T, fp string) *Home {
	t.Helper()
	h, err := d.m.Home(fp)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// crashed runs fn as the gateway would, until it stops at point.
func (d *domain) crashed(point string, fn func()) {
	d.m.cfg.Fault = func(p string) {
		if p == point {
			runtime.Goexit() // the gateway stops here: nothing after runs
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
	d.m.cfg.Fault = nil
}

func TestDecideHome(t *testing.T) {
	keep := t0.Add(retention)
	for _, tc := range []struct {
		name string
		home Home
		now  time.Time
		want homeAction
	}{
		{"a delete cut short", Home{State: HomeDeleting, KeepUntil: keep}, t0, homeDelete},
		{"a create cut short", Home{State: HomeCreating}, t0, homeFind},
		{"a lease deleted without keeping its home", Home{State: HomeReady}, t0, homeKeep},
		{"kept, long before the first warning", Home{State: HomeReady, KeepUntil: keep}, t0, homeNothing},
		{"7 days before", Home{State: HomeReady, KeepUntil: keep}, keep.Add(-7 * 24 * time.Hour), homeWarn},
		{"warned once, 2 days before", Home{State: HomeReady, KeepUntil: keep, Warned: 1}, keep.Add(-48 * time.Hour), homeNothing},
		{"warned once, 1 day before", Home{State: HomeReady, KeepUntil: keep, Warned: 1}, keep.Add(-24 * time.Hour), homeWarn},
		{"warned twice, an hour before", Home{State: HomeReady, KeepUntil: keep, Warned: 2}, keep.Add(-time.Hour), homeNothing},
		{"retention over", Home{State: HomeReady, KeepUntil: keep, Warned: 2}, keep, homeDelete},
		{"retention over, never warned (the gateway was down)", Home{State: HomeReady, KeepUntil: keep}, keep.Add(time.Hour), homeDelete},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideHome(tc.home, tc.now); got != tc.want {
				t.Errorf("decideHome = %v, want %v", got, tc.want)
			}
		})
	}
}

// A person's first machine is created after their home, in its location,
// with the volume attached at creation and its device in the bootstrap
// document.
func TestColdCreateMakesTheHomeFirst(t *testing.T) {
	d, c, key := homeDomain(t, 0)
	l, progress, err := d.ensure(t, key)
	if err != nil {
		t.Fatal(err)
	}
	changes := d.cloud.changes()
	if len(changes) < 2 || !strings.HasPrefix(changes[0], "CreateVolume cc-home-") || changes[1] != "Create "+l.ServerName {
		t.Fatalf("provider calls %q, want the volume created before the server", changes)
	}
	vols := d.cloud.volumeList()
	h := d.home(t, l.Fingerprint)
	if len(vols) != 1 || h == nil || h.State != HomeReady || h.VolumeID != vols[0].ID || h.Device != vols[0].Device ||
		h.Owner != HomeOwner(l.Fingerprint) || !h.KeepUntil.IsZero() || h.SizeGB != 10 || h.Location != "fsn1" {
		t.Fatalf("home %+v, volumes %+v: want one ready home, in use", h, vols)
	}
	spec := c.specs[0]
	doc, err := bootstrap.Parse([]byte(spec.UserData))
	if err != nil || spec.HomeVolume != h.VolumeID || doc.HomeDevice != h.Device {
		t.Errorf("created with volume %d and home device %q (%v), want volume %d at %s", spec.HomeVolume, doc.HomeDevice, err, h.VolumeID, h.Device)
	}
	if !slices.Contains(progress, "Creating your home volume (10 GB in fsn1)") {
		t.Errorf("progress %q does not tell of the home", progress)
	}
}

// With homes off, nobody gets one and nothing changes.
func TestNoHomesWhenOff(t *testing.T) {
	d, c, key := homeDomain(t, 0)
	d.m.cfg.Home.SizeGB = 0
	l, _, err := d.ensure(t, key)
	if err != nil {
		t.Fatal(err)
	}
	if h := d.home(t, l.Fingerprint); h != nil || len(d.cloud.made("CreateVolume")) != 0 || c.specs[0].HomeVolume != 0 {
		t.Errorf("home %+v, volume calls %q: want none", h, d.cloud.made("CreateVolume"))
	}
}

// Destroy keeps the home for the retention; the next machine gets the
// same volume, and the home is in use again.
func TestDestroyKeepsTheHome(t *testing.T) {
	d, c, key := homeDomain(t, 0)
	l, _, err := d.ensure(t, key)
	if err != nil {
		t.Fatal(err)
	}
	first := *d.home(t, l.Fingerprint)
	if _, err := d.m.Destroy(context.Background(), l.Fingerprint); err != nil {
		t.Fatal(err)
	}
	if h := d.home(t, l.Fingerprint); h == nil || !h.KeepUntil.Equal(d.clock.Now().Add(retention)) || len(d.cloud.volumeList()) != 1 {
		t.Fatalf("after destroy: home %+v, volumes %v; want it kept for %s", h, d.cloud.volumeList(), retention)
	}
	if got := d.cloud.made("DeleteVolume"); len(got) != 0 {
		t.Errorf("destroy deleted volumes: %q", got)
	}

	d.clock.Advance(time.Hour)
	if _, _, err := d.ensure(t, key); err != nil {
		t.Fatal(err)
	}
	h := d.home(t, l.Fingerprint)
	if len(d.cloud.made("CreateVolume")) != 1 || c.specs[1].HomeVolume != first.VolumeID || h.VolumeID != first.VolumeID || !h.KeepUntil.IsZero() {
		t.Errorf("second machine: home %+v, created with volume %d; want volume %d, in use", h, c.specs[1].HomeVolume, first.VolumeID)
	}
}

// destroy --with-home deletes the machine and the home; a kept home alone
// too; with neither it says so.
func TestDestroyWithHome(t *testing.T) {
	d, c, key := homeDomain(t, 0)
	fp := Fingerprint(key)
	if _, _, err := d.ensure(t, key); err != nil {
		t.Fatal(err)
	}
	l, h, err := d.m.DestroyWithHome(context.Background(), fp)
	if err != nil || l.ID == "" || h == nil {
		t.Fatalf("DestroyWithHome = %+v, %+v, %v", l, h, err)
	}
	if got := d.home(t, fp); got != nil || len(d.cloud.volumeList()) != 0 || len(c.serverIDs()) != 0 {
		t.Fatalf("after: home %+v, volumes %v, servers %v; want none", got, d.cloud.volumeList(), c.serverIDs())
	}

	// A kept home, without a machine.
	if _, _, err := d.ensure(t, key); err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.Destroy(context.Background(), fp); err != nil {
		t.Fatal(err)
	}
	l, h, err = d.m.DestroyWithHome(context.Background(), fp)
	if err != nil || l.ID != "" || h == nil || len(d.cloud.volumeList()) != 0 {
		t.Fatalf("DestroyWithHome of a kept home = %+v, %+v, %v; volumes %v", l, h, err, d.cloud.volumeList())
	}
	if _, _, err := d.m.DestroyWithHome(context.Background(), fp); !errors.Is(err, ErrNotFound) {
		t.Errorf("with neither: %v, want ErrNotFound", err)
	}
}

// A crash at each step of a home's creation leaves what the next
// connection finishes: one volume, the person's, attached to their machine
// at creation.
func TestHomeCreateCrashIsFinishedByTheNextConnection(t *testing.T) {
	for _, point := range []string{FaultHomeIntent, FaultHomeCreated} {
		t.Run(point, func(t *testing.T) {
			d, c, key := homeDomain(t, 0)
			fp := Fingerprint(key)
			d.crashed(point, func() { defer d.m.lock(fp)(); d.m.ensure(context.Background(), fp, key, func(string, ...any) {}) })
			if h := d.home(t, fp); h == nil || h.State != HomeCreating {
				t.Fatalf("after the crash: home %+v, want creating", h)
			}

			next := d.restartWithHomes(t, c)
			l, _, err := next.ensure(t, key)
			if err != nil {
				t.Fatal(err)
			}
			vols := next.cloud.volumeList()
			h := next.home(t, fp)
			if len(vols) != 1 || h.State != HomeReady || h.VolumeID != vols[0].ID || c.specs[0].HomeVolume != h.VolumeID || l.State != StateRunning {
				t.Errorf("home %+v, volumes %v, created with %d: want one ready home on the machine", h, vols, c.specs[0].HomeVolume)
			}
		})
	}
}

// The reaper settles a create cut short whose person did not come back:
// a volume made is found by its owner and kept for the retention; no
// volume, and the intent is dropped.
func TestReaperSettlesAnInterruptedHomeCreate(t *testing.T) {
	for point, kept := range map[string]bool{FaultHomeIntent: false, FaultHomeCreated: true} {
		t.Run(point, func(t *testing.T) {
			d, c, key := homeDomain(t, 0)
			fp := Fingerprint(key)
			d.crashed(point, func() { defer d.m.lock(fp)(); d.m.ensure(context.Background(), fp, key, func(string, ...any) {}) })
			next := d.restartWithHomes(t, c)
			next.r.Tick(context.Background())
			h := next.home(t, fp)
			switch {
			case kept && (h == nil || h.State != HomeReady || h.VolumeID != next.cloud.volumeList()[0].ID || !h.KeepUntil.Equal(next.clock.Now().Add(retention))):
				t.Errorf("home %+v, want the made volume's, kept", h)
			case !kept && (h != nil || len(next.cloud.volumeList()) != 0):
				t.Errorf("home %+v, volumes %v: want the intent dropped", h, next.cloud.volumeList())
			}
		})
	}
}

// A crash at each step of a home's deletion is finished by the reaper:
// no volume and no record left.
func TestHomeDeleteCrashIsFinishedByTheReaper(t *testing.T) {
	for _, point := range []string{FaultHomeDeleting, FaultHomeDeleted} {
		t.Run(point, func(t *testing.T) {
			d, c, key := homeDomain(t, 0)
			fp := Fingerprint(key)
			if _, _, err := d.ensure(t, key); err != nil {
				t.Fatal(err)
			}
			d.crashed(point, func() { d.m.DestroyWithHome(context.Background(), fp) })
			next := d.restartWithHomes(t, c)
			next.r.Tick(context.Background())
			if h := next.home(t, fp); h != nil || len(next.cloud.volumeList()) != 0 {
				t.Errorf("home %+v, volumes %v: want both gone", h, next.cloud.volumeList())
			}
		})
	}
}

// A kept home is warned about 7 days and 1 day before its deletion,
// once each, and deleted when its retention ends; a lease deleted without
// keeping its home (a crash between) gets its KeepUntil.
func TestReaperKeepsWarnsAndDeletesHomes(t *testing.T) {
	d, _, key := homeDomain(t, 0)
	fp := Fingerprint(key)
	if _, _, err := d.ensure(t, key); err != nil {
		t.Fatal(err)
	}
	teller := &recTeller{}
	d.m.cfg.Teller = teller
	if err := d.store.Delete(fp); err != nil { // the lease went; the home was not told
		t.Fatal(err)
	}
	d.r.Tick(context.Background())
	h := d.home(t, fp)
	if h == nil || !h.KeepUntil.Equal(d.clock.Now().Add(retention)) {
		t.Fatalf("home %+v, want kept for %s", h, retention)
	}
	keep := h.KeepUntil
	for _, tc := range []struct {
		at    time.Time
		told  int
		exist bool
	}{
		{keep.Add(-8 * 24 * time.Hour), 0, true},
		{keep.Add(-7 * 24 * time.Hour), 1, true},
		{keep.Add(-6 * 24 * time.Hour), 1, true},
		{keep.Add(-24 * time.Hour), 2, true},
		{keep.Add(-time.Minute), 2, true},
		{keep, 2, false},
	} {
		d.clock.Set(tc.at)
		d.r.Tick(context.Background())
		if got := teller.got(); len(got) != tc.told {
			t.Errorf("at %s: told %q, want %d warnings", tc.at, got, tc.told)
		}
		if exists := d.home(t, fp) != nil && len(d.cloud.volumeList()) == 1; exists != tc.exist {
			t.Errorf("at %s: home exists %v, want %v", tc.at, exists, tc.exist)
		}
	}
	if got := teller.got(); len(got) == 2 && !strings.Contains(got[1], "everything in it is deleted at") {
		t.Errorf("warning %q does not say what is deleted when", got[1])
	}
}

// Reconcile drops a ready home whose volume is gone, and reports a
// labelled volume no home names without deleting it.
func TestReconcileHomes(t *testing.T) {
	d, _, key := homeDomain(t, 0)
	fp := Fingerprint(key)
	if _, _, err := d.ensure(t, key); err != nil {
		t.Fatal(err)
	}
	h := d.home(t, fp)
	d.cloud.mu.Lock()
	delete(d.cloud.volumes, h.VolumeID)
	d.cloud.mu.Unlock()
	stray, err := d.cloud.CreateVolume(context.Background(), VolumeSpec{Name: "cc-home-stray", Owner: "stray", SizeGB: 10, Location: "fsn1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := d.home(t, fp); got != nil {
		t.Errorf("home %+v of a gone volume, want dropped", got)
	}
	if vols := d.cloud.volumeList(); len(vols) != 1 || vols[0].ID != stray.ID || len(d.cloud.made("DeleteVolume")) != 0 {
		t.Errorf("volumes %v, deletes %q: want the stray kept", vols, d.cloud.made("DeleteVolume"))
	}
	d.obs.mu.Lock()
	unattributed := d.obs.unattributed
	d.obs.mu.Unlock()
	if unattributed != 1 || !slices.ContainsFunc(d.store.kinds(""), func(k string) bool { return strings.HasPrefix(k, "orphan: volume cc-home-stray") }) {
		t.Errorf("unattributed %d, events %q: want the stray reported", unattributed, d.store.kinds(""))
	}
}

// A new person claims a pool machine, gets their home in its location,
// attached before the machine is personalised with its device.
func TestClaimAttachesANewHome(t *testing.T) {
	d, _, key := homeDomain(t, 1)
	l, _, err := d.ensure(t, key)
	if err != nil {
		t.Fatal(err)
	}
	h := d.home(t, l.Fingerprint)
	if h == nil || h.Location != l.Location || h.State != HomeReady {
		t.Fatalf("home %+v, want a ready one in %s", h, l.Location)
	}
	attach := fmt.Sprintf("AttachVolume %d %d", h.VolumeID, l.ServerID)
	changes := d.cloud.changes()
	if i := slices.Index(changes, attach); i < 0 || !slices.Contains(changes[i:], "Personalise "+l.Address) {
		t.Errorf("calls %q, want %q before the machine is personalised", changes, attach)
	}
	doc, err := bootstrap.Parse([]byte(d.machines.personalised[l.Address]))
	if err != nil || doc.HomeDevice != h.Device {
		t.Errorf("personalised with home device %q (%v), want %s", doc.HomeDevice, err, h.Device)
	}
}

// A person whose home is elsewhere than every pool machine does not claim
// one: their machine is created where the home is.
func TestClaimOnlyInTheHomesLocation(t *testing.T) {
	d, c, key := homeDomain(t, 1)
	fp := Fingerprint(key)
	if err := d.store.PutPerson(Person{Fingerprint: fp, Home: &Home{
		VolumeID: 7, Name: "cc-home-x", Owner: HomeOwner(fp), State: HomeReady, SizeGB: 10, Location: "hel1",
		Device: "/dev/disk/by-id/scsi-0HC_Volume_7", Created: t0,
	}}); err != nil {
		t.Fatal(err)
	}
	pooled := len(c.specs)
	if _, _, err := d.ensure(t, key); err != nil {
		t.Fatal(err)
	}
	if len(d.cloud.made("Personalise")) != 0 || len(c.specs) != pooled+1 || c.specs[pooled].HomeVolume != 7 {
		t.Errorf("personalised %q, creates %+v: want a new machine with volume 7", d.cloud.made("Personalise"), c.specs[pooled:])
	}
}

// A claim cut short after its home was attached is finished by reconcile
// with the same document: the home's device in it.
func TestClaimCrashAfterTheHomeIsAttached(t *testing.T) {
	d, c, key := homeDomain(t, 1)
	fp := d.crashedClaim(key, FaultHomeAttached)
	next := d.restartWithHomes(t, c)
	if err := next.r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, ok := next.stored(t, fp)
	h := next.home(t, fp)
	if !ok || l.State != StateRunning || h == nil || len(next.cloud.volumeList()) != 1 {
		t.Fatalf("lease %+v, home %+v, volumes %v: want the claim finished with one home", l, h, next.cloud.volumeList())
	}
	doc, err := bootstrap.Parse([]byte(next.machines.personalised[l.Address]))
	if err != nil || doc.HomeDevice != h.Device {
		t.Errorf("personalised with home device %q (%v), want %s", doc.HomeDevice, err, h.Device)
	}
}

// A hibernation keeps the home (the volume is no part of the snapshot),
// and the restore creates the server from the snapshot with the home
// attached; a stop and resume need nothing of the home.
func TestHibernateAndResumeKeepTheHome(t *testing.T) {
	d, c, key := homeDomain(t, 0)
	l, _, err := d.ensure(t, key)
	if err != nil {
		t.Fatal(err)
	}
	h := d.home(t, l.Fingerprint)
	d.cloud.snapshotFn = func(_ context.Context, id int64, leaseID string) (Image, error) {
		return Image{ID: 9, LeaseID: leaseID, SizeGB: 2, Created: d.clock.Now()}, nil
	}
	if _, err := d.m.Hibernate(context.Background(), l.Fingerprint); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.ensure(t, key); err != nil {
		t.Fatal(err)
	}
	restore := c.specs[len(c.specs)-1]
	if restore.ImageID != 9 || restore.HomeVolume != h.VolumeID {
		t.Errorf("restored with %+v, want snapshot 9 and volume %d", restore, h.VolumeID)
	}
	if _, err := d.m.Stop(context.Background(), l.Fingerprint); err != nil {
		t.Fatal(err)
	}
	d.cloud.getFn = func(_ context.Context, id int64) (Server, error) { return Server{ID: id, Status: "off"}, nil }
	before := len(d.cloud.made(""))
	if _, _, err := d.ensure(t, key); err != nil {
		t.Fatal(err)
	}
	for _, call := range d.cloud.made("")[before:] {
		if strings.Contains(call, "Volume") {
			t.Errorf("a resume called %s", call)
		}
	}
	if got := d.home(t, l.Fingerprint); got == nil || *got != *h || len(d.cloud.volumeList()) != 1 {
		t.Errorf("home %+v after hibernate and stop, want %+v unchanged", got, h)
	}
}

// A home's cost (its size at the price per GB-month, for as long as it
// exists) is reported apart from the lease's, and counted once: a pass
// adds what it grew by, its deletion the rest.
func TestHomeCost(t *testing.T) {
	d, _, key := homeDomain(t, 0)
	prices := testPrices
	prices.VolumePerGBMonth = 0.05
	d.cloud.pricesFn = func(context.Context, string, string) (Prices, error) { return prices, nil }
	fp := Fingerprint(key)
	if _, _, err := d.ensure(t, key); err != nil {
		t.Fatal(err)
	}
	d.m.refreshPrices(context.Background(), nil)
	d.clock.Advance(hoursPerMonth * time.Hour / 2)
	d.r.Tick(context.Background())
	home := d.home(t, fp)
	if cost, cur := d.m.HomeCost(*home); cur != "EUR" || cost < 0.2499 || cost > 0.2501 {
		t.Errorf("HomeCost after half a month = %v %s, want 0.25 EUR (10 GB at 0.05)", cost, cur)
	}
	d.clock.Advance(hoursPerMonth * time.Hour / 2)
	if _, _, err := d.m.DestroyWithHome(context.Background(), fp); err != nil {
		t.Fatal(err)
	}
	d.r.Tick(context.Background())
	d.obs.mu.Lock()
	homes, leases := d.obs.homeCost, d.obs.cost
	d.obs.mu.Unlock()
	if homes < 0.4999 || homes > 0.5001 {
		t.Errorf("homes' cost reported %v, want 0.5 once", homes)
	}
	if leases > 5.01 {
		t.Errorf("the leases' cost %v has the home's in it", leases)
	}
}

// A home made for this machine, still empty, moves to the next location
// when its own has no room, as a server without a home would; a home in
// use never moves: the person is told there is no room where it is.
func TestNewHomeMovesWhenItsLocationIsFull(t *testing.T) {
	d, c, key := homeDomain(t, 0)
	d.m.cfg.Machine.Locations = []string{"fsn1", "hel1"}
	create := d.cloud.createFn
	full := "fsn1"
	d.cloud.createFn = func(ctx context.Context, spec CreateSpec) (Server, error) {
		for _, v := range d.cloud.volumeList() {
			if v.ID == spec.HomeVolume && v.Location == full {
				return Server{}, fmt.Errorf("create server: Hetzner has no room for cx23 in %s: %w", full, ErrNoRoom)
			}
		}
		return create(ctx, spec)
	}
	l, progress, err := d.ensure(t, key)
	if err != nil {
		t.Fatal(err)
	}
	h := d.home(t, l.Fingerprint)
	vols := d.cloud.volumeList()
	if h == nil || h.Location != "hel1" || len(vols) != 1 || vols[0].Location != "hel1" ||
		c.specs[len(c.specs)-1].HomeVolume != h.VolumeID || len(d.cloud.made("DeleteVolume")) != 1 {
		t.Fatalf("home %+v, volumes %v: want the new home moved to hel1, the machine created with it", h, vols)
	}
	if !slices.Contains(progress, "Hetzner has no room in fsn1; trying hel1, where your new home volume goes too") {
		t.Errorf("progress %q does not tell of the move", progress)
	}

	// Now in use: a full hel1 leaves it there.
	if _, err := d.m.Destroy(context.Background(), l.Fingerprint); err != nil {
		t.Fatal(err)
	}
	full = "hel1"
	if _, _, err := d.ensure(t, key); !errors.Is(err, ErrNoRoom) {
		t.Errorf("a home in use in a full location: %v, want the provider's no room", err)
	}
	if got := d.home(t, l.Fingerprint); got == nil || got.VolumeID != h.VolumeID || len(d.cloud.volumeList()) != 1 {
		t.Errorf("home %+v, want volume %d kept where it is", got, h.VolumeID)
	}
}
