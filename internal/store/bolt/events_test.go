package bolt

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

func event(i int) lease.Event {
	return lease.Event{
		Time: time.Date(2026, 11, 25, 9, 0, i, 0, time.UTC), Kind: "extend",
		Fingerprint: "SHA256:x", LeaseID: "abc", Detail: fmt.Sprintf("event %d", i),
	}
}

// TestMigrateFromV1 opens a version 1 file (no events bucket) and finds its
// leases kept and the audit log ready.
func TestMigrateFromV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	old := sampleLease("SHA256:v1")
	writeVersion(t, path, 1, func(tx *bbolt.Tx) error {
		leases, _ := tx.CreateBucket([]byte("leases"))
		data, _ := json.Marshal(old)
		return leases.Put([]byte(old.Fingerprint), data)
	})

	s, err := Open(path)
	if err != nil {
		t.Fatalf("open v1 file: %v", err)
	}
	defer s.Close()
	if got, err := s.Get(old.Fingerprint); err != nil || got.ID != old.ID {
		t.Fatalf("lease after migration: %+v, %v", got, err)
	}
	if err := s.AppendEvent(event(1)); err != nil {
		t.Fatalf("append after migration: %v", err)
	}
	if v := rawVersion(t, path+".v1.bak"); v != 1 {
		t.Errorf("backup holds schema version %d, want 1", v)
	}
}

// TestLoweredLimitTrimsEveryOldEvent: with more events than a lowered
// limit, one append drops all the surplus, not every other one (a cursor
// that deletes and then moves on skips the key after each deleted one).
func TestLoweredLimitTrimsEveryOldEvent(t *testing.T) {
	s, _ := openTemp(t)
	for i := range 20 {
		if err := s.AppendEvent(event(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.eventLimit = 5
	if err := s.AppendEvent(event(20)); err != nil {
		t.Fatal(err)
	}
	all, err := s.Events(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 || all[0].Detail != "event 16" || all[4].Detail != "event 20" {
		t.Fatalf("after lowering the limit to 5, %d events remain, from %q", len(all), all[0].Detail)
	}
}

// lastTx is the id of the newest committed write transaction: bbolt counts
// them, one per commit and so one per fsync.
func lastTx(t *testing.T, s *Store) int {
	t.Helper()
	var id int
	if err := s.db.View(func(tx *bbolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestEachWriteIsOneTransaction: a change and its audit events, and a
// batch of refusal counts, are each one bbolt transaction, so one fsync
// (the contract, storetest, sees only that they land together).
func TestEachWriteIsOneTransaction(t *testing.T) {
	s, _ := openTemp(t)
	keep, gone := sampleLease("SHA256:keep"), sampleLease("SHA256:gone")
	if err := s.Put(gone); err != nil {
		t.Fatal(err)
	}
	keep.ID = "a" // the pool machine it claims
	claiming := readyMachine("a")
	claiming.State = lease.PoolClaiming
	writes := []struct {
		what  string
		write func() error
	}{
		{"a put with events", func() error { return s.Put(keep, event(1), event(2)) }},
		{"a delete with events", func() error { return s.Delete(gone.Fingerprint, event(3)) }},
		{"a person with events", func() error { return s.PutPerson(lease.Person{Fingerprint: "SHA256:p"}, event(4), event(5)) }},
		{"a pool write", func() error { return s.PutPoolMachine(readyMachine("a"), "", event(6), event(7)) }},
		{"a claim", func() error { return s.ClaimPoolMachine(claiming, keep, event(8), event(9)) }},
		{"a finished claim", func() error { return s.FinishPoolClaim(keep, event(10)) }},
		{"a batch of refusals", func() error { return s.AppendRefusals([]lease.Refusal{refusal(0), refusal(1), refusal(2)}) }},
		{"a pool delete", func() error { return s.DeletePoolMachine("b", event(11), event(12)) }},
	}
	for _, w := range writes {
		before := lastTx(t, s)
		if err := w.write(); err != nil {
			t.Fatalf("%s: %v", w.what, err)
		}
		if n := lastTx(t, s) - before; n != 1 {
			t.Errorf("%s took %d write transactions, want 1", w.what, n)
		}
	}
}

func refusal(i int) lease.Refusal {
	minute := time.Date(2026, 11, 25, 9, i, 0, 0, time.UTC)
	return lease.Refusal{
		Minute: minute, Source: fmt.Sprintf("192.0.2.%d", i), Kind: lease.RefusedKey, Count: 100 + i,
		Fingerprints: []string{"SHA256:a", "SHA256:b"}, First: minute, Last: minute.Add(59 * time.Second),
	}
}

// TestMigrateFromV2 opens a version 2 file (no refusals bucket) and finds
// its events kept and refusals ready to be written.
func TestMigrateFromV2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	writeVersion(t, path, 2, func(tx *bbolt.Tx) error {
		tx.CreateBucket([]byte("leases"))
		events, _ := tx.CreateBucket([]byte("events"))
		data, _ := json.Marshal(event(1))
		return events.Put(sequenceKey(1), data)
	})

	s, err := Open(path)
	if err != nil {
		t.Fatalf("open v2 file: %v", err)
	}
	defer s.Close()
	if events, err := s.Events(0); err != nil || len(events) != 1 || events[0].Detail != "event 1" {
		t.Fatalf("events after migration: %+v, %v", events, err)
	}
	if err := s.AppendRefusals([]lease.Refusal{refusal(1)}); err != nil {
		t.Fatalf("append refusals after migration: %v", err)
	}
	if rs, err := s.Refusals(0); err != nil || len(rs) != 1 {
		t.Fatalf("refusals after migration: %+v, %v", rs, err)
	}
	if v := rawVersion(t, path+".v2.bak"); v != 2 {
		t.Errorf("backup holds schema version %d, want 2", v)
	}
}

// writeVersion writes a file of an older schema version: its meta bucket,
// then what fill puts in.
func writeVersion(t *testing.T, path string, version uint64, fill func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		meta, _ := tx.CreateBucket([]byte("meta"))
		raw := make([]byte, 8)
		binary.BigEndian.PutUint64(raw, version)
		meta.Put([]byte("schema_version"), raw)
		return fill(tx)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
}
