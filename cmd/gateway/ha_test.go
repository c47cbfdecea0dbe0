package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// leadsLine is what a gateway logs when it becomes the leader.
const leadsLine = "this gateway leads"

// deployment is gateway processes run as docs/ha.md says: one etcd
// prefix, one --gateway-name, the same keys (one data and host key folder),
// in hcloud mode on one shared `gateway localcloud`.
type deployment struct {
	lg     *localGateway
	env    []string // HCLOUD_TOKEN
	client *hcloud.Client
}

// newDeployment prepares the gateways' command line on cluster under a
// prefix of their own, with a local cloud of their own.
func newDeployment(t *testing.T, cluster *testkit.Etcd, people []*person, extra ...string) *deployment {
	t.Helper()
	dir := t.TempDir()
	cloudDir := filepath.Join(dir, "cloud")
	startLocalCloud(t, cloudDir)
	endpoint, token := localcloudtest.Credentials(t, cloudDir)
	args := append([]string{
		"--cloud", "hcloud", "--hcloud-endpoint", endpoint,
		"--users", writeKeyList(t, filepath.Join(dir, "users"), people...),
		"--etcd-endpoints", strings.Join(cluster.Endpoints(), ","),
		"--etcd-prefix", "/" + strings.ReplaceAll(t.Name(), "/", "-") + "/",
		"--gateway-name", "ha", "--leader-ttl", "2s",
	}, extra...)
	return &deployment{
		lg:     newLocalGatewayIn(t, filepath.Join(dir, "gw"), args...),
		env:    []string{"HCLOUD_TOKEN=" + token},
		client: hcloud.NewClient(hcloud.WithEndpoint(endpoint), hcloud.WithToken(token)),
	}
}

// start starts n gateways, the first alone so it makes the keys the
// others then share; env is added to each one's environment.
func (d *deployment) start(t *testing.T, n int, env ...string) []*gatewayProc {
	t.Helper()
	var gws []*gatewayProc
	for range n {
		gws = append(gws, d.lg.start(t, append(d.env, env...)...))
	}
	return gws
}

// servers lists the cloud's servers.
func (d *deployment) servers(t *testing.T) []*hcloud.Server {
	t.Helper()
	servers, err := d.client.Server.All(testkit.Context(t, time.Minute))
	if err != nil {
		t.Fatalf("list the shared cloud's servers: %v", err)
	}
	return servers
}

// leader waits until one of gws logs that it leads, and returns it.
func leader(t *testing.T, gws ...*gatewayProc) *gatewayProc {
	t.Helper()
	var found *gatewayProc
	testkit.Eventually(t, time.Minute, func() error {
		for _, g := range gws {
			if strings.Contains(g.logs.String(), leadsLine) {
				found = g
				return nil
			}
		}
		return fmt.Errorf("none of %d gateways leads", len(gws))
	})
	return found
}

// TestGatewaysOnEtcd runs two or three gateway processes on one 3-member
// etcd cluster, each case with its own prefix and local cloud, at once.
func TestGatewaysOnEtcd(t *testing.T) {
	cluster := testkit.StartEtcd(t, 3)

	// 30 first connections of one person at once, spread over three
	// gateways, make one machine, and every one gets its answer. Then one
	// etcd member stops and nothing changes for the person.
	t.Run("one machine", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		ivan := newPerson(t, filepath.Join(dir, "ivan"))
		d := newDeployment(t, cluster, []*person{ivan}, "--max-startups-per-source", "40", "--max-startups", "100")
		gws := d.start(t, 3)
		const conns = 30
		results := make([]result, conns)
		var wg sync.WaitGroup
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = ivan.ssh(gws[i%len(gws)], "", "echo ready")
			}()
		}
		wg.Wait()
		for i, r := range results {
			if r.code != 0 || r.stdout != "ready\n" {
				t.Errorf("connection %d through gateway %d: %+v", i, i%len(gws), r)
			}
		}
		if servers := d.servers(t); len(servers) != 1 {
			t.Fatalf("%d servers after %d first connections, want 1: %v", len(servers), conns, serverNames(servers))
		}

		cluster.Members[2].Stop()
		defer cluster.Members[2].Start()
		for i, g := range gws {
			if r := ivan.ssh(g, "", "echo still"); r.code != 0 || r.stdout != "still\n" {
				t.Errorf("through gateway %d with one etcd member stopped: %+v", i, r)
			}
		}
		if servers := d.servers(t); len(servers) != 1 {
			t.Errorf("%d servers with one member stopped, want 1: %v", len(servers), serverNames(servers))
		}
	})

	// The leader dies (SIGKILL): another gateway leads once its TTL
	// lapses, and the idle machine is still stopped.
	// The leader dies: within the TTL the other gateway leads, and the
	// reaper's work goes on there: judy's idle machine is stopped, and
	// kai, busy, is warned of his lease's expiry, then it ends.
	t.Run("leader killed", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		judy, kai := newPerson(t, filepath.Join(dir, "judy")), newPerson(t, filepath.Join(dir, "kai"))
		d := newDeployment(t, cluster, []*person{judy, kai}, "--idle-timeout", "5s", "--reaper-interval", "1s",
			"--default-ttl", "40s", "--warn-before", "30s")
		gws := d.start(t, 2)
		first := leader(t, gws...)
		var other *gatewayProc
		for _, g := range gws {
			if g != first {
				other = g
			}
		}
		if strings.Contains(other.logs.String(), leadsLine) {
			t.Fatalf("both gateways lead:\n%s\n%s", first.logs, other.logs)
		}
		if r := judy.ssh(other, "", "true"); r.code != 0 {
			t.Fatalf("judy's first connection: %+v", r)
		}
		busy := kai.sshStart(other, ticker)
		if !busy.stdout.WaitFor("tick", 2*time.Minute) {
			t.Fatalf("kai's session: stdout %q stderr %q", busy.stdout, busy.stderr)
		}
		judyLease := judy.status(other).LeaseID
		first.Stop(syscall.SIGKILL, time.Minute)
		killed := time.Now()
		if leader(t, other) != other {
			t.Fatal("unreachable")
		}
		t.Logf("the other gateway leads %s after the leader's SIGKILL", time.Since(killed).Round(time.Millisecond))
		testkit.Eventually(t, 2*time.Minute, func() error {
			for _, srv := range d.servers(t) {
				if srv.Labels[lease.LeaseLabel] == judyLease && srv.Status != hcloud.ServerStatusOff {
					return fmt.Errorf("judy's server %s is %s, want off", srv.Name, srv.Status)
				}
			}
			if st := judy.status(other); st.State != "stopped" {
				return fmt.Errorf("judy's lease is %s, want stopped", st.State)
			}
			return nil
		})
		busy.wait(t, 2*time.Minute)
		if err := busy.stderr.String(); !strings.Contains(err, "expires in") {
			t.Errorf("kai's busy session ended with stderr %q; want the expiry warning first", err)
		}
	})

	// A gateway dies (SIGKILL) at each fault point of a create, a stop
	// and a destroy: the person connects through another and gets a
	// working machine, the one machine; the survivor (the leader once the
	// dead one's TTL lapses, or already) leaves no orphan.
	for _, point := range []string{
		lease.FaultCreateIntent, lease.FaultCreateRequested, lease.FaultCreateRecorded,
		lease.FaultResumeIntent, lease.FaultResumePoweredOn,
		lease.FaultStopIntent, lease.FaultStopPoweredOff,
		lease.FaultHibernateIntent, lease.FaultHibernateSnapshot, lease.FaultHibernateRecorded, lease.FaultHibernateDeleted,
		lease.FaultDestroyIntent, lease.FaultDestroyDeleted,
	} {
		t.Run("crash at "+point, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			kim := newPerson(t, filepath.Join(dir, "kim"))
			d := newDeployment(t, cluster, []*person{kim}, "--reconcile-interval", "2s", "--reaper-interval", "1s",
				"--admins", writeKeyList(t, filepath.Join(dir, "admins"), kim))
			survivor := d.start(t, 1)[0]
			doomed := d.start(t, 1, "CC_GATEWAY_CRASH_AT="+point)[0]
			op := strings.Split(point, ".")[0]
			if op != "create" {
				if r := kim.ssh(survivor, "", "true"); r.code != 0 {
					t.Fatalf("create: %+v", r)
				}
			}
			if op == "resume" {
				if r := kim.ssh(survivor, "", "stop"); r.code != 0 {
					t.Fatalf("stop: %+v", r)
				}
			}
			switch op {
			case "create", "resume":
				kim.ssh(doomed, "", "true")
			case "stop":
				kim.ssh(doomed, "", "stop")
			case "hibernate":
				kim.ssh(doomed, "", "admin", "hibernate", kim.status(survivor).Name)
			case "destroy":
				kim.ssh(doomed, "", "destroy", "--yes")
			}
			waitCrash(t, doomed, point)
			if r := kim.ssh(survivor, "", "echo alive"); r.code != 0 || r.stdout != "alive\n" {
				t.Fatalf("through the survivor: %+v", r)
			}
			st := waitSettled(t, kim, survivor)
			testkit.Eventually(t, time.Minute, func() error {
				servers := d.servers(t)
				if len(servers) != 1 || servers[0].Labels[lease.LeaseLabel] != st.LeaseID {
					return fmt.Errorf("lease %s (%s), servers %v: want its one server", st.LeaseID, st.State, serverNames(servers))
				}
				return nil
			})
			if r := kim.ssh(survivor, "", "echo again"); r.code != 0 || r.stdout != "again\n" {
				t.Errorf("after the settling: %+v", r)
			}
		})
	}
}
