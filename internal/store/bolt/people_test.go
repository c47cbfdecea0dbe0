package bolt

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// A person who kept nothing is their fingerprint alone; what they keep is
// read back whole after a reopen, and written with its event as one write.
func TestPeople(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.Person("SHA256:nobody"); err != nil || p.Fingerprint != "SHA256:nobody" || p.Notify != nil || p.Secrets != nil {
		t.Fatalf("a person who kept nothing: %+v, %v", p, err)
	}
	at := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	want := lease.Person{
		Fingerprint: "SHA256:alice",
		Notify:      []lease.NotifyTarget{{URL: "https://ntfy.sh/alice-agent", Added: at}},
		Secrets:     []lease.Secret{{Name: "GH_TOKEN", Sealed: []byte{1, 2, 3}, Set: at}},
	}
	if err := s.PutPerson(want, lease.Event{Time: at, Kind: "notify", Fingerprint: want.Fingerprint, Detail: "added a target"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPerson(lease.Person{}); err == nil {
		t.Error("a person without a fingerprint was written")
	}
	s.Close()

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Person("SHA256:alice")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(want)
	if string(a) != string(b) {
		t.Errorf("read back %s, want %s", a, b)
	}
	if events, err := s.Events(0); err != nil || len(events) != 1 || events[0].Kind != "notify" {
		t.Errorf("the person's event: %+v, %v", events, err)
	}
}

// TestMigrateFromV3 opens a version 3 file (no people bucket): its leases
// stay, and people can be written.
func TestMigrateFromV3(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	writeVersion(t, path, 3, func(tx *bbolt.Tx) error {
		leases, _ := tx.CreateBucket([]byte("leases"))
		tx.CreateBucket([]byte("events"))
		tx.CreateBucket([]byte("refusals"))
		data, _ := json.Marshal(lease.Lease{Fingerprint: "SHA256:alice", ID: "0123456789"})
		return leases.Put([]byte("SHA256:alice"), data)
	})
	s, err := Open(path)
	if err != nil {
		t.Fatalf("open v3 file: %v", err)
	}
	defer s.Close()
	if l, err := s.Get("SHA256:alice"); err != nil || l.ID != "0123456789" {
		t.Fatalf("lease after migration: %+v, %v", l, err)
	}
	if err := s.PutPerson(lease.Person{Fingerprint: "SHA256:alice"}); err != nil {
		t.Fatalf("put person after migration: %v", err)
	}
	if v := rawVersion(t, path+".v3.bak"); v != 3 {
		t.Errorf("backup holds schema version %d, want 3", v)
	}
}
