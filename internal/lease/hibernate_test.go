package lease

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHibernate(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	d.m.refreshPrices(context.Background(), nil)
	l := d.running(t, "a", 1)
	snapped := d.clock.Now().Add(-time.Second)
	d.cloud.snapshotFn = func(_ context.Context, id int64, leaseID string) (Image, error) {
		if leaseID != "a" {
			t.Errorf("snapshot labelled %q, want the lease id", leaseID)
		}
		return Image{ID: 9, LeaseID: leaseID, SizeGB: 2, Created: snapped}, nil
	}
	ctx := context.Background()
	got, err := d.m.Hibernate(ctx, l.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.cloud.changes(), []string{"PowerOff 1", "Snapshot 1", "Delete 1"}; !slices.Equal(got, want) {
		t.Errorf("provider calls %q, want %q", got, want)
	}
	stored, _ := d.stored(t, l.Fingerprint)
	if got.State != StateHibernated || stored.State != StateHibernated || stored.ServerID != 0 ||
		stored.ImageID != 9 || !stored.ImageCreated.Equal(snapped) || stored.Spent != 0.01 {
		t.Errorf("hibernated lease %+v", stored)
	}
	if ev := d.store.kinds(l.Fingerprint); !slices.Equal(ev, []string{"hibernate: snapshot 9 (2.0 GB)"}) {
		t.Errorf("events %q", ev)
	}

	// Again: nothing to do.
	calls := len(d.cloud.made(""))
	if _, err := d.m.Hibernate(ctx, l.Fingerprint); err != nil || len(d.cloud.made("")) != calls {
		t.Errorf("hibernating a hibernated machine: %v, calls %q", err, d.cloud.made(""))
	}
	if _, err := d.m.Hibernate(ctx, "SHA256:nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("hibernate without a lease: %v", err)
	}
}

func TestHibernateRefusesAMachineBeingCreated(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	l := d.running(t, "a", 0, in(StateCreating))
	if _, err := d.m.Hibernate(context.Background(), l.Fingerprint); err == nil || !strings.Contains(err.Error(), "still being created") {
		t.Errorf("Hibernate: %v", err)
	}
	if calls := d.cloud.made(""); len(calls) != 0 {
		t.Errorf("provider calls %q", calls)
	}
}

// TestHibernateFailureKeepsTheIntent: a failed snapshot leaves the lease
// hibernating with its server, for reconcile or the next connection.
func TestHibernateFailureKeepsTheIntent(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	l := d.running(t, "a", 1)
	full := errors.New("quota")
	d.cloud.snapshotFn = func(context.Context, int64, string) (Image, error) { return Image{}, full }
	if _, err := d.m.Hibernate(context.Background(), l.Fingerprint); !errors.Is(err, full) {
		t.Errorf("Hibernate: %v", err)
	}
	stored, _ := d.stored(t, l.Fingerprint)
	if stored.State != StateHibernating || stored.ServerID != 1 {
		t.Errorf("after a failed snapshot: %+v", stored)
	}
	if len(d.cloud.made("Delete")) != 0 {
		t.Error("the server was deleted without a snapshot")
	}
}
