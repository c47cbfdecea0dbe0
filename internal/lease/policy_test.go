package lease

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestNewExpiry(t *testing.T) {
	created := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	p := Policy{DefaultTTL: 4 * time.Hour, MaxTTL: 24 * time.Hour, MaxLifetime: 72 * time.Hour}
	l := Lease{Created: created, Expires: created.Add(4 * time.Hour)}

	tests := []struct {
		name    string
		lease   Lease
		now     time.Time
		d       time.Duration
		want    time.Time
		wantErr []string // substrings the refusal must name
	}{
		{name: "adds to a future expiry", lease: l, now: created.Add(time.Hour), d: 2 * time.Hour,
			want: created.Add(6 * time.Hour)},
		{name: "adds to now once expired", lease: l, now: created.Add(5 * time.Hour), d: 90 * time.Minute,
			want: created.Add(6*time.Hour + 30*time.Minute)},
		{name: "exactly at the ttl cap", lease: l, now: created, d: 20 * time.Hour,
			want: created.Add(24 * time.Hour)},
		{name: "beyond the ttl cap names it", lease: l, now: created, d: 21 * time.Hour,
			wantErr: []string{"24h cap", "2026-11-26T08:00:00Z", "at most 20h"}},
		{name: "beyond the lifetime names it", lease: Lease{Created: created, Expires: created.Add(70 * time.Hour)},
			now: created.Add(60 * time.Hour), d: 3 * time.Hour,
			wantErr: []string{"72h maximum lifetime", "2026-11-28T08:00:00Z", "at most 2h"}},
		{name: "negative", lease: l, now: created, d: -5 * time.Hour, wantErr: []string{"must be positive", "not -5h"}},
		{name: "zero", lease: l, now: created, d: 0, wantErr: []string{"must be positive", "not 0s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.NewExpiry(tc.lease, tc.d, tc.now)
			if tc.wantErr != nil {
				var ee *ExtendError
				if !errors.As(err, &ee) {
					t.Fatalf("err = %v, want an ExtendError", err)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("expiry = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestFormatTimeLeft(t *testing.T) {
	for _, tc := range []struct {
		left time.Duration
		want string
	}{
		{4*time.Minute + 59*time.Second, "5m"},
		{time.Hour + 29*time.Second, "1h"},
		{61 * time.Second, "1m"},
		{59*time.Second + 600*time.Millisecond, "1m"},
		{11 * time.Second, "11s"},
		{400 * time.Millisecond, "0s"},
	} {
		if got := FormatTimeLeft(tc.left); got != tc.want {
			t.Errorf("FormatTimeLeft(%s) = %q, want %q", tc.left, got, tc.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                  "0s",
		30 * time.Second:                   "30s",
		45*time.Minute + 10*time.Second:    "45m10s",
		2 * time.Hour:                      "2h",
		90 * time.Minute:                   "1h30m",
		99999 * time.Hour:                  "99999h",
		-5 * time.Hour:                     "-5h",
		2*time.Hour + 500*time.Millisecond: "2h",
		math.MinInt64:                      "-2562047h47m", // a zero time's distance: no endless recursion
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
