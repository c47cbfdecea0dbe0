package bolt

import (
	"encoding/json"
	"path/filepath"
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
