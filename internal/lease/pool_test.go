package lease

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestPlanPool(t *testing.T) {
	now := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	const maxAge = 6 * time.Hour
	m := func(id string, state PoolState, age time.Duration) PoolMachine {
		return PoolMachine{ID: id, State: state, Created: now.Add(-age)}
	}
	for _, tc := range []struct {
		name     string
		machines []PoolMachine
		want     int
		noMaxAge bool
		plan     poolPlan
	}{
		{name: "off and empty", want: 0, plan: poolPlan{}},
		{name: "empty pool fills", want: 2, plan: poolPlan{Create: 2}},
		{name: "full pool does nothing", want: 2,
			machines: []PoolMachine{m("a", PoolReady, time.Hour), m("b", PoolReady, time.Minute)},
			plan:     poolPlan{}},
		{name: "machines being created count, so a slow boot is not doubled", want: 2,
			machines: []PoolMachine{m("a", PoolCreating, time.Hour)},
			plan:     poolPlan{Create: 1}},
		{name: "a claimed machine is no longer the pool's: it is replaced", want: 2,
			machines: []PoolMachine{m("a", PoolReady, time.Hour), m("b", PoolClaiming, time.Hour)},
			plan:     poolPlan{Create: 1}},
		{name: "stale ready machines are recycled", want: 2,
			machines: []PoolMachine{m("a", PoolReady, maxAge), m("b", PoolReady, time.Hour)},
			plan:     poolPlan{Create: 1, Drain: []string{"a"}}},
		{name: "draining goes on until gone, and is not counted", want: 1,
			machines: []PoolMachine{m("a", PoolDraining, time.Hour)},
			plan:     poolPlan{Create: 1, Drain: []string{"a"}}},
		{name: "a shrunk pool drains the oldest ready first", want: 1,
			machines: []PoolMachine{m("new", PoolReady, time.Minute), m("old", PoolReady, 2*time.Hour), m("mid", PoolReady, time.Hour)},
			plan:     poolPlan{Drain: []string{"old", "mid"}}},
		{name: "turned off drains every ready machine but lets creates finish", want: 0,
			machines: []PoolMachine{m("a", PoolReady, time.Hour), m("b", PoolCreating, time.Minute), m("c", PoolClaiming, time.Minute)},
			plan:     poolPlan{Drain: []string{"a"}}},
		{name: "max age 0 never recycles", want: 1, noMaxAge: true,
			machines: []PoolMachine{m("a", PoolReady, 1000*time.Hour)},
			plan:     poolPlan{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			age := maxAge
			if tc.noMaxAge {
				age = 0
			}
			got := planPool(tc.machines, tc.want, age, now)
			if got.Create != tc.plan.Create || !slices.Equal(got.Drain, tc.plan.Drain) {
				t.Errorf("plan = %+v, want %+v", got, tc.plan)
			}
		})
	}
}

func TestPickPoolMachine(t *testing.T) {
	now := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	const maxAge = 6 * time.Hour
	m := func(id string, state PoolState, typ, loc string, age time.Duration) PoolMachine {
		return PoolMachine{ID: id, State: state, ServerType: typ, Location: loc, Created: now.Add(-age)}
	}
	for _, tc := range []struct {
		name     string
		machines []PoolMachine
		want     string // "" when none is picked
	}{
		{name: "empty pool", want: ""},
		{name: "the oldest ready one of the first pair",
			machines: []PoolMachine{
				m("young", PoolReady, "cx22", "nbg1", time.Minute),
				m("old", PoolReady, "cx22", "nbg1", time.Hour),
				m("next-type", PoolReady, "cx32", "nbg1", 2*time.Hour),
				m("next-place", PoolReady, "cx22", "fsn1", 2*time.Hour),
			},
			want: "old"},
		{name: "the next location before the next type",
			machines: []PoolMachine{
				m("next-type", PoolReady, "cx32", "nbg1", 2*time.Hour),
				m("next-place", PoolReady, "cx22", "fsn1", time.Minute),
			},
			want: "next-place"},
		{name: "the next type when the first has none",
			machines: []PoolMachine{
				m("last", PoolReady, "cx32", "fsn1", 2*time.Hour),
				m("next-type", PoolReady, "cx32", "nbg1", time.Minute),
			},
			want: "next-type"},
		{name: "never a pair no longer configured",
			machines: []PoolMachine{m("gone", PoolReady, "cx42", "nbg1", time.Hour), m("far", PoolReady, "cx22", "hel1", time.Hour)},
			want:     ""},
		{name: "never one being claimed, created or drained",
			machines: []PoolMachine{
				m("claiming", PoolClaiming, "cx22", "nbg1", time.Hour),
				m("creating", PoolCreating, "cx22", "nbg1", time.Hour),
				m("draining", PoolDraining, "cx22", "nbg1", time.Hour),
			},
			want: ""},
		{name: "never a stale one",
			machines: []PoolMachine{m("stale", PoolReady, "cx22", "nbg1", maxAge), m("fresh", PoolReady, "cx22", "nbg1", time.Hour)},
			want:     "fresh"},
		{name: "equal ages pick the lowest id, whatever the listing order",
			machines: []PoolMachine{m("b", PoolReady, "cx22", "nbg1", time.Hour), m("a", PoolReady, "cx22", "nbg1", time.Hour)},
			want:     "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := pickPoolMachine(tc.machines, []string{"cx22", "cx32"}, []string{"nbg1", "fsn1"}, maxAge, now)
			if ok != (tc.want != "") || got.ID != tc.want {
				t.Errorf("picked %q (%v), want %q", got.ID, ok, tc.want)
			}
		})
	}
}

// Reconcile never takes a pool machine for an orphan: a record names its
// server, or, while it is being created, its id labels the server. A
// pool-labelled server no record knows is an orphan as any other.
func TestReconcileLeavesPoolMachinesAlone(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{OrphanGrace: 10 * time.Minute, OrphanDeletes: 10})
	d.inUse()
	old := d.clock.Now().Add(-time.Hour)
	d.pool.machines = []PoolMachine{
		{ID: "ready1", State: PoolReady, ServerID: 7, Created: old},
		{ID: "making", State: PoolCreating, Created: old}, // its create has not returned yet
		{ID: "going", State: PoolDraining, ServerID: 9, Created: old},
	}
	pooled := func(id int64, poolID string) Server {
		s := labelled(id, poolID, "running", old)
		s.Labels[PoolLabel] = "true"
		return s
	}
	stray := pooled(10, "stray")
	d.cloud.powerOffFn = func(_ context.Context, id int64) error {
		if id == stray.ID {
			stray.Status = "off"
		}
		return nil
	}
	d.cloud.listFn = func(context.Context) ([]Server, error) {
		return []Server{pooled(7, "ready1"), pooled(8, "making"), pooled(9, "going"), stray}, nil
	}
	for range 2 {
		if err := d.r.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		d.clock.Advance(10 * time.Minute)
	}
	if got := d.cloud.changes(); !slices.Equal(got, []string{"PowerOff 10", "Delete 10"}) {
		t.Errorf("provider calls %q, want only the server no pool record knows powered off and deleted", got)
	}
}
