package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

func testLeaseReadBackWhole(t *testing.T, h Harness) {
	s := open(t, h)
	want := sampleLease("SHA256:aaa")
	if err := s.Put(want); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, err := s.Get(want.Fingerprint)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	sameJSON(t, "Get", got, want)
}

func testPutReplaces(t *testing.T, h Harness) {
	s := open(t, h)
	l := sampleLease("SHA256:aaa")
	if err := s.Put(l); err != nil {
		t.Fatal(err)
	}
	l.State, l.Address, l.HostKeyPEM = lease.StateStopped, "", nil
	if err := s.Put(l); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(l.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "Get after a second Put", got, l)
}

func testGetMissing(t *testing.T, h Harness) {
	s := open(t, h)
	_, err := s.Get("SHA256:nobody")
	if !errors.Is(err, lease.ErrNotFound) {
		t.Fatalf("Get of no lease: %v, want one wrapping lease.ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "SHA256:nobody") {
		t.Errorf("error %q does not name the fingerprint", err)
	}
	if errors.Is(err, lease.ErrStoreFailed) {
		t.Errorf("a missing lease is reported as a failed store: %v", err)
	}
	healthy(t, s, "a missing lease")
}

func testDelete(t *testing.T, h Harness) {
	s := open(t, h)
	for _, fp := range []string{"SHA256:aaa", "SHA256:bbb"} {
		if err := s.Put(sampleLease(fp)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete("SHA256:aaa"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get("SHA256:aaa"); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want lease.ErrNotFound", err)
	}
	if _, err := s.Get("SHA256:bbb"); err != nil {
		t.Errorf("Delete removed another lease: %v", err)
	}
	// A retried delete succeeds, and still records its events.
	if err := s.Delete("SHA256:aaa", event(1)); err != nil {
		t.Errorf("Delete of no lease: %v, want nil", err)
	}
	if got := eventDetails(t, s, 0); !slices.Equal(got, []string{"event 1"}) {
		t.Errorf("events of a delete of no lease: %q", got)
	}
}

// List is in fingerprint order (Go's string order, bytewise), so admin
// list and reconcile read the same on every store.
func testListInFingerprintOrder(t *testing.T, h Harness) {
	s := open(t, h)
	if got, err := s.List(); err != nil || len(got) != 0 {
		t.Fatalf("List of an empty store: %v, %v", got, err)
	}
	for _, fp := range []string{"SHA256:mmm", "SHA256:Zed", "SHA256:aaa", "SHA256:+/9"} {
		if err := s.Put(sampleLease(fp)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var fps []string
	for _, l := range got {
		fps = append(fps, l.Fingerprint)
	}
	if want := []string{"SHA256:+/9", "SHA256:Zed", "SHA256:aaa", "SHA256:mmm"}; !slices.Equal(fps, want) {
		t.Errorf("List order %q, want %q", fps, want)
	}
	sameJSON(t, "a listed lease", got[0], sampleLease("SHA256:+/9"))
}

// A record without its key is refused, and the refusal writes nothing,
// not even the events that came with it.
func testRecordsWithoutKeyRefused(t *testing.T, h Harness) {
	s := open(t, h)
	if err := s.Put(lease.Lease{ID: "x"}, event(1)); err == nil {
		t.Error("Put of a lease without a fingerprint succeeded")
	}
	if err := s.PutPerson(lease.Person{}, event(2)); err == nil {
		t.Error("PutPerson without a fingerprint succeeded")
	}
	if err := s.PutPoolMachine(lease.PoolMachine{State: lease.PoolCreating}, "", event(3)); err == nil {
		t.Error("PutPoolMachine without an id succeeded")
	}
	ready := poolMachine("a", lease.PoolReady)
	if err := s.PutPoolMachine(ready, ""); err != nil {
		t.Fatal(err)
	}
	claiming := ready
	claiming.State = lease.PoolClaiming
	if err := s.ClaimPoolMachine(claiming, lease.Lease{ID: "a"}, event(4)); err == nil {
		t.Error("ClaimPoolMachine with a lease without a fingerprint succeeded")
	}
	if leases, err := s.List(); err != nil || len(leases) != 0 {
		t.Errorf("refused writes left leases %+v, %v", leases, err)
	}
	if pool, err := s.PoolMachines(); err != nil || len(pool) != 1 || pool[0].State != lease.PoolReady {
		t.Errorf("refused writes changed the pool: %+v, %v", pool, err)
	}
	if got := eventDetails(t, s, 0); len(got) != 0 {
		t.Errorf("refused writes appended events %q", got)
	}
}
