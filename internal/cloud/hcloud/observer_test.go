package hcloud_test

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// recObserver records what an hcloud.Observer is told.
type recObserver struct {
	mu        sync.Mutex
	requests  map[string]int // "GET 200"
	retries   map[string]int
	remaining []int
	limit     int
}

func newRecObserver() *recObserver {
	return &recObserver{requests: map[string]int{}, retries: map[string]int{}}
}

func (o *recObserver) Request(method string, status int) {
	o.mu.Lock()
	o.requests[fmt.Sprintf("%s %d", method, status)]++
	o.mu.Unlock()
}

func (o *recObserver) RateLimit(remaining, limit int) {
	o.mu.Lock()
	o.remaining = append(o.remaining, remaining)
	o.limit = limit
	o.mu.Unlock()
}

func (o *recObserver) Retry(reason string) {
	o.mu.Lock()
	o.retries[reason]++
	o.mu.Unlock()
}

func (o *recObserver) counts() (requests, retries map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.requests), maps.Clone(o.retries)
}

// TestObserverFollowsTheRateLimit: every answer is counted by its status,
// and the remaining rate limit follows the fake's bucket down to empty,
// where a 429 is retried once and then given up.
func TestObserverFollowsTheRateLimit(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Unix(2_000_000_000, 0)) // the bucket never refills
	cloud, err := localcloud.Start(localcloud.Options{
		DataDir: t.TempDir(), SSHPort: testkit.FreePort(t),
		RateLimit: localcloud.RateLimit{Capacity: 4, Refill: time.Hour},
		Now:       clock.Now, Logger: testkit.Log(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close() })
	obs := newRecObserver()
	p := newProvider(t, cloud.Endpoint(), cloud.Token(), func(c *hcloud.Config) {
		c.Observer, c.Clock = obs, clock
		c.Retry.Attempts, c.Retry.RateLimitWait = 2, 10*time.Millisecond
	})
	ctx := testkit.Context(t, 30*time.Second)
	for range 4 {
		if _, err := p.Get(ctx, 999); !errors.Is(err, lease.ErrServerNotFound) {
			t.Fatalf("get a server that is not there: %v", err)
		}
	}
	if _, err := p.Get(ctx, 999); err == nil || errors.Is(err, lease.ErrServerNotFound) {
		t.Fatalf("get with the bucket empty: %v", err)
	}
	requests, retries := obs.counts()
	if want := map[string]int{"GET 404": 4, "GET 429": 2}; !maps.Equal(requests, want) {
		t.Errorf("requests %v, want %v", requests, want)
	}
	if want := map[string]int{hcloud.RetryRateLimited: 1}; !maps.Equal(retries, want) {
		t.Errorf("retries %v, want %v", retries, want)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if want := []int{3, 2, 1, 0, 0, 0}; !slices.Equal(obs.remaining, want) || obs.limit != 4 {
		t.Errorf("rate limit remaining %v of %d, want %v of 4", obs.remaining, obs.limit, want)
	}
}

// TestObserverCountsRetriesByReason: each fault the transport retries is
// counted under its fixed reason, and each attempt under its answer.
func TestObserverCountsRetriesByReason(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	once := func(status int, code string) func(w http.ResponseWriter, r *http.Request) bool {
		var h hits
		return func(w http.ResponseWriter, r *http.Request) bool {
			if !getServer.matches(r) || h.add() > 1 {
				return false
			}
			writeAPIError(w, status, code)
			return true
		}
	}
	for _, tc := range []struct {
		reason string
		fault  func(w http.ResponseWriter, r *http.Request) bool
		status int // of the failed attempt; 0 for no answer
	}{
		{hcloud.RetryLocked, once(http.StatusLocked, "locked"), 423},
		{hcloud.RetryConflict, once(http.StatusConflict, "conflict"), 409},
		{hcloud.RetryUnavailable, once(http.StatusServiceUnavailable, "unavailable"), 503},
		{hcloud.RetryServerError, once(http.StatusInternalServerError, "server_error"), 500},
		{hcloud.RetryTimeout, func(w http.ResponseWriter, r *http.Request) bool {
			if !getServer.matches(r) {
				return false
			}
			<-r.Context().Done() // no answer: the attempt's timeout ends it
			return true
		}, 0},
	} {
		obs := newRecObserver()
		p := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), func(c *hcloud.Config) {
			c.Observer = obs
			c.Retry.Attempts, c.Retry.Timeout = 2, 200*time.Millisecond
		})
		e.faults.onRequest(tc.fault)
		_, err := p.Get(ctx, 999)
		e.faults.onRequest(nil)
		if tc.reason != hcloud.RetryTimeout && !errors.Is(err, lease.ErrServerNotFound) {
			t.Errorf("%s: get after one fault: %v", tc.reason, err)
		}
		requests, retries := obs.counts()
		if want := map[string]int{tc.reason: 1}; !maps.Equal(retries, want) {
			t.Errorf("%s: retries %v, want %v", tc.reason, retries, want)
		}
		if requests[fmt.Sprintf("GET %d", tc.status)] == 0 {
			t.Errorf("%s: requests %v, want one answered %d", tc.reason, requests, tc.status)
		}
	}

	// Nothing listens: the connection fails, and is tried again.
	obs := newRecObserver()
	p := newProvider(t, fmt.Sprintf("http://127.0.0.1:%d/v1", testkit.FreePort(t)), "token", func(c *hcloud.Config) {
		c.Observer = obs
		c.Retry.Attempts = 2
	})
	if _, err := p.Get(ctx, 999); err == nil {
		t.Fatal("get from nowhere succeeded")
	}
	requests, retries := obs.counts()
	if want := map[string]int{hcloud.RetryConnection: 1}; !maps.Equal(retries, want) {
		t.Errorf("connection: retries %v, want %v", retries, want)
	}
	if want := map[string]int{"GET 0": 2}; !maps.Equal(requests, want) {
		t.Errorf("connection: requests %v, want %v", requests, want)
	}
}
