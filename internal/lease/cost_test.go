package lease

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"
)

func TestServerCost(t *testing.T) {
	p := Prices{Currency: "EUR", ServerHourly: 0.01, ServerMonthly: 5.00, SnapshotPerGBMonth: 0.011}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		d    time.Duration
		want float64
	}{
		{"not yet created", 0, 0},
		{"a started hour is billed whole", time.Minute, 0.01},
		{"exactly one hour", time.Hour, 0.01},
		{"just over two hours", 2*time.Hour + time.Second, 0.03},
		{"capped at the monthly price", 600 * time.Hour, 5.00},
		{"a month and a day", 730*time.Hour + 24*time.Hour, 5.00 + 0.24},
	} {
		if got := serverCost(p, t0, t0.Add(tc.d)); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: %.4f, want %.4f", tc.name, got, tc.want)
		}
	}
	// The primary IPv4 address is billed beside the server, capped on its
	// own: a month and a day of both.
	withIP := p
	withIP.IPv4Hourly, withIP.IPv4Monthly = 0.001, 0.60
	if got, want := serverCost(withIP, t0, t0.Add(754*time.Hour)), 5.00+0.24+0.60+0.024; math.Abs(got-want) > 1e-9 {
		t.Errorf("server and IPv4 for a month and a day: %.4f, want %.4f", got, want)
	}
	if got, want := serverCost(withIP, t0, t0.Add(10*time.Hour)), 0.10+0.01; math.Abs(got-want) > 1e-9 {
		t.Errorf("server and IPv4 for ten hours: %.4f, want %.4f", got, want)
	}
	if got := serverCost(p, time.Time{}, t0); got != 0 {
		t.Errorf("no server: %.4f", got)
	}
	if got := imageCost(p, 20, t0, t0.Add(365*time.Hour)); math.Abs(got-20*0.011*0.5) > 1e-9 {
		t.Errorf("20 GB for half a month: %.4f, want %.4f", got, 20*0.011*0.5)
	}
}

// TestCostNeverAsksTheProvider: Cost reads the price cache only; the
// reaper's pass fills it, once per TTL.
func TestCostNeverAsksTheProvider(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	d.reconciled()
	l := d.running(t, "a", 1) // its server created an hour ago
	l.Spent = 1
	prices := func() int { return len(d.cloud.made("Prices")) }

	if got, cur := d.m.Cost(l); got != 0 || cur != "" || prices() != 0 {
		t.Fatalf("Cost before any pass: %.4f %q after %d price calls; want unknown, none", got, cur, prices())
	}
	d.r.Tick(context.Background())
	if got := d.cloud.made("Prices"); !slices.Equal(got, []string{"Prices cx23 fsn1"}) {
		t.Fatalf("a pass asked %q, want one price per type and location", got)
	}
	if got, cur := d.m.Cost(l); math.Abs(got-1.01) > 1e-9 || cur != "EUR" {
		t.Errorf("Cost %.4f %s, want 1.01 EUR", got, cur)
	}
	d.clock.Advance(2 * time.Hour)
	if _, cur := d.m.Cost(l); cur != "EUR" || prices() != 1 {
		t.Errorf("Cost with stale prices: %q after %d price calls; want the old price, no call", cur, prices())
	}
	d.r.Tick(context.Background())
	if prices() != 2 {
		t.Errorf("%d price calls, want a stale price refreshed by the next pass", prices())
	}
}

func TestPricesKeptWhenTheProviderFails(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	d.reconciled()
	other := d.running(t, "a", 1)
	other.ServerType, other.Location = "cx43", "hel1"
	d.put(t, other)
	d.r.Tick(context.Background())
	if got := d.cloud.made("Prices"); len(got) != 2 {
		t.Fatalf("price calls %q, want the lease's and new machines' kinds", got)
	}
	d.cloud.pricesFn = func(context.Context, string, string) (Prices, error) { return Prices{}, errors.New("503") }
	d.clock.Advance(2 * time.Hour)
	d.r.Tick(context.Background())
	if _, cur := d.m.Cost(other); cur != "EUR" {
		t.Errorf("a failed refresh lost the old price")
	}
}
