package bolt

import (
	"encoding/binary"
	"encoding/json"
	"errors"
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

func TestEventsKeepOrderAndLimit(t *testing.T) {
	s, path := openTemp(t)
	s.eventLimit = 5
	for i := range 12 {
		if err := s.AppendEvent(event(i)); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Events(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 || all[0].Detail != "event 7" || all[4].Detail != "event 11" {
		t.Fatalf("events after 12 appends with a limit of 5: %+v", all)
	}
	newest, err := s.Events(2)
	if err != nil || len(newest) != 2 || newest[0].Detail != "event 10" || newest[1].Detail != "event 11" {
		t.Fatalf("newest 2: %+v, %v", newest, err)
	}

	// The log survives a reopen and keeps counting from where it was.
	s.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.eventLimit = 5
	if err := s.AppendEvent(event(12)); err != nil {
		t.Fatal(err)
	}
	all, _ = s.Events(0)
	if len(all) != 5 || all[0].Detail != "event 8" || all[4].Detail != "event 12" {
		t.Fatalf("after reopen: %+v", all)
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

// TestLeaseChangeAndItsEventsAreOneWrite: Put and Delete write the lease
// and its audit events in one transaction, and both survive a reopen.
func TestLeaseChangeAndItsEventsAreOneWrite(t *testing.T) {
	s, path := openTemp(t)
	keep, gone := sampleLease("SHA256:keep"), sampleLease("SHA256:gone")
	if err := s.Put(gone); err != nil {
		t.Fatal(err)
	}
	before := lastTx(t, s)
	if err := s.Put(keep, event(1), event(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(gone.Fingerprint, event(3)); err != nil {
		t.Fatal(err)
	}
	if n := lastTx(t, s) - before; n != 2 {
		t.Errorf("a put and a delete, each with events, took %d write transactions, want 2", n)
	}

	s.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(keep.Fingerprint); err != nil {
		t.Errorf("lease after reopen: %v", err)
	}
	if _, err := s.Get(gone.Fingerprint); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("deleted lease after reopen: %v", err)
	}
	all, err := s.Events(0)
	if err != nil || len(all) != 3 || all[0].Detail != "event 1" || all[2].Detail != "event 3" {
		t.Errorf("events after reopen: %+v, %v", all, err)
	}
}

func refusal(i int) lease.Refusal {
	minute := time.Date(2026, 11, 25, 9, i, 0, 0, time.UTC)
	return lease.Refusal{
		Minute: minute, Source: fmt.Sprintf("192.0.2.%d", i), Kind: lease.RefusedKey, Count: 100 + i,
		Fingerprints: []string{"SHA256:a", "SHA256:b"}, First: minute, Last: minute.Add(59 * time.Second),
	}
}

// TestRefusalsApartFromEvents: a batch of refusal counts is one write, is
// bounded by its own limit, and never pushes an audit event out.
func TestRefusalsApartFromEvents(t *testing.T) {
	s, path := openTemp(t)
	s.eventLimit, s.refusalLimit = 3, 5
	if err := s.AppendEvent(event(1)); err != nil {
		t.Fatal(err)
	}
	before := lastTx(t, s)
	var batch []lease.Refusal
	for i := range 8 {
		batch = append(batch, refusal(i))
	}
	if err := s.AppendRefusals(batch); err != nil {
		t.Fatal(err)
	}
	if n := lastTx(t, s) - before; n != 1 {
		t.Errorf("a batch of 8 refusal counts took %d write transactions, want 1", n)
	}
	if err := s.AppendRefusals([]lease.Refusal{refusal(8)}); err != nil {
		t.Fatal(err)
	}

	s.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	all, err := s.Refusals(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 || all[0].Source != "192.0.2.4" || all[4].Source != "192.0.2.8" {
		t.Fatalf("refusals after 9 with a limit of 5: %+v", all)
	}
	if got, want := all[4], refusal(8); got.Count != want.Count || !got.Minute.Equal(want.Minute) || len(got.Fingerprints) != 2 || !got.Last.Equal(want.Last) {
		t.Errorf("refusal read back as %+v, want %+v", got, want)
	}
	newest, err := s.Refusals(2)
	if err != nil || len(newest) != 2 || newest[0].Source != "192.0.2.7" {
		t.Errorf("newest 2 refusals: %+v, %v", newest, err)
	}
	events, err := s.Events(0)
	if err != nil || len(events) != 1 || events[0].Detail != "event 1" {
		t.Errorf("events after the refusals: %+v, %v", events, err)
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
