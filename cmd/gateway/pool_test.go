package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
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
			waitCrash(t, g, point)

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
	waitPoolBeside(t, lg, g, n, 0)
}

// waitPoolBeside is waitPool when the cloud also holds the servers of
// leases leases.
func waitPoolBeside(t *testing.T, lg *localGateway, g *gatewayProc, n, leases int) {
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
		if servers := countServers(t, lg); servers != n+leases {
			return fmt.Errorf("%d servers in the cloud, want %d", servers, n+leases)
		}
		return nil
	})
}

// TestWarmPoolClaim is issue 13's end to end: with --warm-pool 2 and a
// 20 s boot delay, a new person's first command runs on a machine that
// was ready, their key is authorised on it (a direct login proves it),
// and the pool is back to two ready machines, none of them theirs.
func TestWarmPoolClaim(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root := newPerson(t, filepath.Join(dir, "root"))
	// No firewall: status shows the machine's address, to reach it directly.
	lg := newLocalGatewayIn(t, dir, "--warm-pool", "2", "--local-boot-delay", "20s",
		"--admins", writeKeyList(t, filepath.Join(dir, "admins"), root),
		"--firewall-sources", "none", "--metrics-listen", "127.0.0.1:0")
	g := lg.start(t)
	waitPool(t, lg, g, 2)
	ready := readyPoolIDs(t, root, g)

	zoe := newPerson(t, filepath.Join(dir, "zoe"))
	r := zoe.ssh(g, "", "echo ready")
	if r.code != 0 || r.stdout != "ready\n" {
		t.Fatalf("first command: %+v", r)
	}
	if !strings.Contains(r.stderr, "A machine was ready for you: cc-") || strings.Contains(r.stderr, "Creating your machine") {
		t.Errorf("progress does not say a machine was ready:\n%s", r.stderr)
	}
	st := zoe.status(g)
	if !slices.Contains(ready, st.LeaseID) || st.State != "running" {
		t.Errorf("status %+v, want a running lease of a ready pool machine (%v)", st, ready)
	}
	if in := directLogin(t, filepath.Join(dir, "zoe-direct"), "claude", zoe.keyPath, st); in.code != 0 || in.stdout != "in\n" {
		t.Errorf("zoe, directly to her machine: %+v; want her key authorised", in)
	}

	waitPoolBeside(t, lg, g, 2, 1)
	if now := readyPoolIDs(t, root, g); slices.Contains(now, st.LeaseID) {
		t.Errorf("pool machines %v hold zoe's claimed %s", now, st.LeaseID)
	}
	list := zoe.ssh(g, "", "status")
	if list.code != 0 || strings.Contains(list.stdout, "pool") {
		t.Errorf("status shows the pool:\n%s", list.stdout)
	}
	g.stop()
	if strings.Contains(g.logs.String(), "level=ERROR") {
		t.Errorf("the gateway logged errors:\n%s", g.logs.String())
	}
}

// TestClaimCrashAtEveryStep kills the gateway with SIGKILL at each step of
// a claim, the new person's home's included, restarts it, and checks that
// the person gets a working machine, the one they claimed, with one home
// volume, and that the pool refills beside it: no machine or volume
// shared, none lost.
func TestClaimCrashAtEveryStep(t *testing.T) {
	points := append(slices.Clone(lease.ClaimFaultPoints), lease.FaultHomeIntent, lease.FaultHomeCreated, lease.FaultHomeAttached)
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			lg := newLocalGatewayIn(t, dir, withHomes("--warm-pool", "1", "--metrics-listen", "127.0.0.1:0")...)
			g := lg.start(t)
			waitPool(t, lg, g, 1)
			g.stop()
			claimed := poolRecords(t, dir)[0]

			ivy := newPerson(t, filepath.Join(dir, "ivy"))
			g = lg.start(t, "CC_GATEWAY_CRASH_AT="+point)
			ivy.ssh(g, "", "true")
			waitCrash(t, g, point)

			g = lg.start(t)
			st := waitSettled(t, ivy, g)
			if st.State != "running" || st.LeaseID != claimed.ID {
				t.Fatalf("after the restart: %+v, want the claim of %s finished", st, claimed.ID)
			}
			if r := ivy.ssh(g, "", "echo alive"); r.code != 0 || r.stdout != "alive\n" {
				t.Errorf("after recovery: %+v", r)
			}
			waitPoolBeside(t, lg, g, 1, 1)
			checkVolumes(t, lg, 1)
			servers, _ := cloudContents(t, lg)
			for _, s := range servers {
				_, pooled := s.Labels[lease.PoolLabel]
				if mine := s.Labels[lease.LeaseLabel] == claimed.ID; mine == pooled {
					t.Errorf("server %s labelled %v: the claimed one must have lost the pool label, the other kept it", s.Name, s.Labels)
				}
			}
			g.stop()
			if records := poolRecords(t, dir); len(records) != 1 || records[0].ID == claimed.ID {
				t.Errorf("pool records %+v, want one, not the claimed machine", records)
			}
		})
	}
}

// readyPoolIDs returns the ids of the ready pool machines of the running
// gateway g, as `admin list` shows them to admin.
func readyPoolIDs(t *testing.T, admin *person, g *gatewayProc) []string {
	t.Helper()
	list := admin.ssh(g, "", "admin", "list")
	if list.code != 0 {
		t.Fatalf("admin list: %+v", list)
	}
	var ids []string
	for _, m := range regexp.MustCompile(`(?m)^([0-9a-f]{10}) +cc-[0-9a-f]{10} +ready +`).FindAllStringSubmatch(list.stdout, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// directLogin runs `echo in` on the machine of st as user with the key at
// keyPath, past the gateway, pinning the machine's host key.
func directLogin(t *testing.T, dir, user, keyPath string, st statusDoc) result {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	config := testkit.WriteSSHConfig(t, dir, user, keyPath, []testkit.Host{{Alias: "machine", Addr: st.Address, HostKey: st.HostKey}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := runTool(ctx, exec.CommandContext(ctx, "ssh", "-F", config, "machine", "echo", "in"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWarmPoolSoldOutPair: with cx23 sold out in fsn1, pool machines go
// to nbg1 as a person's would, keep that pair in their records, and a new
// person takes one there.
func TestWarmPoolSoldOutPair(t *testing.T) {
	dir := t.TempDir()
	lg := newLocalGatewayIn(t, dir, "--warm-pool", "1", "--metrics-listen", "127.0.0.1:0",
		"--local-faults", "unavailable=cx23@fsn1", "--server-type", "cx23", "--location", "fsn1,nbg1")
	g := lg.start(t)
	waitPool(t, lg, g, 1)
	g.stop()
	if records := poolRecords(t, dir); len(records) != 1 || records[0].Location != "nbg1" {
		t.Fatalf("pool records %+v, want one in nbg1", records)
	}

	g = lg.start(t)
	mia := newPerson(t, filepath.Join(dir, "mia"))
	if r := mia.ssh(g, "", "echo ready"); r.code != 0 || !strings.Contains(r.stderr, "A machine was ready for you: cc-") {
		t.Fatalf("first command: %+v", r)
	}
	if r := mia.ssh(g, "", "status"); r.code != 0 || !regexp.MustCompile(`(?m)^Type\s+cx23 in nbg1$`).MatchString(r.stdout) {
		t.Errorf("status does not say nbg1: %+v", r)
	}
}
