package localcloud_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestRateLimitBucket drains a small bucket: every request spends one,
// the empty bucket answers 429 rate_limit_exceeded, one request comes back
// per refill period, and every answer says so in its RateLimit-* headers.
func TestRateLimitBucket(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := testkit.NewClock(now)
	cloud, err := localcloud.Start(localcloud.Options{
		DataDir: t.TempDir(), SSHPort: testkit.FreePort(t), Now: clock.Now, Logger: testkit.Log(t),
		RateLimit: localcloud.RateLimit{Capacity: 3, Refill: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	v := newValidator(t, cloud.Handler())

	type answer struct {
		status           int
		code             string
		limit, remaining string
		reset            time.Time
	}
	get := func(token string) answer {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "/v1/locations", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		v.ServeHTTP(w, r)
		var body struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		a := answer{status: w.Code, code: body.Error.Code,
			limit: w.Header().Get("RateLimit-Limit"), remaining: w.Header().Get("RateLimit-Remaining")}
		if sec, err := strconv.ParseInt(w.Header().Get("RateLimit-Reset"), 10, 64); err == nil {
			a.reset = time.Unix(sec, 0).UTC()
		}
		return a
	}
	want := func(what string, got answer, status int, remaining string, reset time.Time) {
		t.Helper()
		if got.status != status || got.limit != "3" || got.remaining != remaining || !got.reset.Equal(reset) {
			t.Fatalf("%s: %+v; want status %d, limit 3, remaining %s, reset %v", what, got, status, remaining, reset)
		}
	}

	want("first request", get(cloud.Token()), 200, "2", now.Add(time.Minute))
	want("second request", get(cloud.Token()), 200, "1", now.Add(2*time.Minute))
	clock.Advance(10 * time.Second)
	want("third request", get(cloud.Token()), 200, "0", now.Add(3*time.Minute))
	got := get(cloud.Token())
	want("request on the empty bucket", got, 429, "0", now.Add(3*time.Minute))
	if got.code != "rate_limit_exceeded" {
		t.Fatalf("429 with error code %q", got.code)
	}
	// A stranger's request is refused before it can spend the project's
	// budget.
	if got := get("wrong"); got.status != http.StatusUnauthorized {
		t.Fatalf("request with a wrong token: %+v", got)
	}

	// One request back per refill period, not the whole bucket.
	clock.Set(now.Add(time.Minute))
	want("request after one refill", get(cloud.Token()), 200, "0", now.Add(4*time.Minute))
	want("request after it", get(cloud.Token()), 429, "0", now.Add(4*time.Minute))
	// Long enough for a full bucket: it holds no more than its capacity.
	clock.Set(now.Add(time.Hour))
	want("request on a full bucket", get(cloud.Token()), 200, "2", now.Add(time.Hour+time.Minute))

	v.report(t, []string{"GET /locations 200", "GET /locations 429", "GET /locations 401"})
}

// TestRateLimitDefaults: Hetzner's 3600 requests an hour.
func TestRateLimitDefaults(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	cloud, err := localcloud.Start(localcloud.Options{
		DataDir: t.TempDir(), SSHPort: testkit.FreePort(t), Now: testkit.NewClock(now).Now, Logger: testkit.Log(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	r := httptest.NewRequest(http.MethodGet, "/v1/locations", nil)
	r.Header.Set("Authorization", "Bearer "+cloud.Token())
	w := httptest.NewRecorder()
	cloud.Handler().ServeHTTP(w, r)
	h := w.Header()
	if h.Get("RateLimit-Limit") != "3600" || h.Get("RateLimit-Remaining") != "3599" ||
		h.Get("RateLimit-Reset") != strconv.FormatInt(now.Add(time.Second).Unix(), 10) {
		t.Fatalf("rate-limit headers of a fresh project: %v", h)
	}
}
