package etcd

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// gateways opens n stores on one prefix of a fresh cluster, each with its
// own client, as n gateway processes would.
func gateways(t *testing.T, n int) []*Store {
	t.Helper()
	cluster := testkit.StartEtcd(t, 3)
	var stores []*Store
	for i := 0; i < n; i++ {
		s, err := Open(Config{Endpoints: cluster.Endpoints(), Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		stores = append(stores, s)
	}
	return stores
}

// keys counts the keys under the prefix's dir.
func keys(t *testing.T, s *Store, dir string) int {
	t.Helper()
	ctx, cancel := s.context()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+dir, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return int(resp.Count)
}

// A person's lock is one holder at a time across gateways: the second
// waits in line until the first unlocks, and a dead holder's lock (its
// client gone, nothing kept alive) passes on once its TTL lapses.
func TestCoordinatorLock(t *testing.T) {
	stores := gateways(t, 3)
	const fp = "SHA256:person"
	a := stores[0].Coordinator(2*time.Second, "a")
	b := stores[1].Coordinator(2*time.Second, "b")
	unlockA, err := a.Lock(context.Background(), fp)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		unlock, err := b.Lock(context.Background(), fp)
		if err != nil {
			t.Error(err)
			unlock = func() {}
		}
		got <- unlock
	}()
	testkit.Eventually(t, 30*time.Second, func() error {
		if n := keys(t, stores[0], locksDir); n != 2 {
			return fmt.Errorf("%d lock keys, want a holder and a waiter", n)
		}
		return nil
	})
	select {
	case <-got:
		t.Fatal("b took the lock a holds")
	default:
	}
	unlockA()
	unlockB := testkit.Receive(t, time.Minute, got, "lock for b after a's unlock")

	// b dies holding it: c gets it once b's session lapses.
	if err := stores[1].cli.Close(); err != nil {
		t.Fatal(err)
	}
	_ = unlockB
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	unlockC, err := stores[2].Coordinator(2*time.Second, "c").Lock(ctx, fp)
	if err != nil {
		t.Fatalf("the lock of a dead gateway did not pass on: %v", err)
	}
	unlockC()
	if n := keys(t, stores[0], locksDir); n != 0 {
		t.Errorf("%d lock keys left after every unlock, want 0", n)
	}
}

// One gateway leads at a time; a resign hands the leadership on, and a
// leader that dies (its client gone) loses it to a waiting candidate
// once its TTL lapses.
func TestCoordinatorLead(t *testing.T) {
	stores := gateways(t, 3)
	lead := func(s *Store, name string) (context.Context, func()) {
		leading, resign, err := s.Coordinator(2*time.Second, name).Lead(context.Background())
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return context.Background(), func() {}
		}
		return leading, resign
	}
	type term struct {
		leading context.Context
		resign  func()
	}
	campaign := func(s *Store, name string) chan term {
		ch := make(chan term, 1)
		go func() {
			leading, resign := lead(s, name)
			ch <- term{leading, resign}
		}()
		return ch
	}
	aLeading, aResign := lead(stores[0], "a")
	b := campaign(stores[1], "b")
	testkit.Eventually(t, 30*time.Second, func() error {
		if n := keys(t, stores[0], leaderDir); n != 2 {
			return fmt.Errorf("%d candidates, want the leader and b", n)
		}
		return nil
	})
	select {
	case <-b:
		t.Fatal("b leads beside a")
	default:
	}
	aResign()
	if aLeading.Err() == nil {
		t.Error("a's term goes on after its resign")
	}
	bTerm := testkit.Receive(t, time.Minute, b, "leadership for b after a's resign")

	c := campaign(stores[2], "c")
	if err := stores[1].cli.Close(); err != nil { // b dies
		t.Fatal(err)
	}
	testkit.Receive(t, time.Minute, bTerm.leading.Done(), "end of the dead b's term") // its session lapsed
	cTerm := testkit.Receive(t, time.Minute, c, "leadership for c after b died")
	if cTerm.leading.Err() != nil {
		t.Fatal("c's term ended at once")
	}
	cTerm.resign()
}

// A leader cut off from the quorum stands down once its session lapses,
// and a lock cannot be had meanwhile (the store is unavailable); with the
// quorum back, the same Coordinator leads and locks again.
func TestCoordinatorQuorumLost(t *testing.T) {
	cluster := testkit.StartEtcd(t, 3)
	s, err := Open(Config{Endpoints: cluster.Endpoints(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := s.Coordinator(2*time.Second, "a")
	leading, resign, err := c.Lead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cluster.Members[1].Stop()
	cluster.Members[2].Stop()
	testkit.Receive(t, time.Minute, leading.Done(), "end of the term without quorum")
	resign()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Lock(ctx, "SHA256:person"); !errors.Is(err, lease.ErrStoreUnavailable) {
		t.Errorf("Lock without quorum: %v, want the store unavailable", err)
	}

	cluster.Members[1].Start()
	cluster.Members[2].Start()
	testkit.Eventually(t, time.Minute, func() error { return s.Healthy() })
	leading, resign, err = c.Lead(ctx)
	if err != nil {
		t.Fatalf("Lead with quorum back: %v", err)
	}
	defer resign()
	if leading.Err() != nil {
		t.Fatal("the new term ended at once")
	}
	unlock, err := c.Lock(ctx, "SHA256:person")
	if err != nil {
		t.Fatalf("Lock with quorum back: %v", err)
	}
	unlock()
}
