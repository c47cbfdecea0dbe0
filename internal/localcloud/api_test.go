package localcloud_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/machine"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

func startCloud(t *testing.T, dir string, port int) *localcloud.Cloud {
	t.Helper()
	return startCloudWith(t, dir, port, nil)
}

func startCloudWith(t *testing.T, dir string, port int, faults localcloud.Faults) *localcloud.Cloud {
	t.Helper()
	c, err := localcloud.Start(localcloud.Options{
		DataDir: dir, SSHPort: port, ActionDuration: 20 * time.Millisecond, Faults: faults, Logger: testkit.Log(t),
	})
	if err != nil {
		t.Fatalf("start local cloud: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func rawClient(endpoint, token string) *hc.Client {
	return hc.NewClient(hc.WithEndpoint(endpoint), hc.WithToken(token),
		hc.WithPollOpts(hc.PollOpts{BackoffFunc: hc.ConstantBackoff(10 * time.Millisecond)}),
		hc.WithRetryOpts(hc.RetryOpts{MaxRetries: 0}))
}

// newSpec makes a lease's create spec with a fresh person key and machine
// host key; it returns the pinned host key too.
func newSpec(t *testing.T, leaseID string, port int) (lease.CreateSpec, string) {
	t.Helper()
	return localcloudtest.Spec(t, leaseID, "claude", port, testkit.NewKey(t).Public())
}

// slowStops holds power-offs for a while when on, so a request sent during
// one meets it still running, however busy the machine running the test.
type slowStops struct{ on atomic.Bool }

func (f *slowStops) Request(http.ResponseWriter, *http.Request) bool { return false }

func (f *slowStops) Action(command string) localcloud.ActionFault {
	if command == "stop_server" && f.on.Load() {
		return localcloud.ActionFault{Delay: 2 * time.Second}
	}
	return localcloud.ActionFault{}
}

// TestResponsesMatchOpenAPI runs the provider through a machine's whole
// life, plus the error answers a client meets, and checks every response
// the fake sends against Hetzner's API description.
func TestResponsesMatchOpenAPI(t *testing.T) {
	port := testkit.FreePort(t)
	slow := &slowStops{}
	cloud := startCloudWith(t, t.TempDir(), port, slow)
	v := newValidator(t, cloud.Handler())
	ts := httptest.NewServer(v)
	defer ts.Close()
	endpoint := ts.URL + "/v1"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p, err := hcloud.New(hcloud.Config{
		Token: cloud.Token(), Endpoint: endpoint, Gateway: "openapi",
		ImageSelector: localcloud.LocalImageLabel, PollInterval: 10 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second, Logger: testkit.Log(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := rawClient(endpoint, cloud.Token())

	// A machine's life through the provider.
	person := testkit.NewKey(t).Signer
	spec, hostKey := localcloudtest.Spec(t, "life1", "claude", port, person.PublicKey())
	srv, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	pool := proxy.NewPool(proxy.PoolOptions{Key: person, Logger: testkit.Log(t)})
	defer pool.Close()
	if err := proxy.NewMachines(pool, "claude").Wait(ctx, net.JoinHostPort(srv.IPv4, strconv.Itoa(port)), hostKey); err != nil {
		t.Fatalf("wait ssh: %v", err)
	}
	if _, err := p.Create(ctx, spec); err != nil { // idempotent repeat
		t.Fatalf("repeated create: %v", err)
	}
	if _, err := p.List(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.PowerOff(ctx, srv.ID); err != nil {
		t.Fatalf("power off: %v", err)
	}
	if err := p.PowerOn(ctx, srv.ID); err != nil {
		t.Fatalf("power on: %v", err)
	}

	// The key-already-registered path.
	spec2, _ := newSpec(t, "life2", port)
	if _, _, err := raw.SSHKey.Create(ctx, hc.SSHKeyCreateOpts{Name: "by hand", PublicKey: spec2.PublicKey}); err != nil {
		t.Fatal(err)
	}
	srv2, err := p.Create(ctx, spec2)
	if err != nil {
		t.Fatalf("create with a registered key: %v", err)
	}

	// Hibernation and resumption, and the figures the lease manager reads.
	if err := p.PowerOff(ctx, srv2.ID); err != nil {
		t.Fatal(err)
	}
	im, err := p.Snapshot(ctx, srv2.ID, "life2")
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if err := p.Delete(ctx, srv2.ID); err != nil {
		t.Fatal(err)
	}
	spec2.ImageID = im.ID
	if srv2, err = p.Create(ctx, spec2); err != nil {
		t.Fatalf("create from snapshot: %v", err)
	}
	if _, err := p.Images(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Image.AllWithOpts(ctx, hc.ImageListOpts{Type: []hc.ImageType{hc.ImageTypeSystem}, Status: []hc.ImageStatus{hc.ImageStatusAvailable}, Sort: []string{"name:desc"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CPUUsage(ctx, srv.ID, 5*time.Minute); err != nil {
		t.Fatalf("cpu usage: %v", err)
	}
	if _, err := p.Prices(ctx, "cx23", "fsn1"); err != nil {
		t.Fatalf("prices: %v", err)
	}
	if err := p.DeleteImage(ctx, im.ID); err != nil {
		t.Fatalf("delete image: %v", err)
	}

	// What the rest of the gateway and the tests read.
	if _, err := raw.ServerType.All(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := raw.ServerType.GetByID(ctx, 104); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Location.All(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := raw.Location.GetByID(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := raw.Pricing.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Image.All(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := raw.Image.GetByID(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.SSHKey.All(ctx); err != nil {
		t.Fatal(err)
	}
	keys, err := raw.SSHKey.All(ctx)
	if err != nil || len(keys) == 0 {
		t.Fatalf("ssh keys: %v", err)
	}
	if _, _, err := raw.SSHKey.GetByID(ctx, keys[0].ID); err != nil {
		t.Fatal(err)
	}
	reboot, _, err := raw.Server.Reboot(ctx, &hc.Server{ID: srv.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := raw.Action.GetByID(ctx, reboot.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Server.Action.AllFor(ctx, &hc.Server{ID: srv.ID}, hc.ActionListOpts{}); err != nil {
		t.Fatal(err)
	}
	if err := raw.Action.WaitFor(ctx, reboot); err != nil {
		t.Fatal(err)
	}

	// Error answers.
	// 423: an action while another runs.
	slow.on.Store(true)
	off, _, err := raw.Server.Poweroff(ctx, &hc.Server{ID: srv.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := raw.Server.Poweron(ctx, &hc.Server{ID: srv.ID}); !hc.IsError(err, hc.ErrorCodeLocked) {
		t.Errorf("power on during power off: %v, want locked", err)
	}
	if err := raw.Action.WaitFor(ctx, off); err != nil {
		t.Fatal(err)
	}
	// 423: a snapshot while another action runs.
	off, _, err = raw.Server.Poweroff(ctx, &hc.Server{ID: srv.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := raw.Server.CreateImage(ctx, &hc.Server{ID: srv.ID}, nil); !hc.IsError(err, hc.ErrorCodeLocked) {
		t.Errorf("snapshot during power off: %v, want locked", err)
	}
	if err := raw.Action.WaitFor(ctx, off); err != nil {
		t.Fatal(err)
	}
	slow.on.Store(false)
	// 404s.
	if s, _, err := raw.Server.GetByID(ctx, 99999); err != nil || s != nil {
		t.Errorf("missing server: %v, %v", s, err)
	}
	if im, _, err := raw.Image.GetByID(ctx, 99999); err != nil || im != nil {
		t.Errorf("missing image: %v, %v", im, err)
	}
	if _, err := raw.Image.Delete(ctx, &hc.Image{ID: 99999}); !hc.IsError(err, hc.ErrorCodeNotFound) {
		t.Errorf("delete missing image: %v", err)
	}
	// 403: the catalog's images stay.
	if _, err := raw.Image.Delete(ctx, &hc.Image{ID: 1}); !hc.IsError(err, hc.ErrorCodeForbidden) {
		t.Errorf("delete a system image: %v, want forbidden", err)
	}
	// 400: metrics for a period that ends before it starts.
	now := time.Now()
	if _, _, err := raw.Server.GetMetrics(ctx, &hc.Server{ID: srv.ID}, hc.ServerGetMetricsOpts{
		Types: []hc.ServerMetricType{hc.ServerMetricCPU}, Start: now, End: now.Add(-time.Hour),
	}); !hc.IsError(err, hc.ErrorCodeInvalidInput) {
		t.Errorf("metrics for a backwards period: %v, want invalid_input", err)
	}
	if _, err := raw.SSHKey.Delete(ctx, &hc.SSHKey{ID: 99999}); !hc.IsError(err, hc.ErrorCodeNotFound) {
		t.Errorf("delete missing key: %v", err)
	}
	// 400: invalid user_data and bad input.
	if _, _, err := raw.Server.Create(ctx, hc.ServerCreateOpts{Name: "cc-bad", ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{Name: "debian-12"}, UserData: "#cloud-config\n"}); !hc.IsError(err, hc.ErrorCodeInvalidInput) {
		t.Errorf("create with cloud-config user_data: %v, want invalid_input", err)
	}
	if _, _, err := raw.Server.Create(ctx, hc.ServerCreateOpts{Name: "cc-bad", ServerType: &hc.ServerType{Name: "cx999"}, Image: &hc.Image{Name: "debian-12"}, UserData: spec.UserData}); !hc.IsError(err, hc.ErrorCodeInvalidInput) {
		t.Errorf("create with unknown server type: %v, want invalid_input", err)
	}
	// 409: names and keys are unique.
	if _, _, err := raw.Server.Create(ctx, hc.ServerCreateOpts{Name: spec.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{Name: "debian-12"}, UserData: spec.UserData}); !hc.IsError(err, hc.ErrorCodeUniquenessError) {
		t.Errorf("create with a taken name: %v, want uniqueness_error", err)
	}
	// 401.
	if _, err := rawClient(endpoint, "wrong").Server.All(ctx); !hc.IsError(err, hc.ErrorCodeUnauthorized) {
		t.Errorf("wrong token: %v, want unauthorized", err)
	}

	// Relabelling, as a claimed pool machine is; renaming is refused.
	labelled, _, err := raw.Server.GetByID(ctx, srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	labelled.Labels[hcloud.LabelPool] = "true"
	if _, _, err := raw.Server.Update(ctx, labelled, hc.ServerUpdateOpts{Labels: labelled.Labels}); err != nil {
		t.Fatalf("label a server: %v", err)
	}
	if err := p.Unpool(ctx, srv.ID); err != nil {
		t.Fatalf("unpool: %v", err)
	}
	if _, _, err := raw.Server.Update(ctx, labelled, hc.ServerUpdateOpts{Name: "cc-renamed"}); !hc.IsError(err, hc.ErrorCodeInvalidInput) {
		t.Errorf("rename a server: %v, want invalid_input", err)
	}

	if err := p.Delete(ctx, srv.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := p.Delete(ctx, srv2.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}

	v.report(t, []string{
		"POST /servers 201",
		"GET /servers 200",
		"GET /servers/{id} 200",
		"DELETE /servers/{id} 200",
		"PUT /servers/{id} 200",
		"PUT /servers/{id} 400",
		"GET /servers/{id}/actions 200",
		"POST /servers/{id}/actions/poweron 201",
		"POST /servers/{id}/actions/poweroff 201",
		"POST /servers/{id}/actions/shutdown 201",
		"POST /servers/{id}/actions/reboot 201",
		"GET /actions 200",
		"GET /actions/{id} 200",
		"GET /ssh_keys 200",
		"GET /ssh_keys/{id} 200",
		"POST /ssh_keys 201",
		"DELETE /ssh_keys/{id} 204",
		"GET /images 200",
		"GET /images/{id} 200",
		"GET /images/{id} 404",
		"DELETE /images/{id} 204",
		"DELETE /images/{id} 404",
		"DELETE /images/{id} 403",
		"POST /servers/{id}/actions/create_image 201",
		"POST /servers/{id}/actions/create_image 423",
		"GET /servers/{id}/metrics 200",
		"GET /servers/{id}/metrics 400",
		"GET /server_types 200",
		"GET /server_types/{id} 200",
		"GET /locations 200",
		"GET /locations/{id} 200",
		"GET /pricing 200",
		"POST /ssh_keys 409",
		"POST /servers 409",
		"POST /servers 400",
		"POST /servers/{id}/actions/poweron 423",
		"GET /servers/{id} 404",
		"DELETE /ssh_keys/{id} 404",
		"GET /servers 401",
	})
}

func TestPagination(t *testing.T) {
	cloud := startCloud(t, t.TempDir(), testkit.FreePort(t))
	raw := rawClient(cloud.Endpoint(), cloud.Token())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 5 {
		spec, _ := newSpec(t, "page"+strconv.Itoa(i), 22)
		if _, _, err := raw.SSHKey.Create(ctx, hc.SSHKeyCreateOpts{
			Name: spec.Name, PublicKey: spec.PublicKey, Labels: map[string]string{"even": strconv.FormatBool(i%2 == 0)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	keys, resp, err := raw.SSHKey.List(ctx, hc.SSHKeyListOpts{ListOpts: hc.ListOpts{Page: 2, PerPage: 2}})
	if err != nil {
		t.Fatal(err)
	}
	pg := resp.Meta.Pagination
	if len(keys) != 2 || keys[0].Name != "cc-page2" || pg == nil || pg.Page != 2 || pg.NextPage != 3 || pg.PreviousPage != 1 || pg.LastPage != 3 || pg.TotalEntries != 5 {
		t.Fatalf("page 2 of 2: %d keys (%v), pagination %+v", len(keys), keys, pg)
	}
	all, err := raw.SSHKey.AllWithOpts(ctx, hc.SSHKeyListOpts{ListOpts: hc.ListOpts{PerPage: 2}, Sort: []string{"name:desc"}})
	if err != nil || len(all) != 5 || all[0].Name != "cc-page4" {
		t.Fatalf("all keys in pages of 2: %d, %v", len(all), err)
	}
	even, err := raw.SSHKey.AllWithOpts(ctx, hc.SSHKeyListOpts{ListOpts: hc.ListOpts{LabelSelector: "even=true"}})
	if err != nil || len(even) != 3 {
		t.Fatalf("keys with even=true: %d, %v", len(even), err)
	}
	if _, err := raw.SSHKey.AllWithOpts(ctx, hc.SSHKeyListOpts{ListOpts: hc.ListOpts{LabelSelector: "even in (true"}}); !hc.IsError(err, hc.ErrorCodeInvalidInput) {
		t.Fatalf("a broken label selector: %v, want invalid_input", err)
	}
}

// TestActionsRunThenSucceed checks the async model: a fresh action is
// running with partial progress and finishes with success.
func TestActionsRunThenSucceed(t *testing.T) {
	dir := t.TempDir()
	port := testkit.FreePort(t)
	cloud, err := localcloud.Start(localcloud.Options{DataDir: dir, SSHPort: port, ActionDuration: 300 * time.Millisecond, Logger: testkit.Log(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	raw := rawClient(cloud.Endpoint(), cloud.Token())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spec, _ := newSpec(t, "async1", port)
	res, _, err := raw.Server.Create(ctx, hc.ServerCreateOpts{
		Name: spec.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{Name: "debian-12"}, UserData: spec.UserData,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Action.Status != hc.ActionStatusRunning || res.Server.Status != hc.ServerStatusInitializing || len(res.NextActions) != 1 {
		t.Fatalf("fresh create: action %s, server %s, %d next actions", res.Action.Status, res.Server.Status, len(res.NextActions))
	}
	if ip := res.Server.PublicNet.IPv4.IP; !ip.IsLoopback() {
		t.Fatalf("server address %v is not loopback", ip)
	}
	if !res.Server.Locked {
		t.Error("a server with running actions is not locked")
	}
	var sawRunning bool
	err = raw.Action.WaitForFunc(ctx, func(a *hc.Action) error {
		if a.Status == hc.ActionStatusRunning && a.Progress < 100 {
			sawRunning = true
		}
		return nil
	}, res.Action, res.NextActions[0])
	if err != nil {
		t.Fatal(err)
	}
	if !sawRunning {
		t.Error("never saw a running action")
	}
	a, _, err := raw.Action.GetByID(ctx, res.NextActions[0].ID)
	if err != nil || a.Status != hc.ActionStatusSuccess || a.Progress != 100 || a.Finished.IsZero() {
		t.Fatalf("finished action: %+v, %v", a, err)
	}
	s, _, err := raw.Server.GetByID(ctx, res.Server.ID)
	if err != nil || s.Status != hc.ServerStatusRunning || s.Locked {
		t.Fatalf("server after its actions: %+v, %v", s, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "machines", spec.Name)); err != nil {
		t.Fatalf("machine folder: %v", err)
	}
}

func TestUnknownPathAnswersNotFound(t *testing.T) {
	cloud := startCloud(t, t.TempDir(), testkit.FreePort(t))
	req, err := http.NewRequest(http.MethodGet, cloud.Endpoint()+"/load_balancers", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cloud.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("unknown path: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// TestRestartFinishesInterruptedWork closes the cloud while actions are in
// flight: a server still booting boots on the next start, a server being
// deleted is gone, with its folder.
func TestRestartFinishesInterruptedWork(t *testing.T) {
	dir := t.TempDir()
	port := testkit.FreePort(t)
	// Actions that outlast the test: Close interrupts them.
	opts := localcloud.Options{DataDir: dir, SSHPort: port, ActionDuration: time.Hour, Logger: testkit.Log(t)}
	cloud, err := localcloud.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	raw := rawClient(cloud.Endpoint(), cloud.Token())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	create := func(leaseID string) *hc.Server {
		t.Helper()
		spec, _ := newSpec(t, leaseID, port)
		res, _, err := raw.Server.Create(ctx, hc.ServerCreateOpts{
			Name: spec.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{Name: "debian-12"}, UserData: spec.UserData,
		})
		if err != nil {
			t.Fatal(err)
		}
		return res.Server
	}
	booting := create("boot1")
	doomed := create("doom1")
	if _, _, err := raw.Server.DeleteWithResult(ctx, doomed); err != nil {
		t.Fatal(err)
	}
	doomedDir := filepath.Join(dir, "machines", doomed.Name)
	if err := os.MkdirAll(doomedDir, 0o700); err != nil { // as if it had booted once
		t.Fatal(err)
	}
	if err := cloud.Close(); err != nil {
		t.Fatal(err)
	}

	cloud = startCloud(t, dir, port)
	raw = rawClient(cloud.Endpoint(), cloud.Token())
	s, _, err := raw.Server.GetByID(ctx, booting.ID)
	if err != nil || s == nil || s.Status != hc.ServerStatusRunning {
		t.Fatalf("server that was booting: %+v, %v", s, err)
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(s.PublicNet.IPv4.IP.String(), strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatalf("its machine does not listen: %v", err)
	}
	conn.Close()
	if s, _, err := raw.Server.GetByID(ctx, doomed.ID); err != nil || s != nil {
		t.Fatalf("server that was being deleted: %+v, %v", s, err)
	}
	if _, err := os.Stat(doomedDir); !os.IsNotExist(err) {
		t.Fatalf("folder of the deleted server: %v", err)
	}
}

// An instance user that OpenSSH machines cannot log in is refused when the
// cloud starts, naming the flag to set, not at every machine's boot.
func TestStartRefusesAnInstanceUserSSHDCannotLogIn(t *testing.T) {
	osUser, err := machine.OpenSSHUser()
	if err != nil {
		t.Fatal(err)
	}
	other := "cc-not-" + osUser
	_, err = localcloud.Start(localcloud.Options{DataDir: t.TempDir(), Kind: localcloud.KindOpenSSH, User: other})
	if err == nil || !strings.Contains(err.Error(), "--instance-user "+osUser) {
		t.Fatalf("start with instance user %q: %v, want a refusal naming --instance-user %s", other, err, osUser)
	}
	c, err := localcloud.Start(localcloud.Options{DataDir: t.TempDir(), Kind: localcloud.KindOpenSSH, User: osUser})
	if err != nil {
		t.Fatalf("start with the OS user: %v", err)
	}
	c.Close()
}
