package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// storeWithLeases is a store on a real file holding n leases, enough to
// fill several pages.
func storeWithLeases(t *testing.T, n int) (*Store, string) {
	t.Helper()
	s, path := openTemp(t)
	for i := range n {
		if err := s.Put(sampleLease(fmt.Sprintf("SHA256:%04d", i))); err != nil {
			t.Fatal(err)
		}
	}
	return s, path
}

// overwriteLeasePage overwrites with garbage, through its own file handle,
// one page of the file at path that holds lease records, as a failing disk
// or a stray write would.
func overwriteLeasePage(t *testing.T, s *Store, path string) {
	t.Helper()
	size := s.db.Info().PageSize
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for off := 2 * size; off+size <= len(data); off += size {
		if !bytes.Contains(data[off:off+size], []byte("SHA256:")) {
			continue
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, size), int64(off)); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("no page holds a lease")
}

func TestDamagedFileIsRefusedAtOpen(t *testing.T) {
	s, path := storeWithLeases(t, 100)
	// A copy made before a migration: the refusal names it.
	backup := path + ".v1.bak"
	if err := os.WriteFile(backup, []byte("copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	overwriteLeasePage(t, s, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := Open(path)
	if err == nil {
		s2.Close()
		t.Fatal("a damaged database opened")
	}
	if !errors.Is(err, ErrDamaged) {
		t.Errorf("err = %v, want ErrDamaged", err)
	}
	for _, want := range []string{path + " is damaged", "problems, the first:", "restore your newest backup", backup} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal lacks %q: %v", want, err)
		}
	}
	// Refused, it let go of the file: nothing holds it open or locked.
	if s3, err := open(path, lockTimeout); err == nil || errors.Is(err, ErrInUse) {
		if s3 != nil {
			s3.Close()
		}
		t.Errorf("a second open: %v, want the same refusal", err)
	}
}

func TestDamageAtRunTimeIsReportedOnce(t *testing.T) {
	logs := captureLog(t)
	s, path := storeWithLeases(t, 100)
	if err := s.Healthy(); err != nil {
		t.Fatalf("a new store is unhealthy: %v", err)
	}
	overwriteLeasePage(t, s, path) // under the running store: bbolt maps the file shared

	for range 3 {
		_, err := s.List()
		if !errors.Is(err, lease.ErrStoreFailed) {
			t.Fatalf("List: %v, want lease.ErrStoreFailed", err)
		}
	}
	if err := s.Healthy(); err == nil {
		t.Error("a store that failed is healthy")
	}
	if _, err := s.Get("SHA256:none"); !errors.Is(err, lease.ErrNotFound) && !errors.Is(err, lease.ErrStoreFailed) {
		t.Errorf("Get: %v", err)
	}
	if n := strings.Count(logs.String(), "the lease database failed"); n != 1 {
		t.Errorf("the failure was logged %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), path) {
		t.Errorf("the log does not name the file:\n%s", logs)
	}
}
