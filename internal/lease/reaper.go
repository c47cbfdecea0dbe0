package lease

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Notifier reaches the people connected to a machine. The front door
// implements it; the reaper declares what it needs.
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
	OrphanGrace    time.Duration // age before an unknown labelled server is deleted; default 10m
	BusyWindow     time.Duration // CPU window for the busy check; default 5m
	Invocation     string        // how people reach the gateway, for messages
}

// Reaper stops idle machines, destroys expired ones, warns the people
// connected to them first, and reconciles leases with the provider.
type Reaper struct {
	m      *Manager
	notify Notifier
	cfg    ReaperConfig

	// warned remembers which warnings went out, by lease, deadline and lead
	// time; only the reaper's goroutine touches it.
	warned        map[warning]bool
	lastReconcile time.Time
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
	if cfg.BusyWindow == 0 {
		cfg.BusyWindow = 5 * time.Minute
	}
	if cfg.Invocation == "" {
		cfg.Invocation = "ssh GATEWAY"
	}
	return &Reaper{m: m, notify: notify, cfg: cfg, warned: map[warning]bool{}}
}

// Run reconciles at once, then makes a pass every Interval until ctx ends.
func (r *Reaper) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		r.Tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Tick makes one pass: activity to the store, warnings, idle and expiry
// actions, and a reconcile when one is due.
func (r *Reaper) Tick(ctx context.Context) {
	m := r.m
	now := m.cfg.Clock.Now()
	if r.lastReconcile.IsZero() || now.Sub(r.lastReconcile) >= r.cfg.ReconcileEvery {
		if err := r.Reconcile(ctx); err != nil {
			m.log.Error("reconcile", "err", err)
		} else {
			r.lastReconcile = now
		}
	}
	leases, err := m.cfg.Store.List()
	if err != nil {
		m.log.Error("reaper: list leases", "err", err)
		return
	}
	for _, l := range leases {
		if ctx.Err() != nil {
			return
		}
		if m.busy(l.Fingerprint) {
			continue
		}
		if err := r.reap(ctx, l.Fingerprint, now); err != nil {
			m.log.Error("reaper", "lease", l.ID, "err", err)
		}
	}
	for w := range r.warned {
		if w.deadline.Before(now) {
			delete(r.warned, w)
		}
	}
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

	if !now.Before(l.Expires) {
		r.notify.End(fp, fmt.Sprintf("your machine %s expired at %s and is being deleted.",
			l.ServerName, l.Expires.UTC().Format(time.RFC3339)))
		opCtx, cancel := context.WithTimeout(ctx, m.cfg.OperationTimeout)
		defer cancel()
		return m.destroy(opCtx, l, "expired")
	}
	r.warn(l, "expiry", l.Expires, now, fmt.Sprintf(
		"your machine %s expires in %%s and will then be deleted with its files; run `%s extend 2h` to keep it.",
		l.ServerName, r.cfg.Invocation))

	p := m.cfg.Policy
	if l.State != StateRunning || p.IdleTimeout <= 0 {
		return nil
	}
	idleAt := l.LastActivity.Add(p.IdleTimeout)
	if now.Before(idleAt) {
		r.warn(l, "idle", idleAt, now, fmt.Sprintf(
			"your machine %s will be %s in %%s: it has had no activity for %s. Any activity keeps it.",
			l.ServerName, pastTense(p.IdleAction), FormatDuration(now.Sub(l.LastActivity))))
		return nil
	}

	opCtx, cancel := context.WithTimeout(ctx, m.cfg.OperationTimeout)
	defer cancel()
	if p.BusyCPU > 0 {
		cpu, err := m.cfg.Provider.CPUUsage(opCtx, l.ServerID, r.cfg.BusyWindow)
		if err != nil {
			// Without a figure, stopping could kill someone's work: wait.
			return fmt.Errorf("cpu use of %s: %w", l.ServerName, err)
		}
		if cpu >= p.BusyCPU {
			m.touchAt(fp, now)
			m.event(l, "busy", "idle for %s but using %.0f%% CPU; left running", FormatDuration(now.Sub(l.LastActivity)), cpu)
			return nil
		}
	}
	why := fmt.Sprintf("idle for %s", FormatDuration(now.Sub(l.LastActivity)))
	r.notify.End(fp, fmt.Sprintf("your machine %s is being %s: it had no activity for %s. `%s` starts it again.",
		l.ServerName, pastTense(p.IdleAction), FormatDuration(p.IdleTimeout), r.cfg.Invocation))
	switch p.IdleAction {
	case IdleHibernate:
		_, err = m.hibernate(opCtx, l)
	case IdleDestroy:
		err = m.destroy(opCtx, l, why)
	default:
		_, err = m.stop(opCtx, l, why)
	}
	return err
}

// warn sends the warning for deadline once per lead time that has come,
// naming the time left (format has one %s for it).
func (r *Reaper) warn(l Lease, kind string, deadline, now time.Time, format string) {
	left := deadline.Sub(now)
	due := false
	for _, lead := range r.m.cfg.Policy.WarnBefore {
		w := warning{l.Fingerprint, kind, deadline, lead}
		if left <= lead && !r.warned[w] {
			r.warned[w] = true
			due = true
		}
	}
	if !due {
		return
	}
	// "in 5m" when 4m59s are left reads as people expect.
	shown := left.Round(time.Minute)
	if left < time.Minute {
		shown = left.Round(time.Second)
	}
	msg := fmt.Sprintf(format, FormatDuration(shown))
	if n := r.notify.Warn(l.Fingerprint, msg); n > 0 {
		r.m.event(l, "warning", "%s (to %d sessions)", msg, n)
	}
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
