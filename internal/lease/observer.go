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
	if currency == "" {
		return
	}
	m.mu.Lock()
	last, seen := m.accrued[l.ID]
	if !seen && l.Created.Before(m.started) {
		last = cost
	}
	m.accrued[l.ID] = max(last, cost) // a price that fell never takes back
	m.mu.Unlock()
	if cost > last {
		m.cfg.Observer.Cost(cost-last, currency)
	}
}

// forgetCost drops the cost record of l, which no longer exists.
func (m *Manager) forgetCost(l Lease) {
	m.mu.Lock()
	delete(m.accrued, l.ID)
	m.mu.Unlock()
}
