package hcloud_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// requestLog notes the requests the fake sees, in order.
type requestLog struct {
	mu   sync.Mutex
	seen []*http.Request
}

func (l *requestLog) note(_ http.ResponseWriter, r *http.Request) bool {
	l.mu.Lock()
	l.seen = append(l.seen, r)
	l.mu.Unlock()
	return false
}

// between counts the requests matching what after the first matching from
// and before the first matching to after it.
func (l *requestLog) between(from, to, what route) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, counting := 0, false
	for _, r := range l.seen {
		switch {
		case !counting && from.matches(r):
			counting = true
		case counting && to.matches(r):
			return n
		case counting && what.matches(r):
			n++
		}
	}
	return n
}

var postPowerOff = route{http.MethodPost, regexp.MustCompile(`/actions/poweroff$`)}

// TestPowerOffWaitsForTheGuest: a shutdown's action succeeds before the
// server is off (ACPI); PowerOff waits for the guest instead of cutting
// the power.
func TestPowerOffWaitsForTheGuest(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	_, srv := e.server(t, ctx, "acpi2")
	if err := e.p.PowerOff(ctx, srv.ID); err != nil {
		t.Fatalf("power off: %v", err)
	}
	if got, err := e.p.Get(ctx, srv.ID); err != nil || got.Status != "off" {
		t.Fatalf("after power off: %+v, %v", got, err)
	}
	if n := e.faults.count("stop_server"); n != 0 {
		t.Fatalf("%d hard power-offs for a guest that shuts down", n)
	}
}

// TestPowerOffCutsPowerWhenShutdownIgnored: a guest that ignores the
// request is powered off after ShutdownTimeout, and the wait polls at
// growing intervals, not at PollInterval throughout.
func TestPowerOffCutsPowerWhenShutdownIgnored(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	_, srv := e.server(t, ctx, "acpi3")
	e.faults.set("shutdown_server", localcloud.ActionFault{Ignored: true})
	var log requestLog
	e.faults.onRequest(log.note)
	// PollInterval is 10ms: steady polling would take 30 requests in
	// 300ms; growing by half each time up to 100ms takes at most 8.
	p := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), func(c *hcloud.Config) { c.ShutdownTimeout = 300 * time.Millisecond })
	if err := p.PowerOff(ctx, srv.ID); err != nil {
		t.Fatalf("power off: %v", err)
	}
	if got, err := e.p.Get(ctx, srv.ID); err != nil || got.Status != "off" {
		t.Fatalf("after power off: %+v, %v", got, err)
	}
	if n := e.faults.count("stop_server"); n != 1 {
		t.Fatalf("%d hard power-offs, want 1", n)
	}
	if n := log.between(postShutdown, postPowerOff, getServer); n < 1 || n > 8 {
		t.Fatalf("%d server polls while waiting for the shutdown, want 1 to 8", n)
	}
}

// TestRequestsSlowDownBeforeTheRateLimit drains a small rate-limit bucket:
// the provider reads RateLimit-* and spaces its requests once the bucket
// runs low, so Hetzner never has to answer 429.
func TestRequestsSlowDownBeforeTheRateLimit(t *testing.T) {
	t.Parallel()
	ctx := testkit.Context(t, 30*time.Second)
	cloud, err := localcloud.Start(localcloud.Options{
		DataDir: t.TempDir(), SSHPort: testkit.FreePort(t), Logger: testkit.Log(t),
		RateLimit: localcloud.RateLimit{Capacity: 30, Refill: 20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	var mu sync.Mutex
	statuses := map[int]int{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		cloud.Handler().ServeHTTP(rec, r)
		mu.Lock()
		statuses[rec.Code]++
		mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	defer ts.Close()
	p := newProvider(t, ts.URL+"/v1", cloud.Token())

	const calls = 60 // twice the bucket
	for i := range calls {
		if _, err := p.List(ctx); err != nil {
			t.Fatalf("list %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if statuses[http.StatusTooManyRequests] != 0 || statuses[http.StatusOK] != calls {
		t.Fatalf("answers by status: %v; want %d OK and no 429", statuses, calls)
	}
}
