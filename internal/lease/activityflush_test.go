package lease

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestActivityFlushReachesTheReaperElsewhere: a person active only on
// another gateway (another Manager on the same store) keeps their machine
// when this gateway's reaper passes after the idle timeout, once the other
// has flushed; each flush writes each touched person once, however many
// touches, and nothing when nobody was touched.
func TestActivityFlushReachesTheReaperElsewhere(t *testing.T) {
	d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute}, ReaperConfig{})
	d.reconciled()
	l := d.running(t, "a", 1)
	other := NewManager(Config{Store: d.store, Pool: d.pool, Provider: d.cloud, Machines: d.machines,
		Clock: d.clock, Logger: testkit.Quiet})

	d.clock.Set(l.LastActivity.Add(20 * time.Minute))
	for range 5 {
		other.Touch(l.Fingerprint)
	}
	writes := d.store.writes
	other.FlushActivity()
	if got := d.store.writes - writes; got != 1 {
		t.Errorf("a flush after 5 touches wrote %d times, want 1", got)
	}
	other.FlushActivity()
	if got := d.store.writes - writes; got != 1 {
		t.Errorf("a flush with nothing touched wrote: %d writes in all, want 1", got)
	}

	d.clock.Set(l.LastActivity.Add(45 * time.Minute)) // past the idle timeout from the stored time
	d.r.Tick(context.Background())
	got, err := d.store.Get(l.Fingerprint)
	if err != nil || got.State != StateRunning {
		t.Fatalf("after the reaper's pass: %+v, %v; want the machine running (active 25 minutes ago elsewhere)", got, err)
	}
	if ends := d.notify.to("end", l.Fingerprint); len(ends) != 0 {
		t.Errorf("the reaper ended sessions of a person active elsewhere: %q", ends)
	}
}

// TestActivityFlushSkipsABusyLease: a flush never waits for a person's
// lock; the person is flushed the next round.
func TestActivityFlushSkipsABusyLease(t *testing.T) {
	d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute}, ReaperConfig{})
	l := d.running(t, "a", 1)
	d.clock.Set(l.LastActivity.Add(time.Minute))
	d.m.Touch(l.Fingerprint)
	unlock := d.m.localLock(l.Fingerprint)
	d.m.FlushActivity()
	unlock()
	if got, _ := d.store.Get(l.Fingerprint); !got.LastActivity.Equal(l.LastActivity) {
		t.Fatalf("a flush wrote activity %s while the lease was locked", got.LastActivity)
	}
	d.m.FlushActivity()
	if got, _ := d.store.Get(l.Fingerprint); !got.LastActivity.Equal(d.clock.Now()) {
		t.Errorf("the next flush wrote activity %s, want %s", got.LastActivity, d.clock.Now())
	}
}

// TestActivityFlushStopsWhenTheStoreIsDown: a round stops at the first
// write the store cannot take, and what it did not write is written by the
// round after the store is back.
func TestActivityFlushStopsWhenTheStoreIsDown(t *testing.T) {
	d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute}, ReaperConfig{})
	a, b := d.running(t, "a", 1), d.running(t, "b", 2)
	store := &triedStore{memStore: d.store}
	m := NewManager(Config{Store: store, Pool: d.pool, Provider: d.cloud, Machines: d.machines, Clock: d.clock, Logger: testkit.Quiet})
	d.clock.Set(a.LastActivity.Add(time.Minute))
	m.Touch(a.Fingerprint)
	m.Touch(b.Fingerprint)
	d.store.mu.Lock()
	d.store.failPut = fmt.Errorf("%w: no leader", ErrStoreUnavailable)
	d.store.mu.Unlock()
	m.FlushActivity()
	if store.puts != 1 {
		t.Errorf("a round with the store down tried %d writes, want 1", store.puts)
	}
	d.store.mu.Lock()
	d.store.failPut = nil
	d.store.mu.Unlock()
	m.FlushActivity()
	for _, l := range []Lease{a, b} {
		if got, _ := d.store.Get(l.Fingerprint); !got.LastActivity.Equal(d.clock.Now()) {
			t.Errorf("%s's activity after the store came back: %s, want %s", l.ID, got.LastActivity, d.clock.Now())
		}
	}
}

// triedStore counts the Puts tried, failed ones too. FlushActivity calls
// it from the test's goroutine only.
type triedStore struct {
	*memStore
	puts int
}

func (s *triedStore) Put(l Lease, events ...Event) error {
	s.puts++
	return s.memStore.Put(l, events...)
}
