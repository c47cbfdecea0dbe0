package etcd

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// With two of three members stopped, every call fails within the store's
// timeout with an error wrapping lease.ErrStoreUnavailable and writes
// nothing; once the members are back, the same store works again without
// being reopened, with everything written before the loss.
func TestQuorumLost(t *testing.T) {
	cluster := testkit.StartEtcd(t, 3)
	s, err := Open(Config{Endpoints: cluster.Endpoints(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := lease.Lease{Fingerprint: "SHA256:before", ID: "b1", State: lease.StateRunning}
	if err := s.Put(before, lease.Event{Kind: "create", Detail: "before"}); err != nil {
		t.Fatal(err)
	}

	cluster.Members[1].Stop()
	cluster.Members[2].Stop()
	// Writes are sent only once the survivor knows it has no leader: a write
	// its leader accepted a moment before could still commit once the
	// members are back (a timed-out write may be applied), which is etcd's
	// behaviour, not the store's.
	testkit.Eventually(t, time.Minute, func() error {
		if err := s.Healthy(); !errors.Is(err, rpctypes.ErrNoLeader) {
			return fmt.Errorf("the survivor has not yet said it has no leader: %v", err)
		}
		return nil
	})
	during := lease.Lease{Fingerprint: "SHA256:during", ID: "d1", State: lease.StateCreating}
	for what, err := range map[string]error{
		"Put":               s.Put(during, lease.Event{Kind: "create", Detail: "during"}),
		"AppendEvent":       s.AppendEvent(lease.Event{Kind: "connect", Detail: "during"}),
		"PutPoolMachine":    s.PutPoolMachine(lease.PoolMachine{ID: "p1", State: lease.PoolCreating}, ""),
		"AppendRefusals":    s.AppendRefusals([]lease.Refusal{{Source: "192.0.2.1", Count: 1}}),
		"Get":               func() error { _, err := s.Get(before.Fingerprint); return err }(),
		"List":              func() error { _, err := s.List(); return err }(),
		"Healthy":           s.Healthy(),
		"DeletePoolMachine": s.DeletePoolMachine("p1"),
	} {
		if !errors.Is(err, lease.ErrStoreUnavailable) {
			t.Errorf("%s without quorum: %v, want an error wrapping lease.ErrStoreUnavailable", what, err)
		}
	}

	cluster.Members[1].Start()
	cluster.Members[2].Start()
	if err := s.Healthy(); err != nil {
		t.Fatalf("with quorum back: %v", err)
	}
	if _, err := s.Get(during.Fingerprint); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("the lease written without quorum: %v, want none", err)
	}
	if pool, err := s.PoolMachines(); err != nil || len(pool) != 0 {
		t.Errorf("the pool after writes without quorum: %v, %v; want empty", pool, err)
	}
	after := lease.Lease{Fingerprint: "SHA256:after", ID: "a1", State: lease.StateRunning}
	if err := s.Put(after, lease.Event{Kind: "create", Detail: "after"}); err != nil {
		t.Fatalf("Put with quorum back: %v", err)
	}
	leases, err := s.List()
	if err != nil || len(leases) != 2 || leases[0].Fingerprint != after.Fingerprint || leases[1].Fingerprint != before.Fingerprint {
		t.Errorf("leases with quorum back: %+v, %v; want after and before", leases, err)
	}
	events, err := s.Events(0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.Detail)
	}
	if fmt.Sprint(got) != "[before after]" {
		t.Errorf("events with quorum back: %v, want [before after]", got)
	}
	if rs, err := s.Refusals(0); err != nil || len(rs) != 0 {
		t.Errorf("refusals after writes without quorum: %v, %v; want none", rs, err)
	}
}
