package bolt

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

func sampleLease(fp string) lease.Lease {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return lease.Lease{
		Fingerprint:  fp,
		PublicKey:    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample",
		ID:           "k3x9",
		State:        lease.StateRunning,
		ServerID:     4711,
		ServerName:   "cc-k3x9",
		Address:      "127.0.0.1:2022",
		HostKey:      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHost",
		HostKeyPEM:   []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"),
		ServerType:   "cx23",
		Location:     "fsn1",
		Created:      t0,
		Expires:      t0.Add(4 * time.Hour),
		LastActivity: t0.Add(time.Minute),
	}
}

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "gateway.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func TestDamagedRecordIsReported(t *testing.T) {
	s, _ := openTemp(t)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(leasesBucket).Put([]byte("SHA256:bad"), []byte("{not json"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("SHA256:bad"); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Get damaged record: err = %v, want a 'damaged' error", err)
	}
	if _, err := s.List(); err == nil || !strings.Contains(err.Error(), "SHA256:bad") {
		t.Fatalf("List with damaged record: err = %v, want one naming the record", err)
	}
}

func TestNewFileIsPrivate(t *testing.T) {
	_, path := openTemp(t)
	assertMode(t, path, 0o600)
	assertMode(t, filepath.Dir(path), 0o700)
}

func TestLooseExistingFileIsTightened(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s2.Close()
	assertMode(t, path, 0o600)
}

func TestLooseDataFolderIsTightened(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	logs := captureLog(t)
	s, err := Open(filepath.Join(dir, "gateway.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	assertMode(t, dir, 0o700)
	if !strings.Contains(logs.String(), "restricted data folder mode to 0700") {
		t.Errorf("tightening not logged:\n%s", logs)
	}
}

// captureLog sends the default logger, which the store logs to, into a
// buffer for the rest of the test. Tests here do not run in parallel.
func captureLog(t *testing.T) *testkit.Buffer {
	log, buf := testkit.Logger()
	old := slog.Default()
	slog.SetDefault(log)
	t.Cleanup(func() { slog.SetDefault(old) })
	return buf
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Fatalf("mode of %s = %v, want %v", path, got, want)
	}
}

func TestSecondOpenIsRefusedClearly(t *testing.T) {
	_, path := openTemp(t)
	s2, err := open(path, 50*time.Millisecond)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a held file succeeded")
	}
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("err = %v, want ErrInUse", err)
	}
	if !strings.Contains(err.Error(), path+" is in use by another gateway process") {
		t.Fatalf("error %q does not say which file is in use", err)
	}
}

func TestNotABoltFileIsRefusedAndKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	junk := []byte(strings.Repeat("this is not a database\n", 1000))
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("Open of a non-database file succeeded")
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(junk) {
		t.Fatal("failed Open modified the file")
	}
}

func TestMigrationsCoverEveryVersion(t *testing.T) {
	if len(migrations) != schemaVersion {
		t.Fatalf("%d migrations for schema version %d: each version below the current one needs one", len(migrations), schemaVersion)
	}
}

func TestFreshFileHasCurrentVersion(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := rawVersion(t, path); v != schemaVersion {
		t.Fatalf("schema_version = %d, want %d", v, schemaVersion)
	}
	if _, err := os.Stat(path + ".v0.bak"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a fresh file was backed up as if migrated: %v", err)
	}
}

// writeV0 writes the layout of schema version 0: a leases bucket of JSON
// records and no meta bucket.
func writeV0(t *testing.T, path string, leases ...lease.Lease) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("leases"))
		if err != nil {
			return err
		}
		for _, l := range leases {
			raw, err := json.Marshal(l)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(l.Fingerprint), raw); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func rawVersion(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v uint64
	err = db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		if meta == nil {
			return errors.New("no meta bucket")
		}
		raw := meta.Get([]byte("schema_version"))
		if len(raw) != 8 {
			return fmt.Errorf("schema_version has %d bytes", len(raw))
		}
		v = binary.BigEndian.Uint64(raw)
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func TestMigrateFromV0(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	old := sampleLease("SHA256:old")
	writeV0(t, path, old)

	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open v0 file: %v", err)
	}
	got, err := s.Get("SHA256:old")
	if err != nil {
		t.Fatalf("lease lost in migration: %v", err)
	}
	if !reflect.DeepEqual(got, old) {
		t.Fatalf("lease changed in migration\n got %+v\nwant %+v", got, old)
	}
	if err := s.Put(sampleLease("SHA256:new")); err != nil {
		t.Fatalf("Put after migration: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := rawVersion(t, path); v != schemaVersion {
		t.Fatalf("schema_version after migration = %d, want %d", v, schemaVersion)
	}

	// The backup is the file as it was: v0 layout with the old lease only.
	backup := path + ".v0.bak"
	assertMode(t, backup, 0o600)
	db, err := bbolt.Open(backup, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatalf("open backup: %v", err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket([]byte("meta")) != nil {
			return errors.New("backup has a meta bucket: it was taken after migrating")
		}
		b := tx.Bucket([]byte("leases"))
		if b == nil || b.Get([]byte("SHA256:old")) == nil {
			return errors.New("backup lacks the old lease")
		}
		if b.Get([]byte("SHA256:new")) != nil {
			return errors.New("backup has a lease written after migrating")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(backup + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary backup file left behind: %v", err)
	}
}

func TestNewerSchemaRefusedUntouched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		raw := make([]byte, 8)
		binary.BigEndian.PutUint64(raw, schemaVersion+1)
		if err := meta.Put([]byte("schema_version"), raw); err != nil {
			return err
		}
		_, err = tx.CreateBucket([]byte("leases"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
	if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), "written by a newer gateway") {
		t.Fatalf("err = %v, want a 'written by a newer gateway' refusal", err)
	}
	if v := rawVersion(t, path); v != schemaVersion+1 {
		t.Fatalf("refused file's schema_version changed to %d", v)
	}
	matches, _ := filepath.Glob(path + ".v*.bak")
	if len(matches) != 0 {
		t.Fatalf("refused file was backed up: %v", matches)
	}
	// The lock is released, so a newer gateway could open it now.
	s, err = open(path, 50*time.Millisecond)
	if errors.Is(err, ErrInUse) {
		t.Fatal("refused Open kept the file locked")
	}
	if s != nil {
		s.Close()
	}
}
