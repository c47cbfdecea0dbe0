package lease

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// LeaseLabel is the provider label that names a server's or snapshot's
// lease; providers set it, reconcile reads it.
const LeaseLabel = "cc-gateway-lease"

// Reconcile brings leases and the provider's labelled servers and
// snapshots into agreement:
//   - a server or snapshot no lease claims is an orphan, deleted once older
//     than the grace period (it may belong to a create still on its way);
//   - a lease whose server or snapshot vanished is closed;
//   - a lease left in a transitional state by a crash is driven on to a
//     consistent one.
//
// Leases with an Ensure in flight are left alone. Each lease is settled
// under its lock, one after the other, and each lease or orphan gets its
// own deadline of LeaseTimeout, so one stuck on the provider does not use
// up the time of the rest.
func (r *Reaper) Reconcile(ctx context.Context) error {
	m := r.m
	// Leases first, then the provider: a lease that changes after this
	// read may have changed the provider after its listing too, and
	// settle leaves it alone.
	leases, err := m.cfg.Store.List()
	if err != nil {
		return err
	}
	servers, images, err := r.inventory(ctx)
	if err != nil {
		return err
	}

	var errs []error
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

	// Read the leases again: settling may have adopted servers. A lease
	// settling closed still claims what it had: that went with it, and the
	// listing is older than its going.
	settled, err := m.cfg.Store.List()
	if err != nil {
		return err
	}
	return errors.Join(append(errs, r.deleteOrphans(ctx, append(leases, settled...), servers, images)...)...)
}

// inventory lists the provider's labelled servers and snapshots.
func (r *Reaper) inventory(ctx context.Context) ([]Server, []Image, error) {
	ctx, cancel := context.WithTimeout(ctx, r.m.cfg.OperationTimeout)
	defer cancel()
	servers, err := r.m.cfg.Provider.List(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list servers: %w", err)
	}
	images, err := r.m.cfg.Provider.Images(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list snapshots: %w", err)
	}
	return servers, images, nil
}

// orphanVerdict is what reconcile does with a labelled server or snapshot.
type orphanVerdict int

const (
	orphanKeep   orphanVerdict = iota // a lease claims it, or may soon
	orphanWait                        // unclaimed, but within its grace period
	orphanDelete                      // unclaimed and older than the grace period
)

// decideOrphan judges a server or snapshot: claimed by a lease, or by one
// being created or hibernated that has not recorded it yet (inProgress),
// and how old it is.
func decideOrphan(claimed, inProgress bool, age, grace time.Duration) orphanVerdict {
	switch {
	case claimed || inProgress:
		return orphanKeep
	case age < grace:
		return orphanWait
	}
	return orphanDelete
}

// deleteOrphans deletes the servers and snapshots none of leases claims.
func (r *Reaper) deleteOrphans(ctx context.Context, leases []Lease, servers []Server, images []Image) []error {
	m := r.m
	claimedServers, claimedImages, byID := map[int64]bool{}, map[int64]bool{}, map[string]Lease{}
	for _, l := range leases {
		claimedServers[l.ServerID] = true
		claimedImages[l.ImageID] = true
		byID[l.ID] = l
	}
	inProgress := func(leaseID string) bool {
		l, ok := byID[leaseID]
		return ok && (m.busy(l.Fingerprint) || l.State == StateCreating || l.State == StateHibernating)
	}
	now := m.cfg.Clock.Now()
	var errs []error
	for _, s := range servers {
		leaseID := s.Labels[LeaseLabel]
		switch decideOrphan(claimedServers[s.ID], inProgress(leaseID), now.Sub(s.Created), r.cfg.OrphanGrace) {
		case orphanKeep:
			continue
		case orphanWait:
			m.log.Info("reconcile: unclaimed server within its grace period", "server", s.Name, "age", FormatDuration(now.Sub(s.Created)))
			continue
		}
		delCtx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTimeout)
		err := m.cfg.Provider.Delete(delCtx, s.ID)
		cancel()
		switch {
		case errors.Is(err, ErrServerNotFound):
			continue // gone already, perhaps with its lease since the listing
		case err != nil:
			errs = append(errs, fmt.Errorf("delete orphan server %s: %w", s.Name, err))
			continue
		}
		m.Record(Event{Kind: "reconcile", LeaseID: leaseID, Detail: fmt.Sprintf("deleted orphan server %s (%d)", s.Name, s.ID)})
	}
	for _, img := range images {
		if decideOrphan(claimedImages[img.ID], inProgress(img.LeaseID), now.Sub(img.Created), r.cfg.OrphanGrace) != orphanDelete {
			continue
		}
		delCtx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTimeout)
		err := m.cfg.Provider.DeleteImage(delCtx, img.ID)
		cancel()
		switch {
		case errors.Is(err, ErrImageNotFound):
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("delete orphan snapshot %d: %w", img.ID, err))
			continue
		}
		m.Record(Event{Kind: "reconcile", LeaseID: img.LeaseID, Detail: fmt.Sprintf("deleted orphan snapshot %d", img.ID)})
	}
	return errs
}

// settleAction is how reconcile drives a lease on.
type settleAction int

const (
	settleNothing   settleAction = iota
	settleDestroy                // destroy the lease, for why
	settleHibernate              // finish an interrupted hibernation
	settleStop                   // finish an interrupted stop
	settleState                  // record state: the provider's truth
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
// the provider has none for it) and whether its snapshot still exists.
func decideSettle(l Lease, srv *Server, imageKept bool) settleDecision {
	var d settleDecision
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
	d := decideSettle(l, srv, imageKept(l, images))
	notes := make([]Event, len(d.found))
	for i, f := range d.found {
		notes[i] = m.note(l, "reconcile", "%s", f)
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
	case settleState:
		l.State = d.state
		if d.state == StateRunning {
			l.LastActivity = m.cfg.Clock.Now()
		}
		return m.put(l, notes...)
	}
	return nil
}
