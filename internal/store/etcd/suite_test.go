package etcd

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/store/storetest"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// The store contract (storetest) against a real 3-member cluster, each
// store under a prefix of its own, with small bounds so the suite reaches
// them.
func TestContract(t *testing.T) {
	const events, refusals = 5, 4
	cluster := testkit.StartEtcd(t, 3)
	var prefixes atomic.Int64
	open := func(t *testing.T, prefix string) storetest.Store {
		t.Helper()
		s, err := Open(Config{Endpoints: cluster.Endpoints(), Prefix: prefix})
		if err != nil {
			t.Fatalf("open under %s: %v", prefix, err)
		}
		s.eventLimit, s.refusalLimit = events, refusals
		return s
	}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) storetest.Store {
			return open(t, fmt.Sprintf("/contract/%d/", prefixes.Add(1)))
		},
		Reopen: func(t *testing.T, s storetest.Store) storetest.Store {
			t.Helper()
			prefix := s.(*Store).prefix
			if err := s.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			return open(t, prefix)
		},
		EventLimit: events, RefusalLimit: refusals,
	})
}
