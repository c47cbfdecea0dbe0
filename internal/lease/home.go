package lease

// A person's home outlives their machines: it lives on a volume (on
// Hetzner, a Volume: block storage billed per GB-month, bound to one
// location, attached to one server at a time) that the machine's NixOS
// formats once and mounts as the instance user's home.
//
//   - Config.Home.SizeGB (--home-volume, default 10 GB, Hetzner's
//     minimum; 0 makes no new homes) sizes a new home; Config.Home.Retention
//     (--home-retention, default 30 days) is how long a home is kept once
//     its person has no machine. The person is told 7 days and 1 day
//     before it is deleted, through the Teller, and `status` shows when.
//   - The record is Person.Home, in the people bucket. Intent before every
//     provider call, as everywhere: the home is written creating before
//     CreateVolume and deleting before DeleteVolume. KeepUntil is zero
//     while the person has a lease in any state.
//   - Cold create and restore: a person's machines live in their home's
//     location. A person without a home gets one first, in the lease's
//     first location, and the server is created with the volume attached
//     (CreateSpec.HomeVolume); its bootstrap document carries
//     home_device. A resume needs nothing new (the volume stays
//     attached); a hibernation's snapshot leaves the volume out, and the
//     restore attaches it at creation.
//   - Claim: a person with a home claims only a pool machine in the home's
//     location; one without gets their home in the claimed machine's
//     location. After the claim write: the home (created if new), attached
//     hot, then the machine personalised with a document carrying
//     home_device, computed only from stored values so a retry sends the
//     same one.
//   - Destroy and expiry delete the machine and keep the home until now +
//     retention; DestroyWithHome deletes both, also when only a kept home
//     is left.
//   - The reaper (homePass): a home without a lease gets its KeepUntil if
//     it has none (a crash between the lease's deletion and the home's
//     write), warnings when due, deletion at KeepUntil. Reconcile: a home
//     creating without a volume finds its volume by owner label
//     (CreateVolume is idempotent per owner) or drops the intent; deleting
//     is deleted again; a ready home whose volume is gone is dropped,
//     logged and audited; a labelled volume that no person's home names is
//     reported (log, audit event, metric), never deleted.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

// HomeConfig says whether and how people get homes.
type HomeConfig struct {
	// SizeGB sizes a new home; 0 makes none (homes made before are still
	// attached and kept until their retention ends).
	SizeGB int
	// Retention is how long a home is kept once its person has no machine.
	Retention time.Duration
}

// HomeWarnings are how long before a kept home's deletion its person is
// told, latest last.
var HomeWarnings = []time.Duration{7 * 24 * time.Hour, 24 * time.Hour}

// HomeState is where a home is in its life.
type HomeState string

// The states of a home; creating and deleting are written before the
// provider call they name.
const (
	HomeCreating HomeState = "creating"
	HomeReady    HomeState = "ready"
	HomeDeleting HomeState = "deleting"
)

// HomeStates lists every HomeState.
var HomeStates = []HomeState{HomeCreating, HomeReady, HomeDeleting}

// Home is a person's home volume.
type Home struct {
	VolumeID int64     `json:"volume_id,omitempty"` // 0 until created
	Name     string    `json:"name"`
	Owner    string    `json:"owner"` // the volume's owner label: HomeOwner of the fingerprint
	State    HomeState `json:"state"`
	SizeGB   int       `json:"size_gb"`
	Location string    `json:"location"`
	Device   string    `json:"device,omitempty"` // where the machine finds it
	Created  time.Time `json:"created"`
	// KeepUntil is when a home whose person has no machine is deleted;
	// zero while they have one.
	KeepUntil time.Time `json:"keep_until,omitzero"`
	// Warned counts the HomeWarnings sent for this KeepUntil.
	Warned int `json:"warned,omitempty"`
}

// Volume is a volume of the gateway's, as the provider reports it.
type Volume struct {
	ID       int64
	Name     string
	Owner    string // whose home: its owner label
	SizeGB   int
	Location string
	Server   int64 // attached to; 0 for none
	// Device is where the volume shows on its server, stable across
	// attaches.
	Device  string
	Created time.Time
}

// VolumeSpec says what CreateVolume makes.
type VolumeSpec struct {
	Name     string // unique in the project
	Owner    string // whose home: a label value
	SizeGB   int
	Location string
}

// ErrVolumeNotFound is returned by a Provider for a volume that is gone.
var ErrVolumeNotFound = errors.New("volume not found")

// HomeOwner is the owner label of the home of the person of fingerprint:
// stable, and a valid label value (a fingerprint has ':', '+' and '/').
func HomeOwner(fingerprint string) string {
	sum := sha256.Sum256([]byte(fingerprint))
	return hex.EncodeToString(sum[:16])
}

// The fault points of homes: a crash at each leaves a home record that
// the next connection or the reaper finishes.
const (
	FaultHomeIntent   = "home.intent"   // home creating; volume not asked for
	FaultHomeCreated  = "home.created"  // volume exists; record does not know it
	FaultHomeAttached = "home.attached" // claim: volume attached; machine not told
	FaultHomeDeleting = "home.deleting" // home deleting; volume not deleted
	FaultHomeDeleted  = "home.deleted"  // volume deleted; record still there
)

// HomeFaultPoints lists the fault points of homes.
var HomeFaultPoints = []string{FaultHomeIntent, FaultHomeCreated, FaultHomeAttached, FaultHomeDeleting, FaultHomeDeleted}

// Home returns the person's home; nil when they have none.
func (m *Manager) Home(fp string) (*Home, error) {
	p, err := m.Person(fp)
	if err != nil {
		return nil, err
	}
	return p.Home, nil
}

// Homes returns the people who have a home, by fingerprint.
func (m *Manager) Homes() ([]Person, error) {
	people, err := m.cfg.Store.People()
	if err != nil {
		return nil, fmt.Errorf("list people: %w", err)
	}
	var out []Person
	for _, p := range people {
		if p.Home != nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// homeEvent is an audit event about fp's home.
func (m *Manager) homeEvent(ctx context.Context, fp, format string, args ...any) Event {
	detail := fmt.Sprintf(format, args...)
	m.logFor(ctx).Info("home", "fingerprint", fp, "detail", detail)
	return Event{Time: m.cfg.Clock.Now(), Kind: "home", Fingerprint: fp, Conn: ConnOf(ctx), Detail: detail}
}

// putHome writes fp's home (nil: none) with e, keeping the rest of the
// person's record.
func (m *Manager) putHome(fp string, h *Home, e Event) error {
	_, _, err := m.changePerson(fp, func(p *Person) error {
		p.Home = h
		return nil
	}, e)
	return err
}

// ensureHome returns the home fp's next machine gets, in location when
// it must be made: nil when homes are off and fp has none. It finishes
// an interrupted create or delete first, and clears KeepUntil: the person
// has a machine again. It runs under fp's lease lock.
func (m *Manager) ensureHome(ctx context.Context, fp, location string, report func(string, ...any)) (*Home, error) {
	h, _, err := m.ensureHomeMade(ctx, fp, location, report)
	return h, err
}

// ensureHomeMade is ensureHome, also reporting whether the home was made
// by this call: empty, and no machine's yet.
func (m *Manager) ensureHomeMade(ctx context.Context, fp, location string, report func(string, ...any)) (_ *Home, made bool, _ error) {
	p, err := m.Person(fp)
	if err != nil {
		return nil, false, err
	}
	h := p.Home
	if h != nil && h.State == HomeDeleting {
		if err := m.deleteHome(ctx, fp, *h); err != nil {
			return nil, false, err
		}
		h = nil
	}
	if h == nil {
		if m.cfg.Home.SizeGB <= 0 {
			return nil, false, nil
		}
		owner := HomeOwner(fp)
		h = &Home{
			Name: "cc-home-" + owner, Owner: owner, State: HomeCreating,
			SizeGB: m.cfg.Home.SizeGB, Location: location, Created: m.cfg.Clock.Now(),
		}
		if err := m.putHome(fp, h, m.homeEvent(ctx, fp, "creating home %s (%d GB in %s)", h.Name, h.SizeGB, h.Location)); err != nil {
			return nil, false, err
		}
		m.fault(FaultHomeIntent)
		made = true
	}
	if h.State == HomeCreating {
		report("Creating your home volume (%d GB in %s)", h.SizeGB, h.Location)
		v, err := m.cfg.Provider.CreateVolume(ctx, VolumeSpec{Name: h.Name, Owner: h.Owner, SizeGB: h.SizeGB, Location: h.Location})
		if err != nil {
			return nil, false, fmt.Errorf("create home volume %s: %w", h.Name, err)
		}
		m.fault(FaultHomeCreated)
		ready := readyHome(*h, v)
		if err := m.putHome(fp, &ready, m.homeEvent(ctx, fp, "home %s is volume %d (%d GB in %s)", ready.Name, v.ID, v.SizeGB, v.Location)); err != nil {
			return nil, false, err
		}
		return &ready, made, nil
	}
	if !h.KeepUntil.IsZero() {
		kept := *h
		kept.KeepUntil, kept.Warned = time.Time{}, 0
		if err := m.putHome(fp, &kept, m.homeEvent(ctx, fp, "home %s is in use again", h.Name)); err != nil {
			return nil, false, err
		}
		return &kept, false, nil
	}
	return h, false, nil
}

// readyHome is h made ready as volume v: what the provider made is what
// counts (an earlier attempt's volume may differ from h's plan).
func readyHome(h Home, v Volume) Home {
	h.State, h.VolumeID, h.Device = HomeReady, v.ID, v.Device
	h.SizeGB, h.Location = v.SizeGB, v.Location
	return h
}

// nextLocation is the location after location in the order new machines
// take; false when it is the last (or not among them).
func (m *Manager) nextLocation(location string) (string, bool) {
	locs := m.cfg.Machine.Locations
	i := slices.Index(locs, location)
	if i < 0 || i+1 >= len(locs) {
		return "", false
	}
	return locs[i+1], true
}

// keepHome starts the retention of fp's home, whose machine is gone. A
// failure is logged: the reaper sets it on its next pass.
func (m *Manager) keepHome(ctx context.Context, fp string) {
	_, _, err := m.changePerson(fp, func(p *Person) error {
		if p.Home == nil || p.Home.State != HomeReady || !p.Home.KeepUntil.IsZero() {
			return errUnchanged
		}
		h := *p.Home
		h.KeepUntil, h.Warned = m.cfg.Clock.Now().Add(m.cfg.Home.Retention), 0
		p.Home = &h
		return nil
	}, m.homeEvent(ctx, fp, "home kept for %s", FormatDuration(m.cfg.Home.Retention)))
	if err != nil {
		m.logFor(ctx).Error("keep home", "fingerprint", fp, "err", err)
	}
}

// deleteHome deletes fp's home h and its volume: intent, detach (a
// deleted server has let it go already, but a crash may have left it on
// one), delete, record gone.
func (m *Manager) deleteHome(ctx context.Context, fp string, h Home) error {
	if h.State != HomeDeleting {
		h.State = HomeDeleting
		if err := m.putHome(fp, &h, m.homeEvent(ctx, fp, "deleting home %s (volume %d)", h.Name, h.VolumeID)); err != nil {
			return err
		}
	}
	m.fault(FaultHomeDeleting)
	if h.VolumeID != 0 {
		if err := m.cfg.Provider.DetachVolume(ctx, h.VolumeID); err != nil && !errors.Is(err, ErrVolumeNotFound) {
			return fmt.Errorf("detach home volume %s: %w", h.Name, err)
		}
		if err := m.cfg.Provider.DeleteVolume(ctx, h.VolumeID); err != nil && !errors.Is(err, ErrVolumeNotFound) {
			return fmt.Errorf("delete home volume %s: %w", h.Name, err)
		}
	}
	m.fault(FaultHomeDeleted)
	m.accrueHome(h)
	m.forgetAccrued(homeCostKey(h))
	return m.putHome(fp, nil, m.homeEvent(ctx, fp, "home %s deleted", h.Name))
}

// HomeLoss says what DestroyWithHome loses of h, for the person to read
// before they confirm.
func HomeLoss(h Home) string {
	return fmt.Sprintf("your home volume %s (%d GB in %s) and everything in your home folder", h.Name, h.SizeGB, h.Location)
}

// DestroyWithHome deletes the person's machine, if any, and their home.
// It returns the lease that was (zero when none) and the home that was
// (nil when none); ErrNotFound when there was neither.
func (m *Manager) DestroyWithHome(ctx context.Context, fp string) (Lease, *Home, error) {
	defer m.lock(fp)()
	l, err := m.cfg.Store.Get(fp)
	switch {
	case errors.Is(err, ErrNotFound):
		l = Lease{}
	case err != nil:
		return Lease{}, nil, err
	default:
		if err := m.destroy(ctx, l, "on request, with the home"); err != nil {
			return l, nil, err
		}
	}
	p, err := m.Person(fp)
	if err != nil {
		return l, nil, err
	}
	if p.Home == nil {
		if l.ID == "" {
			return l, nil, ErrNotFound
		}
		return l, nil, nil
	}
	return l, p.Home, m.deleteHome(ctx, fp, *p.Home)
}

// homeAction is what the reaper does about a home whose person has no
// lease.
type homeAction int

const (
	homeNothing homeAction = iota
	homeKeep               // set KeepUntil: the lease went without it
	homeWarn               // send the next warning
	homeDelete             // retention over, or a delete to finish
	homeFind               // a create cut short: find its volume or drop it
)

// decideHome is what the reaper does at now about h, whose person has no
// lease.
func decideHome(h Home, now time.Time) homeAction {
	switch {
	case h.State == HomeDeleting:
		return homeDelete
	case h.State == HomeCreating:
		return homeFind
	case h.KeepUntil.IsZero():
		return homeKeep
	case !now.Before(h.KeepUntil):
		return homeDelete
	case h.Warned < len(HomeWarnings) && !now.Before(h.KeepUntil.Add(-HomeWarnings[h.Warned])):
		return homeWarn
	}
	return homeNothing
}

// reapHome deals with fp's home when fp has no lease (decideHome). It
// takes fp's lease lock, so no Ensure runs meanwhile.
func (m *Manager) reapHome(ctx context.Context, fp string) error {
	defer m.lock(fp)()
	if _, err := m.cfg.Store.Get(fp); !errors.Is(err, ErrNotFound) {
		return err // a lease (its home is in use) or a failed read
	}
	p, err := m.Person(fp)
	if err != nil || p.Home == nil {
		return err
	}
	h := *p.Home
	now := m.cfg.Clock.Now()
	switch decideHome(h, now) {
	case homeKeep:
		m.keepHome(ctx, fp)
	case homeWarn:
		for h.Warned < len(HomeWarnings) && !now.Before(h.KeepUntil.Add(-HomeWarnings[h.Warned])) {
			h.Warned++
		}
		if err := m.putHome(fp, &h, m.homeEvent(ctx, fp, "warned: home %s is deleted at %s", h.Name, h.KeepUntil.UTC().Format(time.RFC3339))); err != nil {
			return err
		}
		m.cfg.Teller.Tell(fp, "warning", fmt.Sprintf("your home volume %s and everything in it is deleted at %s, in %s; connect to keep it",
			h.Name, h.KeepUntil.UTC().Format("2006-01-02 15:04 MST"), FormatDuration(h.KeepUntil.Sub(now).Round(time.Minute))))
	case homeDelete:
		return m.deleteHome(ctx, fp, h)
	case homeFind:
		vs, err := m.cfg.Provider.Volumes(ctx, h.Owner)
		if err != nil {
			return fmt.Errorf("look for home volume %s: %w", h.Name, err)
		}
		if len(vs) == 0 {
			return m.putHome(fp, nil, m.homeEvent(ctx, fp, "home %s was never created; intent dropped", h.Name))
		}
		ready := readyHome(h, vs[0])
		ready.KeepUntil = now.Add(m.cfg.Home.Retention)
		return m.putHome(fp, &ready, m.homeEvent(ctx, fp, "home %s found as volume %d; kept for %s", h.Name, vs[0].ID, FormatDuration(m.cfg.Home.Retention)))
	}
	return nil
}
