package metrics

import (
	"errors"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// leaseList is a leaseLister over fixed lists.
type leaseList struct {
	leases []lease.Lease
	pool   []lease.PoolMachine
	people []lease.Person
	err    error
}

func (l *leaseList) List() ([]lease.Lease, error)               { return l.leases, l.err }
func (l *leaseList) PoolMachines() ([]lease.PoolMachine, error) { return l.pool, l.err }
func (l *leaseList) People() ([]lease.Person, error)            { return l.people, l.err }

func TestLeaseMetrics(t *testing.T) {
	r := New()
	list := &leaseList{
		leases: []lease.Lease{{State: lease.StateRunning}, {State: lease.StateRunning}, {State: lease.StateStopped}},
		pool:   []lease.PoolMachine{{State: lease.PoolReady}, {State: lease.PoolReady}, {State: lease.PoolCreating}},
		people: []lease.Person{{Home: &lease.Home{State: lease.HomeReady}}, {}, {Home: &lease.Home{State: lease.HomeDeleting}}},
	}
	m := r.Lease(list, 30*time.Second)

	m.Operation(lease.OpCreate, lease.ResultOK, 90*time.Second)
	m.Operation(lease.OpCreate, lease.ResultError, 10*time.Second)
	m.Operation(lease.OpFirstShell, lease.ResultOK, 95*time.Second)
	m.ReaperAction(lease.ReaperStop)
	m.ReaperAction(lease.ReaperStop)
	m.ReaperPass(time.Unix(1000, 500_000_000), time.Second, true)
	m.ReaperPass(time.Unix(2000, 0), time.Second, false) // failed: the last success stays
	m.Cost(0.25, "EUR")
	m.Cost(0.5, "EUR")
	m.Cost(7, "USD") // not euros: left out
	m.PoolCost(0.125, "EUR")
	m.PoolCost(7, "USD")
	m.HomeCost(0.0625, "EUR")
	m.UnattributedVolumes(2)

	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"creates ok", testutil.ToFloat64(m.ops.WithLabelValues("create", "ok")), 1},
		{"creates failed", testutil.ToFloat64(m.ops.WithLabelValues("create", "error")), 1},
		{"stops never made", testutil.ToFloat64(m.ops.WithLabelValues("stop", "ok")), 0},
		{"stops by the reaper", testutil.ToFloat64(m.actions.WithLabelValues("stop")), 2},
		{"last success", testutil.ToFloat64(m.lastSuccess), 1000.5},
		{"cost", testutil.ToFloat64(m.cost), 0.75},
		{"pool cost, apart", testutil.ToFloat64(m.poolCost), 0.125},
		{"home cost, apart", testutil.ToFloat64(m.homeCost), 0.0625},
		{"unattributed volumes", testutil.ToFloat64(m.orphanVols), 2},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}

	want := `
# HELP cc_gateway_home_volumes People's home volumes by state (creating, ready, deleting).
# TYPE cc_gateway_home_volumes gauge
cc_gateway_home_volumes{state="creating"} 0
cc_gateway_home_volumes{state="deleting"} 1
cc_gateway_home_volumes{state="ready"} 1
# HELP cc_gateway_leases Leases by the state of their machine.
# TYPE cc_gateway_leases gauge
cc_gateway_leases{state="creating"} 0
cc_gateway_leases{state="destroying"} 0
cc_gateway_leases{state="hibernated"} 0
cc_gateway_leases{state="hibernating"} 0
cc_gateway_leases{state="running"} 2
cc_gateway_leases{state="starting"} 0
cc_gateway_leases{state="stopped"} 1
cc_gateway_leases{state="stopping"} 0
# HELP cc_gateway_pool_machines The warm pool's machines, nobody's leases, by state.
# TYPE cc_gateway_pool_machines gauge
cc_gateway_pool_machines{state="claiming"} 0
cc_gateway_pool_machines{state="creating"} 1
cc_gateway_pool_machines{state="draining"} 0
cc_gateway_pool_machines{state="ready"} 2
# HELP cc_gateway_reaper_interval_seconds The configured time between reaper passes.
# TYPE cc_gateway_reaper_interval_seconds gauge
cc_gateway_reaper_interval_seconds 30
`
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(want), "cc_gateway_home_volumes", "cc_gateway_leases", "cc_gateway_pool_machines", "cc_gateway_reaper_interval_seconds"); err != nil {
		t.Error(err)
	}
	// Every op's histogram is there before its first observation.
	if n := testutil.CollectAndCount(m.durations); n != len(lease.Operations) {
		t.Errorf("%d duration series, want one per op (%d)", n, len(lease.Operations))
	}

	// A store that fails gives no figure rather than a wrong one, and the
	// rest of the scrape still works.
	list.err = errors.New("disk on fire")
	if n, err := testutil.GatherAndCount(r.reg, "cc_gateway_leases"); err != nil || n != 0 {
		t.Errorf("leases with a failed store: %d series, %v; want none, no error", n, err)
	}
}

func TestCloudMetrics(t *testing.T) {
	r := New()
	c := r.Cloud()
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }

	ready := c.Ready(90 * time.Second)
	if err := ready(); err == nil || err.Error() != "the cloud API has not answered yet" {
		t.Errorf("ready before any answer: %v", err)
	}
	if n, _ := testutil.GatherAndCount(r.reg, "cc_gateway_cloud_rate_limit_remaining"); n != 0 {
		t.Errorf("a rate limit shown before any answer told it")
	}
	c.Request("GET", 0) // no answer: no proof the cloud is there
	if ready() == nil {
		t.Error("ready after a request without an answer")
	}
	c.Request("GET", 200)
	c.Request("GET", 200)
	c.Request("POST", 503)
	c.Request("PATCH", 200)
	c.RateLimit(3590, 3600)
	c.Retry(hcloud.RetryUnavailable)
	if err := ready(); err != nil {
		t.Errorf("ready after an answer: %v", err)
	}
	now = now.Add(91 * time.Second)
	if err := ready(); err == nil || err.Error() != "the cloud API last answered 1m31s ago (more than 1m30s)" {
		t.Errorf("ready long after the last answer: %v", err)
	}

	want := `
# HELP cc_gateway_cloud_rate_limit_remaining Requests left in the cloud API's rate limit, as its last answer said (RateLimit-Remaining).
# TYPE cc_gateway_cloud_rate_limit_remaining gauge
cc_gateway_cloud_rate_limit_remaining 3590
# HELP cc_gateway_cloud_requests_total Requests sent to the cloud API (every attempt), by method and the answer's HTTP status code, or "error" for no answer.
# TYPE cc_gateway_cloud_requests_total counter
cc_gateway_cloud_requests_total{code="200",method="GET"} 2
cc_gateway_cloud_requests_total{code="200",method="other"} 1
cc_gateway_cloud_requests_total{code="503",method="POST"} 1
cc_gateway_cloud_requests_total{code="error",method="GET"} 1
`
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(want), "cc_gateway_cloud_requests_total", "cc_gateway_cloud_rate_limit_remaining"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(c.retries.WithLabelValues("unavailable")); got != 1 {
		t.Errorf("retries for unavailable: %v, want 1", got)
	}
	if n := testutil.CollectAndCount(c.retries); n != len(hcloud.RetryReasons) {
		t.Errorf("%d retry series, want one per reason (%d)", n, len(hcloud.RetryReasons))
	}
}

// TestPromtoolAcceptsTheMetrics lints the exposition of the lease and cloud
// metrics, every series present, with Prometheus's own tool.
func TestPromtoolAcceptsTheMetrics(t *testing.T) {
	promtool := testkit.Tool(t, "promtool")
	r := New()
	m := r.Lease(&leaseList{}, time.Minute)
	m.Operation(lease.OpStart, lease.ResultOK, time.Second)
	m.ReaperPass(time.Now(), time.Millisecond, true)
	m.Cost(0.01, "EUR")
	m.PoolCost(0.01, "EUR")
	c := r.Cloud()
	c.Request("GET", 200)
	c.RateLimit(3599, 3600)

	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = rec.Body
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
