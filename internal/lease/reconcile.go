package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// LeaseLabel is the provider label that names a server's or snapshot's
// lease; providers set it, reconcile reads it.
const LeaseLabel = "cc-gateway-lease"

// Reconcile brings leases and the provider's labelled servers and
// snapshots into agreement:
//   - a server or snapshot no lease claims is an orphan once older than the
//     grace period (it may belong to a create still on its way): it is
//     powered off, then deleted when still an orphan a grace period later,
//     at most OrphanDeletes in one reconcile (decideOrphan);
//   - a lease whose server or snapshot vanished is closed;
//   - a lease left in a transitional state by a crash is driven on to a
//     consistent one;
//   - what keeps the machines reachable only through the gateway (the
//     provider's firewall) is put back if someone changed it (guard).
//
// Leases with an Ensure in flight are left alone. Each lease is settled
// under its lock, one after the other, and each lease or orphan gets its
// own deadline of LeaseTimeout, so one stuck on the provider does not use
// up the time of the rest.
func (r *Reaper) Reconcile(ctx context.Context) error {
	m := r.m
	// First, and whatever else fails: a machine open to the world is the
	// most urgent thing reconcile can find.
	guardErr := r.guard(ctx)
	// Leases first, then the provider: a lease that changes after this
	// read may have changed the provider after its listing too, and
	// settle leaves it alone.
	leases, err := m.cfg.Store.List()
	if err != nil {
		return errors.Join(guardErr, err)
	}
	pool, err := m.poolMachines()
	if err != nil {
		return errors.Join(guardErr, err)
	}
	servers, images, err := m.inventory(ctx)
	if err != nil {
		return errors.Join(guardErr, err)
	}

	errs := []error{guardErr, r.dropVanishedPoolMachines(ctx, pool, servers)}
	for _, l := range leases {
		if m.busy(l.Fingerprint) {
			continue
		}
		leaseCtx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTimeout)
		err := r.settle(leaseCtx, l, servers, images)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("lease %s: %w", l.ID, err))
		}
	}

	errs = append(errs, r.drainAbandonedClaims(ctx, pool), r.reconcileHomes(ctx))

	// Read the leases again: settling may have adopted servers. A lease
	// settling closed still claims what it had: that went with it, and the
	// listing is older than its going.
	settled, err := m.cfg.Store.List()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	// A store that never recorded anything takes every machine for an
	// orphan: CheckStore refused to start on one, unless it could not list
	// the cloud. Until the store is in use, orphans are only reported.
	policy := r.cfg.Orphans
	fresh, err := m.storeIsNew(settled)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if fresh && len(servers)+len(images) > 0 {
		m.log.Error("reconcile: the lease database is new but the cloud holds " + labelledCount(len(servers), len(images)) +
			"; none is touched: restore the database, or restart with --orphans keep")
		policy = OrphansKeep
	}
	return errors.Join(append(errs, r.deleteOrphans(ctx, policy, append(leases, settled...), pool, servers, images)...)...)
}

// dropVanishedPoolMachines removes the records of ready pool machines
// whose servers the listing does not hold (someone deleted them in the
// console), so no claim takes a machine that is gone. The listing was
// taken after the records were read, so a ready record's server was made
// before it.
func (r *Reaper) dropVanishedPoolMachines(ctx context.Context, pool []PoolMachine, servers []Server) error {
	exists := map[int64]bool{}
	for _, s := range servers {
		exists[s.ID] = true
	}
	var errs []error
	for _, p := range pool {
		if p.State != PoolReady || exists[p.ServerID] {
			continue
		}
		r.m.log.Warn("reconcile: a ready pool machine's server is gone; dropping it from the pool", "pool", p.ID, "server", p.ServerName)
		ctx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTimeout)
		err := r.m.drainPoolMachine(ctx, p)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("pool machine %s: %w", p.ID, err))
		}
	}
	return errors.Join(errs...)
}

// claimAbandoned reports whether the claiming pool record p is no one's:
// its claimant has no lease (found false), or one that names another
// machine (the claim's lease was closed, and a new one made since).
func claimAbandoned(p PoolMachine, claimant Lease, found bool) bool {
	return p.State == PoolClaiming && (!found || claimant.ID != p.ID)
}

// drainAbandonedClaims drains the claiming pool records no lease names,
// as claimAbandoned says: a claimed machine never returns to the pool.
// Each is judged under its claimant's lease lock, which every claim holds
// from its claim write to its end, so a claim on its way is never taken
// for an abandoned one.
func (r *Reaper) drainAbandonedClaims(ctx context.Context, pool []PoolMachine) error {
	m := r.m
	var errs []error
	for _, p := range pool {
		if p.State != PoolClaiming || m.busy(p.Claimant) {
			continue
		}
		err := func() error {
			defer m.lock(p.Claimant)()
			l, err := m.cfg.Store.Get(p.Claimant)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if !claimAbandoned(p, l, err == nil) {
				return nil
			}
			m.log.Warn("reconcile: a claimed pool machine no lease names; draining it", "pool", p.ID, "server", p.ServerName)
			ctx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTimeout)
			defer cancel()
			return m.drainPoolMachine(ctx, p)
		}()
		if err != nil {
			errs = append(errs, fmt.Errorf("pool machine %s: %w", p.ID, err))
		}
	}
	return errors.Join(errs...)
}

// poolMachines returns the warm pool's records; none without a pool store.
func (m *Manager) poolMachines() ([]PoolMachine, error) {
	if m.cfg.Pool == nil {
		return nil, nil
	}
	return m.cfg.Pool.PoolMachines()
}

// guard has the provider put back what keeps the machines reachable only
// through the gateway, within OperationTimeout, and records each repair.
func (r *Reaper) guard(ctx context.Context) error {
	m := r.m
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OperationTimeout)
	defer cancel()
	fixed, err := m.cfg.Provider.GuardMachines(ctx)
	for _, f := range fixed {
		m.log.Warn("reconcile: " + f)
		m.Record(Event{Kind: "reconcile", Detail: f})
	}
	if err != nil {
		return fmt.Errorf("guard machines: %w", err)
	}
	return nil
}

// inventory lists the provider's labelled servers and snapshots.
func (m *Manager) inventory(ctx context.Context) ([]Server, []Image, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OperationTimeout)
	defer cancel()
	servers, err := m.cfg.Provider.List(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list servers: %w", err)
	}
	images, err := m.cfg.Provider.Images(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list snapshots: %w", err)
	}
	return servers, images, nil
}

// ErrNewStore means the lease database has never recorded anything while
// the cloud holds servers or snapshots labelled as this gateway's: it is
// empty, lost, or the wrong one, and reconcile would take every machine for
// an orphan.
var ErrNewStore = errors.New("the lease database is new")

// CheckStore runs before the gateway serves. A store that has never
// recorded a lease or an event is new; if the provider then holds servers
// or snapshots labelled as this gateway's, CheckStore refuses with an error
// wrapping ErrNewStore that says how many and what to do, unless orphans
// are kept: then it records that they are, and reconcile leaves them be.
// A provider it cannot list does not keep the gateway from starting (the
// cloud may be down for a while): reconcile makes the same check at each
// pass and touches no orphan while the store is new.
func (m *Manager) CheckStore(ctx context.Context, orphans Orphans) error {
	leases, err := m.cfg.Store.List()
	if err != nil {
		return err
	}
	fresh, err := m.storeIsNew(leases)
	if err != nil || !fresh {
		return err
	}
	servers, images, err := m.inventory(ctx)
	if err != nil {
		m.log.Warn("the lease database is new and the cloud cannot be listed to see whether it holds this gateway's machines; reconcile touches no orphan while the database stays new", "err", err)
		return nil
	}
	if len(servers) == 0 && len(images) == 0 {
		return nil
	}
	found := labelledCount(len(servers), len(images))
	if orphans == OrphansKeep {
		m.log.Warn("the lease database is new; keeping what the cloud holds without leases, as orphans are kept", "found", found)
		m.Record(Event{Kind: "reconcile", Detail: "new lease database: kept " + found + " without leases"})
		return nil
	}
	return fmt.Errorf("%w, but the cloud holds %s, which reconcile would delete: restore the database from a backup (or point --data-dir at the right folder; or, if another gateway shares the project, give this one its own --gateway-name), or start with --orphans keep to keep them without leases and delete them by hand",
		ErrNewStore, found)
}

// storeIsNew reports whether the store, holding leases, has never recorded
// a lease or an event: empty, lost, or the wrong one.
func (m *Manager) storeIsNew(leases []Lease) (bool, error) {
	if len(leases) > 0 {
		return false, nil
	}
	events, err := m.cfg.Store.Events(1)
	if err != nil {
		return false, err
	}
	return len(events) == 0, nil
}

// labelledCount is "2 servers and 1 snapshot labelled as this gateway's".
func labelledCount(servers, images int) string {
	return fmt.Sprintf("%s and %s labelled as this gateway's", count(servers, "server"), count(images, "snapshot"))
}

// count is "1 server", "2 servers".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Orphans is what reconcile does with servers and snapshots labelled as
// this gateway's that no lease claims.
type Orphans string

// The orphan policies.
const (
	// OrphansDelete powers an orphan off, then deletes it once it is still
	// unclaimed a grace period later.
	OrphansDelete Orphans = "delete"
	// OrphansKeep never touches an orphan and reports it at every
	// reconcile. It is the way past a new lease database while the cloud
	// holds machines: they cannot be adopted into leases, as the pinned
	// host key of each lived only in the lost database.
	OrphansKeep Orphans = "keep"
)

// orphanFacts is what reconcile knows of a labelled server or snapshot.
type orphanFacts struct {
	claimed bool // a lease claims it
	// inProgress: its lease is being created or hibernated and has not
	// recorded it yet.
	inProgress bool
	age        time.Duration // since the provider made it
	seen       bool          // this gateway saw it orphaned at an earlier reconcile
	seenFor    time.Duration // since it first did
	running    bool          // a server not yet off; never a snapshot
}

// orphanVerdict is what reconcile does with a labelled server or snapshot.
type orphanVerdict int

const (
	orphanKeep     orphanVerdict = iota // a lease claims it, or may soon
	orphanWait                          // unclaimed, but within its grace period
	orphanSpare                         // orphaned, and orphans are kept: report it
	orphanPowerOff                      // orphaned and still on: power it off first
	orphanWatch                         // orphaned and off: delete it if still so a grace from its first sighting
	orphanDelete                        // orphaned at two reconciles a grace apart, and off
)

// decideOrphan judges a server or snapshot. An unclaimed one older than
// the grace period (it may belong to a create still on its way) is an
// orphan; an orphan is deleted only once it is off and was seen orphaned a
// grace period before, so one bad listing, or a lease database that lost
// its leases, costs running machines a power-off, not their disks.
func decideOrphan(f orphanFacts, grace time.Duration, policy Orphans) orphanVerdict {
	switch {
	case f.claimed || f.inProgress:
		return orphanKeep
	case f.age < grace:
		return orphanWait
	case policy == OrphansKeep:
		return orphanSpare
	case f.running:
		return orphanPowerOff
	case !f.seen || f.seenFor < grace:
		return orphanWatch
	}
	return orphanDelete
}

// orphanKey names a server or snapshot in Reaper.orphans.
type orphanKey struct {
	snapshot bool
	id       int64
}

// orphanPass is one reconcile's work on orphans: what it knew of them from
// earlier reconciles, what it learns, and its budget of deletes.
type orphanPass struct {
	r        *Reaper
	policy   Orphans
	now      time.Time
	before   map[orphanKey]time.Time // first sightings known at the start
	after    map[orphanKey]time.Time // first sightings of the orphans still there
	deletes  int                     // left in this pass
	deferred int                     // orphans due for deletion beyond the budget
	spared   []string                // kept by policy, for the report
	errs     []error
}

// judge decides on the orphan key, given the rest of its facts, and
// carries its first sighting on when it is still an orphan.
func (p *orphanPass) judge(key orphanKey, f orphanFacts) orphanVerdict {
	first, seen := p.before[key]
	f.seen, f.seenFor = seen, p.now.Sub(first)
	v := decideOrphan(f, p.r.cfg.OrphanGrace, p.policy)
	switch v {
	case orphanPowerOff, orphanWatch, orphanDelete:
		if !seen {
			first = p.now
		}
		p.after[key] = first
	}
	if v == orphanDelete {
		if p.deletes == 0 {
			p.deferred++
			return orphanWatch
		}
		p.deletes--
	}
	return v
}

// deleteOrphans powers off and deletes the servers and snapshots none of
// leases claims, as decideOrphan says under policy.
func (r *Reaper) deleteOrphans(ctx context.Context, policy Orphans, leases []Lease, pool []PoolMachine, servers []Server, images []Image) []error {
	m := r.m
	claimedServers, claimedImages, byID := map[int64]bool{}, map[int64]bool{}, map[string]Lease{}
	for _, l := range leases {
		claimedServers[l.ServerID] = true
		claimedImages[l.ImageID] = true
		byID[l.ID] = l
	}
	// A pool record claims its server as a lease does; one still being
	// created may not know its server yet, which is labelled with its id.
	poolCreating := map[string]bool{}
	for _, p := range pool {
		claimedServers[p.ServerID] = true
		poolCreating[p.ID] = p.State == PoolCreating
	}
	inProgress := func(leaseID string) bool {
		if poolCreating[leaseID] {
			return true
		}
		l, ok := byID[leaseID]
		return ok && (m.busy(l.Fingerprint) || l.State == StateCreating || l.State == StateHibernating)
	}
	r.mu.Lock()
	p := &orphanPass{r: r, policy: policy, now: m.cfg.Clock.Now(), before: r.orphans, after: map[orphanKey]time.Time{}, deletes: r.cfg.OrphanDeletes}
	r.mu.Unlock()
	for _, s := range servers {
		leaseID := s.Labels[LeaseLabel]
		age := p.now.Sub(s.Created)
		v := p.judge(orphanKey{id: s.ID}, orphanFacts{claimed: claimedServers[s.ID], inProgress: inProgress(leaseID),
			age: age, running: s.Status != "off"})
		switch v {
		case orphanWait:
			m.log.Info("reconcile: unclaimed server within its grace period", "server", s.Name, "age", FormatDuration(age))
		case orphanSpare:
			p.spared = append(p.spared, fmt.Sprintf("server %s (%d)", s.Name, s.ID))
		case orphanPowerOff:
			p.act(ctx, orphanKey{id: s.ID}, leaseID, fmt.Sprintf("orphan server %s (%d)", s.Name, s.ID), false)
		case orphanDelete:
			p.act(ctx, orphanKey{id: s.ID}, leaseID, fmt.Sprintf("orphan server %s (%d)", s.Name, s.ID), true)
		}
	}
	for _, img := range images {
		key := orphanKey{snapshot: true, id: img.ID}
		switch p.judge(key, orphanFacts{claimed: claimedImages[img.ID], inProgress: inProgress(img.LeaseID), age: p.now.Sub(img.Created)}) {
		case orphanSpare:
			p.spared = append(p.spared, fmt.Sprintf("snapshot %d", img.ID))
		case orphanDelete:
			p.act(ctx, key, img.LeaseID, fmt.Sprintf("orphan snapshot %d", img.ID), true)
		}
	}
	if p.deferred > 0 {
		m.log.Warn("reconcile: orphans left for a later reconcile: this one deleted as many as it may",
			"max", r.cfg.OrphanDeletes, "left", p.deferred)
	}
	if len(p.spared) > 0 {
		m.log.Warn("reconcile: keeping servers and snapshots labelled as this gateway's that no lease claims; delete them by hand once they are not needed",
			"count", len(p.spared), "orphans", strings.Join(p.spared, ", "))
	}
	r.mu.Lock()
	r.orphans = p.after
	r.mu.Unlock()
	return p.errs
}

// act powers off, or with remove deletes, the orphan what under its own
// deadline, and records it as done. One already gone is forgotten.
func (p *orphanPass) act(ctx context.Context, key orphanKey, leaseID, what string, remove bool) {
	m := p.r.m
	do, verb, done := m.cfg.Provider.PowerOff, "power off", "powered off"
	if remove {
		do, verb, done = m.cfg.Provider.Delete, "delete", "deleted"
		if key.snapshot {
			do = m.cfg.Provider.DeleteImage
		}
	}
	ctx, cancel := context.WithTimeout(ctx, p.r.cfg.LeaseTimeout)
	err := do(ctx, key.id)
	cancel()
	switch {
	case errors.Is(err, ErrServerNotFound), errors.Is(err, ErrImageNotFound):
		delete(p.after, key) // gone already, perhaps with its lease since the listing
		return
	case err != nil:
		p.errs = append(p.errs, fmt.Errorf("%s %s: %w", verb, what, err))
		return
	}
	detail := done + " " + what
	if remove {
		delete(p.after, key)
		m.cfg.Observer.ReaperAction(ReaperOrphanDelete)
	} else {
		m.cfg.Observer.ReaperAction(ReaperOrphanPowerOff)
		detail += fmt.Sprintf("; deleting it if no lease claims it %s from now", FormatDuration(p.r.cfg.OrphanGrace))
	}
	m.log.Warn("reconcile: "+detail, "lease", leaseID)
	m.Record(Event{Kind: "reconcile", LeaseID: leaseID, Detail: detail})
}

// settleAction is how reconcile drives a lease on.
type settleAction int

const (
	settleNothing   settleAction = iota
	settleDestroy                // destroy the lease, for why
	settleHibernate              // finish an interrupted hibernation
	settleStop                   // finish an interrupted stop
	settleState                  // record state: the provider's truth
	settleClaim                  // finish the claim of a pool machine
)

type settleDecision struct {
	action settleAction
	found  []string // what reconcile found, an audit event each
	why    string   // settleDestroy's reason
	state  State    // settleState's state
	adopt  bool     // record the server as the lease's first: a create cut short
	// The server or snapshot vanished: the lease forgets it before the
	// destroy, which would look for it otherwise.
	forgetServer, forgetImage bool
}

// decideSettle says how reconcile drives l on, given its server (nil when
// the provider has none for it), whether its snapshot still exists, and
// whether its pool record is claiming (a claim cut short).
func decideSettle(l Lease, srv *Server, imageKept, claiming bool) settleDecision {
	var d settleDecision
	switch {
	case l.State == StateCreating && claiming && srv != nil:
		return settleDecision{action: settleClaim, found: []string{"finishing the claim of a warm pool machine"}}
	case l.State == StateCreating && claiming:
		// Closed as any lease whose server vanished; its record, then
		// no lease's, is drained.
		return settleDecision{action: settleDestroy, why: "the claimed pool machine's server vanished", forgetServer: true,
			found: []string{fmt.Sprintf("the claimed pool machine's server %d vanished; closing the lease", l.ServerID)}}
	}
	switch l.State {
	case StateDestroying:
		return settleDecision{action: settleDestroy, why: "interrupted destroy finished",
			found: []string{"finishing an interrupted destroy"}}
	case StateHibernating:
		return settleDecision{action: settleHibernate, found: []string{"finishing an interrupted hibernation"}}
	case StateStopping:
		d.found = []string{"finishing an interrupted stop"}
		if srv != nil {
			d.action = settleStop
			return d
		}
	case StateHibernated:
		if imageKept {
			return d
		}
		return settleDecision{action: settleDestroy, why: "snapshot vanished", forgetImage: true,
			found: []string{fmt.Sprintf("snapshot %d vanished; closing the lease", l.ImageID)}}
	case StateCreating:
		switch {
		case srv == nil && l.ImageID != 0 && imageKept:
			return settleDecision{action: settleState, state: StateHibernated,
				found: []string{"no server was made; back to hibernated"}}
		case srv == nil:
			return settleDecision{action: settleDestroy, why: "creation never reached the provider",
				found: []string{"no server was made; closing the lease"}}
		}
		d.adopt = true
		d.found = []string{fmt.Sprintf("adopting server %d", srv.ID)}
	}

	if srv == nil {
		d.found = append(d.found, fmt.Sprintf("server %d vanished; closing the lease", l.ServerID))
		d.action, d.why, d.forgetServer = settleDestroy, "server vanished", true
		return d
	}
	want := powerState(srv.Status)
	if l.State == want {
		return d
	}
	d.found = append(d.found, fmt.Sprintf("state %s but the server is %s; now %s", l.State, srv.Status, want))
	d.action, d.state = settleState, want
	return d
}

// powerState is the lease state a server's status calls for.
func powerState(status string) State {
	switch status {
	case "running":
		return StateRunning
	case "off":
		return StateStopped
	}
	return StateStarting // booting or in between: Ensure finishes it
}

// serverOf finds l's server: by id once recorded, by its label before.
func serverOf(l Lease, servers []Server) *Server {
	for i := range servers {
		s := &servers[i]
		if (l.ServerID != 0 && s.ID == l.ServerID) || (l.ServerID == 0 && s.Labels[LeaseLabel] == l.ID) {
			return s
		}
	}
	return nil
}

// imageKept reports whether l's snapshot is among images.
func imageKept(l Lease, images []Image) bool {
	for _, img := range images {
		if l.ImageID != 0 && img.ID == l.ImageID {
			return true
		}
	}
	return false
}

// settle drives one lease, as it was seen before the provider's listing,
// to a state that matches the provider. A lease changed since (by a reap
// or an Ensure) is left for the next reconcile: the listing may predate
// the change.
func (r *Reaper) settle(ctx context.Context, seen Lease, servers []Server, images []Image) error {
	m := r.m
	defer m.lock(seen.Fingerprint)()
	l, err := m.cfg.Store.Get(seen.Fingerprint)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.State != seen.State || l.ServerID != seen.ServerID || l.ImageID != seen.ImageID {
		return nil
	}
	srv := serverOf(l, servers)
	claiming, err := m.claimPending(l)
	if err != nil {
		return err
	}
	d := decideSettle(l, srv, imageKept(l, images), claiming)
	notes := make([]Event, len(d.found))
	for i, f := range d.found {
		notes[i] = m.note(ctx, l, "reconcile", "%s", f)
	}
	if d.action != settleState {
		// What reconcile found is on record before it acts on it; the
		// action writes its own change and event.
		for _, e := range notes {
			m.Record(e)
		}
	}
	if d.adopt {
		l = m.adopt(l, *srv)
	}
	if d.forgetServer {
		l.ServerID = 0
	}
	if d.forgetImage {
		l.ImageID = 0
	}
	switch d.action {
	case settleDestroy:
		return m.destroy(ctx, l, d.why)
	case settleHibernate:
		_, err := m.hibernate(ctx, l)
		return err
	case settleStop:
		_, err := m.stop(ctx, l, "interrupted stop finished")
		return err
	case settleClaim:
		_, err := m.finishClaim(ctx, l)
		return err
	case settleState:
		l.State = d.state
		if d.state == StateRunning {
			l.LastActivity = m.cfg.Clock.Now()
		}
		return m.put(l, notes...)
	}
	return nil
}

// reconcileHomes drops the record of a ready home whose volume is gone,
// and reports each labelled volume no home names: never deleted, for it
// may hold someone's work. The volumes are listed before the people are
// read, so a home made meanwhile has its record (creating, with its
// owner) by then.
func (r *Reaper) reconcileHomes(ctx context.Context) error {
	m := r.m
	volumes, err := m.cfg.Provider.Volumes(ctx, "")
	if err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	people, err := m.cfg.Store.People()
	if err != nil {
		return err
	}
	owners := map[string]bool{}
	var errs []error
	for _, p := range people {
		if p.Home == nil {
			continue
		}
		owners[p.Home.Owner] = true
		listed := slices.ContainsFunc(volumes, func(v Volume) bool { return v.ID == p.Home.VolumeID })
		if p.Home.State != HomeReady || listed || m.busy(p.Fingerprint) {
			continue
		}
		if err := m.dropVanishedHome(ctx, p.Fingerprint); err != nil {
			errs = append(errs, fmt.Errorf("home of %s: %w", p.Fingerprint, err))
		}
	}
	unattributed := 0
	for _, v := range volumes {
		if owners[v.Owner] {
			continue
		}
		unattributed++
		m.log.Warn("reconcile: a labelled volume is no person's home; it is kept, delete it by hand if it is not needed",
			"volume", v.Name, "id", v.ID, "owner", v.Owner, "size_gb", v.SizeGB, "location", v.Location)
		m.Record(Event{Time: m.cfg.Clock.Now(), Kind: "orphan", Detail: fmt.Sprintf("volume %s (%d, %d GB in %s) is no person's home; kept", v.Name, v.ID, v.SizeGB, v.Location)})
	}
	m.cfg.Observer.UnattributedVolumes(unattributed)
	return errors.Join(errs...)
}

// dropVanishedHome drops fp's ready home if its volume is gone, asking
// the provider again under fp's lock: the listing may predate the volume.
func (m *Manager) dropVanishedHome(ctx context.Context, fp string) error {
	defer m.lock(fp)()
	p, err := m.Person(fp)
	if err != nil || p.Home == nil || p.Home.State != HomeReady {
		return err
	}
	vs, err := m.cfg.Provider.Volumes(ctx, p.Home.Owner)
	if err != nil {
		return fmt.Errorf("look for home volume %s: %w", p.Home.Name, err)
	}
	if slices.ContainsFunc(vs, func(v Volume) bool { return v.ID == p.Home.VolumeID }) {
		return nil
	}
	m.log.Error("reconcile: a home's volume is gone; its record is dropped", "fingerprint", fp, "volume", p.Home.Name, "id", p.Home.VolumeID)
	return m.putHome(fp, nil, m.homeEvent(ctx, fp, "volume %d of home %s is gone; record dropped", p.Home.VolumeID, p.Home.Name))
}
