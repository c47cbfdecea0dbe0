package metrics

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
	"github.com/cc-gateway/cc-gateway/internal/store/bolt"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestMetricsOfRealMachines wires the observers as the gateway does, on
// real parts: a bbolt file, the Hetzner provider against the local
// cloud's API fake, machines that answer SSH. People waiting together on
// one machine are one create and a first-shell wait each; the cloud's
// answers make the gateway ready and show its rate limit.
func TestMetricsOfRealMachines(t *testing.T) {
	r := New()
	cloudMetrics := r.Cloud()
	ready := cloudMetrics.Ready(time.Minute)

	sshPort := testkit.FreePort(t)
	cloud, err := localcloud.Start(localcloud.Options{
		DataDir: t.TempDir(), SSHPort: sshPort, ActionDuration: 10 * time.Millisecond, Logger: testkit.Quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close() })
	provider, err := hcloud.New(hcloud.Config{
		Token: cloud.Token(), Endpoint: cloud.Endpoint(), ImageSelector: localcloud.LocalImageLabel,
		PollInterval: 10 * time.Millisecond, Logger: testkit.Quiet, Observer: cloudMetrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	store, err := bolt.Open(filepath.Join(t.TempDir(), "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	upstream := testkit.NewKey(t).Signer
	pool := proxy.NewPool(proxy.PoolOptions{Key: upstream, Logger: testkit.Quiet})
	t.Cleanup(pool.Close)
	leaseMetrics := r.Lease(store, 30*time.Second)
	m := lease.NewManager(lease.Config{
		Store: store, Provider: provider, Machines: proxy.NewMachines(pool, "claude"), Logger: testkit.Quiet,
		Policy:   lease.Policy{DefaultTTL: time.Hour, MaxTTL: time.Hour, MaxLifetime: time.Hour},
		Machine:  lease.MachineSpec{User: "claude", SSHPort: sshPort, GatewayKey: upstream.PublicKey(), ServerTypes: []string{"cx23"}, Locations: []string{"fsn1"}},
		Observer: leaseMetrics,
	})

	if ready() == nil {
		t.Error("ready before the cloud ever answered")
	}
	ctx := testkit.Context(t, time.Minute)
	key := testkit.NewKey(t).Public()
	const people = 3 // connections of one person, waiting together
	var wg sync.WaitGroup
	for range people {
		wg.Go(func() {
			if _, err := m.Ensure(ctx, key, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if _, err := m.Stop(ctx, lease.Fingerprint(key)); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"creates", testutil.ToFloat64(leaseMetrics.ops.WithLabelValues("create", "ok")), 1},
		{"first-shell waits", testutil.ToFloat64(leaseMetrics.ops.WithLabelValues("first_shell", "ok")), people},
		{"stops", testutil.ToFloat64(leaseMetrics.ops.WithLabelValues("stop", "ok")), 1},
		{"errors", testutil.ToFloat64(leaseMetrics.ops.WithLabelValues("create", "error")), 0},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if err := ready(); err != nil {
		t.Errorf("not ready after the cloud answered: %v", err)
	}
	// Every request took one from the fake's bucket, and the gauge says
	// what its last answer said was left.
	posts := testutil.ToFloat64(cloudMetrics.requests.WithLabelValues("POST", "201"))
	remaining := testutil.ToFloat64(cloudMetrics.remaining.WithLabelValues())
	if posts == 0 || remaining >= localcloud.DefaultRateLimit || remaining < localcloud.DefaultRateLimit-100 {
		t.Errorf("%v POSTs created things, %v requests left of %d", posts, remaining, localcloud.DefaultRateLimit)
	}
	want := `
# HELP cc_gateway_leases Leases by the state of their machine.
# TYPE cc_gateway_leases gauge
cc_gateway_leases{state="creating"} 0
cc_gateway_leases{state="destroying"} 0
cc_gateway_leases{state="hibernated"} 0
cc_gateway_leases{state="hibernating"} 0
cc_gateway_leases{state="running"} 0
cc_gateway_leases{state="starting"} 0
cc_gateway_leases{state="stopped"} 1
cc_gateway_leases{state="stopping"} 0
`
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(want), "cc_gateway_leases"); err != nil {
		t.Error(err)
	}
}
