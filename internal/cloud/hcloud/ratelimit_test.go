package hcloud

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func rateHeaders(limit, remaining int, reset time.Time) http.Header {
	h := http.Header{}
	h.Set("RateLimit-Limit", strconv.Itoa(limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	return h
}

// TestBudgetSpacesRequestsWhenLow: no wait while a tenth of the budget or
// more is left; below it, slots one refill apart, also for requests that
// ask at the same moment.
func TestBudgetSpacesRequestsWhenLow(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var b budget
	if s := b.take(now); s.wait != 0 || s.began {
		t.Fatalf("before any answer: %+v", s)
	}
	// 400 of 3600 left: the bucket is full again in 3200 s, one a second.
	b.note(rateHeaders(3600, 400, now.Add(3200*time.Second)), now)
	if s := b.take(now); s.wait != 0 || s.began {
		t.Fatalf("with 400 of 3600 left: %+v; want no wait", s)
	}
	b.note(rateHeaders(3600, 300, now.Add(3300*time.Second)), now)
	var waits []time.Duration
	for i := range 3 {
		s := b.take(now)
		if s.began != (i == 0) {
			t.Fatalf("slot %d: %+v; pacing begins with the first", i, s)
		}
		waits = append(waits, s.wait)
	}
	if waits[0] != 0 || waits[1] != time.Second || waits[2] != 2*time.Second {
		t.Fatalf("three requests at once with 300 of 3600 left wait %v; want 0s, 1s, 2s", waits)
	}
	// The budget recovers: pacing ends.
	b.note(rateHeaders(3600, 3000, now.Add(600*time.Second)), now)
	if s := b.take(now); s.wait != 0 || !s.ended {
		t.Fatalf("with 3000 left: %+v; want no wait, pacing ended", s)
	}
	// Answers without the headers change nothing.
	b.note(http.Header{}, now)
	if s := b.take(now); s.wait != 0 || s.ended || s.began {
		t.Fatalf("after an answer without headers: %+v", s)
	}
}
