package localcloud

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Hetzner's rate limit: a bucket of 3600 requests per project that every
// request takes one from and that refills by one a second. An empty bucket
// answers 429 rate_limit_exceeded. Every answer carries the headers
// RateLimit-Limit (the bucket's size), RateLimit-Remaining (what is left
// after this request) and RateLimit-Reset (the Unix time at which the
// bucket is full again). See "Rate Limiting" in Hetzner's API reference,
// https://docs.hetzner.cloud/reference/cloud.
const (
	DefaultRateLimit  = 3600
	DefaultRateRefill = time.Second
)

// RateLimit sizes the fake's request bucket; zero fields take Hetzner's
// figures. Tests shrink it to reach the limit in a few requests.
type RateLimit struct {
	Capacity int           // requests the full bucket holds
	Refill   time.Duration // one request comes back per Refill
}

// bucket is the project's rate-limit bucket.
type bucket struct {
	capacity int
	refill   time.Duration
	now      func() time.Time

	mu     sync.Mutex
	tokens int
	filled time.Time // when tokens was last brought up to date
}

func newBucket(rl RateLimit, now func() time.Time) *bucket {
	if rl.Capacity <= 0 {
		rl.Capacity = DefaultRateLimit
	}
	if rl.Refill <= 0 {
		rl.Refill = DefaultRateRefill
	}
	return &bucket{capacity: rl.Capacity, refill: rl.Refill, now: now, tokens: rl.Capacity, filled: now()}
}

// take spends one request if the bucket has one, sets the RateLimit-*
// headers on w, and reports whether the request may go on.
func (b *bucket) take(w http.ResponseWriter) bool {
	b.mu.Lock()
	now := b.now()
	if gained := int(now.Sub(b.filled) / b.refill); gained > 0 {
		b.tokens = min(b.capacity, b.tokens+gained)
		b.filled = b.filled.Add(time.Duration(gained) * b.refill)
	}
	if b.tokens == b.capacity {
		b.filled = now // a full bucket starts its next refill from now
	}
	ok := b.tokens > 0
	if ok {
		b.tokens--
	}
	remaining := b.tokens
	// Full again once the missing requests have come back; the header
	// counts whole seconds, so round up.
	full := b.filled.Add(time.Duration(b.capacity-remaining) * b.refill)
	b.mu.Unlock()

	h := w.Header()
	h.Set("RateLimit-Limit", strconv.Itoa(b.capacity))
	h.Set("RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("RateLimit-Reset", strconv.FormatInt(full.Add(time.Second-1).Unix(), 10))
	if !ok {
		writeError(w, http.StatusTooManyRequests, "rate_limit_exceeded", "limit of "+strconv.Itoa(b.capacity)+" requests per hour reached", nil)
	}
	return ok
}
