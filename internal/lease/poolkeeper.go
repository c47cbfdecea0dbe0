package lease

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// PoolConfig sizes the warm pool (pool.go).
type PoolConfig struct {
	// Size is how many ready machines the keeper keeps; 0 turns the pool
	// off, and the keeper drains what is left of it.
	Size int
	// MaxAge recycles a ready machine once it is this old, so none goes
	// stale; 0 never recycles.
	MaxAge time.Duration
}

// The fault points of the pool keeper: a crash at each leaves records that
// the next round (creating: a leftover, drained) or reconcile finishes.
// They are apart from FaultPoints until the crash tests drive the pool.
const (
	FaultPoolCreateIntent    = "pool.create.intent"    // record says creating; nothing asked yet
	FaultPoolCreateRequested = "pool.create.requested" // server exists; record does not know its id
	FaultPoolCreateRecorded  = "pool.create.recorded"  // record has the server; not yet ready
	FaultPoolDrainIntent     = "pool.drain.intent"     // record says draining; delete not asked
	FaultPoolDrainDeleted    = "pool.drain.deleted"    // server deleted; record still there
)

// PoolFaultPoints lists the pool keeper's fault points.
var PoolFaultPoints = []string{
	FaultPoolCreateIntent, FaultPoolCreateRequested, FaultPoolCreateRecorded,
	FaultPoolDrainIntent, FaultPoolDrainDeleted,
}

// keepPool runs one round of the pool keeper: it drains what planPool says
// (recycled, extra, and leftovers of a crash), then creates machines up to
// the pool's size, at once, and returns when they are ready or failed.
// Rounds never overlap (startKeeping), so a record still creating when a
// round starts belongs to no create of this process: a crash left it.
func (r *Reaper) keepPool(ctx context.Context) error {
	m := r.m
	if m.cfg.Pool == nil {
		return nil
	}
	machines, err := m.cfg.Pool.PoolMachines()
	if err != nil {
		return err
	}
	byID := map[string]PoolMachine{}
	planned := make([]PoolMachine, 0, len(machines))
	for _, p := range machines {
		if p.State != PoolClaiming { // a claim booked its pool cost
			m.accruePool(p)
		}
		byID[p.ID] = p
		if p.State == PoolCreating {
			p.State = PoolDraining // a leftover: see above
		}
		planned = append(planned, p)
	}
	plan := planPool(planned, m.cfg.WarmPool.Size, m.cfg.WarmPool.MaxAge, m.cfg.Clock.Now())
	if plan.Create > 0 && m.cfg.Machine.GatewayKey == nil {
		return errors.New("warm pool: no gateway key to authorise on pool machines")
	}
	var errs []error
	for _, id := range plan.Drain {
		drainCtx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTimeout)
		err := m.drainPoolMachine(drainCtx, byID[id])
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("drain pool machine %s: %w", id, err))
		}
	}
	var wg sync.WaitGroup
	created := make([]error, plan.Create)
	for i := range plan.Create {
		wg.Add(1)
		go func() {
			defer wg.Done()
			createCtx, cancel := context.WithTimeout(ctx, m.cfg.OperationTimeout)
			defer cancel()
			created[i] = m.createPoolMachine(createCtx)
		}()
	}
	wg.Wait()
	return errors.Join(append(errs, created...)...)
}

// createPoolMachine makes one pool machine, recording its creation before
// each provider call; one that fails after its server was asked for is
// drained.
func (m *Manager) createPoolMachine(ctx context.Context) error {
	p, err := m.newPoolMachine()
	if err != nil {
		return err
	}
	l := p.lease(m.cfg.Machine.GatewayKey)
	userData, err := m.cfg.Machine.userData(l, true, nil)
	if err != nil {
		return err
	}
	if err := m.cfg.Pool.PutPoolMachine(p, "", m.poolEvent(p, "creating %s (%s in %s)", p.ServerName, p.ServerType, p.Location)); err != nil {
		return err
	}
	m.fault(FaultPoolCreateIntent)
	srv, err := m.cfg.Provider.Create(ctx, CreateSpec{
		Name: p.ServerName, LeaseID: p.ID, UserData: userData, PublicKey: l.PublicKey, Pool: true,
	})
	if err != nil {
		return m.abandonPoolMachine(ctx, p, fmt.Errorf("create server %s: %w", p.ServerName, err))
	}
	m.fault(FaultPoolCreateRequested)
	recorded := p
	recorded.ServerID, recorded.ServerType, recorded.Location = srv.ID, srv.ServerType, srv.Location
	recorded.Address = net.JoinHostPort(srv.IPv4, strconv.Itoa(m.cfg.Machine.SSHPort))
	if err := m.cfg.Pool.PutPoolMachine(recorded, PoolCreating, m.poolEvent(p, "server %d at %s", srv.ID, recorded.Address)); err != nil {
		return m.abandonPoolMachine(ctx, p, err)
	}
	p = recorded
	m.fault(FaultPoolCreateRecorded)
	if err := m.cfg.Machine.waitPinned(ctx, m.cfg.Machines, p.ServerName, p.Address, p.HostKey, func() {}); err != nil {
		return m.abandonPoolMachine(ctx, p, err)
	}
	ready := p
	ready.State = PoolReady
	if err := m.cfg.Pool.PutPoolMachine(ready, PoolCreating, m.poolEvent(p, "ready")); err != nil {
		return m.abandonPoolMachine(ctx, p, err)
	}
	took := m.cfg.Clock.Now().Sub(p.Created)
	m.mu.Lock()
	m.poolBoot = took
	m.mu.Unlock()
	m.log.Info("warm pool: machine ready", "pool", p.ID, "server", p.ServerName, "took", FormatDuration(took))
	return nil
}

// abandonPoolMachine drains p after its creation failed with cause, on a
// context of its own so that a create cut short by its deadline is still
// cleaned up, and returns cause with whatever the drain met.
func (m *Manager) abandonPoolMachine(ctx context.Context, p PoolMachine, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.OperationTimeout)
	defer cancel()
	if err := m.drainPoolMachine(ctx, p); err != nil {
		return errors.Join(cause, fmt.Errorf("drain it: %w", err))
	}
	return cause
}

// drainPoolMachine deletes p's server and then its record, recording the
// intent first. A machine claimed meanwhile is left to its claim.
func (m *Manager) drainPoolMachine(ctx context.Context, p PoolMachine) error {
	claimed := p.State == PoolClaiming // its claim booked its pool cost
	if p.State != PoolDraining {
		from := p.State
		p.State = PoolDraining
		err := m.cfg.Pool.PutPoolMachine(p, from, m.poolEvent(p, "draining (was %s)", from))
		if errors.Is(err, ErrPoolMachineTaken) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	m.fault(FaultPoolDrainIntent)
	id := p.ServerID
	if id == 0 {
		// Its create may have made a server whose id it never recorded.
		servers, err := m.cfg.Provider.List(ctx)
		if err != nil {
			return fmt.Errorf("look for server %s: %w", p.ServerName, err)
		}
		for _, s := range servers {
			if s.Labels[LeaseLabel] == p.ID {
				id = s.ID
			}
		}
	}
	if id != 0 {
		if err := m.cfg.Provider.Delete(ctx, id); err != nil && !errors.Is(err, ErrServerNotFound) {
			return fmt.Errorf("delete server %s: %w", p.ServerName, err)
		}
	}
	m.fault(FaultPoolDrainDeleted)
	if err := m.cfg.Pool.DeletePoolMachine(p.ID, m.poolEvent(p, "drained")); err != nil {
		return err
	}
	if !claimed {
		m.accruePool(p)
	}
	m.forgetPoolCost(p)
	m.log.Info("warm pool: machine drained", "pool", p.ID, "server", p.ServerName)
	return nil
}

// newPoolMachine is a fresh pool machine's record, named as a lease's
// would be so that the lease claiming it takes its id.
func (m *Manager) newPoolMachine() (PoolMachine, error) {
	id, hostPEM, hostPub, err := newIdentity()
	if err != nil {
		return PoolMachine{}, err
	}
	return PoolMachine{
		ID: id, State: PoolCreating, ServerName: "cc-" + id,
		HostKey: hostPub, HostKeyPEM: hostPEM,
		ServerType: first(m.cfg.Machine.ServerTypes), Location: first(m.cfg.Machine.Locations),
		Created: m.cfg.Clock.Now(),
	}, nil
}

// lease is the lease-shaped view of p its bootstrap document is rendered
// from: the gateway's key as the only one, no expiry (the keeper recycles
// it; a claim tells it the person's).
func (p PoolMachine) lease(gatewayKey ssh.PublicKey) Lease {
	return Lease{
		ID: p.ID, ServerName: p.ServerName, HostKey: p.HostKey, HostKeyPEM: p.HostKeyPEM,
		PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(gatewayKey))),
	}
}

func (m *Manager) poolEvent(p PoolMachine, format string, args ...any) Event {
	return Event{Time: m.cfg.Clock.Now(), Kind: "pool", LeaseID: p.ID, Detail: fmt.Sprintf(format, args...)}
}
