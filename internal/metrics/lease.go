package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Lease holds the lease domain's metrics: machine operations, the
// reaper, cost, and the leases by state. It implements lease.Observer.
type Lease struct {
	ops         *prometheus.CounterVec
	durations   *prometheus.HistogramVec
	actions     *prometheus.CounterVec
	passes      prometheus.Histogram
	lastSuccess prometheus.Gauge
	cost        prometheus.Counter
	poolCost    prometheus.Counter
	homeCost    prometheus.Counter
	orphanVols  prometheus.Gauge
	leader      prometheus.Gauge
}

var _ lease.Observer = (*Lease)(nil)

// operationBuckets suit machine operations, which take seconds to
// minutes; the first-shell wait of a running machine falls in the first.
var operationBuckets = []float64{0.25, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600}

// passBuckets suit a reaper pass: milliseconds when there is nothing to
// do, up to the minutes a provider call may take.
var passBuckets = []float64{0.005, 0.025, 0.1, 0.5, 1, 5, 15, 60, 300}

// leaseLister reads every lease, the warm pool's machines and people's
// records (their homes); the store is one.
type leaseLister interface {
	List() ([]lease.Lease, error)
	PoolMachines() ([]lease.PoolMachine, error)
	People() ([]lease.Person, error)
}

// Lease registers the lease domain's metrics. leases is read at every
// scrape for cc_gateway_leases, cc_gateway_pool_machines and
// cc_gateway_home_volumes; reaperInterval is the time between the
// reaper's passes, exported for alert rules.
func (r *Registry) Lease(leases leaseLister, reaperInterval time.Duration) *Lease {
	m := &Lease{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "machine_operations_total",
			Help: "Machine operations by op (create, resume, start, stop, hibernate, destroy, first_shell, claim) and result (ok, error, refused).",
		}, []string{"op", "result"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "machine_operation_duration_seconds",
			Help:    "Time machine operations took, by op; first_shell is the wait a connection had for a running machine.",
			Buckets: operationBuckets,
		}, []string{"op"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "reaper_actions_total",
			Help: "What the reaper did, by action (warn, stop, hibernate, destroy, busy, orphan_power_off, orphan_delete); counted when it succeeded.",
		}, []string{"action"}),
		passes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "reaper_pass_duration_seconds",
			Help:    "Time each reaper pass took, its work on every lease and any reconcile included.",
			Buckets: passBuckets,
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "reaper_last_success_timestamp_seconds",
			Help: "When the last reaper pass ended in which every lease and the reconcile were dealt with without error.",
		}),
		cost: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "cost_euros_total",
			Help: "Cost the cloud accrued for all leases' servers, addresses and snapshots since the gateway started, in gross EUR (VAT included).",
		}),
		poolCost: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "pool_cost_euros_total",
			Help: "Cost the cloud accrued for the warm pool's machines, nobody's leases, since the gateway started, in gross EUR (VAT included); a claimed machine's is the pool's until its claim.",
		}),
		homeCost: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "home_cost_euros_total",
			Help: "Cost the cloud accrued for people's home volumes, apart from their leases, since the gateway started, in gross EUR (VAT included).",
		}),
		orphanVols: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "unattributed_volumes",
			Help: "Volumes labelled as this gateway's that no person's home names, as the latest reconcile found them; kept, never deleted: look at them.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "leader",
			Help: "1 while this gateway leads the reaping (idle stops, expiry, reconcile, warm pool) of the gateways sharing its store, else 0.",
		}),
	}
	interval := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "reaper_interval_seconds",
		Help: "The configured time between reaper passes.",
	})
	interval.Set(reaperInterval.Seconds())
	// Every series exists from the start, so a rate over a first event
	// counts it and a dashboard shows zero, not nothing.
	for _, op := range lease.Operations {
		m.durations.WithLabelValues(string(op))
		for _, res := range lease.Results {
			m.ops.WithLabelValues(string(op), string(res))
		}
	}
	for _, a := range lease.ReaperActions {
		m.actions.WithLabelValues(string(a))
	}
	r.register(m.ops, m.durations, m.actions, m.passes, m.lastSuccess, m.cost, m.poolCost, m.homeCost, m.orphanVols, m.leader, interval, leaseStates{leases})
	return m
}

// Operation counts an operation and records its duration.
func (m *Lease) Operation(op lease.Operation, result lease.Result, took time.Duration) {
	m.ops.WithLabelValues(string(op), string(result)).Inc()
	m.durations.WithLabelValues(string(op)).Observe(took.Seconds())
}

// ReaperAction counts a reaper action.
func (m *Lease) ReaperAction(a lease.ReaperAction) { m.actions.WithLabelValues(string(a)).Inc() }

// ReaperPass records a pass, and its end when it succeeded.
func (m *Lease) ReaperPass(end time.Time, took time.Duration, ok bool) {
	m.passes.Observe(took.Seconds())
	if ok {
		m.lastSuccess.Set(float64(end.UnixNano()) / 1e9)
	}
}

// Cost adds accrued cost. Hetzner bills in euros; a cost in another
// currency cannot be added to a counter of euros and is left out.
func (m *Lease) Cost(amount float64, currency string) {
	if currency == "EUR" && amount > 0 {
		m.cost.Add(amount)
	}
}

// PoolCost adds the warm pool's accrued cost, in euros as Cost.
func (m *Lease) PoolCost(amount float64, currency string) {
	if currency == "EUR" && amount > 0 {
		m.poolCost.Add(amount)
	}
}

// HomeCost adds the homes' accrued cost, in euros as Cost.
func (m *Lease) HomeCost(amount float64, currency string) {
	if currency == "EUR" && amount > 0 {
		m.homeCost.Add(amount)
	}
}

// UnattributedVolumes sets how many labelled volumes are no one's home.
func (m *Lease) UnattributedVolumes(n int) { m.orphanVols.Set(float64(n)) }

// Leader sets cc_gateway_leader.
func (m *Lease) Leader(leading bool) {
	if leading {
		m.leader.Set(1)
		return
	}
	m.leader.Set(0)
}

// leaseStates collects cc_gateway_leases at scrape time from the store:
// always true, never drifting from it, and cheap (one read of a few
// hundred leases at most).
type leaseStates struct{ leases leaseLister }

var (
	leasesDesc = prometheus.NewDesc(Namespace+"_leases", "Leases by the state of their machine.", []string{"state"}, nil)
	poolDesc   = prometheus.NewDesc(Namespace+"_pool_machines", "The warm pool's machines, nobody's leases, by state.", []string{"state"}, nil)
	homesDesc  = prometheus.NewDesc(Namespace+"_home_volumes", "People's home volumes by state (creating, ready, deleting).", []string{"state"}, nil)
)

func (c leaseStates) Describe(ch chan<- *prometheus.Desc) {
	ch <- leasesDesc
	ch <- poolDesc
	ch <- homesDesc
}

func (c leaseStates) Collect(ch chan<- prometheus.Metric) {
	all, err := c.leases.List()
	if err != nil {
		// No figure beats a wrong one, and a failed scrape would hide
		// every other metric; /readyz names the store's failure.
		return
	}
	counts := map[lease.State]int{}
	for _, l := range all {
		counts[l.State]++
	}
	sendByState(ch, leasesDesc, lease.States, counts)
	pool, err := c.leases.PoolMachines()
	if err != nil {
		return
	}
	inPool := map[lease.PoolState]int{}
	for _, p := range pool {
		inPool[p.State]++
	}
	sendByState(ch, poolDesc, lease.PoolStates, inPool)
	people, err := c.leases.People()
	if err != nil {
		return
	}
	homes := map[lease.HomeState]int{}
	for _, p := range people {
		if p.Home != nil {
			homes[p.Home.State]++
		}
	}
	sendByState(ch, homesDesc, lease.HomeStates, homes)
}

// sendByState sends one gauge of desc per state, every state present
// from zero, so a series never vanishes when its count drops to none.
func sendByState[S ~string](ch chan<- prometheus.Metric, desc *prometheus.Desc, states []S, counts map[S]int) {
	for _, s := range states {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}
