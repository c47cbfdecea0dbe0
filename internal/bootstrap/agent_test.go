package bootstrap

import (
	"strings"
	"testing"
	"time"
)

func TestParseAgentState(t *testing.T) {
	at := time.Date(2026, 12, 2, 4, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		in    string
		state string
		since time.Time
		err   string
	}{
		{"", "", time.Time{}, ""},
		{"working 2026-12-02T04:30:00Z\n", "working", at, ""},
		{"waiting 2026-12-02T04:30:00Z\n", "waiting", at, ""},
		{"idle 2026-12-02T04:30:00Z", "idle", at, ""},
		{"asleep 2026-12-02T04:30:00Z\n", "", time.Time{}, `"asleep": want one of working, waiting, idle`},
		{"working\n", "", time.Time{}, "want one line, STATE TIME"},
		{"working 2026-12-02T04:30:00Z\nidle 2026-12-02T04:31:00Z\n", "", time.Time{}, "want one line"},
		{"working yesterday\n", "", time.Time{}, "agent state time"},
	} {
		state, since, err := ParseAgentState([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || state != tc.state || !since.Equal(tc.since) {
			t.Errorf("%q: %q %s %v, want %q %s", tc.in, state, since, err, tc.state, tc.since)
		}
	}
}

// FuzzParseAgentState: whatever a machine's file holds, the parse returns
// a known state with a time, nothing, or an error.
func FuzzParseAgentState(f *testing.F) {
	for _, s := range []string{"", "working 2026-12-02T04:30:00Z\n", "idle x", "\n\n", "waiting 2026-12-02T04:30:00+01:00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		state, since, err := ParseAgentState(b)
		if err != nil || state == "" {
			if state != "" || !since.IsZero() {
				t.Fatalf("%q: %q %s with error %v", b, state, since, err)
			}
			return
		}
		if state != "working" && state != "waiting" && state != "idle" {
			t.Fatalf("%q: unknown state %q", b, state)
		}
	})
}
