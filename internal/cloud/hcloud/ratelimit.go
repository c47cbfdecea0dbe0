package hcloud

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// budget follows Hetzner's rate limit as its RateLimit-* headers report
// it, and spaces requests out once little of it is left.
type budget struct {
	mu        sync.Mutex
	known     bool
	limit     int
	remaining int
	reset     time.Time // when the bucket is full again
	refill    time.Duration
	next      time.Time // the earliest send time while pacing
	pacing    bool
}

// lowBudget is the share of the limit below which requests are paced.
const lowBudget = 10 // a tenth

// note reads an answer's rate-limit headers and returns what they say,
// ok false when they are missing or unusable: then nothing changes.
func (b *budget) note(h http.Header, now time.Time) (remaining, limit int, ok bool) {
	limit, err1 := strconv.Atoi(h.Get("RateLimit-Limit"))
	remaining, err2 := strconv.Atoi(h.Get("RateLimit-Remaining"))
	reset, err3 := strconv.ParseInt(h.Get("RateLimit-Reset"), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || limit <= 0 || remaining < 0 {
		return 0, 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.known, b.limit, b.remaining, b.reset = true, limit, remaining, time.Unix(reset, 0)
	// The time one request takes to come back: the rest of the way to
	// full, shared among the requests missing. Reset counts whole seconds,
	// so this errs long, on the safe side.
	if missing := limit - remaining; missing > 0 && b.reset.After(now) {
		b.refill = b.reset.Sub(now) / time.Duration(missing)
	}
	return remaining, limit, true
}

// slot is one request's place in the budget.
type slot struct {
	wait             time.Duration // how long to hold the request
	began, ended     bool          // whether pacing began or ended with it
	remaining, limit int
}

// take is the next request's slot: no wait while a tenth of the budget or
// more is left, else one refill after the previous paced request. It
// books the slot it hands out, so requests sent at once are spaced too.
func (b *budget) take(now time.Time) slot {
	b.mu.Lock()
	defer b.mu.Unlock()
	low := b.known && b.refill > 0 && b.remaining*lowBudget < b.limit
	s := slot{began: low && !b.pacing, ended: !low && b.pacing, remaining: b.remaining, limit: b.limit}
	b.pacing = low
	if !low {
		return s
	}
	at := b.next
	if at.Before(now) {
		at = now
	}
	b.next = at.Add(b.refill)
	s.wait = at.Sub(now)
	return s
}

// pace holds a request while the budget is low, at most
// Retry.RateLimitWait.
func (t *retryTransport) pace(ctx context.Context) error {
	// Slots are spaced in elapsed time, which the injected clock (kept
	// for reading RateLimit-Reset) need not tell.
	s := t.budget.take(time.Now())
	switch {
	case s.began:
		t.log.Warn("Hetzner API rate limit running low; spacing requests out", "remaining", s.remaining, "limit", s.limit)
	case s.ended:
		t.log.Info("Hetzner API rate limit recovered", "remaining", s.remaining, "limit", s.limit)
	}
	if s.wait <= 0 {
		return nil
	}
	timer := time.NewTimer(min(s.wait, t.retry.RateLimitWait))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
