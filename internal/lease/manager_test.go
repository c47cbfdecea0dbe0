package lease_test

// The manager on real parts: a bbolt file, the local cloud's Hetzner API
// fake, machines that answer SSH, and the Hetzner provider between them.
// Time comes from an injected clock.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/machine"
	"github.com/cc-gateway/cc-gateway/internal/proctree"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
	"github.com/cc-gateway/cc-gateway/internal/store/bolt"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

type world struct {
	m        *lease.Manager
	clock    *testkit.Clock
	store    *bolt.Store
	provider *hcloud.Provider
	machines *proxy.Machines
	pool     *proxy.Pool
	cloud    *localcloudtest.Cloud
}

func newWorld(t *testing.T) *world { return newWorldOf(t, localcloud.KindBuiltin, "claude") }

// newWorldOf uses machines of kind, whose login user is user.
func newWorldOf(t *testing.T, kind, user string) *world {
	t.Helper()
	dir := t.TempDir()
	cloud := localcloudtest.Start(t, kind)
	store, err := bolt.Open(filepath.Join(dir, "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	c := testkit.NewClock(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	upstream := testkit.NewKey(t).Signer
	pool := proxy.NewPool(proxy.PoolOptions{Key: upstream, Logger: testkit.Quiet})
	t.Cleanup(pool.Close)
	machines := proxy.NewMachines(pool, user)
	m := lease.NewManager(lease.Config{
		Store: store, Provider: cloud.Provider, Machines: machines, Clock: c, Logger: testkit.Quiet,
		Policy:          lease.Policy{DefaultTTL: 4 * time.Hour, MaxTTL: 24 * time.Hour, MaxLifetime: 72 * time.Hour, IdleTimeout: 30 * time.Minute},
		Machine:         lease.MachineSpec{User: user, SSHPort: cloud.SSHPort, GatewayKey: upstream.PublicKey(), ServerTypes: []string{"cx23"}, Locations: []string{"fsn1"}},
		SSHProbeTimeout: time.Second,
	})
	return &world{m: m, clock: c, store: store, provider: cloud.Provider, machines: machines, pool: pool, cloud: cloud}
}

func ctx(t *testing.T) context.Context { return testkit.Context(t, time.Minute) }

// steps collects progress texts safely from the manager's goroutine.
type steps struct {
	mu    sync.Mutex
	texts []string
}

func (s *steps) add(st lease.Step) {
	s.mu.Lock()
	s.texts = append(s.texts, st.Text)
	s.mu.Unlock()
}

func (s *steps) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.texts)
}

func TestEnsureSharesOneFlight(t *testing.T) {
	w := newWorld(t)
	key := testkit.NewKey(t).Public()

	const n = 8
	leases := make([]lease.Lease, n)
	seen := make([]*steps, n)
	var wg sync.WaitGroup
	for i := range n {
		seen[i] = &steps{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := w.m.Ensure(ctx(t), key, seen[i].add)
			if err != nil {
				t.Error(err)
			}
			leases[i] = l
		}()
	}
	wg.Wait()

	servers, err := w.provider.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 1 {
		t.Fatalf("%d concurrent Ensure calls made %d servers", n, len(servers))
	}
	want := seen[0].get()
	if len(want) < 3 {
		t.Fatalf("progress steps: %q", want)
	}
	for i := range n {
		if leases[i].ServerID != servers[0].ID || leases[i].State != lease.StateRunning {
			t.Errorf("caller %d got %+v", i, leases[i])
		}
		// Late joiners get the steps they missed, in order.
		if got := seen[i].get(); !slices.Equal(got, want) {
			t.Errorf("caller %d saw %q, caller 0 saw %q", i, got, want)
		}
	}
	stored, err := w.store.Get(lease.Fingerprint(key))
	if err != nil || stored.State != lease.StateRunning || stored.Address == "" {
		t.Errorf("stored lease %+v, %v", stored, err)
	}
	if want := w.clock.Now().Add(4 * time.Hour); !stored.Expires.Equal(want) {
		t.Errorf("expiry %s, want the default TTL from the clock: %s", stored.Expires, want)
	}

	// A running machine is returned without any work or progress.
	again := &steps{}
	if _, err := w.m.Ensure(ctx(t), key, again.add); err != nil || len(again.get()) != 0 {
		t.Errorf("Ensure of a running machine: err %v, steps %q", err, again.get())
	}
}

func TestStopResumeDestroy(t *testing.T) {
	w := newWorld(t)
	key := testkit.NewKey(t).Public()
	fp := lease.Fingerprint(key)
	first, err := w.m.Ensure(ctx(t), key, nil)
	if err != nil {
		t.Fatal(err)
	}

	stopped, err := w.m.Stop(ctx(t), fp)
	if err != nil || stopped.State != lease.StateStopped {
		t.Fatalf("Stop: %+v, %v", stopped, err)
	}
	if srv, err := w.provider.Get(ctx(t), first.ServerID); err != nil || srv.Status != "off" {
		t.Fatalf("server after Stop: %+v, %v", srv, err)
	}

	seen := &steps{}
	resumed, err := w.m.Ensure(ctx(t), key, seen.add)
	if err != nil || resumed.State != lease.StateRunning || resumed.ServerID != first.ServerID {
		t.Fatalf("resume: %+v, %v", resumed, err)
	}
	if got := seen.get(); len(got) == 0 || got[0] != "Starting your machine "+first.ServerName {
		t.Errorf("resume progress: %q", got)
	}

	if _, err := w.m.Destroy(ctx(t), fp); err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.Get(fp); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("lease after Destroy: %v", err)
	}
	if _, err := w.provider.Get(ctx(t), first.ServerID); !errors.Is(err, lease.ErrServerNotFound) {
		t.Errorf("server after Destroy: %v", err)
	}
	if _, err := w.m.Stop(ctx(t), fp); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Stop without a lease: %v", err)
	}
}

func TestVanishedServerIsReplaced(t *testing.T) {
	w := newWorld(t)
	key := testkit.NewKey(t).Public()
	first, err := w.m.Ensure(ctx(t), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Someone deletes the server behind the gateway's back.
	if err := w.provider.Delete(ctx(t), first.ServerID); err != nil {
		t.Fatal(err)
	}
	second, err := w.m.Ensure(ctx(t), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if second.ServerID == first.ServerID || second.State != lease.StateRunning || second.ID != first.ID {
		t.Errorf("after the server vanished: %+v (before: server %d)", second, first.ServerID)
	}
}

func TestExtendAndActivityUseTheClock(t *testing.T) {
	w := newWorld(t)
	key := testkit.NewKey(t).Public()
	fp := lease.Fingerprint(key)
	l, err := w.m.Ensure(ctx(t), key, nil)
	if err != nil {
		t.Fatal(err)
	}

	w.clock.Advance(3 * time.Hour)
	w.m.Touch(fp)
	touched := w.clock.Now()
	if st, _ := w.m.Status(fp); !st.LastActivity.Equal(touched) {
		t.Errorf("Status last activity %s, want the touch at %s", st.LastActivity, touched)
	}

	// Expired leases extend from now, not from their old expiry.
	w.clock.Advance(2 * time.Hour)
	extended, err := w.m.Extend(ctx(t), fp, 90*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := w.clock.Now().Add(90 * time.Minute); !extended.Expires.Equal(want) || !l.Expires.Before(want) {
		t.Errorf("extend of an expired lease: %s, want %s", extended.Expires, want)
	}
	stored, err := w.store.Get(fp)
	if err != nil || !stored.LastActivity.Equal(touched) || !stored.Expires.Equal(extended.Expires) {
		t.Errorf("stored lease: expires %s, last activity %s (%v); want %s and %s",
			stored.Expires, stored.LastActivity, err, extended.Expires, touched)
	}

	var ee *lease.ExtendError
	if _, err := w.m.Extend(ctx(t), fp, 30*time.Hour); !errors.As(err, &ee) {
		t.Errorf("extend past the cap: %v", err)
	}
}

// TestDeadSSHDIsRestarted: a machine the cloud reports running whose sshd
// is gone is restarted by the next Ensure, which says so.
func TestDeadSSHDIsRestarted(t *testing.T) {
	user, err := machine.OpenSSHUser()
	if err != nil {
		t.Fatal(err)
	}
	w := newWorldOf(t, localcloud.KindOpenSSH, user)
	key := testkit.NewKey(t).Public()
	l, err := w.m.Ensure(ctx(t), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(w.cloud.DataDir, "machines", l.ServerName, "sshd.pid")
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	// sshd serves each connection in a child of its own: kill those too,
	// the pooled connection among them, and wait until the pool saw it go.
	children, err := proctree.Descendants(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append(children, pid) {
		// A child may end between the listing and the kill: that is fine.
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Fatal(err)
		}
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(10 * time.Second); w.pool.Stats().Conns > 0; <-tick.C {
		if time.Now().After(deadline) {
			t.Fatal("the pool still holds a connection to the killed sshd")
		}
	}

	seen := &steps{}
	again, err := w.m.Ensure(ctx(t), key, seen.add)
	if err != nil {
		t.Fatalf("Ensure after sshd died: %v (steps %q)", err, seen.get())
	}
	if got := seen.get(); len(got) == 0 || !strings.Contains(got[0], "does not answer on SSH; restarting it") {
		t.Errorf("steps %q, want the restart announced first", got)
	}
	if again.State != lease.StateRunning || again.ServerID != l.ServerID {
		t.Errorf("after the restart: %+v", again)
	}
	if err := w.machines.Wait(ctx(t), again.Address, again.HostKey); err != nil {
		t.Errorf("sshd after the restart: %v", err)
	}
}
