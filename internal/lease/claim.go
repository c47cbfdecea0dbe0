package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
)

// The fault points of a claim (pool.go, "Claiming"): a crash at each
// leaves the lease creating and the pool record claiming, which reconcile
// (or the person's next connection) finishes.
const (
	FaultClaimIntent       = "claim.intent"       // record claiming, lease creating; machine untouched
	FaultClaimPersonalised = "claim.personalised" // machine is the person's; still pool-labelled
	FaultClaimUnpooled     = "claim.unpooled"     // label removed; lease still creating, record claiming
)

// ClaimFaultPoints lists the fault points of a claim.
var ClaimFaultPoints = []string{FaultClaimIntent, FaultClaimPersonalised, FaultClaimUnpooled}

// maxClaimTries bounds the ready machines one create tries to claim: each
// miss means a drain or a recycle took the machine between the listing
// and the claim.
const maxClaimTries = 3

// ClaimError is a claim that failed after its claim write: the person's
// lease names the pool machine, which is not (yet) wholly theirs. It is
// not handed out; the person's next connection, or reconcile, finishes the
// claim.
type ClaimError struct {
	Name string
	Err  error
}

func (e *ClaimError) Error() string { return fmt.Sprintf("claim pool machine %s: %v", e.Name, e.Err) }
func (e *ClaimError) Unwrap() error { return e.Err }

// Sentence is what the person is told.
func (e *ClaimError) Sentence() string {
	return fmt.Sprintf("your machine %s came from the warm pool and is not ready for you yet; the gateway finishes preparing it by itself", e.Name)
}

// claimPoolMachine gives the new person fp, key a ready pool machine when
// there is one (pickPoolMachine). The claim write makes the person's
// lease, creating, with the machine's id, server and host key, and the
// record claiming, in one write; finishClaim does the rest. It reports
// false, with no error, when no machine could be claimed: the caller
// creates one.
func (m *Manager) claimPoolMachine(ctx context.Context, fp string, key ssh.PublicKey, report func(string, ...any), events ...Event) (l Lease, claimed bool, err error) {
	if m.cfg.Pool == nil {
		return Lease{}, false, nil
	}
	machines, err := m.cfg.Pool.PoolMachines()
	if err != nil {
		return Lease{}, false, fmt.Errorf("read the warm pool: %w", err)
	}
	// A home binds its person's machines to its location.
	locations := m.cfg.Machine.Locations
	home, err := m.Home(fp)
	if err != nil {
		return Lease{}, false, err
	}
	if home != nil && home.State != HomeDeleting {
		locations = []string{home.Location}
	}
	for range maxClaimTries {
		now := m.cfg.Clock.Now()
		p, ok := pickPoolMachine(machines, m.cfg.Machine.ServerTypes, locations, m.cfg.WarmPool.MaxAge, now)
		if !ok {
			break
		}
		if l, err = m.newLease(fp, key); err != nil {
			return l, false, err
		}
		l = claimLease(l, p, now)
		claiming := p
		claiming.State, claiming.Claimant = PoolClaiming, fp
		claim := append(slices.Clone(events),
			m.poolEvent(p, "claimed by %s", fp),
			m.note(ctx, l, "create", "claimed pool machine %s (server %d at %s)", p.ServerName, p.ServerID, p.Address))
		err := m.cfg.Pool.ClaimPoolMachine(claiming, l, claim...)
		if errors.Is(err, ErrPoolMachineTaken) {
			machines = slices.DeleteFunc(machines, func(q PoolMachine) bool { return q.ID == p.ID })
			continue
		}
		if err != nil {
			return l, false, fmt.Errorf("claim pool machine %s: %w", p.ServerName, err)
		}
		// The machine's cost was the pool's until now; the lease's from
		// now on (claimLease).
		m.accruePool(p)
		m.forgetPoolCost(p)
		m.fault(FaultClaimIntent)
		report("A machine was ready for you: %s (%s in %s)", l.ServerName, l.ServerType, l.Location)
		l, err = m.finishClaim(ctx, l)
		return l, true, err
	}
	return Lease{}, false, nil
}

// claimLease is the new lease l made the claimant of pool machine p at
// now: p's id (so its server needs no rename and keeps its lease label),
// server, address, place and host key. Its cost starts now; before, the
// machine was the pool's.
func claimLease(l Lease, p PoolMachine, now time.Time) Lease {
	l.ID, l.ServerName, l.ServerID, l.Address = p.ID, p.ServerName, p.ServerID, p.Address
	l.HostKey, l.HostKeyPEM = p.HostKey, p.HostKeyPEM
	l.ServerType, l.Location = p.ServerType, p.Location
	l.ServerCreated = now
	return l
}

// finishClaim makes the claimed pool machine l's wholly: the person's
// home made (when new, in the machine's location) and attached,
// personalised with l's document (the person's key beside the gateway's,
// the expiry, the home's device; the same instance id and host key), no
// longer pool-labelled, and l
// running with the pool record gone, in one write. Each step may run
// again after a crash. The person's secrets follow as after any start
// (syncSecrets, once Ensure has the machine). Any failure leaves l
// creating and the record claiming, for the next connection or reconcile
// to finish, and returns a ClaimError: a half-personalised machine is
// never handed out.
func (m *Manager) finishClaim(ctx context.Context, l Lease) (_ Lease, err error) {
	defer m.timed(OpClaim)(&err)
	failed := func(err error) error { return &ClaimError{Name: l.ServerName, Err: err} }
	home, err := m.ensureHome(ctx, l.Fingerprint, l.Location, func(string, ...any) {})
	if err != nil {
		return l, failed(err)
	}
	if home != nil {
		if err := m.cfg.Provider.AttachVolume(ctx, home.VolumeID, l.ServerID); err != nil {
			return l, failed(fmt.Errorf("attach home volume %s: %w", home.Name, err))
		}
		m.fault(FaultHomeAttached)
	}
	doc, err := m.cfg.Machine.personalisation(l, home)
	if err != nil {
		return l, failed(err)
	}
	probe, cancel := context.WithTimeout(ctx, m.cfg.SSHProbeTimeout)
	err = m.cfg.Machines.Personalise(probe, l.Address, l.HostKey, doc)
	cancel()
	if err != nil {
		return l, failed(fmt.Errorf("personalise: %w", err))
	}
	m.fault(FaultClaimPersonalised)
	if err := m.cfg.Provider.Unpool(ctx, l.ServerID); err != nil {
		return l, failed(fmt.Errorf("remove the pool label of server %d: %w", l.ServerID, err))
	}
	m.fault(FaultClaimUnpooled)
	l.State = StateRunning
	l.LastActivity = m.cfg.Clock.Now()
	if err := m.cfg.Pool.FinishPoolClaim(m.withActivity(l),
		m.poolEvent(PoolMachine{ID: l.ID}, "now the lease of %s", l.Fingerprint),
		m.note(ctx, l, "create", "pool machine %s is the person's", l.ServerName)); err != nil {
		return l, failed(err)
	}
	m.sent.forget(l.Fingerprint)
	m.wakeKeeper()
	m.tellIfAway(ctx, l, "created")
	return l, nil
}

// claimPending reports whether l is a claim not yet finished: creating,
// with its pool record claiming.
func (m *Manager) claimPending(l Lease) (bool, error) {
	if l.State != StateCreating || m.cfg.Pool == nil {
		return false, nil
	}
	machines, err := m.cfg.Pool.PoolMachines()
	if err != nil {
		return false, fmt.Errorf("read the warm pool: %w", err)
	}
	return slices.ContainsFunc(machines, func(p PoolMachine) bool {
		return p.ID == l.ID && p.State == PoolClaiming
	}), nil
}

// refuseWhileClaiming refuses to stop, hibernate or extend l while its
// claim is not finished: the claim personalises a running machine with
// l's document as claimed, and a claimed machine that never was would stay
// the pool's in all but name.
func (m *Manager) refuseWhileClaiming(l Lease) error {
	pending, err := m.claimPending(l)
	if err != nil {
		return err
	}
	if pending {
		return &CreatingError{Name: l.ServerName}
	}
	return nil
}

// wakeKeeper nudges the pool keeper to refill (Reaper.Run), never
// blocking.
func (m *Manager) wakeKeeper() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// coldPathNote tells a new person, when the warm pool is kept but had no
// machine for them, that they wait for a boot, and how long the latest
// pool machine's took.
func (m *Manager) coldPathNote(report func(string, ...any)) {
	if m.cfg.WarmPool.Size <= 0 {
		return
	}
	m.mu.Lock()
	boot := m.poolBoot
	m.mu.Unlock()
	if boot <= 0 {
		report("No ready machine in the warm pool; creating one")
		return
	}
	report("No ready machine in the warm pool; creating one (this takes about %s)", FormatDuration(boot.Round(time.Second)))
}
