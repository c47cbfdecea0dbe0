package storetest

import (
	"errors"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Pool records are read back whole, sorted by id; deleting one that is
// gone is no error.
func testPoolMachines(t *testing.T, h Harness) {
	s := open(t, h)
	if got, err := s.PoolMachines(); err != nil || len(got) != 0 {
		t.Fatalf("pool of an empty store: %+v, %v", got, err)
	}
	b, a := poolMachine("b", lease.PoolReady), poolMachine("a", lease.PoolCreating)
	a.ServerID = 0
	for _, p := range []lease.PoolMachine{b, a} {
		if err := s.PutPoolMachine(p, ""); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.PoolMachines()
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "PoolMachines", got, []lease.PoolMachine{a, b})
	if err := s.DeletePoolMachine("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePoolMachine("a"); err != nil {
		t.Errorf("deleting a deleted pool machine: %v, want nil", err)
	}
	if got, err := s.PoolMachines(); err != nil {
		t.Fatal(err)
	} else {
		sameJSON(t, "PoolMachines after a delete", got, []lease.PoolMachine{b})
	}
}

// PutPoolMachine writes only over the state it names ("" for none); a
// write that finds another state writes nothing, its events included, and
// is an answer rather than a failure of the store.
func testPoolCompareAndSet(t *testing.T, h Harness) {
	s := open(t, h)
	creating := poolMachine("a", lease.PoolCreating)
	if err := s.PutPoolMachine(creating, ""); err != nil {
		t.Fatal(err)
	}
	ready := poolMachine("a", lease.PoolReady)
	ready.ServerID = 99
	for _, from := range []lease.PoolState{"", lease.PoolReady, lease.PoolClaiming, lease.PoolDraining} {
		err := s.PutPoolMachine(ready, from, event(1))
		if !errors.Is(err, lease.ErrPoolMachineTaken) {
			t.Errorf("write from %q over a creating record: %v, want one wrapping ErrPoolMachineTaken", from, err)
		}
		if errors.Is(err, lease.ErrStoreFailed) {
			t.Errorf("a lost compare-and-set is reported as a failed store: %v", err)
		}
	}
	if err := s.PutPoolMachine(poolMachine("none", lease.PoolDraining), lease.PoolReady); !errors.Is(err, lease.ErrPoolMachineTaken) {
		t.Errorf("write from ready with no record: %v, want one wrapping ErrPoolMachineTaken", err)
	}
	if got, err := s.PoolMachines(); err != nil {
		t.Fatal(err)
	} else {
		sameJSON(t, "pool after lost writes", got, []lease.PoolMachine{creating})
	}
	if got := eventDetails(t, s, 0); len(got) != 0 {
		t.Errorf("lost writes appended events %q", got)
	}
	healthy(t, s, "lost compare-and-sets")

	if err := s.PutPoolMachine(ready, lease.PoolCreating, event(2)); err != nil {
		t.Fatalf("write from the stored state: %v", err)
	}
	if got, err := s.PoolMachines(); err != nil {
		t.Fatal(err)
	} else {
		sameJSON(t, "pool after the write", got, []lease.PoolMachine{ready})
	}
}

// A claim passes only over a ready record, writing the record and the
// person's lease and events together; otherwise it writes nothing.
func testClaimOnlyFromReady(t *testing.T, h Harness) {
	s := open(t, h)
	fp := "SHA256:heidi"
	for _, state := range []lease.PoolState{lease.PoolCreating, lease.PoolClaiming, lease.PoolDraining} {
		id := "m-" + string(state)
		if err := s.PutPoolMachine(poolMachine(id, state), ""); err != nil {
			t.Fatal(err)
		}
		claiming := poolMachine(id, lease.PoolClaiming)
		claiming.Claimant = fp
		l := lease.Lease{Fingerprint: fp, ID: id, State: lease.StateCreating}
		if err := s.ClaimPoolMachine(claiming, l, event(1)); !errors.Is(err, lease.ErrPoolMachineTaken) {
			t.Errorf("claim of a %s machine: %v, want one wrapping ErrPoolMachineTaken", state, err)
		}
	}
	gone := poolMachine("gone", lease.PoolClaiming)
	if err := s.ClaimPoolMachine(gone, lease.Lease{Fingerprint: fp, ID: "gone"}, event(1)); !errors.Is(err, lease.ErrPoolMachineTaken) {
		t.Errorf("claim of a machine with no record: %v, want one wrapping ErrPoolMachineTaken", err)
	}
	if leases, err := s.List(); err != nil || len(leases) != 0 {
		t.Errorf("refused claims wrote leases %+v, %v", leases, err)
	}
	if got := eventDetails(t, s, 0); len(got) != 0 {
		t.Errorf("refused claims appended events %q", got)
	}
	healthy(t, s, "refused claims")

	if err := s.PutPoolMachine(poolMachine("r", lease.PoolReady), ""); err != nil {
		t.Fatal(err)
	}
	claiming := poolMachine("r", lease.PoolClaiming)
	claiming.Claimant = fp
	l := sampleLease(fp)
	l.ID, l.State = "r", lease.StateCreating
	if err := s.ClaimPoolMachine(claiming, l, event(2)); err != nil {
		t.Fatalf("claim of a ready machine: %v", err)
	}
	if got, err := s.Get(fp); err != nil {
		t.Fatal(err)
	} else {
		sameJSON(t, "the claimant's lease", got, l)
	}
	pool, err := s.PoolMachines()
	if err != nil {
		t.Fatal(err)
	}
	if len(pool) != 4 || pool[3].ID != "r" {
		t.Fatalf("pool after the claim: %+v", pool)
	}
	sameJSON(t, "the claimed record", pool[3], claiming)
	if got := eventDetails(t, s, 0); len(got) != 1 || got[0] != "event 2" {
		t.Errorf("events of the claim: %q", got)
	}
}

// Finishing a claim writes the lease and deletes the claiming record as
// one write; over a record in any other state, or none, it writes nothing.
func testFinishPoolClaim(t *testing.T, h Harness) {
	s := open(t, h)
	fp := "SHA256:heidi"
	if err := s.PutPoolMachine(poolMachine("a", lease.PoolReady), ""); err != nil {
		t.Fatal(err)
	}
	running := sampleLease(fp)
	running.ID = "a"
	if err := s.FinishPoolClaim(running, event(1)); !errors.Is(err, lease.ErrPoolMachineTaken) {
		t.Errorf("finishing the claim of a ready machine: %v, want one wrapping ErrPoolMachineTaken", err)
	}
	if leases, err := s.List(); err != nil || len(leases) != 0 {
		t.Errorf("a refused finish wrote leases %+v, %v", leases, err)
	}
	claiming := poolMachine("a", lease.PoolClaiming)
	claiming.Claimant = fp
	creating := running
	creating.State = lease.StateCreating
	if err := s.ClaimPoolMachine(claiming, creating); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishPoolClaim(running, event(2)); err != nil {
		t.Fatalf("finishing a claim: %v", err)
	}
	if pool, err := s.PoolMachines(); err != nil || len(pool) != 0 {
		t.Errorf("pool after the finish: %+v, %v", pool, err)
	}
	if got, err := s.Get(fp); err != nil {
		t.Fatal(err)
	} else {
		sameJSON(t, "the lease after the finish", got, running)
	}
	if err := s.FinishPoolClaim(running, event(3)); !errors.Is(err, lease.ErrPoolMachineTaken) {
		t.Errorf("finishing it again: %v, want one wrapping ErrPoolMachineTaken", err)
	}
	if got := eventDetails(t, s, 0); len(got) != 1 || got[0] != "event 2" {
		t.Errorf("events of the finishes: %q, want only the one that passed", got)
	}
	healthy(t, s, "a refused finish")
}
