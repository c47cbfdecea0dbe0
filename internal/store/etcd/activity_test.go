package etcd

import (
	"errors"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// PutActivity moves the last activity forward only, keeps what another
// gateway wrote to the rest of the lease, and creates no lease.
func TestPutActivity(t *testing.T) {
	cluster := testkit.StartEtcd(t, 1)
	a, b := openOn(t, cluster, "/activity/"), openOn(t, cluster, "/activity/")
	t0 := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	l := lease.Lease{Fingerprint: "SHA256:bob", ID: "l1", State: lease.StateRunning, LastActivity: t0}
	if err := a.Put(l); err != nil {
		t.Fatal(err)
	}
	// b stops the machine; a's activity write must not bring "running" back.
	stopped := l
	stopped.State = lease.StateStopped
	if err := b.Put(stopped); err != nil {
		t.Fatal(err)
	}
	if err := a.PutActivity(l.Fingerprint, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := a.PutActivity(l.Fingerprint, t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := b.Get(l.Fingerprint)
	if err != nil || got.State != lease.StateStopped || !got.LastActivity.Equal(t0.Add(time.Minute)) {
		t.Errorf("after the activity writes: %+v, %v; want stopped, active at %s", got, err, t0.Add(time.Minute))
	}
	if err := a.PutActivity("SHA256:nobody", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get("SHA256:nobody"); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("activity of someone without a lease made one: %v", err)
	}
}
