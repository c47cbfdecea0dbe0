package lease

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestRefusalsCountedPerSourceAndMinute: refusals cost no write while their
// minute lasts; the reaper's first pass after it writes the minute's counts
// in one write, and later passes write nothing more.
func TestRefusalsCountedPerSourceAndMinute(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	d.reconciled()
	ctx := context.Background()
	d.clock.Set(t0.Add(10 * time.Second))
	for i := range 300 {
		d.m.Refused(RefusedKey, "192.0.2.1", fmt.Sprintf("SHA256:key%d", i%7))
		d.clock.Advance(100 * time.Millisecond)
	}
	d.m.Refused(RefusedLimited, "192.0.2.1", "")
	d.m.Refused(RefusedKey, "192.0.2.2", "SHA256:other")
	d.r.Tick(ctx) // still the same minute
	if d.store.writes != 0 {
		t.Fatalf("302 refusals in one minute took %d writes before the minute was over, want 0", d.store.writes)
	}

	got, err := d.m.Refusals(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("refusals in memory: %+v, want 3 counts", got)
	}
	first := got[0]
	if first.Source != "192.0.2.1" || first.Kind != RefusedKey || first.Count != 300 || !first.Minute.Equal(t0) ||
		!first.First.Equal(t0.Add(10*time.Second)) || !first.Last.Equal(t0.Add(10*time.Second+299*100*time.Millisecond)) {
		t.Errorf("count of the flood: %+v", first)
	}
	if len(first.Fingerprints) != MaxRefusalFingerprints {
		t.Errorf("the flood's count names %d keys, want the first %d distinct ones: %v", len(first.Fingerprints), MaxRefusalFingerprints, first.Fingerprints)
	}

	// The next minute: one write with the three counts, and nothing more.
	d.clock.Set(t0.Add(time.Minute + 5*time.Second))
	d.m.Refused(RefusedKey, "192.0.2.1", "SHA256:late")
	d.r.Tick(ctx)
	d.r.Tick(ctx)
	if d.store.writes != 1 || len(d.store.refusals) != 1 || len(d.store.refusals[0]) != 3 {
		t.Fatalf("after the minute: %d writes of %v, want one of the minute's 3 counts", d.store.writes, d.store.refusals)
	}
	got, _ = d.m.Refusals(2)
	if len(got) != 2 || got[0].Source != "192.0.2.2" || !got[1].Minute.Equal(t0.Add(time.Minute)) || got[1].Count != 1 {
		t.Errorf("newest 2, written and in memory: %+v", got)
	}
}

// TestRefusalsFromManySourcesStayBounded: past maxPendingRefusals sources
// in memory, new sources are counted together as OtherSources.
func TestRefusalsFromManySourcesStayBounded(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	for i := range maxPendingRefusals + 50 {
		d.m.Refused(RefusedLimited, fmt.Sprintf("source-%d", i), "")
	}
	got, err := d.m.Refusals(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != maxPendingRefusals+1 {
		t.Fatalf("%d counts in memory, want %d sources and one for the others", len(got), maxPendingRefusals)
	}
	for _, r := range got {
		if r.Source == OtherSources && r.Count != 50 {
			t.Errorf("the other sources' count is %d, want 50", r.Count)
		}
	}
}

// TestReaperWritesRefusalsWhenItStops: what is still counted, this minute
// included, is written when the reaper's Run ends.
func TestReaperWritesRefusalsWhenItStops(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{Interval: time.Hour})
	d.reconciled()
	d.m.Refused(RefusedKey, "192.0.2.1", "SHA256:a")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d.r.Run(ctx)
	if len(d.store.refusals) != 1 || d.store.refusals[0][0].Count != 1 {
		t.Fatalf("refusals written when Run ended: %v", d.store.refusals)
	}
}
