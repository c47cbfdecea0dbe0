package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/store/bolt"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestWarmPoolFillsAndDrains: a local gateway with --warm-pool 2 makes two
// machines that answer with their pinned host keys, records them ready and
// shows them to admins and in the metrics as the pool's, not as leases; a
// restart with the pool off deletes them.
func TestWarmPoolFillsAndDrains(t *testing.T) {
	dir := t.TempDir()
	root := newPerson(t, filepath.Join(dir, "root"))
	admins := writeKeyList(t, filepath.Join(dir, "admins"), root)
	lg := newLocalGatewayIn(t, dir, "--warm-pool", "2", "--admins", admins, "--metrics-listen", "127.0.0.1:0")
	g := lg.start(t)
	testkit.Eventually(t, 2*time.Minute, func() error {
		if n := strings.Count(g.logs.String(), "warm pool: machine ready"); n < 2 {
			return fmt.Errorf("%d pool machines ready, want 2", n)
		}
		return nil
	})
	list := root.ssh(g, "", "admin", "list")
	if list.code != 0 || !regexp.MustCompile(`(?m)^0 leases, `).MatchString(list.stdout) ||
		len(regexp.MustCompile(`(?m)^[0-9a-f]{10} +cc-[0-9a-f]{10} +ready +`).FindAllString(list.stdout, -1)) != 2 ||
		!regexp.MustCompile(`(?m)^2 pool machines, .* so far, apart from the leases$`).MatchString(list.stdout) {
		t.Errorf("admin list exited %d and printed:\n%s\nwant no lease and two ready pool machines", list.code, list.stdout)
	}
	code, scrape := metricsOf(t, g).get("/metrics")
	for series, want := range map[string]float64{
		`cc_gateway_pool_machines{state="ready"}`: 2,
		`cc_gateway_leases{state="running"}`:      0,
	} {
		if v, err := sample(scrape, series); code != 200 || err != nil || v != want {
			t.Errorf("/metrics answered %d; %s = %v (%v), want %v", code, series, v, err, want)
		}
	}
	g.stop()
	ready := poolRecords(t, dir)
	if len(ready) != 2 || ready[0].State != lease.PoolReady || ready[1].State != lease.PoolReady || ready[0].ServerID == ready[1].ServerID {
		t.Fatalf("pool records %+v, want two ready on two servers", ready)
	}
	if strings.Contains(g.logs.String(), "level=ERROR") {
		t.Errorf("the gateway logged errors:\n%s", g.logs.String())
	}

	lg.args = append(lg.args, "--warm-pool", "0")
	g = lg.start(t)
	testkit.Eventually(t, time.Minute, func() error {
		if n := strings.Count(g.logs.String(), "warm pool: machine drained"); n < 2 {
			return fmt.Errorf("%d pool machines drained, want 2", n)
		}
		return nil
	})
	g.stop()
	if left := poolRecords(t, dir); len(left) != 0 {
		t.Errorf("pool records after the pool was turned off: %+v", left)
	}
}

// poolRecords reads the pool's records of the stopped gateway in dir.
func poolRecords(t *testing.T, dir string) []lease.PoolMachine {
	t.Helper()
	st, err := bolt.Open(filepath.Join(dir, "data", "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	records, err := st.PoolMachines()
	if err != nil {
		t.Fatal(err)
	}
	return records
}

// TestPoolCrashAtEveryStep kills the gateway with SIGKILL at each step of
// making and draining a pool machine, restarts it with a pool of one, and
// checks that it ends with one ready machine, recorded, and no other
// server.
func TestPoolCrashAtEveryStep(t *testing.T) {
	for _, point := range lease.PoolFaultPoints {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			lg := newLocalGatewayIn(t, dir, "--metrics-listen", "127.0.0.1:0")
			base := lg.args
			withPool := func(n string) { lg.args = append(slices.Clone(base), "--warm-pool", n) }

			size := "1"
			if strings.HasPrefix(point, "pool.drain.") {
				withPool("1")
				g := lg.start(t)
				waitPool(t, lg, g, 1)
				g.stop()
				size = "0" // the drain under test
			}
			withPool(size)
			g := lg.start(t, "CC_GATEWAY_CRASH_AT="+point)
			select {
			case <-g.Done():
			case <-time.After(time.Minute):
				t.Fatalf("the gateway did not crash at %s:\n%s", point, g.logs.String())
			}

			withPool("1")
			g = lg.start(t)
			waitPool(t, lg, g, 1)
			g.stop()
			records := poolRecords(t, dir)
			if len(records) != 1 || records[0].State != lease.PoolReady {
				t.Fatalf("pool records after the restart: %+v, want one ready", records)
			}
		})
	}
}

// waitPool waits until the running gateway g keeps exactly n ready pool
// machines and nothing else: no machine in another state, and no server
// in the cloud but theirs.
func waitPool(t *testing.T, lg *localGateway, g *gatewayProc, n int) {
	t.Helper()
	m := metricsOf(t, g)
	testkit.Eventually(t, 2*time.Minute, func() error {
		code, scrape := m.get("/metrics")
		if code != 200 {
			return fmt.Errorf("/metrics answered %d", code)
		}
		for _, s := range lease.PoolStates {
			want := 0.0
			if s == lease.PoolReady {
				want = float64(n)
			}
			series := fmt.Sprintf(`cc_gateway_pool_machines{state=%q}`, s)
			if v, err := sample(scrape, series); err != nil || v != want {
				return fmt.Errorf("%s = %v (%v), want %v", series, v, err, want)
			}
		}
		if servers := countServers(t, lg); servers != n {
			return fmt.Errorf("%d servers in the cloud, want %d", servers, n)
		}
		return nil
	})
}
