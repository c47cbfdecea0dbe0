package testkit

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// etcdOpTimeout bounds one request of the smoke test: what the store will
// allow a write before it tells a person "temporarily unavailable".
const etcdOpTimeout = 5 * time.Second

// unavailable reports whether err is how the etcd client says the cluster
// cannot serve: no leader (a member without quorum, asked with
// WithRequireLeader, says so after an election timeout), no member
// answering, or no answer within the request's deadline.
func unavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrTimeout) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// TestEtcdCluster: the client of go.etcd.io/etcd/client/v3 works with the
// cluster StartEtcd runs (Debian's etcd-server); with one member of three
// killed (perhaps the leader) it still does, once the other two are
// healthy; with a second stopped, a write fails within its
// deadline with an error unavailable recognises; with both back, the
// cluster serves again, with every write it accepted.
func TestEtcdCluster(t *testing.T) {
	e := StartEtcd(t, 3)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: e.Endpoints(), DialTimeout: etcdOpTimeout, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	put := func(key, value string) error {
		ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(context.Background()), etcdOpTimeout)
		defer cancel()
		_, err := cli.Put(ctx, key, value)
		return err
	}
	get := func(key string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(context.Background()), etcdOpTimeout)
		defer cancel()
		resp, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		if len(resp.Kvs) != 1 {
			return ""
		}
		return string(resp.Kvs[0].Value)
	}

	if err := put("/smoke/a", "all three"); err != nil {
		t.Fatalf("put with three members: %v", err)
	}
	if v := get("/smoke/a"); v != "all three" {
		t.Fatalf("get with three members: %q", v)
	}

	// A write in flight while the leader dies can hang until its deadline
	// (the store's timeout); once the survivors have a leader, writes work.
	e.Members[0].Kill()
	e.WaitHealthy()
	if err := put("/smoke/b", "two of three"); err != nil {
		t.Fatalf("put with one member of three killed: %v", err)
	}
	if v := get("/smoke/b"); v != "two of three" {
		t.Fatalf("get with one member of three killed: %q", v)
	}

	e.Members[1].Stop()
	err = put("/smoke/c", "one of three")
	if err == nil {
		t.Fatal("a put with one member of three passed: quorum is two")
	}
	if !unavailable(err) {
		t.Fatalf("a put without quorum failed with %v (%T, code %s), which unavailable does not recognise", err, err, status.Code(err))
	}
	t.Logf("without quorum a put fails with: %v", err)

	e.Members[0].Start()
	e.Members[1].Start()
	if err := put("/smoke/d", "back"); err != nil {
		t.Fatalf("put with quorum back: %v", err)
	}
	for key, want := range map[string]string{"/smoke/a": "all three", "/smoke/b": "two of three", "/smoke/d": "back"} {
		if v := get(key); v != want {
			t.Errorf("after recovery %s = %q, want %q", key, v, want)
		}
	}
}

// TestEtcdLocksAndCompareAndSet: what the etcd store will build on works
// between this client and the server StartEtcd runs: a compare-and-set
// transaction on a key's revision passes once, and a lock held by a
// session whose holder died (its lease no longer kept alive) passes to
// another once the lease's TTL ends.
func TestEtcdLocksAndCompareAndSet(t *testing.T) {
	e := StartEtcd(t, 1)
	newClient := func() *clientv3.Client {
		t.Helper()
		cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: etcdOpTimeout, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return cli
	}
	a, b := newClient(), newClient()
	ctx := Context(t, time.Minute)

	put, err := a.Put(ctx, "/cas", "v1")
	if err != nil {
		t.Fatal(err)
	}
	cas := func(cli *clientv3.Client, value string) bool {
		t.Helper()
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision("/cas"), "=", put.Header.Revision)).
			Then(clientv3.OpPut("/cas", value)).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Succeeded
	}
	if !cas(a, "by a") || cas(b, "by b") {
		t.Fatal("two compare-and-sets on one revision: want the first to pass and the second to fail")
	}

	const ttl = 2 // seconds, etcd's unit
	holder, err := concurrency.NewSession(a, concurrency.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	if err := concurrency.NewMutex(holder, "/lock/alice").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	waiter, err := concurrency.NewSession(b, concurrency.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close()
	other := concurrency.NewMutex(waiter, "/lock/alice")
	if err := other.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("TryLock of a held lock: %v, want ErrLocked", err)
	}
	holder.Orphan() // the holder dies: nobody keeps its lease alive
	lockCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := other.Lock(lockCtx); err != nil {
		t.Fatalf("the lock of a dead holder did not pass on: %v", err)
	}
}
