package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Notifier reaches the people connected to a machine. The front door
// implements it; the reaper declares what it needs. The reaper calls it
// holding that person's lease lock and no other lock, so it must return
// in bounded time and must not wait for a change to the person's lease.
type Notifier interface {
	// Warn writes message on every live session of the person and reports
	// on how many.
	Warn(fingerprint, message string) int
	// End ends every live session of the person, telling them why.
	End(fingerprint, message string)
}

// ReaperConfig tunes the reaper; zero values get the defaults.
type ReaperConfig struct {
	Interval       time.Duration // between passes; default 30s
	ReconcileEvery time.Duration // between reconciles with the provider; default 5m
	OrphanGrace    time.Duration // age before an unknown labelled server is an orphan; default 10m
	// Orphans is what reconcile does with orphans; default OrphansDelete.
	Orphans Orphans
	// OrphanDeletes bounds the orphans one reconcile deletes; default 3.
	// A listing gone wrong costs a few machines, never all of them.
	OrphanDeletes int
	BusyWindow    time.Duration // CPU window for the busy check; default 5m
	// Workers is how many leases the reaper works on at once; default 4.
	// A lease stuck on the provider holds one worker, never the others.
	Workers int
	// LeaseTimeout bounds the reaper's work on one lease (a warning, a
	// stop, a destroy, a settle); default the Manager's OperationTimeout.
	LeaseTimeout time.Duration
	Invocation   string // how people reach the gateway, for messages
}

// Reaper stops idle machines, destroys expired ones, warns the people
// connected to them first, and reconciles leases with the provider. Each
// pass also writes the counts of refused connections whose minute is over.
//
// Concurrency: a pass first refreshes stale prices (no lock held, each
// fetch bounded by its own timeout), then hands every lease no Ensure is
// on to a worker, at most Workers at once, each with its own LeaseTimeout
// deadline. When all workers are busy the pass waits for one; a lease a
// worker still holds from an earlier pass is skipped, so one lease stuck
// on the provider delays no other lease's warnings or idle stops. A
// reconcile runs beside the workers, one at a time.
//
// Working on a lease (a reap or a settle) holds that person's lease lock
// (Manager.lock) throughout: provider calls, store writes and the
// Notifier's Warn and End included. No other lock is held across those
// calls: Manager.mu and Reaper.mu are only taken briefly, inside the
// person's lock, for their own bookkeeping (activity, prices, flights,
// warnings, workers). So a Notifier may call Manager.Touch, but must not
// wait for a change to the same person's lease.
type Reaper struct {
	m      *Manager
	notify Notifier
	cfg    ReaperConfig
	slots  chan struct{} // a token per busy worker
	all    sync.WaitGroup

	// mu guards the fields below. Lock order: it is a leaf, taken after
	// a person's lease lock and never held across a call out.
	mu sync.Mutex
	// working names the leases a worker is on, by fingerprint.
	working map[string]bool
	// warned remembers which warnings went out, by lease, deadline and
	// lead time.
	warned          map[warning]bool
	reconciling     bool
	keeping         bool // a round of the pool keeper runs
	keepAgain       bool // a claim asked for a round while one ran
	lastReconcile   time.Time
	reconcileFailed bool // the latest reconcile to finish failed
	// orphans holds when reconcile first saw each current orphan; kept in
	// memory only, so after a restart an orphan waits a grace period again.
	orphans map[orphanKey]time.Time
}

type warning struct {
	fingerprint string
	kind        string
	deadline    time.Time
	lead        time.Duration
}

// NewReaper returns a reaper over m's leases.
func NewReaper(m *Manager, notify Notifier, cfg ReaperConfig) *Reaper {
	if cfg.Interval == 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.ReconcileEvery == 0 {
		cfg.ReconcileEvery = 5 * time.Minute
	}
	if cfg.OrphanGrace == 0 {
		cfg.OrphanGrace = 10 * time.Minute
	}
	if cfg.Orphans == "" {
		cfg.Orphans = OrphansDelete
	}
	if cfg.OrphanDeletes <= 0 {
		cfg.OrphanDeletes = 3
	}
	if cfg.BusyWindow == 0 {
		cfg.BusyWindow = 5 * time.Minute
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.LeaseTimeout <= 0 {
		cfg.LeaseTimeout = m.cfg.OperationTimeout
	}
	if cfg.Invocation == "" {
		cfg.Invocation = "ssh GATEWAY"
	}
	return &Reaper{
		m: m, notify: notify, cfg: cfg,
		slots:   make(chan struct{}, cfg.Workers),
		working: map[string]bool{},
		warned:  map[warning]bool{},
	}
}

// Run makes a pass at once, then one every Interval until ctx ends, and
// returns once all the work it started has stopped and the refusals
// counted in memory are written. A claim of a pool machine starts a
// round of the pool keeper at once, so the pool refills without waiting
// for the next pass.
func (r *Reaper) Run(ctx context.Context) {
	defer r.all.Wait()
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		r.pass(ctx)
		if !r.waitTick(ctx, t.C) {
			// The refusals still counted in memory, this minute's too.
			r.m.flushRefusals(r.m.cfg.Clock.Now().Add(time.Minute))
			return
		}
	}
}

// waitTick waits for the next tick, starting the pool keeper at each
// nudge meanwhile, and reports false when ctx ended first.
func (r *Reaper) waitTick(ctx context.Context, tick <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-r.m.wake:
			r.keepSoon(ctx)
		case <-tick:
			return true
		}
	}
}

// keepSoon starts a round of the pool keeper, or, when one runs, has it
// run once more when it ends: the round may have begun before the claim.
func (r *Reaper) keepSoon(ctx context.Context) {
	if r.startKeeping() {
		r.goTracked(&sync.WaitGroup{}, func() { r.keepPoolRound(ctx) })
		return
	}
	r.mu.Lock()
	r.keepAgain = true
	r.mu.Unlock()
}

// Tick makes one pass and waits for the work it started. A lease a worker
// still holds from an earlier pass is skipped, not waited for.
func (r *Reaper) Tick(ctx context.Context) { r.pass(ctx).Wait() }

// pass starts one pass: prices, a reconcile when one is due (beside the
// workers, so busy workers do not hold it up), and a reap of every lease
// no Ensure or worker is on. The returned group ends with the pass's work
// and its report to the Observer: the pass succeeded when the leases
// could be listed, every lease it worked on was dealt with without error,
// the latest reconcile to finish (its own, if one was due) succeeded, and
// it was not cut short. So one lease the reaper keeps failing to stop, or
// a reconcile that keeps failing, fails every pass until someone looks.
func (r *Reaper) pass(ctx context.Context) *sync.WaitGroup {
	m := r.m
	now := m.cfg.Clock.Now()
	var work, done sync.WaitGroup
	var failed atomic.Bool
	if err := r.startWork(ctx, now, &work, &failed); err != nil {
		m.log.Error("reaper: list leases", "err", err)
		failed.Store(true)
	}
	r.goTracked(&done, func() {
		work.Wait()
		end := m.cfg.Clock.Now()
		r.mu.Lock()
		reconciled := !r.reconcileFailed
		r.mu.Unlock()
		m.cfg.Observer.ReaperPass(end, end.Sub(now), !failed.Load() && reconciled && ctx.Err() == nil)
	})
	return &done
}

// startWork starts the work of a pass at now in work, and records in
// failed any part of it that fails.
func (r *Reaper) startWork(ctx context.Context, now time.Time, work *sync.WaitGroup, failed *atomic.Bool) error {
	m := r.m
	m.flushRefusals(now.Truncate(time.Minute)) // the minutes that are over, one write
	leases, err := m.cfg.Store.List()
	if err != nil {
		return err
	}
	m.refreshPrices(ctx, leases)
	if ctx.Err() == nil && r.startReconcile(now) {
		r.goTracked(work, func() { r.reconcileAt(ctx, now) })
	}
	if ctx.Err() == nil && r.startKeeping() {
		r.goTracked(work, func() { r.keepPoolRound(ctx) })
	}
	for _, l := range leases {
		if m.busy(l.Fingerprint) {
			continue
		}
		fp, id := l.Fingerprint, l.ID
		started := r.work(ctx, work, fp, func(ctx context.Context) {
			if err := r.reap(ctx, fp, now); err != nil {
				m.log.Error("reaper", "lease", id, "err", err)
				failed.Store(true)
			}
		})
		if !started {
			break
		}
	}
	if err := r.startHomes(ctx, leases, work, failed); err != nil {
		m.log.Error("reaper: list homes", "err", err)
		failed.Store(true)
	}
	r.forgetWarnings(now)
	return nil
}

// startHomes reports what homes cost, and starts, in work, the reaping
// of every home whose person has no lease (Manager.reapHome).
func (r *Reaper) startHomes(ctx context.Context, leases []Lease, work *sync.WaitGroup, failed *atomic.Bool) error {
	m := r.m
	people, err := m.cfg.Store.People()
	if err != nil {
		return err
	}
	for _, p := range people {
		if p.Home != nil {
			m.accrueHome(*p.Home)
		}
		if p.Home == nil || m.busy(p.Fingerprint) || slices.ContainsFunc(leases, func(l Lease) bool { return l.Fingerprint == p.Fingerprint }) {
			continue
		}
		fp := p.Fingerprint
		started := r.work(ctx, work, fp, func(ctx context.Context) {
			if err := m.reapHome(ctx, fp); err != nil {
				m.log.Error("reaper: home", "fingerprint", fp, "err", err)
				failed.Store(true)
			}
		})
		if !started {
			break
		}
	}
	return nil
}

// work runs fn on the lease fp in a worker, under a deadline of
// LeaseTimeout, unless a worker is on that lease already. It waits for a
// free worker, and reports false when ctx ended first.
func (r *Reaper) work(ctx context.Context, wg *sync.WaitGroup, fp string, fn func(context.Context)) bool {
	if ctx.Err() != nil {
		return false
	}
	r.mu.Lock()
	if r.working[fp] {
		r.mu.Unlock()
		return true
	}
	r.working[fp] = true
	r.mu.Unlock()
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		r.release(fp)
		return false
	}
	r.goTracked(wg, func() {
		defer r.release(fp)
		defer func() { <-r.slots }()
		ctx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTimeout)
		defer cancel()
		fn(ctx)
	})
	return true
}

func (r *Reaper) release(fp string) {
	r.mu.Lock()
	delete(r.working, fp)
	r.mu.Unlock()
}

// goTracked runs fn in a goroutine that wg and Run's exit both wait for.
func (r *Reaper) goTracked(wg *sync.WaitGroup, fn func()) {
	wg.Add(1)
	r.all.Add(1)
	go func() {
		defer r.all.Done()
		defer wg.Done()
		fn()
	}()
}

// startReconcile reports whether a reconcile is due at now and none is
// running, and if so marks one running.
func (r *Reaper) startReconcile(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	due := r.lastReconcile.IsZero() || now.Sub(r.lastReconcile) >= r.cfg.ReconcileEvery
	if !due || r.reconciling {
		return false
	}
	r.reconciling = true
	return true
}

func (r *Reaper) reconcileAt(ctx context.Context, now time.Time) {
	err := r.Reconcile(ctx)
	if err != nil {
		r.m.log.Error("reconcile", "err", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reconciling = false
	r.reconcileFailed = err != nil
	if err == nil {
		r.lastReconcile = now
	}
}

// startKeeping reports whether no round of the pool keeper runs, and if
// so marks one running.
func (r *Reaper) startKeeping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keeping {
		return false
	}
	r.keeping = true
	return true
}

// keepPoolRound runs rounds of the pool keeper until none was asked for
// meanwhile (keepSoon), then marks the keeper idle.
func (r *Reaper) keepPoolRound(ctx context.Context) {
	for {
		if err := r.keepPool(ctx); err != nil {
			r.m.log.Error("warm pool", "err", err)
		}
		r.mu.Lock()
		again := r.keepAgain && ctx.Err() == nil
		r.keepAgain = false
		if !again {
			r.keeping = false
		}
		r.mu.Unlock()
		if !again {
			return
		}
	}
}

func (r *Reaper) forgetWarnings(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for w := range r.warned {
		if w.deadline.Before(now) {
			delete(r.warned, w)
		}
	}
}

// reapAction is what a pass does to a lease besides warning.
type reapAction int

const (
	reapNothing  reapAction = iota
	reapExpire              // the lease ran out: end its sessions, destroy it
	reapIdle                // idle past the timeout: the idle action, unless busy
	reapAskAgent            // the person is idle: read the agent, then decide again
)

// deadline is something connected people are warned of before it comes.
type deadline struct {
	kind string // "expiry" or "idle"
	at   time.Time
}

type reapDecision struct {
	action    reapAction
	deadlines []deadline
	// unattended: the agent, read working at now, keeps the machine
	// running, for the first time since the person's last activity (an
	// audit event).
	unattended bool
}

// decideReap says what a pass at now does to l under p.
//
// The idle timeout runs from the person's last activity or, up to
// MaxUnattended after it, from the latest read that found the agent
// working, whichever is later. Once the person has been idle for the idle
// timeout and MaxUnattended has not passed, the agent is asked first
// (reapAskAgent): the reaper reads it into l.Agent with Seen at now and
// decides again.
func decideReap(l Lease, p Policy, now time.Time) reapDecision {
	if !now.Before(l.Expires) {
		return reapDecision{action: reapExpire}
	}
	d := reapDecision{deadlines: []deadline{{"expiry", l.Expires}}}
	if l.State != StateRunning || p.IdleTimeout <= 0 {
		return d
	}
	personIdleAt := l.LastActivity.Add(p.IdleTimeout)
	active := l.LastActivity
	if p.MaxUnattended > 0 {
		unattendedEnd := l.LastActivity.Add(p.MaxUnattended)
		if !now.Before(personIdleAt) && now.Before(unattendedEnd) && !l.Agent.Seen.Equal(now) {
			d.action = reapAskAgent
			return d
		}
		if w := minTime(l.Agent.WorkingSeen, unattendedEnd); w.After(active) {
			active = w
		}
	}
	idleAt := active.Add(p.IdleTimeout)
	if now.Before(idleAt) {
		d.deadlines = append(d.deadlines, deadline{"idle", idleAt})
		d.unattended = l.Agent.Seen.Equal(now) && l.Agent.State == AgentWorking &&
			!now.Before(personIdleAt) && !l.Agent.KeptAfter.Equal(l.LastActivity)
		return d
	}
	d.action = reapIdle
	return d
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// reap looks at one lease under its lock.
func (r *Reaper) reap(ctx context.Context, fp string, now time.Time) error {
	m := r.m
	defer m.lock(fp)()
	l, err := m.cfg.Store.Get(fp)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l, err = m.flushActivity(l); err != nil {
		return err
	}
	m.accrue(l)
	d := decideReap(l, m.cfg.Policy, now)
	if d.action == reapAskAgent {
		if l, err = r.askAgent(ctx, l, now); err != nil {
			return err
		}
		d = decideReap(l, m.cfg.Policy, now)
	}
	for _, dl := range d.deadlines {
		r.warn(l, dl, now)
	}
	switch d.action {
	case reapExpire:
		r.notify.End(fp, fmt.Sprintf("your machine %s expired at %s and is being deleted.",
			l.ServerName, l.Expires.UTC().Format(time.RFC3339)))
		return r.did(ReaperDestroy, m.destroy(ctx, l, "expired"))
	case reapIdle:
		return r.idle(ctx, l, now)
	}
	// A kept machine that could not be told of its key's revocation.
	_, err = m.revokeKeyOnMachine(ctx, l)
	return err
}

// askAgent reads l's agent at now and saves what it read, with an audit
// event when a working agent starts keeping the machine for the person.
func (r *Reaper) askAgent(ctx context.Context, l Lease, now time.Time) (Lease, error) {
	m := r.m
	l = r.readAgent(ctx, l, now)
	var events []Event
	if decideReap(l, m.cfg.Policy, now).unattended {
		l.Agent.KeptAfter = l.LastActivity
		events = append(events, m.note(ctx, l, "unattended",
			"no activity for %s but the agent is working; kept running for at most %s after the last activity",
			FormatDuration(now.Sub(l.LastActivity)), FormatDuration(m.cfg.Policy.MaxUnattended)))
	}
	if err := m.put(l, events...); err != nil {
		return l, err
	}
	if len(events) > 0 {
		m.cfg.Observer.ReaperAction(ReaperUnattended)
	}
	return l, nil
}

// idle applies the idle action to l, unless its CPU says someone's work is
// running without a connection.
func (r *Reaper) idle(ctx context.Context, l Lease, now time.Time) error {
	m, p := r.m, r.m.cfg.Policy
	if p.BusyCPU > 0 {
		cpu, err := m.cfg.Provider.CPUUsage(ctx, l.ServerID, r.cfg.BusyWindow)
		if err != nil {
			// Without a figure, stopping could kill someone's work: wait.
			return fmt.Errorf("cpu use of %s: %w", l.ServerName, err)
		}
		if cpu >= p.BusyCPU {
			m.touchAt(l.Fingerprint, now)
			m.event(ctx, l, "busy", "idle for %s but using %.0f%% CPU; left running", FormatDuration(now.Sub(l.LastActivity)), cpu)
			m.cfg.Observer.ReaperAction(ReaperBusy)
			return nil
		}
	}
	why := fmt.Sprintf("idle for %s", FormatDuration(now.Sub(l.LastActivity)))
	r.notify.End(l.Fingerprint, fmt.Sprintf("your machine %s is being %s: it had no activity for %s. `%s` starts it again.",
		l.ServerName, pastTense(p.IdleAction), FormatDuration(p.IdleTimeout), r.cfg.Invocation))
	switch p.IdleAction {
	case IdleHibernate:
		_, err := m.hibernate(ctx, l)
		return r.did(ReaperHibernate, err)
	case IdleDestroy:
		return r.did(ReaperDestroy, m.destroy(ctx, l, why))
	default:
		_, err := m.stop(ctx, l, why)
		return r.did(ReaperStop, err)
	}
}

// did reports action to the Observer unless it failed with err, and
// returns err.
func (r *Reaper) did(action ReaperAction, err error) error {
	if err == nil {
		r.m.cfg.Observer.ReaperAction(action)
	}
	return err
}

// warn sends the warning of dl once per lead time that has come, naming
// the time left.
func (r *Reaper) warn(l Lease, dl deadline, now time.Time) {
	left := dl.at.Sub(now)
	due := false
	r.mu.Lock()
	for _, lead := range r.m.cfg.Policy.WarnBefore {
		w := warning{l.Fingerprint, dl.kind, dl.at, lead}
		if left <= lead && !r.warned[w] {
			r.warned[w] = true
			due = true
		}
	}
	r.mu.Unlock()
	if !due {
		return
	}
	msg := r.warningText(l, dl.kind, FormatTimeLeft(left), now)
	// Told out of band too, connected or not: a person in a session may
	// not be looking at it. Tell does not block.
	r.m.cfg.Teller.Tell(l.Fingerprint, "warning", msg)
	if n := r.notify.Warn(l.Fingerprint, msg); n > 0 {
		r.m.event(context.Background(), l, "warning", "%s (to %d sessions)", msg, n)
		r.m.cfg.Observer.ReaperAction(ReaperWarn)
	}
}

func (r *Reaper) warningText(l Lease, kind, left string, now time.Time) string {
	if kind == "idle" {
		return fmt.Sprintf("your machine %s will be %s in %s: it has had no activity for %s. Any activity keeps it.",
			l.ServerName, pastTense(r.m.cfg.Policy.IdleAction), left, FormatDuration(now.Sub(l.LastActivity)))
	}
	return fmt.Sprintf("your machine %s expires in %s and will then be deleted with its files; run `%s extend 2h` to keep it.",
		l.ServerName, left, r.cfg.Invocation)
}

func pastTense(a IdleAction) string {
	switch a {
	case IdleHibernate:
		return "hibernated"
	case IdleDestroy:
		return "destroyed"
	default:
		return "stopped"
	}
}
