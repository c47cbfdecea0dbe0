package testkit

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
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
