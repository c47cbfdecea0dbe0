package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// writers is how many goroutines write at once in the concurrency tests.
const writers = 8

// concurrently runs write(i) for i in [0, writers) at once and returns
// their errors by i.
func concurrently(write func(i int) error) []error {
	errs := make([]error, writers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = write(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// Writes of different leases at once all land.
func testConcurrentPuts(t *testing.T, h Harness) {
	s := open(t, h)
	for i, err := range concurrently(func(i int) error { return s.Put(sampleLease(fingerprintOf(i))) }) {
		if err != nil {
			t.Errorf("Put %d: %v", i, err)
		}
	}
	got, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers {
		t.Errorf("List has %d leases after %d concurrent Puts", len(got), writers)
	}
}

// Events appended at once are all kept (within the limit), none lost or
// doubled.
func testConcurrentEvents(t *testing.T, h Harness) {
	s := open(t, h)
	n := min(writers, h.EventLimit)
	for i, err := range concurrently(func(i int) error {
		if i >= n {
			return nil
		}
		return s.AppendEvent(event(i))
	}) {
		if err != nil {
			t.Errorf("AppendEvent %d: %v", i, err)
		}
	}
	got := eventDetails(t, s, 0)
	slices.Sort(got)
	var want []string
	for i := range n {
		want = append(want, event(i).Detail)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("events after %d concurrent appends: %q, want %q", n, got, want)
	}
}

// Of many claims of one machine at once exactly one wins; the losers
// write nothing and leave the store healthy.
func testConcurrentClaimsOneWinner(t *testing.T, h Harness) {
	s := open(t, h)
	if err := s.PutPoolMachine(poolMachine("a", lease.PoolReady), ""); err != nil {
		t.Fatal(err)
	}
	errs := concurrently(func(i int) error {
		p := poolMachine("a", lease.PoolClaiming)
		p.Claimant = fingerprintOf(i)
		l := lease.Lease{Fingerprint: p.Claimant, ID: p.ID, State: lease.StateCreating, ServerID: p.ServerID}
		return s.ClaimPoolMachine(p, l, lease.Event{Kind: "claim", Fingerprint: p.Claimant})
	})
	winner := oneWinner(t, errs)
	if winner < 0 {
		return
	}
	pool, err := s.PoolMachines()
	if err != nil || len(pool) != 1 || pool[0].State != lease.PoolClaiming || pool[0].Claimant != fingerprintOf(winner) {
		t.Errorf("pool after the claims: %+v, %v", pool, err)
	}
	leases, err := s.List()
	if err != nil || len(leases) != 1 || leases[0].Fingerprint != fingerprintOf(winner) {
		t.Errorf("leases after the claims: %+v, %v", leases, err)
	}
	if events, err := s.Events(0); err != nil || len(events) != 1 || events[0].Fingerprint != fingerprintOf(winner) {
		t.Errorf("events after the claims: %+v, %v", events, err)
	}
	healthy(t, s, "lost claims")
}

// Of many writes from one state at once (a drain and a claim racing, say)
// exactly one passes: the stored state is compared in the same write.
func testConcurrentPoolWritesOneWinner(t *testing.T, h Harness) {
	s := open(t, h)
	if err := s.PutPoolMachine(poolMachine("a", lease.PoolReady), ""); err != nil {
		t.Fatal(err)
	}
	errs := concurrently(func(i int) error {
		p := poolMachine("a", lease.PoolDraining)
		p.Address = fmt.Sprintf("127.0.0.1:%d", 3000+i)
		return s.PutPoolMachine(p, lease.PoolReady, event(i))
	})
	winner := oneWinner(t, errs)
	if winner < 0 {
		return
	}
	pool, err := s.PoolMachines()
	if err != nil || len(pool) != 1 || pool[0].Address != fmt.Sprintf("127.0.0.1:%d", 3000+winner) {
		t.Errorf("pool after the writes: %+v, %v (winner %d)", pool, err, winner)
	}
	if got := eventDetails(t, s, 0); len(got) != 1 || got[0] != event(winner).Detail {
		t.Errorf("events after the writes: %q, want only the winner's", got)
	}
}

// oneWinner returns the index of the only nil error, failing t unless
// there is exactly one and every other wraps lease.ErrPoolMachineTaken.
func oneWinner(t *testing.T, errs []error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writes %d and %d both passed", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, lease.ErrPoolMachineTaken):
			t.Errorf("write %d: %v, want one wrapping ErrPoolMachineTaken", i, err)
		}
	}
	if winner < 0 {
		t.Error("no write passed")
	}
	return winner
}
