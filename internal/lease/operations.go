package lease

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Every operation records its intent in the store before each provider call
// and its outcome after, so that a crash between any two steps leaves a
// lease that reconcile can finish. The fault points name those gaps; tests
// crash the gateway at each of them.
const (
	FaultCreateIntent      = "create.intent"      // lease says creating; nothing asked yet
	FaultCreateRequested   = "create.requested"   // server exists; lease does not know its id
	FaultCreateRecorded    = "create.recorded"    // lease has the server; not yet ready
	FaultResumeIntent      = "resume.intent"      // lease says starting; power on not asked
	FaultResumePoweredOn   = "resume.poweredon"   // server on; lease still says starting
	FaultStopIntent        = "stop.intent"        // lease says stopping; power off not asked
	FaultStopPoweredOff    = "stop.poweredoff"    // server off; lease still says stopping
	FaultHibernateIntent   = "hibernate.intent"   // lease says hibernating
	FaultHibernateSnapshot = "hibernate.snapshot" // snapshot taken; lease does not know it
	FaultHibernateRecorded = "hibernate.recorded" // lease has the snapshot; server not deleted
	FaultHibernateDeleted  = "hibernate.deleted"  // server deleted; lease still says hibernating
	FaultDestroyIntent     = "destroy.intent"     // lease says destroying
	FaultDestroyDeleted    = "destroy.deleted"    // server deleted; lease still there
)

// FaultPoints lists every fault point, for tests that visit them all.
var FaultPoints = []string{
	FaultCreateIntent, FaultCreateRequested, FaultCreateRecorded,
	FaultResumeIntent, FaultResumePoweredOn,
	FaultStopIntent, FaultStopPoweredOff,
	FaultHibernateIntent, FaultHibernateSnapshot, FaultHibernateRecorded, FaultHibernateDeleted,
	FaultDestroyIntent, FaultDestroyDeleted,
}

func (m *Manager) fault(point string) {
	if m.cfg.Fault != nil {
		m.cfg.Fault(point)
	}
}

// ExpiredError refuses to start a machine whose lease has run out; the
// reaper deletes it soon, and extend can still save it.
type ExpiredError struct {
	Name    string
	Expired time.Time
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("your machine %s expired at %s and is about to be deleted; extend it to keep it",
		e.Name, e.Expired.UTC().Format(time.RFC3339))
}

// CreatingError refuses to stop a machine whose server is not there yet;
// it is a sentence for the person who asked.
type CreatingError struct{ Name string }

func (e *CreatingError) Error() string {
	return fmt.Sprintf("machine %s is still being created; try again in a minute", e.Name)
}

func (m *Manager) ensure(ctx context.Context, fp string, key ssh.PublicKey, report func(string, ...any)) (Lease, error) {
	l, err := m.cfg.Store.Get(fp)
	switch {
	case errors.Is(err, ErrNotFound):
		return m.create(ctx, Lease{}, fp, key, report)
	case err != nil:
		return Lease{}, fmt.Errorf("read lease: %w", err)
	}
	if now := m.cfg.Clock.Now(); !l.Expires.After(now) {
		return l, &ExpiredError{Name: l.ServerName, Expired: l.Expires}
	}

	switch l.State {
	case StateDestroying:
		// A destroy was interrupted: finish it, then start afresh.
		if err := m.destroy(ctx, l, "interrupted destroy finished"); err != nil {
			return Lease{}, err
		}
		return m.create(ctx, Lease{}, fp, key, report)
	case StateHibernating:
		report("Finishing the hibernation of %s", l.ServerName)
		if l, err = m.hibernate(ctx, l); err != nil {
			return l, err
		}
		return m.create(ctx, l, fp, key, report)
	case StateHibernated, StateCreating:
		return m.create(ctx, l, fp, key, report)
	case StateRunning:
		if m.answersAtOnce(l) {
			// A live connection proves the machine runs: the cloud need
			// not be asked, which keeps `ssh gateway true` fast.
			return l, nil
		}
	}

	srv, err := m.cfg.Provider.Get(ctx, l.ServerID)
	switch {
	case errors.Is(err, ErrServerNotFound):
		// The server vanished behind our back; the person gets a fresh one.
		vanished := m.note(ctx, l, "vanished", "server %d is gone; creating a new one", l.ServerID)
		l = m.closeServer(l)
		return m.create(ctx, l, fp, key, report, vanished)
	case err != nil:
		return l, fmt.Errorf("look up server %s: %w", l.ServerName, err)
	case srv.Status == "running" && l.State == StateRunning:
		return m.checkRunning(ctx, l, report)
	}
	return m.resume(ctx, l, report)
}

// answersAtOnce reports whether l's machine is known to answer SSH now,
// without waiting: Machines.Wait with an ended context makes no new
// connection.
func (m *Manager) answersAtOnce(l Lease) bool {
	now, cancel := context.WithCancel(context.Background())
	cancel()
	return m.cfg.Machines.Wait(now, l.Address, l.HostKey) == nil
}

// checkRunning makes sure a machine the cloud reports running answers SSH.
// One that does not (its sshd died, it hangs) is restarted: the person
// could not reach it otherwise, and would have to `stop` it themselves.
func (m *Manager) checkRunning(ctx context.Context, l Lease, report func(string, ...any)) (Lease, error) {
	probe, cancel := context.WithTimeout(ctx, m.cfg.SSHProbeTimeout)
	err := m.cfg.Machines.Wait(probe, l.Address, l.HostKey)
	cancel()
	switch {
	case err == nil:
		return l, nil
	case errors.Is(err, ErrHostKeyMismatch):
		// Something else answers at the machine's address: never trusted,
		// and no restart would make it the machine.
		return l, fmt.Errorf("machine %s: %w", l.ServerName, err)
	case ctx.Err() != nil:
		return l, ctx.Err()
	}
	report("Your machine %s does not answer on SSH; restarting it", l.ServerName)
	if l, err = m.stop(ctx, l, fmt.Sprintf("ssh did not answer within %s", m.cfg.SSHProbeTimeout)); err != nil {
		return l, err
	}
	return m.resume(ctx, l, report)
}

// create makes the person's server: a new lease when l is empty, a fresh
// server for an existing lease otherwise (restored from its snapshot when
// hibernated). A new lease takes a ready warm pool machine when there is
// one (claim.go), and finishes such a claim a crash cut short. The lease
// id names the server, so a retry after a crash finds the server it
// already asked for. events, if any, say why and are written with the
// intent.
func (m *Manager) create(ctx context.Context, l Lease, fp string, key ssh.PublicKey, report func(string, ...any), events ...Event) (_ Lease, err error) {
	pending, err := m.claimPending(l)
	if err != nil {
		return l, err
	}
	if pending {
		report("Finishing the preparation of %s, taken from the warm pool", l.ServerName)
		return m.finishClaim(ctx, l)
	}
	if l.ID == "" {
		claimed, ok, err := m.claimPoolMachine(ctx, fp, key, report, events...)
		if ok || err != nil {
			return claimed, err
		}
		m.coldPathNote(report)
		if l, err = m.newLease(fp, key); err != nil {
			return l, err
		}
	}
	restoring := l.ImageID != 0
	op := OpCreate
	if restoring {
		op = OpResume
	}
	defer m.timed(op)(&err)
	// The home first: the machine goes where it is.
	home, made, err := m.ensureHomeMade(ctx, fp, l.Location, report)
	if err != nil {
		return l, err
	}
	if home != nil {
		l.Location = home.Location
	}
	l.State = StateCreating
	if err := m.put(l, events...); err != nil {
		return l, err
	}
	m.fault(FaultCreateIntent)

	if restoring {
		report("Restoring your machine %s from its snapshot (%s in %s)", l.ServerName, l.ServerType, l.Location)
	} else {
		report("Creating your machine %s (%s in %s)", l.ServerName, l.ServerType, l.Location)
	}
	srv, err := m.createServer(ctx, l, home, report)
	// A home made just now is empty and no machine's yet: when its
	// location has no room, it moves to the next, as a server without a
	// home would. Each move advances through the locations.
	for made && errors.Is(err, ErrNoRoom) {
		next, ok := m.nextLocation(home.Location)
		if !ok {
			break
		}
		report("Hetzner has no room in %s; trying %s, where your new home volume goes too", home.Location, next)
		if err := m.deleteHome(ctx, fp, *home); err != nil {
			return l, err
		}
		if home, err = m.ensureHome(ctx, fp, next, report); err != nil {
			return l, err
		}
		l.Location = home.Location
		srv, err = m.createServer(ctx, l, home, report)
	}
	if err != nil {
		return l, fmt.Errorf("create server %s: %w", l.ServerName, err)
	}
	m.fault(FaultCreateRequested)
	l = m.adopt(l, srv)
	var created Event
	if restoring {
		created = m.note(ctx, l, "resume", "restored server %d from snapshot %d", srv.ID, l.ImageID)
	} else {
		created = m.note(ctx, l, "create", "server %d at %s", srv.ID, l.Address)
	}
	if err := m.put(l, created); err != nil {
		return l, err
	}
	m.fault(FaultCreateRecorded)
	if l, err = m.waitReady(ctx, l, report); err != nil {
		return l, err
	}
	if restoring {
		m.tellIfAway(ctx, l, "resumed")
		// The snapshot costs money for as long as it exists.
		return m.dropImage(ctx, l)
	}
	m.tellIfAway(ctx, l, "created")
	return l, nil
}

// createServer asks the provider for l's server, with home (nil: none)
// attached at creation and named in its bootstrap document.
func (m *Manager) createServer(ctx context.Context, l Lease, home *Home, report func(string, ...any)) (Server, error) {
	spec := CreateSpec{Name: l.ServerName, LeaseID: l.ID, PublicKey: l.PublicKey, ImageID: l.ImageID, Progress: report}
	if home != nil {
		spec.HomeVolume = home.VolumeID
	}
	userData, err := m.cfg.Machine.userData(l, false, home)
	if err != nil {
		return Server{}, err
	}
	spec.UserData = userData
	return m.cfg.Provider.Create(ctx, spec)
}

// adopt records srv as l's server, and where it is: the provider may
// have placed it elsewhere than the lease's first choice.
func (m *Manager) adopt(l Lease, srv Server) Lease {
	l.ServerID = srv.ID
	if srv.ServerType != "" {
		l.ServerType = srv.ServerType
	}
	if srv.Location != "" {
		l.Location = srv.Location
	}
	l.Address = net.JoinHostPort(srv.IPv4, strconv.Itoa(m.cfg.Machine.SSHPort))
	l.ServerCreated = srv.Created
	if l.ServerCreated.IsZero() {
		l.ServerCreated = m.cfg.Clock.Now()
	}
	return l
}

// first is the first of names, or "" when there are none.
func first(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

func (m *Manager) newLease(fp string, key ssh.PublicKey) (Lease, error) {
	id, hostPEM, hostPub, err := newIdentity()
	if err != nil {
		return Lease{}, err
	}
	now := m.cfg.Clock.Now()
	return Lease{
		Fingerprint:  fp,
		PublicKey:    strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))),
		ID:           id,
		State:        StateCreating,
		ServerName:   "cc-" + id,
		HostKey:      hostPub,
		HostKeyPEM:   hostPEM,
		ServerType:   first(m.cfg.Machine.ServerTypes),
		Location:     first(m.cfg.Machine.Locations),
		Created:      now,
		Expires:      now.Add(m.cfg.Policy.DefaultTTL),
		LastActivity: now,
	}, nil
}

func (m *Manager) resume(ctx context.Context, l Lease, report func(string, ...any)) (_ Lease, err error) {
	defer m.timed(OpStart)(&err)
	l.State = StateStarting
	if err := m.put(l); err != nil {
		return l, err
	}
	m.fault(FaultResumeIntent)
	report("Starting your machine %s", l.ServerName)
	if err := m.cfg.Provider.PowerOn(ctx, l.ServerID); err != nil {
		return l, fmt.Errorf("start server %s: %w", l.ServerName, err)
	}
	m.fault(FaultResumePoweredOn)
	m.event(ctx, l, "resume", "server %d powered on", l.ServerID)
	l, err = m.waitReady(ctx, l, report)
	if err != nil {
		return l, err
	}
	// The machine booted with the expiry of its bootstrap document, which
	// an extend may since have moved. (A created machine's document is
	// rendered with the current expiry.)
	m.pushExpiry(ctx, l)
	m.tellIfAway(ctx, l, "resumed")
	return l, nil
}

// pushExpiry tells l's running machine its expiry, so programs there
// (Claude Code among them) know the time left. A failure is logged, never
// fatal: the lease is what counts.
func (m *Manager) pushExpiry(ctx context.Context, l Lease) {
	if l.State != StateRunning {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.SSHProbeTimeout)
	defer cancel()
	if err := m.cfg.Machines.SetExpiry(ctx, l.Address, l.HostKey, l.Expires); err != nil {
		m.logFor(ctx).Warn("could not tell the machine its expiry", "server", l.ServerName, "err", err)
	}
}

func (m *Manager) waitReady(ctx context.Context, l Lease, report func(string, ...any)) (Lease, error) {
	report("Waiting for SSH on %s", l.Address)
	installing := func() {
		report("Installing NixOS on %s (the stock system answers until it reboots)", l.ServerName)
	}
	if err := m.cfg.Machine.waitPinned(ctx, m.cfg.Machines, l.ServerName, l.Address, l.HostKey, installing); err != nil {
		return l, err
	}
	l.State = StateRunning
	// Starting a machine is activity: the idle clock starts now.
	l.LastActivity = m.cfg.Clock.Now()
	if err := m.put(l); err != nil {
		return l, err
	}
	// A started machine gets the secrets again (syncSecrets, once Ensure
	// has its machine), whatever became of its copy while it was off.
	m.sent.forget(l.Fingerprint)
	report("Machine %s is ready", l.ServerName)
	return m.revokeKeyOnMachine(ctx, l)
}

// revokeKeyOnMachine makes l's running machine refuse l's key if it was
// revoked and the machine was not yet seen to, and records that it does.
// A machine that cannot be told is logged and no failure: the gateway
// refuses the key whatever the machine does, and the reaper's next pass
// (or the next start) tries again.
func (m *Manager) revokeKeyOnMachine(ctx context.Context, l Lease) (Lease, error) {
	if !l.keyRevocationPending() || l.State != StateRunning {
		return l, nil
	}
	probe, cancel := context.WithTimeout(ctx, m.cfg.SSHProbeTimeout)
	defer cancel()
	if err := m.cfg.Machines.RevokeKey(probe, l.Address, l.HostKey, l.PublicKey); err != nil {
		m.logFor(ctx).Warn("could not revoke the key on its machine; trying again later", "server", l.ServerName, "err", err)
		return l, nil
	}
	l.KeyRevokedOn = l.ServerID
	if err := m.put(l, m.note(ctx, l, "revoke", "key revoked on server %d", l.ServerID)); err != nil {
		return l, err
	}
	return l, nil
}

// Status returns the person's lease, with activity seen since it was last
// written.
func (m *Manager) Status(fp string) (Lease, error) {
	l, err := m.cfg.Store.Get(fp)
	if err != nil {
		return Lease{}, err
	}
	return m.withActivity(l), nil
}

// Pool returns the warm pool's machines: nobody's leases.
func (m *Manager) Pool() ([]PoolMachine, error) { return m.poolMachines() }

// List returns every lease.
func (m *Manager) List() ([]Lease, error) {
	ls, err := m.cfg.Store.List()
	for i := range ls {
		ls[i] = m.withActivity(ls[i])
	}
	return ls, err
}

// Extend pushes the expiry of the person's lease by d, within policy, and
// tells a running machine. It works in any state, a stopped or hibernated
// machine can be kept too, but for an unfinished claim: the claim is
// finished with the document of the expiry it was claimed with, which the
// machine takes only once.
func (m *Manager) Extend(ctx context.Context, fp string, d time.Duration) (Lease, error) {
	unlock, err := m.lock(ctx, fp)
	if err != nil {
		return Lease{}, err
	}
	defer unlock()
	l, err := m.cfg.Store.Get(fp)
	if err != nil {
		return Lease{}, err
	}
	if err := m.refuseWhileClaiming(l); err != nil {
		return l, err
	}
	next, err := m.cfg.Policy.NewExpiry(l, d, m.cfg.Clock.Now())
	if err != nil {
		return l, err
	}
	l.Expires = next
	if err := m.put(l, m.note(ctx, l, "extend", "by %s to %s", FormatDuration(d), next.UTC().Format(time.RFC3339))); err != nil {
		return l, err
	}
	m.pushExpiry(ctx, l)
	return l, nil
}

// Stop powers the person's machine off, keeping its disk.
func (m *Manager) Stop(ctx context.Context, fp string) (Lease, error) {
	unlock, err := m.lock(ctx, fp)
	if err != nil {
		return Lease{}, err
	}
	defer unlock()
	l, err := m.cfg.Store.Get(fp)
	if err != nil {
		return Lease{}, err
	}
	return m.stop(ctx, l, "on request")
}

func (m *Manager) stop(ctx context.Context, l Lease, why string) (_ Lease, err error) {
	if l.State == StateStopped || l.State == StateHibernated {
		return l, nil
	}
	defer m.timed(OpStop)(&err)
	if l.ServerID == 0 {
		return l, &CreatingError{Name: l.ServerName}
	}
	if err := m.refuseWhileClaiming(l); err != nil {
		return l, err
	}
	l.State = StateStopping
	if err := m.put(l); err != nil {
		return l, err
	}
	m.fault(FaultStopIntent)
	if err := m.cfg.Provider.PowerOff(ctx, l.ServerID); err != nil && !errors.Is(err, ErrServerNotFound) {
		return l, fmt.Errorf("stop server %s: %w", l.ServerName, err)
	}
	m.fault(FaultStopPoweredOff)
	l.State = StateStopped
	if err := m.put(l, m.note(ctx, l, "stop", "%s", why)); err != nil {
		return l, err
	}
	return l, nil
}

// Hibernate snapshots the person's machine and deletes its server: the
// disk is kept for less than a stopped server costs, and the next
// connection restores it.
func (m *Manager) Hibernate(ctx context.Context, fp string) (Lease, error) {
	unlock, err := m.lock(ctx, fp)
	if err != nil {
		return Lease{}, err
	}
	defer unlock()
	l, err := m.cfg.Store.Get(fp)
	if err != nil {
		return Lease{}, err
	}
	return m.hibernate(ctx, l)
}

func (m *Manager) hibernate(ctx context.Context, l Lease) (_ Lease, err error) {
	if l.State == StateHibernated {
		return l, nil
	}
	defer m.timed(OpHibernate)(&err)
	if l.ServerID == 0 && l.ImageID == 0 {
		return l, &CreatingError{Name: l.ServerName}
	}
	if err := m.refuseWhileClaiming(l); err != nil {
		return l, err
	}
	l.State = StateHibernating
	if err := m.put(l); err != nil {
		return l, err
	}
	m.fault(FaultHibernateIntent)
	if l.ServerID != 0 && l.ImageID == 0 {
		// A snapshot of a stopped disk is consistent.
		if err := m.cfg.Provider.PowerOff(ctx, l.ServerID); err != nil && !errors.Is(err, ErrServerNotFound) {
			return l, fmt.Errorf("stop server %s: %w", l.ServerName, err)
		}
		img, err := m.cfg.Provider.Snapshot(ctx, l.ServerID, l.ID)
		if err != nil {
			return l, fmt.Errorf("snapshot server %s: %w", l.ServerName, err)
		}
		m.fault(FaultHibernateSnapshot)
		l.ImageID, l.ImageSizeGB, l.ImageCreated = img.ID, img.SizeGB, img.Created
		if l.ImageCreated.IsZero() {
			l.ImageCreated = m.cfg.Clock.Now()
		}
		if err := m.put(l); err != nil {
			return l, err
		}
		m.fault(FaultHibernateRecorded)
	}
	if l.ServerID != 0 {
		if err := m.cfg.Provider.Delete(ctx, l.ServerID); err != nil && !errors.Is(err, ErrServerNotFound) {
			return l, fmt.Errorf("delete server %s: %w", l.ServerName, err)
		}
		m.fault(FaultHibernateDeleted)
		l = m.closeServer(l)
	}
	l.State = StateHibernated
	if err := m.put(l, m.note(ctx, l, "hibernate", "snapshot %d (%.1f GB)", l.ImageID, l.ImageSizeGB)); err != nil {
		return l, err
	}
	return l, nil
}

// closeServer forgets l's deleted server, booking what it cost.
func (m *Manager) closeServer(l Lease) Lease {
	if !l.ServerCreated.IsZero() {
		if p, ok := m.cachedPrices(l); ok {
			l.Spent += serverCost(p, l.ServerCreated, m.cfg.Clock.Now())
		}
	}
	l.ServerID, l.Address, l.ServerCreated = 0, "", time.Time{}
	return l
}

// dropImage deletes l's snapshot once it is no longer needed.
func (m *Manager) dropImage(ctx context.Context, l Lease) (Lease, error) {
	if err := m.cfg.Provider.DeleteImage(ctx, l.ImageID); err != nil && !errors.Is(err, ErrImageNotFound) {
		return l, fmt.Errorf("delete snapshot %d of %s: %w", l.ImageID, l.ServerName, err)
	}
	if p, ok := m.cachedPrices(l); ok {
		l.Spent += imageCost(p, l.ImageSizeGB, l.ImageCreated, m.cfg.Clock.Now())
	}
	l.ImageID, l.ImageSizeGB, l.ImageCreated = 0, 0, time.Time{}
	return l, m.put(l)
}

// Destroy deletes the person's machine, its snapshot and its lease.
func (m *Manager) Destroy(ctx context.Context, fp string) (Lease, error) {
	unlock, err := m.lock(ctx, fp)
	if err != nil {
		return Lease{}, err
	}
	defer unlock()
	l, err := m.cfg.Store.Get(fp)
	if err != nil {
		return Lease{}, err
	}
	return l, m.destroy(ctx, l, "on request")
}

func (m *Manager) destroy(ctx context.Context, l Lease, why string) (err error) {
	defer m.timed(OpDestroy)(&err)
	l.State = StateDestroying
	if err := m.put(l); err != nil {
		return err
	}
	m.fault(FaultDestroyIntent)
	if l.ServerID != 0 {
		if err := m.cfg.Provider.Delete(ctx, l.ServerID); err != nil && !errors.Is(err, ErrServerNotFound) {
			return fmt.Errorf("delete server %s: %w", l.ServerName, err)
		}
	}
	if l.ImageID != 0 {
		if err := m.cfg.Provider.DeleteImage(ctx, l.ImageID); err != nil && !errors.Is(err, ErrImageNotFound) {
			return fmt.Errorf("delete snapshot %d of %s: %w", l.ImageID, l.ServerName, err)
		}
	}
	m.fault(FaultDestroyDeleted)
	cost, currency := m.Cost(l)
	if err := m.cfg.Store.Delete(l.Fingerprint, m.note(ctx, l, "destroy", "%s; it cost %.4f %s", why, cost, currency)); err != nil {
		return fmt.Errorf("delete lease: %w", err)
	}
	m.accrue(l)
	m.forgetCost(l)
	m.mu.Lock()
	delete(m.activity, l.Fingerprint)
	delete(m.touched, l.Fingerprint)
	m.mu.Unlock()
	m.keepHome(ctx, l.Fingerprint)
	return nil
}

// Revoke deals with the machine of a key that left the allow list, as
// Policy.RevokedAction says, makes a machine it does not destroy refuse
// the key (now if kept running, else from its next start), and records
// the revocation in the audit log (with no machine too). The gateway has
// ended the key's connections.
func (m *Manager) Revoke(ctx context.Context, fp string) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OperationTimeout)
	defer cancel()
	unlock, err := m.lock(ctx, fp)
	if err != nil {
		return err
	}
	defer unlock()
	action := m.cfg.Policy.RevokedAction
	if action == "" {
		action = RevokedStop
	}
	l, err := m.cfg.Store.Get(fp)
	if errors.Is(err, ErrNotFound) {
		m.Record(Event{Kind: "revoke", Fingerprint: fp, Conn: ConnOf(ctx), Detail: "the key left the allow list; it has no machine"})
		return nil
	}
	if err != nil {
		return err
	}
	revoked := m.note(ctx, l, "revoke", "the key left the allow list; revoked action: %s", action)
	const why = "its key left the allow list"
	if action == RevokedDestroy {
		m.Record(revoked)
		return m.destroy(ctx, l, why)
	}
	// Intent first: whatever happens next, the machine refuses the key
	// from its next start on.
	l.KeyRevoked = true
	if err := m.put(l, revoked); err != nil {
		return err
	}
	if action == RevokedKeep {
		_, err := m.revokeKeyOnMachine(ctx, l)
		return err
	}
	if l.State == StateDestroying {
		return nil
	}
	_, err = m.stop(ctx, l, why)
	return err
}

// Record adds an event to the audit log; a failure to write it is logged,
// never allowed to fail what it records.
func (m *Manager) Record(e Event) {
	if e.Time.IsZero() {
		e.Time = m.cfg.Clock.Now()
	}
	// A failed store logs its failure once itself; this would log it at
	// every login.
	if err := m.cfg.Store.AppendEvent(e); err != nil && !errors.Is(err, ErrStoreFailed) {
		m.log.Error("write audit event", "kind", e.Kind, "conn", e.Conn, "err", err)
	}
}

// Events returns the newest n audit events, oldest first.
func (m *Manager) Events(n int) ([]Event, error) { return m.cfg.Store.Events(n) }

// event records something that happened to l without changing it.
func (m *Manager) event(ctx context.Context, l Lease, kind, format string, args ...any) {
	m.Record(m.note(ctx, l, kind, format, args...))
}

// note logs what happened to l and returns its audit event, to be written
// with the lease change it records (put) or on its own (Record). Both
// carry the id of the connection that caused it, if one did (see WithConn).
func (m *Manager) note(ctx context.Context, l Lease, kind, format string, args ...any) Event {
	detail := fmt.Sprintf(format, args...)
	m.logFor(ctx).Info(kind, "lease", l.ID, "server", l.ServerName, "detail", detail)
	return Event{Time: m.cfg.Clock.Now(), Kind: kind, Fingerprint: l.Fingerprint, LeaseID: l.ID, Conn: ConnOf(ctx), Detail: detail}
}
