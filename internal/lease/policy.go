package lease

import (
	"fmt"
	"time"
)

// Policy bounds how long machines live.
type Policy struct {
	DefaultTTL  time.Duration // expiry of a new lease, from creation
	MaxTTL      time.Duration // the furthest ahead of now an expiry may be
	MaxLifetime time.Duration // the furthest after creation an expiry may be
	IdleTimeout time.Duration // no activity for this long triggers IdleAction; 0 never
	IdleAction  IdleAction    // what happens to an idle machine
	// BusyCPU is the CPU use, in percent, at or above which an idle machine
	// is left alone: an agent or build may be running without a connection.
	// Zero disables the check.
	BusyCPU float64
	// MaxUnattended is how long after the person's last activity a working
	// agent keeps the machine as active as the person would. Zero: the
	// agent is never asked.
	MaxUnattended time.Duration
	// WarnBefore are the lead times at which connected people are warned
	// before their machine is stopped for idleness or destroyed at expiry.
	WarnBefore []time.Duration
	// RevokedAction is what happens to the machine of a key that left the
	// allow list; RevokedStop if empty.
	RevokedAction RevokedAction
}

// RevokedAction is what Manager.Revoke does to a revoked key's machine.
type RevokedAction string

// The revoked actions.
const (
	RevokedStop    RevokedAction = "stop"    // power off, keep the disk
	RevokedKeep    RevokedAction = "keep"    // leave it as it is
	RevokedDestroy RevokedAction = "destroy" // delete everything
)

// IdleAction is what the reaper does to an idle machine.
type IdleAction string

// The idle actions.
const (
	IdleStop      IdleAction = "stop"      // power off, keep the disk
	IdleHibernate IdleAction = "hibernate" // snapshot, then delete the server
	IdleDestroy   IdleAction = "destroy"   // delete everything
)

// ExtendError is a refused extension. Its message names the cap and the
// latest expiry allowed, so the person knows what they can ask for instead.
type ExtendError struct{ msg string }

func (e *ExtendError) Error() string { return e.msg }

// NewExpiry returns the expiry after extending l by d at now:
// max(now, expiry) + d, refused when it passes a cap.
func (p Policy) NewExpiry(l Lease, d time.Duration, now time.Time) (time.Time, error) {
	if d <= 0 {
		return time.Time{}, &ExtendError{fmt.Sprintf("the duration must be positive, such as 2h or 90m, not %s", FormatDuration(d))}
	}
	base := l.Expires
	if base.Before(now) {
		base = now
	}
	next := base.Add(d)
	if limit := now.Add(p.MaxTTL); next.After(limit) {
		return time.Time{}, &ExtendError{fmt.Sprintf(
			"%s more would put the expiry %s from now, beyond the %s cap; the latest expiry allowed is %s (extend by at most %s)",
			FormatDuration(d), FormatDuration(next.Sub(now)), FormatDuration(p.MaxTTL),
			limit.UTC().Format(time.RFC3339), FormatDuration(maxDuration(limit.Sub(base), 0)))}
	}
	if limit := l.Created.Add(p.MaxLifetime); next.After(limit) {
		return time.Time{}, &ExtendError{fmt.Sprintf(
			"%s more would keep the machine beyond its %s maximum lifetime; the latest expiry allowed is %s (extend by at most %s)",
			FormatDuration(d), FormatDuration(p.MaxLifetime),
			limit.UTC().Format(time.RFC3339), FormatDuration(maxDuration(limit.Sub(base), 0)))}
	}
	return next, nil
}

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// FormatTimeLeft prints the time left before a deadline as people read a
// countdown: whole minutes ("5m" when 4m59s are left), seconds in the last
// minute, so a warning never says "in 0s" while time remains.
func FormatTimeLeft(left time.Duration) string {
	if left < time.Minute {
		return FormatDuration(left.Round(time.Second))
	}
	return FormatDuration(left.Round(time.Minute))
}

// FormatDuration prints a duration the way people write it: 2h, 1h30m, 45m,
// 30s; sub-second parts are dropped.
func FormatDuration(d time.Duration) string {
	// Truncated first: the most negative duration has no positive twin.
	d = d.Truncate(time.Second)
	if d < 0 {
		return "-" + FormatDuration(-d)
	}
	if d == 0 {
		return "0s"
	}
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	out := ""
	if h > 0 {
		out += fmt.Sprintf("%dh", h)
	}
	if m > 0 {
		out += fmt.Sprintf("%dm", m)
	}
	if s > 0 && h == 0 {
		out += fmt.Sprintf("%ds", s)
	}
	if out == "" {
		out = fmt.Sprintf("%ds", s)
	}
	return out
}
