package hcloud_test

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

func TestCPUUsage(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	now := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)

	// Look at the metrics requests on their way to the fake.
	var mu sync.Mutex
	var queries []string
	serverGets := 0
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/metrics"):
			queries = append(queries, r.URL.RawQuery)
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/servers/"):
			serverGets++
		}
		mu.Unlock()
		e.cloud.Handler().ServeHTTP(w, r)
	}))
	defer ts.Close()
	p := newProvider(t, ts.URL+"/v1", e.cloud.Token(), func(c *hcloud.Config) { c.Clock = testkit.NewClock(now) })

	alice := newPerson(t, "cpu1", e.port)
	srv, err := p.Create(ctx, alice.spec)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.CPUUsage(ctx, srv.ID, 5*time.Minute); err != nil || got != 0 {
		t.Fatalf("cpu of an idle machine: %v, %v; want 0", got, err)
	}
	// A busy machine, as the lease manager's tests will simulate it.
	cpuFile := filepath.Join(e.dir, "machines", srv.Name, localcloud.CPUFile)
	if err := os.WriteFile(cpuFile, []byte("87.5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := p.CPUUsage(ctx, srv.ID, 10*time.Minute); err != nil || math.Abs(got-87.5) > 1e-9 {
		t.Fatalf("cpu of a busy machine: %v, %v; want 87.5", got, err)
	}
	// Hetzner counts per vCPU: the cx23's two report 175.
	m, _, err := e.raw.Server.GetMetrics(ctx, &hc.Server{ID: srv.ID}, hc.ServerGetMetricsOpts{
		Types: []hc.ServerMetricType{hc.ServerMetricCPU}, Start: now.Add(-time.Minute), End: now,
	})
	if err != nil || len(m.TimeSeries["cpu"]) == 0 || m.TimeSeries["cpu"][0].Value != "175" {
		t.Fatalf("the API's cpu figures: %+v, %v; want 175", m, err)
	}

	mu.Lock()
	last := queries[len(queries)-1]
	gets := serverGets
	mu.Unlock()
	// The vCPU count is asked once: the reaper reads CPU every pass.
	if got, err := p.CPUUsage(ctx, srv.ID, 10*time.Minute); err != nil || math.Abs(got-87.5) > 1e-9 {
		t.Fatalf("cpu of a busy machine, again: %v, %v; want 87.5", got, err)
	}
	mu.Lock()
	again := serverGets
	mu.Unlock()
	if again != gets {
		t.Errorf("a second CPUUsage asked for the server again (%d GETs, then %d)", gets, again)
	}
	for _, want := range []string{"type=cpu", "start=2030-05-06T06%3A58%3A09Z", "end=2030-05-06T07%3A08%3A09Z", "step=10"} {
		if !strings.Contains(last, want) {
			t.Errorf("metrics query %q lacks %q: the window must end at the injected clock's now", last, want)
		}
	}

	if _, err := p.CPUUsage(ctx, 987654, time.Minute); !errors.Is(err, lease.ErrServerNotFound) {
		t.Fatalf("cpu of a missing server: %v, want ErrServerNotFound", err)
	}
	if _, err := p.CPUUsage(ctx, srv.ID, 0); err == nil {
		t.Fatal("cpu over an empty window was accepted")
	}
	// A machine that is off has no figures: not idle, unknown.
	if err := p.PowerOff(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := p.CPUUsage(ctx, srv.ID, 5*time.Minute); err == nil || !strings.Contains(err.Error(), "no CPU figures") {
		t.Fatalf("cpu of a machine that is off: %v, %v; want an error", got, err)
	}
}

func TestPrices(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 10*time.Second)
	got, err := e.p.Prices(ctx, "cx23", "fsn1")
	if err != nil {
		t.Fatal(err)
	}
	// The local cloud's catalog: cx23 at 3.49 EUR a month net, 19% VAT,
	// snapshots 0.011 EUR per GB-month net; hourly is a 730th of monthly.
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-6 }
	if got.Currency != "EUR" || !near(got.ServerMonthly, 3.49*1.19) || !near(got.ServerHourly, 3.49*1.19/730) ||
		!near(got.SnapshotPerGBMonth, 0.011*1.19) {
		t.Fatalf("prices of cx23 in fsn1 = %+v", got)
	}
	// Its primary IPv4 address, billed apart: 0.50 EUR a month net.
	if !near(got.IPv4Monthly, 0.50*1.19) || !near(got.IPv4Hourly, 0.50*1.19/730) {
		t.Fatalf("primary IPv4 prices in fsn1 = %v per hour, %v per month", got.IPv4Hourly, got.IPv4Monthly)
	}
	// Cross-check with what the API itself reports.
	pr, _, err := e.raw.Pricing.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Image.PerGBMonth.Gross != strconv.FormatFloat(got.SnapshotPerGBMonth, 'f', 10, 64) {
		t.Errorf("snapshot price %v, the API says %s", got.SnapshotPerGBMonth, pr.Image.PerGBMonth.Gross)
	}
	if big, err := e.p.Prices(ctx, "cx43", "hel1"); err != nil || big.ServerHourly <= got.ServerHourly {
		t.Errorf("prices of cx43 in hel1 = %+v, %v; want dearer than cx23", big, err)
	}

	if _, err := e.p.Prices(ctx, "cx999", "fsn1"); err == nil || !strings.Contains(err.Error(), `no server type "cx999"`) {
		t.Errorf("prices of an unknown type: %v", err)
	}
	if _, err := e.p.Prices(ctx, "cx23", "mars1"); err == nil || !strings.Contains(err.Error(), "does not offer cx23 in mars1") {
		t.Errorf("prices in an unknown location: %v", err)
	}
}

// TestPricesSurviveAnOddPriceList: hcloud-go panics on a price list with
// more primary IP types than floating IP types; the gateway reports an
// error instead of going down.
func TestPricesSurviveAnOddPriceList(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 10*time.Second)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/pricing" {
			e.cloud.Handler().ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		e.cloud.Handler().ServeHTTP(rec, r)
		var body map[string]map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Error(err)
		}
		body["pricing"]["floating_ips"] = []any{}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	}))
	defer ts.Close()
	p := newProvider(t, ts.URL+"/v1", e.cloud.Token())
	if _, err := p.Prices(ctx, "cx23", "fsn1"); err == nil || !strings.Contains(err.Error(), "could not read Hetzner's price list") {
		t.Fatalf("prices from an odd price list: %v", err)
	}
}
