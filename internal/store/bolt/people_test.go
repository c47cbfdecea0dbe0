package bolt

import (
	"encoding/json"
	"path/filepath"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

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
