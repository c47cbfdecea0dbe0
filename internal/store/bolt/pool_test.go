package bolt

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

func readyMachine(id string) lease.PoolMachine {
	return lease.PoolMachine{
		ID: id, State: lease.PoolReady, ServerID: 42, ServerName: "cc-" + id,
		Address: "127.0.0.1:2222", HostKey: "ssh-ed25519 AAAA", HostKeyPEM: []byte("pem"),
		ServerType: "cx22", Location: "nbg1", Created: time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC),
	}
}

// Pool records are read back whole after a reopen, sorted by id, and
// written and deleted with their events as one write; a write expecting
// another state than the stored one writes nothing.
func TestPoolMachines(t *testing.T) {
	s, path := openTemp(t)
	b, a := readyMachine("b"), readyMachine("a")
	a.State = lease.PoolCreating
	for _, p := range []lease.PoolMachine{b, a} {
		if err := s.PutPoolMachine(p, "", lease.Event{Kind: "pool", Detail: "put " + p.ID}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutPoolMachine(lease.PoolMachine{}, ""); err == nil {
		t.Error("a pool machine without an id was written")
	}
	again := b
	again.ServerID = 99
	if err := s.PutPoolMachine(again, ""); !errors.Is(err, lease.ErrPoolMachineTaken) {
		t.Errorf("writing a new record over one stored: %v, want ErrPoolMachineTaken", err)
	}
	if err := s.PutPoolMachine(again, lease.PoolCreating); !errors.Is(err, lease.ErrPoolMachineTaken) {
		t.Errorf("writing from creating over a ready record: %v, want ErrPoolMachineTaken", err)
	}
	s.Close()

	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.PoolMachines()
	if err != nil {
		t.Fatal(err)
	}
	want := []lease.PoolMachine{a, b}
	if g, w := asJSON(t, got), asJSON(t, want); g != w {
		t.Errorf("read back %s, want %s", g, w)
	}
	if err := s.DeletePoolMachine("a", lease.Event{Kind: "pool", Detail: "deleted a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePoolMachine("a"); err != nil {
		t.Errorf("deleting it again: %v", err)
	}
	if got, err := s.PoolMachines(); err != nil || len(got) != 1 || got[0].ID != "b" {
		t.Errorf("after the delete: %+v, %v", got, err)
	}
	if events, err := s.Events(0); err != nil || len(events) != 3 {
		t.Errorf("the pool's events: %+v, %v", events, err)
	}
}

// A claim writes the pool record and the lease together, and only of a
// ready machine: of many claims of one machine at once exactly one wins,
// and the losers write nothing and leave the store healthy.
func TestClaimPoolMachineOnlyOnce(t *testing.T) {
	s, _ := openTemp(t)
	ready := readyMachine("a")
	if err := s.PutPoolMachine(ready, ""); err != nil {
		t.Fatal(err)
	}
	const claims = 8
	errs := make([]error, claims)
	var wg sync.WaitGroup
	for i := range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := ready
			p.State, p.Claimant = lease.PoolClaiming, fingerprintOf(i)
			l := lease.Lease{Fingerprint: p.Claimant, State: lease.StateCreating, ServerID: p.ServerID, HostKey: p.HostKey}
			errs[i] = s.ClaimPoolMachine(p, l, lease.Event{Kind: "claim", Fingerprint: p.Claimant})
		}()
	}
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("claims %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, lease.ErrPoolMachineTaken):
			t.Errorf("claim %d: %v, want one wrapping ErrPoolMachineTaken", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no claim won")
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
	if err := s.Healthy(); err != nil {
		t.Errorf("a lost claim made the store unhealthy: %v", err)
	}

	gone := lease.PoolMachine{ID: "nobody-made-me", State: lease.PoolClaiming}
	err = s.ClaimPoolMachine(gone, lease.Lease{Fingerprint: "SHA256:late"})
	if !errors.Is(err, lease.ErrPoolMachineTaken) {
		t.Errorf("claiming a machine with no record: %v, want ErrPoolMachineTaken", err)
	}
}

// Finishing a claim writes the lease and deletes the claiming record as
// one write; a record in any other state (or none) writes nothing.
func TestFinishPoolClaim(t *testing.T) {
	s, _ := openTemp(t)
	ready := readyMachine("a")
	if err := s.PutPoolMachine(ready, ""); err != nil {
		t.Fatal(err)
	}
	l := lease.Lease{Fingerprint: "SHA256:heidi", ID: "a", State: lease.StateRunning, ServerID: ready.ServerID}
	if err := s.FinishPoolClaim(l); !errors.Is(err, lease.ErrPoolMachineTaken) {
		t.Errorf("finishing the claim of a ready machine: %v, want ErrPoolMachineTaken", err)
	}
	if leases, _ := s.List(); len(leases) != 0 {
		t.Errorf("a refused finish wrote leases %+v", leases)
	}
	claiming := ready
	claiming.State, claiming.Claimant = lease.PoolClaiming, l.Fingerprint
	creating := l
	creating.State = lease.StateCreating
	if err := s.ClaimPoolMachine(claiming, creating); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishPoolClaim(l, lease.Event{Kind: "create", Fingerprint: l.Fingerprint}); err != nil {
		t.Fatal(err)
	}
	pool, err := s.PoolMachines()
	if err != nil || len(pool) != 0 {
		t.Errorf("pool after the finish: %+v, %v", pool, err)
	}
	if got, err := s.Get(l.Fingerprint); err != nil || got.State != lease.StateRunning {
		t.Errorf("lease after the finish: %+v, %v", got, err)
	}
	if events, err := s.Events(0); err != nil || len(events) != 1 {
		t.Errorf("events after the finish: %+v, %v", events, err)
	}
	if err := s.FinishPoolClaim(l); !errors.Is(err, lease.ErrPoolMachineTaken) {
		t.Errorf("finishing it again: %v, want ErrPoolMachineTaken", err)
	}
}

func fingerprintOf(i int) string { return "SHA256:person-" + string(rune('a'+i)) }

func asJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// TestMigrateFromV4 opens a version 4 file (no pool bucket): its leases and
// people stay, and pool machines can be written.
func TestMigrateFromV4(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	writeVersion(t, path, 4, func(tx *bbolt.Tx) error {
		leases, _ := tx.CreateBucket([]byte("leases"))
		tx.CreateBucket([]byte("events"))
		tx.CreateBucket([]byte("refusals"))
		people, _ := tx.CreateBucket([]byte("people"))
		data, _ := json.Marshal(lease.Lease{Fingerprint: "SHA256:alice", ID: "0123456789"})
		if err := leases.Put([]byte("SHA256:alice"), data); err != nil {
			return err
		}
		data, _ = json.Marshal(lease.Person{Fingerprint: "SHA256:alice", Notify: []lease.NotifyTarget{{URL: "https://ntfy.sh/a"}}})
		return people.Put([]byte("SHA256:alice"), data)
	})
	s, err := Open(path)
	if err != nil {
		t.Fatalf("open v4 file: %v", err)
	}
	defer s.Close()
	if l, err := s.Get("SHA256:alice"); err != nil || l.ID != "0123456789" {
		t.Fatalf("lease after migration: %+v, %v", l, err)
	}
	if p, err := s.Person("SHA256:alice"); err != nil || len(p.Notify) != 1 {
		t.Fatalf("person after migration: %+v, %v", p, err)
	}
	if err := s.PutPoolMachine(readyMachine("a"), ""); err != nil {
		t.Fatalf("put pool machine after migration: %v", err)
	}
	if v := rawVersion(t, path+".v4.bak"); v != 4 {
		t.Errorf("backup holds schema version %d, want 4", v)
	}
}
