package lease

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// poolCloud is a cloud for the pool keeper: Create makes a server labelled
// as the spec says, Delete removes it, List shows what exists.
type poolCloud struct {
	mu      sync.Mutex
	next    int64
	servers map[int64]Server
	specs   []CreateSpec
}

func newPoolDomain(t *testing.T, size int, maxAge time.Duration) (*domain, *poolCloud) {
	t.Helper()
	d := newDomain(t, Policy{}, ReaperConfig{})
	d.m.cfg.WarmPool = PoolConfig{Size: size, MaxAge: maxAge}
	d.reconciled()
	d.m.cfg.Machine.GatewayKey = testkit.NewKey(t).Signer.PublicKey()
	d.m.cfg.Machine.User = "claude"
	c := &poolCloud{next: 100, servers: map[int64]Server{}}
	c.wire(d)
	return d, c
}

func (c *poolCloud) wire(d *domain) {
	d.cloud.createFn = func(_ context.Context, spec CreateSpec) (Server, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.next++
		labels := map[string]string{LeaseLabel: spec.LeaseID}
		if spec.Pool {
			labels[PoolLabel] = "true"
		}
		s := Server{ID: c.next, Name: spec.Name, Status: "running", IPv4: fmt.Sprintf("10.0.0.%d", c.next-100),
			ServerType: "cx23", Location: "fsn1", Labels: labels, Created: d.clock.Now()}
		c.servers[s.ID] = s
		c.specs = append(c.specs, spec)
		return s, nil
	}
	d.cloud.deleteFn = func(_ context.Context, id int64) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.servers[id]; !ok {
			return ErrServerNotFound
		}
		delete(c.servers, id)
		return nil
	}
	d.cloud.listFn = func(context.Context) ([]Server, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return slices.Collect(maps.Values(c.servers)), nil
	}
}

// serverIDs returns the ids of the servers that exist, sorted.
func (c *poolCloud) serverIDs() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.servers))
}

// readyServers returns the server ids of the ready records, sorted.
func readyServers(d *domain) []int64 {
	machines, _ := d.pool.PoolMachines()
	var out []int64
	for _, m := range machines {
		if m.State == PoolReady {
			out = append(out, m.ServerID)
		}
	}
	slices.Sort(out)
	return out
}

// The keeper fills the pool with machines of a pool identity: the
// gateway's key only, a pinned host key it waited for, the pool label.
func TestPoolKeeperFills(t *testing.T) {
	d, c := newPoolDomain(t, 2, 6*time.Hour)
	d.r.Tick(context.Background())

	if got, want := readyServers(d), c.serverIDs(); len(got) != 2 || !slices.Equal(got, want) {
		t.Fatalf("ready pool machines on servers %v; servers %v: want two, the same", got, want)
	}
	gatewayKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(d.m.cfg.Machine.GatewayKey)))
	machines, _ := d.pool.PoolMachines()
	for i, spec := range c.specs {
		m := machines[slices.IndexFunc(machines, func(m PoolMachine) bool { return m.ID == spec.LeaseID })]
		if !spec.Pool || spec.PublicKey != gatewayKey || spec.Name != "cc-"+m.ID || !strings.Contains(spec.UserData, m.ID) {
			t.Errorf("create %d: %+v, want a pool machine of the gateway's key named for record %s", i, spec, m.ID)
		}
		if doc, err := bootstrap.Parse([]byte(spec.UserData)); err != nil || !doc.Pool || len(doc.AuthorizedKeys) != 1 {
			t.Errorf("create %d: user_data %v (%v), want a pool document with the gateway's key alone", i, doc, err)
		}
		if m.Address == "" || m.HostKey == "" || len(m.HostKeyPEM) == 0 {
			t.Errorf("record %s lacks where it is or its host key: %+v", m.ID, m)
		}
	}
	if waits := d.cloud.made("Wait "); len(waits) != 2 {
		t.Errorf("waited for %q, want each machine's pinned key", waits)
	}

	// A full pool: nothing more is made.
	d.r.Tick(context.Background())
	if got := d.cloud.made("Create"); len(got) != 2 {
		t.Errorf("creates %q after a second round, want still two", got)
	}
}

// Ready machines past their age are recycled; a shrunk or switched off
// pool is drained; a machine claimed meanwhile is never drained.
func TestPoolKeeperRecyclesAndDrains(t *testing.T) {
	d, c := newPoolDomain(t, 2, 6*time.Hour)
	d.r.Tick(context.Background())
	first := readyServers(d)

	d.clock.Advance(6 * time.Hour)
	d.r.Tick(context.Background())
	if got := readyServers(d); len(got) != 2 || slices.ContainsFunc(got, func(id int64) bool { return slices.Contains(first, id) }) {
		t.Errorf("after max age: ready on %v, want two new ones (first were %v)", got, first)
	}
	if got := c.serverIDs(); !slices.Equal(got, readyServers(d)) {
		t.Errorf("servers %v, want only the ready ones: the stale ones deleted", got)
	}

	d.m.cfg.WarmPool.Size = 0
	d.r.Tick(context.Background())
	if got, servers := readyServers(d), c.serverIDs(); len(got) != 0 || len(servers) != 0 {
		t.Errorf("after turning the pool off: ready %v, servers %v; want none", got, servers)
	}
	if got := d.cloud.made("Create"); len(got) != 4 {
		t.Errorf("creates %q, want four: two, then two to replace the stale", got)
	}
}

func TestPoolKeeperLeavesAClaimedMachine(t *testing.T) {
	d, c := newPoolDomain(t, 1, time.Hour)
	d.r.Tick(context.Background())
	machines, _ := d.pool.PoolMachines()
	claimed := machines[0]
	claimed.State = PoolClaiming
	if err := d.pool.PutPoolMachine(claimed, PoolReady); err != nil {
		t.Fatal(err)
	}
	d.clock.Advance(2 * time.Hour) // it would be stale, were it the pool's
	d.m.cfg.WarmPool.Size = 0
	d.r.Tick(context.Background())
	if got := d.pool.states()[claimed.ID]; got != PoolClaiming {
		t.Errorf("claimed record is %q, want still claiming", got)
	}
	if !slices.Contains(c.serverIDs(), claimed.ServerID) {
		t.Error("the claimed machine's server was deleted")
	}
}

// A machine that never presents its pinned key is not kept: its server
// is deleted and its record goes, and the next round tries again.
func TestPoolKeeperDropsAMachineThatNeverAnswers(t *testing.T) {
	d, c := newPoolDomain(t, 1, 6*time.Hour)
	d.machines.waitFn = func(context.Context, string, string) error { return ErrHostKeyMismatch }
	d.r.Tick(context.Background())
	if machines, _ := d.pool.PoolMachines(); len(machines) != 0 || len(c.serverIDs()) != 0 {
		t.Errorf("after a machine that never answered: records %+v, servers %v; want none", machines, c.serverIDs())
	}
	d.machines.waitFn = nil
	d.r.Tick(context.Background())
	if got := readyServers(d); len(got) != 1 {
		t.Errorf("next round: ready on %v, want one", got)
	}
}

// A crash at any of the keeper's steps leaves nothing that the next
// gateway does not finish: no server without a record, no record that is
// not ready, and the pool full again.
func TestPoolKeeperRecoversFromACrashAtEachStep(t *testing.T) {
	for _, point := range PoolFaultPoints {
		t.Run(point, func(t *testing.T) {
			d, c := newPoolDomain(t, 1, time.Hour)
			if strings.HasPrefix(point, "pool.drain.") {
				d.r.Tick(context.Background()) // a ready machine, made stale
				d.clock.Advance(time.Hour)
			}
			d.m.cfg.Fault = func(p string) {
				if p == point {
					runtime.Goexit() // the gateway stops here: nothing after runs
				}
			}
			d.r.Tick(context.Background())

			// The next gateway: the same store and cloud, a new manager.
			next := newDomain(t, Policy{}, ReaperConfig{})
			next.m.cfg.WarmPool = PoolConfig{Size: 1, MaxAge: time.Hour}
			next.reconciled()
			next.pool, next.m.cfg.Pool = d.pool, d.pool
			next.m.cfg.Machine = d.m.cfg.Machine
			c.wire(next)
			next.r.Tick(context.Background())

			machines, _ := d.pool.PoolMachines()
			if len(machines) != 1 || machines[0].State != PoolReady {
				t.Fatalf("records after the restart: %+v, want one ready", machines)
			}
			if got := c.serverIDs(); !slices.Equal(got, []int64{machines[0].ServerID}) {
				t.Errorf("servers %v, want only the ready machine's %d", got, machines[0].ServerID)
			}
		})
	}
}

// A ready pool machine whose server someone deleted is dropped from the
// pool by reconcile, and the keeper replaces it.
func TestReconcileDropsAPoolMachineWhoseServerIsGone(t *testing.T) {
	d, c := newPoolDomain(t, 1, 6*time.Hour)
	d.r.Tick(context.Background())
	gone := readyServers(d)
	c.mu.Lock()
	delete(c.servers, gone[0])
	c.mu.Unlock()

	if err := d.r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if machines, _ := d.pool.PoolMachines(); len(machines) != 0 {
		t.Fatalf("records after reconcile: %+v, want the vanished machine dropped", machines)
	}
	d.r.Tick(context.Background())
	if got := readyServers(d); len(got) != 1 || got[0] == gone[0] {
		t.Errorf("ready on %v after the next round, want one new machine", got)
	}
}
