package lease

import (
	"math"
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
	if got := serverCost(p, time.Time{}, t0); got != 0 {
		t.Errorf("no server: %.4f", got)
	}
	if got := imageCost(p, 20, t0, t0.Add(365*time.Hour)); math.Abs(got-20*0.011*0.5) > 1e-9 {
		t.Errorf("20 GB for half a month: %.4f, want %.4f", got, 20*0.011*0.5)
	}
}
