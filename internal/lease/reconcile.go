package lease

import (
	"context"
	"errors"
	"fmt"
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
// Leases with an Ensure in flight are left alone.
func (r *Reaper) Reconcile(ctx context.Context) error {
	m := r.m
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OperationTimeout)
	defer cancel()
	servers, err := m.cfg.Provider.List(ctx)
	if err != nil {
		return fmt.Errorf("list servers: %w", err)
	}
	images, err := m.cfg.Provider.Images(ctx)
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	leases, err := m.cfg.Store.List()
	if err != nil {
		return err
	}

	var errs []error
	for _, l := range leases {
		if m.busy(l.Fingerprint) {
			continue
		}
		if err := r.settle(ctx, l.Fingerprint, servers, images); err != nil {
			errs = append(errs, fmt.Errorf("lease %s: %w", l.ID, err))
		}
	}

	// Read the leases again: settling may have adopted or closed some.
	if leases, err = m.cfg.Store.List(); err != nil {
		return err
	}
	claimedServers, claimedImages, byID := map[int64]bool{}, map[int64]bool{}, map[string]Lease{}
	for _, l := range leases {
		claimedServers[l.ServerID] = true
		claimedImages[l.ImageID] = true
		byID[l.ID] = l
	}
	// A lease being created or hibernated has not recorded its new server or
	// snapshot yet: that one is not an orphan.
	inProgress := func(leaseID string) bool {
		l, ok := byID[leaseID]
		return ok && (m.busy(l.Fingerprint) || l.State == StateCreating || l.State == StateHibernating)
	}
	now := m.cfg.Clock.Now()
	for _, s := range servers {
		if claimedServers[s.ID] || inProgress(s.Labels[LeaseLabel]) {
			continue
		}
		if age := now.Sub(s.Created); age < r.cfg.OrphanGrace {
			m.log.Info("reconcile: unclaimed server within its grace period", "server", s.Name, "age", FormatDuration(age))
			continue
		}
		if err := m.cfg.Provider.Delete(ctx, s.ID); err != nil && !errors.Is(err, ErrServerNotFound) {
			errs = append(errs, fmt.Errorf("delete orphan server %s: %w", s.Name, err))
			continue
		}
		m.Record(Event{Kind: "reconcile", LeaseID: s.Labels[LeaseLabel], Detail: fmt.Sprintf("deleted orphan server %s (%d)", s.Name, s.ID)})
	}
	for _, img := range images {
		if claimedImages[img.ID] || inProgress(img.LeaseID) {
			continue
		}
		if now.Sub(img.Created) < r.cfg.OrphanGrace {
			continue
		}
		if err := m.cfg.Provider.DeleteImage(ctx, img.ID); err != nil && !errors.Is(err, ErrImageNotFound) {
			errs = append(errs, fmt.Errorf("delete orphan snapshot %d: %w", img.ID, err))
			continue
		}
		m.Record(Event{Kind: "reconcile", LeaseID: img.LeaseID, Detail: fmt.Sprintf("deleted orphan snapshot %d", img.ID)})
	}
	return errors.Join(errs...)
}

// settle drives one lease to a state that matches the provider.
func (r *Reaper) settle(ctx context.Context, fp string, servers []Server, images []Image) error {
	m := r.m
	defer m.lock(fp)()
	l, err := m.cfg.Store.Get(fp)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var srv *Server
	for i := range servers {
		s := &servers[i]
		if (l.ServerID != 0 && s.ID == l.ServerID) || (l.ServerID == 0 && s.Labels[LeaseLabel] == l.ID) {
			srv = s
			break
		}
	}
	imageKept := false
	for _, img := range images {
		imageKept = imageKept || (l.ImageID != 0 && img.ID == l.ImageID)
	}
	found := func(format string, args ...any) {
		m.event(l, "reconcile", format, args...)
	}

	switch l.State {
	case StateDestroying:
		found("finishing an interrupted destroy")
		return m.destroy(ctx, l, "interrupted destroy finished")
	case StateHibernating:
		found("finishing an interrupted hibernation")
		_, err := m.hibernate(ctx, l)
		return err
	case StateStopping:
		found("finishing an interrupted stop")
		if srv == nil {
			break
		}
		_, err := m.stop(ctx, l, "interrupted stop finished")
		return err
	case StateHibernated:
		if !imageKept {
			found("snapshot %d vanished; closing the lease", l.ImageID)
			l.ImageID = 0
			return m.destroy(ctx, l, "snapshot vanished")
		}
		return nil
	case StateCreating:
		if srv == nil {
			if l.ImageID != 0 && imageKept {
				found("no server was made; back to hibernated")
				l.State = StateHibernated
				return m.put(l)
			}
			found("no server was made; closing the lease")
			return m.destroy(ctx, l, "creation never reached the provider")
		}
		found("adopting server %d", srv.ID)
		l = m.adopt(l, *srv)
	}

	if srv == nil {
		found("server %d vanished; closing the lease", l.ServerID)
		l.ServerID = 0
		return m.destroy(ctx, l, "server vanished")
	}
	// The lease's state follows the server's power.
	want := StateStopped
	switch srv.Status {
	case "running":
		want = StateRunning
	case "off":
	default:
		want = StateStarting // booting or in between: Ensure finishes it
	}
	if l.State == want {
		return nil
	}
	found("state %s but the server is %s; now %s", l.State, srv.Status, want)
	l.State = want
	if want == StateRunning {
		l.LastActivity = m.cfg.Clock.Now()
	}
	return m.put(l)
}
