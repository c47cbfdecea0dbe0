package lease

import (
	"errors"
	"time"
)

// Observer is told what the Manager and its Reaper do, for the gateway's
// metrics (internal/metrics implements it). Its methods are called
// holding no lock of this package's, except that Operation, ReaperAction
// and Cost may run under a person's lease lock; they must return at once.
type Observer interface {
	// Operation reports one machine operation and how long it took.
	Operation(op Operation, result Result, took time.Duration)
	// ReaperAction reports one thing the reaper did.
	ReaperAction(action ReaperAction)
	// ReaperPass reports a reaper pass that ended at end: how long its
	// work took and whether all of it succeeded (see Reaper.pass).
	ReaperPass(end time.Time, took time.Duration, ok bool)
	// Cost reports what leases accrued since the last report, in currency
	// (as the provider reports prices: gross).
	Cost(amount float64, currency string)
	// PoolCost reports what the warm pool's machines accrued since the
	// last report, apart from any lease's: a claimed machine's cost is
	// the pool's until its claim and the lease's from then on.
	PoolCost(amount float64, currency string)
	// HomeCost reports what people's home volumes accrued since the last
	// report, apart from leases' (a home outlives them).
	HomeCost(amount float64, currency string)
	// UnattributedVolumes reports how many labelled volumes the latest
	// reconcile found that no person's home names (kept, never deleted).
	UnattributedVolumes(n int)
}

// Operation names a machine operation as operators see it. The Manager's
// work maps onto these words:
//
//   - create: a new server for a lease (no snapshot), until it answers SSH;
//   - resume: a hibernated machine restored from its snapshot, until it
//     answers SSH and the snapshot is deleted;
//   - start: a stopped server powered on, until it answers SSH;
//   - stop: a server powered off;
//   - hibernate: a server snapshotted and deleted;
//   - destroy: a lease's server, snapshot and lease deleted;
//   - claim: a warm pool machine made a new person's, from the claim to
//     a running machine (no boot: it was ready);
//   - first_shell: Ensure as a connection experiences it, from its call to
//     a running machine, waiting on another connection's work included.
//     A connection that leaves before the answer is not counted.
type Operation string

// The operations.
const (
	OpCreate     Operation = "create"
	OpResume     Operation = "resume"
	OpStart      Operation = "start"
	OpStop       Operation = "stop"
	OpHibernate  Operation = "hibernate"
	OpDestroy    Operation = "destroy"
	OpFirstShell Operation = "first_shell"
	OpClaim      Operation = "claim"
)

// Operations lists every Operation, for metrics that show each from the
// start.
var Operations = []Operation{OpCreate, OpResume, OpStart, OpStop, OpHibernate, OpDestroy, OpFirstShell, OpClaim}

// Result is how an operation ended.
type Result string

// The results: refused is the rules saying no (an expired lease, a stop
// while the server is being created), not a fault.
const (
	ResultOK      Result = "ok"
	ResultError   Result = "error"
	ResultRefused Result = "refused"
)

// Results lists every Result.
var Results = []Result{ResultOK, ResultError, ResultRefused}

// ReaperAction names what the reaper did to a lease or an orphan; each is
// reported once it succeeded.
type ReaperAction string

// The reaper's actions.
const (
	ReaperWarn           ReaperAction = "warn"             // a warning went to connected people
	ReaperStop           ReaperAction = "stop"             // an idle machine stopped
	ReaperHibernate      ReaperAction = "hibernate"        // an idle machine hibernated
	ReaperDestroy        ReaperAction = "destroy"          // an expired (or idle, if so configured) machine destroyed
	ReaperBusy           ReaperAction = "busy"             // an idle machine left running: its CPU is busy
	ReaperUnattended     ReaperAction = "unattended"       // a machine its person left kept running for a working agent, once per stretch
	ReaperOrphanPowerOff ReaperAction = "orphan_power_off" // reconcile powered off an orphan server
	ReaperOrphanDelete   ReaperAction = "orphan_delete"    // reconcile deleted an orphan server or snapshot
)

// ReaperActions lists every ReaperAction.
var ReaperActions = []ReaperAction{ReaperWarn, ReaperStop, ReaperHibernate, ReaperDestroy, ReaperBusy, ReaperUnattended, ReaperOrphanPowerOff, ReaperOrphanDelete}

// nopObserver records nothing: a Manager without an Observer uses it.
type nopObserver struct{}

func (nopObserver) Operation(Operation, Result, time.Duration) {}
func (nopObserver) ReaperAction(ReaperAction)                  {}
func (nopObserver) ReaperPass(time.Time, time.Duration, bool)  {}
func (nopObserver) Cost(float64, string)                       {}
func (nopObserver) PoolCost(float64, string)                   {}
func (nopObserver) HomeCost(float64, string)                   {}
func (nopObserver) UnattributedVolumes(int)                    {}

// timed starts timing op; the returned function reports it with the error
// it ended with: defer m.timed(op)(&err).
func (m *Manager) timed(op Operation) func(*error) {
	start := m.cfg.Clock.Now()
	return func(err *error) { m.observe(op, start, *err) }
}

// observe reports the operation op begun at start that ended with err.
func (m *Manager) observe(op Operation, start time.Time, err error) {
	result := ResultOK
	var expired *ExpiredError
	var creating *CreatingError
	switch {
	case errors.As(err, &expired), errors.As(err, &creating):
		result = ResultRefused
	case err != nil:
		result = ResultError
	}
	m.cfg.Observer.Operation(op, result, m.cfg.Clock.Now().Sub(start))
}

// accrue reports to the Observer what l has cost since it was last
// reported. A lease seen for the first time reports its whole cost if it
// began after this Manager started, else only what it costs from now on:
// after a restart, cost accrued before must not count again. Without
// prices there is nothing to report yet.
func (m *Manager) accrue(l Lease) {
	cost, currency := m.Cost(l)
	m.accrueAs(l.ID, l.Created, cost, currency, m.cfg.Observer.Cost)
}

// accruePool is accrue for the warm pool machine p, reported apart
// (Observer.PoolCost).
func (m *Manager) accruePool(p PoolMachine) {
	cost, currency := m.PoolCost(p)
	m.accrueAs(poolCostKey(p.ID), p.Created, cost, currency, m.cfg.Observer.PoolCost)
}

// accrueAs reports to observe what the thing named key, begun at created,
// has cost since it was last reported, when it costs cost now.
func (m *Manager) accrueAs(key string, created time.Time, cost float64, currency string, observe func(float64, string)) {
	if currency == "" {
		return
	}
	m.mu.Lock()
	last, seen := m.accrued[key]
	if !seen && created.Before(m.started) {
		last = cost
	}
	m.accrued[key] = max(last, cost) // a price that fell never takes back
	m.mu.Unlock()
	if cost > last {
		observe(cost-last, currency)
	}
}

// accrueHome is accrue for the home h of fp, reported apart
// (Observer.HomeCost).
func (m *Manager) accrueHome(h Home) {
	cost, currency := m.HomeCost(h)
	m.accrueAs(homeCostKey(h), h.Created, cost, currency, m.cfg.Observer.HomeCost)
}

// homeCostKey names a home in Manager.accrued.
func homeCostKey(h Home) string { return "home/" + h.Owner }

// poolCostKey names a pool machine in Manager.accrued, apart from the
// lease that takes its id when it is claimed.
func poolCostKey(id string) string { return "pool/" + id }

// forgetCost drops the cost record of l, which no longer exists.
func (m *Manager) forgetCost(l Lease) { m.forgetAccrued(l.ID) }

// forgetPoolCost drops the cost record of the pool machine p, which is
// deleted or claimed.
func (m *Manager) forgetPoolCost(p PoolMachine) { m.forgetAccrued(poolCostKey(p.ID)) }

func (m *Manager) forgetAccrued(key string) {
	m.mu.Lock()
	delete(m.accrued, key)
	m.mu.Unlock()
}
