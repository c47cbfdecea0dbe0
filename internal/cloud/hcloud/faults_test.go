package hcloud_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

func writeAPIError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": "test fault: " + code, "details": nil}})
}

// route names the requests a fault is for: a method and a path pattern.
type route struct {
	method string
	path   *regexp.Regexp
}

func (rt route) matches(r *http.Request) bool {
	return r.Method == rt.method && rt.path.MatchString(r.URL.Path)
}

var (
	getServer    = route{http.MethodGet, regexp.MustCompile(`^/v1/servers/\d+$`)}
	postShutdown = route{http.MethodPost, regexp.MustCompile(`/actions/shutdown$`)}
	postPowerOn  = route{http.MethodPost, regexp.MustCompile(`/actions/poweron$`)}
)

// failAll answers every request on rt with an API error, counting them in
// h.
func failAll(h *hits, rt route, status int, code string) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !rt.matches(r) {
			return false
		}
		h.add()
		writeAPIError(w, status, code)
		return true
	}
}

// hits counts requests matching method and a path pattern and answers the
// first ones with a fault.
type hits struct {
	mu    sync.Mutex
	n     int
	times []time.Time
}

func (h *hits) add() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	h.times = append(h.times, time.Now())
	return h.n
}

func (h *hits) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

func TestRequestRetriesAreBounded(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	_, srv := e.server(t, ctx, "bound1")

	// A GET the API keeps refusing with 503 is sent DefaultRequestAttempts
	// times, then fails with a sentence.
	var gets hits
	e.faults.onRequest(failAll(&gets, getServer, http.StatusServiceUnavailable, "service_error"))
	_, err := e.p.Get(ctx, srv.ID)
	if err == nil || !strings.Contains(err.Error(), "the Hetzner API is having trouble") || !strings.Contains(err.Error(), "try again later") {
		t.Fatalf("get while the API answers 503: %v", err)
	}
	if gets.count() != hcloud.DefaultRequestAttempts {
		t.Fatalf("the GET was sent %d times, want %d", gets.count(), hcloud.DefaultRequestAttempts)
	}

	// A POST answered 500 may have taken effect, so the request is not
	// resent as is; the operation checks the server again and retries, at
	// most DefaultOperationAttempts times.
	var posts hits
	e.faults.onRequest(failAll(&posts, postShutdown, http.StatusInternalServerError, "server_error"))
	err = e.p.PowerOff(ctx, srv.ID)
	if err != nil {
		// Shutdown failing is survivable: PowerOff cuts the power instead.
		t.Fatalf("power off while shutdown answers 500: %v", err)
	}
	if posts.count() != 1 {
		t.Fatalf("shutdown was requested %d times, want 1", posts.count())
	}
	posts = hits{}
	e.faults.onRequest(failAll(&posts, postPowerOn, http.StatusInternalServerError, "server_error"))
	err = e.p.PowerOn(ctx, srv.ID)
	if err == nil || !strings.Contains(err.Error(), "tried 3 times") || !strings.Contains(err.Error(), "power on server cc-bound1") {
		t.Fatalf("power on while the API answers 500: %v", err)
	}
	if posts.count() != hcloud.DefaultOperationAttempts {
		t.Fatalf("power on was requested %d times, want %d", posts.count(), hcloud.DefaultOperationAttempts)
	}

	// Locked and conflict answers prove nothing happened: the same POST
	// goes again and succeeds.
	posts = hits{}
	e.faults.onRequest(func(w http.ResponseWriter, r *http.Request) bool {
		if postPowerOn.matches(r) {
			switch posts.add() {
			case 1:
				writeAPIError(w, http.StatusLocked, "locked")
				return true
			case 2:
				writeAPIError(w, http.StatusConflict, "conflict")
				return true
			}
		}
		return false
	})
	if err := e.p.PowerOn(ctx, srv.ID); err != nil {
		t.Fatalf("power on after locked and conflict: %v", err)
	}
	if posts.count() != 3 || e.faults.count("start_server") != 2 {
		t.Fatalf("power on: %d requests, %d start actions in all; want 3 requests and the second start", posts.count(), e.faults.count("start_server"))
	}
	if got, err := e.p.Get(ctx, srv.ID); err != nil || got.Status != "running" {
		t.Fatalf("after power on: %+v, %v", got, err)
	}
}

func TestRateLimitResetIsWaitedFor(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	_, srv := e.server(t, ctx, "rate1")
	reset := time.Unix(2_000_000_000, 0)
	limited := func(h *hits, times int) func(w http.ResponseWriter, r *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if !getServer.matches(r) {
				return false
			}
			if h.add() > times {
				return false
			}
			w.Header().Set("RateLimit-Limit", "3600")
			w.Header().Set("RateLimit-Remaining", "0")
			w.Header().Set("RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
			writeAPIError(w, http.StatusTooManyRequests, "rate_limit_exceeded")
			return true
		}
	}

	// The reset is 500ms away by the provider's clock: the retry waits
	// for it, far longer than the 20ms backoff would.
	var h hits
	e.faults.onRequest(limited(&h, 1))
	p := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), func(c *hcloud.Config) {
		c.Clock = testkit.NewClock(reset.Add(-500 * time.Millisecond))
	})
	if _, err := p.Get(ctx, srv.ID); err != nil {
		t.Fatalf("get after one 429: %v", err)
	}
	if h.count() != 2 {
		t.Fatalf("%d requests, want 2", h.count())
	}
	if gap := h.times[1].Sub(h.times[0]); gap < 300*time.Millisecond {
		t.Fatalf("retried %v after the 429; the reset was 500ms away", gap)
	}

	// A reset far away is waited for at most RateLimitWait, then the
	// request is tried again (Hetzner refills its bucket steadily).
	p = newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), func(c *hcloud.Config) {
		c.Clock = testkit.NewClock(reset.Add(-time.Hour))
		c.Retry.RateLimitWait = 50 * time.Millisecond
	})
	h = hits{}
	e.faults.onRequest(limited(&h, 2))
	if _, err := p.Get(ctx, srv.ID); err != nil {
		t.Fatalf("get after two 429s: %v", err)
	}
	if h.count() != 3 {
		t.Fatalf("%d requests, want 3", h.count())
	}

	// A wait that would overrun the request's budget is not started: the
	// person hears about the rate limit at once.
	p = newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), func(c *hcloud.Config) {
		c.Clock = testkit.NewClock(reset.Add(-time.Hour))
		c.Retry.Budget = 200 * time.Millisecond
	})
	h = hits{}
	e.faults.onRequest(limited(&h, 100))
	_, err := p.Get(ctx, srv.ID)
	if err == nil || !strings.Contains(err.Error(), "the Hetzner API rate limit is used up (429)") {
		t.Fatalf("get with the rate limit used up for an hour: %v", err)
	}
	if h.count() != 1 {
		t.Fatalf("%d requests, want 1", h.count())
	}
}

func TestPermanentlyFailingActions(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	_, srv := e.server(t, ctx, "perm1")
	if err := e.p.PowerOff(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}

	e.faults.set("start_server", localcloud.ActionFault{Code: "action_failed", Message: "no host available"})
	before := e.faults.count("start_server")
	err := e.p.PowerOn(ctx, srv.ID)
	if err == nil || err.Error() != "power on server cc-perm1: Hetzner reports that action start_server failed: no host available (action_failed) (tried 3 times)" {
		t.Fatalf("power on with a failing start: %v", err)
	}
	var actErr hc.ActionError
	if !errors.As(err, &actErr) {
		t.Fatalf("%v does not carry the action error", err)
	}
	if n := e.faults.count("start_server") - before; n != hcloud.DefaultOperationAttempts {
		t.Fatalf("%d start actions, want %d", n, hcloud.DefaultOperationAttempts)
	}

	e.faults.set("create_image", localcloud.ActionFault{Code: "action_failed", Message: "disk unreadable"})
	_, err = e.p.Snapshot(ctx, srv.ID, "perm1")
	if err == nil || !strings.Contains(err.Error(), "action create_image failed: disk unreadable") || !strings.Contains(err.Error(), "tried 3 times") {
		t.Fatalf("snapshot with a failing create_image: %v", err)
	}
	if n := e.faults.count("create_image"); n != hcloud.DefaultOperationAttempts {
		t.Fatalf("%d snapshots attempted, want %d", n, hcloud.DefaultOperationAttempts)
	}
	if images, err := e.p.Images(ctx); err != nil || len(images) != 0 {
		t.Fatalf("failed snapshots left images behind: %+v, %v", images, err)
	}

	// Refusals that cannot pass are not retried.
	spec := newPerson(t, "perm2", e.port).spec
	spec.UserData = `{"version":1}`
	created := e.faults.count("create_server")
	if _, err := e.p.Create(ctx, spec); !hc.IsError(err, hc.ErrorCodeInvalidInput) || strings.Contains(err.Error(), "tried") {
		t.Fatalf("create with invalid user_data: %v", err)
	}
	if e.faults.count("create_server") != created {
		t.Fatal("an invalid create made a server")
	}
}

// TestNoAnswerIsRetriedSafely: a request that times out is sent again only
// if that is safe; a POST that took effect without an answer is not
// repeated blindly, the operation finds its effect.
func TestNoAnswerIsRetriedSafely(t *testing.T) {
	e, ctx := newEnv(t, 30*time.Second)
	_, srv := e.server(t, ctx, "slow1")
	if err := e.p.PowerOff(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}
	p := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), func(c *hcloud.Config) { c.Retry.Timeout = 200 * time.Millisecond })
	// stall holds a request until the client gives up on it.
	stall := func(r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second): // bound, should the client never give up
		}
	}

	var gets hits
	e.faults.onRequest(func(w http.ResponseWriter, r *http.Request) bool {
		if getServer.matches(r) && gets.add() == 1 {
			stall(r)
			return true
		}
		return false
	})
	if _, err := p.Get(ctx, srv.ID); err != nil {
		t.Fatalf("get after one stalled attempt: %v", err)
	}
	if gets.count() != 2 {
		t.Fatalf("%d GETs, want 2", gets.count())
	}

	// The first power on is carried out, but its answer never arrives.
	var posts hits
	e.faults.onRequest(func(w http.ResponseWriter, r *http.Request) bool {
		if postPowerOn.matches(r) && posts.add() == 1 {
			stall(r)
			return false // now the API carries it out
		}
		return false
	})
	starts := e.faults.count("start_server")
	if err := p.PowerOn(ctx, srv.ID); err != nil {
		t.Fatalf("power on whose answer was lost: %v", err)
	}
	if posts.count() != 1 || e.faults.count("start_server") != starts+1 {
		t.Fatalf("%d power on requests and %d start actions; want one of each", posts.count(), e.faults.count("start_server")-starts)
	}
	if got, err := p.Get(ctx, srv.ID); err != nil || got.Status != "running" {
		t.Fatalf("after power on: %+v, %v", got, err)
	}
}

// recorder notes every answer of the API, in order.
type recorder struct {
	next http.Handler

	mu      sync.Mutex
	answers []answer
}

type answer struct {
	key    string // method and URL
	status int
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	rec.next.ServeHTTP(sw, r)
	rec.mu.Lock()
	rec.answers = append(rec.answers, answer{key: r.Method + " " + r.URL.String(), status: sw.status})
	rec.mu.Unlock()
}

// longestFaultRun is the most times one request was answered with a fault
// in a row.
func (rec *recorder) longestFaultRun() (int, string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	longest, run, key, worst := 0, 0, "", ""
	for _, a := range rec.answers {
		faulted := a.status == 429 || a.status == 423 || a.status == 409 || a.status >= 500
		switch {
		case faulted && a.key == key:
			run++
		case faulted:
			run, key = 1, a.key
		default:
			run, key = 0, ""
		}
		if run > longest {
			longest, worst = run, a.key
		}
	}
	return longest, worst
}

// TestLifecycleUnderRandomFaults drives a whole life (create, stop, start,
// hibernate, resume, destroy) while the API misbehaves at a high rate.
// Each step either succeeds or fails with a clean sentence; a failed step
// is repeated, as the lease manager does on the next connection or reaper
// pass, and the life completes with the person's files intact.
func TestLifecycleUnderRandomFaults(t *testing.T) {
	t.Parallel()
	port := testkit.FreePort(t)
	rf := &localcloud.RandomFaults{Rate: 0.3, Seed: 16, SlowAction: 50 * time.Millisecond}
	cloud := startCloud(t, t.TempDir(), port, localcloud.KindBuiltin, rf)
	rec := &recorder{next: cloud.Handler()}
	ts := httptest.NewServer(rec)
	defer ts.Close()
	p := newProvider(t, ts.URL+"/v1", cloud.Token(), func(c *hcloud.Config) { c.Retry.RateLimitWait = 20 * time.Millisecond })
	ctx := testkit.Context(t, 60*time.Second)
	alice := newPerson(t, "chaos1", port)

	const maxTries = 6
	failures := 0
	step := func(name string, fn func() error) {
		t.Helper()
		for try := 1; ; try++ {
			err := fn()
			if err == nil {
				return
			}
			failures++
			msg := err.Error()
			if msg == "" || strings.ContainsAny(msg, "\n") || strings.Contains(msg, "goroutine") || strings.Contains(msg, cloud.Token()) {
				t.Fatalf("%s failed with an unclean error: %q", name, msg)
			}
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
				t.Fatalf("%s: the test ran out of time: %v", name, err)
			}
			if try == maxTries {
				t.Fatalf("%s still fails after %d tries: %v", name, try, err)
			}
			t.Logf("%s failed cleanly (try %d): %v", name, try, err)
		}
	}
	gone := func(err error) error {
		if errors.Is(err, lease.ErrServerNotFound) || errors.Is(err, lease.ErrImageNotFound) {
			return nil // an earlier try did it
		}
		return err
	}

	var srv lease.Server
	step("create", func() (err error) { srv, err = p.Create(ctx, alice.spec); return err })
	addr := func() string { return srv.IPv4 + ":" + strconv.Itoa(port) }
	step("wait ssh", func() error { return alice.wait(ctx, addr(), alice.hostKey) })
	runOnMachine(t, addr(), alice, "echo survived > chaos")
	step("stop", func() error { return p.PowerOff(ctx, srv.ID) })
	step("start", func() error { return p.PowerOn(ctx, srv.ID) })
	step("stop again", func() error { return p.PowerOff(ctx, srv.ID) })
	var im lease.Image
	step("snapshot", func() (err error) { im, err = p.Snapshot(ctx, srv.ID, "chaos1"); return err })
	step("delete", func() error { return gone(p.Delete(ctx, srv.ID)) })
	resume := alice.spec
	resume.ImageID = im.ID
	step("resume", func() (err error) { srv, err = p.Create(ctx, resume); return err })
	step("wait ssh after resume", func() error { return alice.wait(ctx, addr(), alice.hostKey) })
	if out := runOnMachine(t, addr(), alice, "cat chaos"); out != "survived\n" {
		t.Fatalf("the file after resuming: %q", out)
	}
	var cpu float64
	step("cpu", func() (err error) { cpu, err = p.CPUUsage(ctx, srv.ID, time.Minute); return err })
	step("prices", func() error { _, err := p.Prices(ctx, "cx23", "fsn1"); return err })
	var home lease.Volume
	step("create volume", func() (err error) {
		home, err = p.CreateVolume(ctx, lease.VolumeSpec{Name: "cc-home-chaos1", Owner: "chaos1", SizeGB: 10, Location: "fsn1"})
		return err
	})
	step("attach volume", func() error { return p.AttachVolume(ctx, home.ID, srv.ID) })
	step("detach volume", func() error { return p.DetachVolume(ctx, home.ID) })
	step("delete volume", func() error {
		if err := p.DeleteVolume(ctx, home.ID); !errors.Is(err, lease.ErrVolumeNotFound) {
			return err
		}
		return nil // an earlier try did it
	})
	step("destroy", func() error { return gone(p.Delete(ctx, srv.ID)) })
	step("delete snapshot", func() error { return gone(p.DeleteImage(ctx, im.ID)) })

	var servers []lease.Server
	step("list", func() (err error) { servers, err = p.List(ctx); return err })
	var images []lease.Image
	step("images", func() (err error) { images, err = p.Images(ctx); return err })
	var volumes []lease.Volume
	step("volumes", func() (err error) { volumes, err = p.Volumes(ctx, ""); return err })
	if len(servers) != 0 || len(images) != 0 || len(volumes) != 0 || cpu != 0 {
		t.Fatalf("after the life: servers %+v, images %+v, volumes %+v, cpu %v", servers, images, volumes, cpu)
	}

	counts := rf.Counts()
	requestFaults := counts[localcloud.FaultUnavailable] + counts[localcloud.FaultServerError] +
		counts[localcloud.FaultRateLimited] + counts[localcloud.FaultLocked] + counts[localcloud.FaultConflict]
	actionFaults := counts[localcloud.FaultActionFailed] + counts[localcloud.FaultSlowAction]
	if requestFaults == 0 || actionFaults == 0 {
		t.Fatalf("faults injected: %v; the test proves nothing without both kinds", counts)
	}
	// One request is sent at most Attempts times; an operation retried
	// may send it again, at most Operations times.
	run, key := rec.longestFaultRun()
	if limit := hcloud.DefaultRequestAttempts * hcloud.DefaultOperationAttempts; run > limit {
		t.Fatalf("%s was answered with faults %d times in a row; retries are bounded by %d", key, run, limit)
	}
	rec.mu.Lock()
	total := len(rec.answers)
	rec.mu.Unlock()
	t.Logf("%d requests, faults injected %v, longest run of faults for one request %d (%s), %d failed steps repeated",
		total, counts, run, key, failures)
}
