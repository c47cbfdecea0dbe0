package hcloud_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"
	"golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/machine"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// testEnv is a local cloud with a provider and a plain hcloud-go client
// (for looking behind the provider's back).
type testEnv struct {
	cloud  *localcloud.Cloud
	dir    string
	port   int
	faults *faults
	p      *hcloud.Provider
	raw    *hc.Client
	kind   string
}

// newEnv starts a local cloud with built-in machines for the test; ctx
// bounds the test's calls to d.
func newEnv(t *testing.T, d time.Duration) (e *testEnv, ctx context.Context) {
	t.Helper()
	return newEnvKind(t, localcloud.KindBuiltin, d)
}

func newEnvKind(t *testing.T, kind string, d time.Duration) (*testEnv, context.Context) {
	t.Helper()
	e := &testEnv{dir: t.TempDir(), port: testkit.FreePort(t), faults: &faults{}, kind: kind}
	e.start(t)
	return e, testkit.Context(t, d)
}

// start (re)starts the local cloud on e.dir and makes fresh clients, as a
// restarted gateway would.
func (e *testEnv) start(t *testing.T) {
	t.Helper()
	e.cloud = startCloud(t, e.dir, e.port, e.kind, e.faults)
	e.p = newProvider(t, e.cloud.Endpoint(), e.cloud.Token())
	e.raw = hc.NewClient(hc.WithEndpoint(e.cloud.Endpoint()), hc.WithToken(e.cloud.Token()),
		hc.WithPollOpts(hc.PollOpts{BackoffFunc: hc.ConstantBackoff(10 * time.Millisecond)}))
}

// startCloud starts a local cloud on dir that the test closes when it ends.
func startCloud(t *testing.T, dir string, port int, kind string, faults localcloud.Faults) *localcloud.Cloud {
	t.Helper()
	c, err := localcloud.Start(localcloud.Options{
		DataDir:        dir,
		SSHPort:        port,
		Kind:           kind,
		ActionDuration: 20 * time.Millisecond,
		Faults:         faults,
		Logger:         testkit.Log(t),
	})
	if err != nil {
		t.Fatalf("start local cloud: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newProvider makes the provider the tests use; tweaks change its config.
func newProvider(t *testing.T, endpoint, token string, tweaks ...func(*hcloud.Config)) *hcloud.Provider {
	t.Helper()
	cfg := hcloud.Config{
		Token:           token,
		Endpoint:        endpoint,
		Gateway:         "test",
		ImageSelector:   localcloud.LocalImageLabel,
		PollInterval:    10 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second,
		Logger:          testkit.Log(t),
	}
	for _, tweak := range tweaks {
		tweak(&cfg)
	}
	p, err := hcloud.New(cfg)
	if err != nil {
		t.Fatalf("new provider: %v", err)
	}
	return p
}

// person is one lease's worth of keys and its create spec.
type person struct {
	spec    lease.CreateSpec
	hostKey string // pinned host key, authorized_keys form
	signer  ssh.Signer
	user    string
}

func newPerson(t *testing.T, leaseID string, port int) person {
	t.Helper()
	return newPersonAs(t, leaseID, "claude", port)
}

func newPersonAs(t *testing.T, leaseID, user string, port int) person {
	t.Helper()
	signer := testkit.NewKey(t).Signer
	spec, hostKey := localcloudtest.Spec(t, leaseID, user, port, signer.PublicKey())
	return person{spec: spec, hostKey: hostKey, signer: signer, user: user}
}

// create makes a server for spec with the env's provider, for tests
// about what comes after.
func (e *testEnv) create(t *testing.T, ctx context.Context, spec lease.CreateSpec) lease.Server {
	t.Helper()
	srv, err := e.p.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create %s: %v", spec.Name, err)
	}
	return srv
}

// server makes a server for a new person of lease leaseID.
func (e *testEnv) server(t *testing.T, ctx context.Context, leaseID string) (person, lease.Server) {
	t.Helper()
	p := newPerson(t, leaseID, e.port)
	return p, e.create(t, ctx, p.spec)
}

// createBehindItsBack makes a server for spec with the plain client, as
// another program (or the provider before a crash) would, labelled with
// labels; it does not wait for the server's actions.
func (e *testEnv) createBehindItsBack(t *testing.T, ctx context.Context, spec lease.CreateSpec, labels map[string]string) hc.ServerCreateResult {
	t.Helper()
	res, _, err := e.raw.Server.Create(ctx, hc.ServerCreateOpts{
		Name: spec.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{Name: "debian-12"},
		UserData: spec.UserData, Labels: labels,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (e *testEnv) addr(srv lease.Server) string {
	return net.JoinHostPort(srv.IPv4, strconv.Itoa(e.port))
}

// runOnMachine logs in as the person and runs cmd, proving the machine is
// theirs and up.
// wait waits until the machine at addr answers SSH with hostKey and lets
// p in, as the gateway waits for machines.
func (p person) wait(ctx context.Context, addr, hostKey string) error {
	pool := proxy.NewPool(proxy.PoolOptions{Key: p.signer, Logger: testkit.Quiet})
	defer pool.Close()
	return proxy.NewMachines(pool, p.user).Wait(ctx, addr, hostKey)
}

func runOnMachine(t *testing.T, addr string, p person, cmd string) string {
	t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(p.hostKey))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            p.user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(p.signer)},
		HostKeyCallback: ssh.FixedHostKey(pub),
		Timeout:         5 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh to %s: %v", addr, err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Output(cmd)
	if err != nil {
		t.Fatalf("run %q on %s: %v", cmd, addr, err)
	}
	return string(out)
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	alice, srv := e.server(t, ctx, "a1b2c3")

	if srv.Status != "running" || srv.Name != alice.spec.Name || srv.ID == 0 {
		t.Fatalf("created server = %+v, want running %s", srv, alice.spec.Name)
	}
	if ip := net.ParseIP(srv.IPv4); ip == nil || !ip.IsLoopback() {
		t.Fatalf("server IPv4 %q is not a loopback address", srv.IPv4)
	}
	if srv.Labels[hcloud.LabelGateway] != "test" || srv.Labels[hcloud.LabelLease] != "a1b2c3" {
		t.Errorf("server labels = %v", srv.Labels)
	}
	if srv.ServerType != hcloud.DefaultServerType || srv.Location != hcloud.DefaultLocation {
		t.Errorf("server type/location = %s/%s", srv.ServerType, srv.Location)
	}

	// The person's key was registered, labelled for the lease.
	keys, err := e.raw.SSHKey.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Name != "cc-a1b2c3" || keys[0].Labels[hcloud.LabelLease] != "a1b2c3" {
		t.Fatalf("ssh keys after create = %+v", keys)
	}

	addr := e.addr(srv)
	if err := alice.wait(ctx, addr, alice.hostKey); err != nil {
		t.Fatalf("wait ssh: %v", err)
	}
	if out := runOnMachine(t, addr, alice, "echo hello > note && cat note"); out != "hello\n" {
		t.Fatalf("command output %q", out)
	}

	// Another key at that address is a mismatch at once, not a timeout.
	bob := newPerson(t, "b0b", e.port)
	start := time.Now()
	err = alice.wait(testkit.Context(t, 20*time.Second), addr, bob.hostKey)
	if !errors.Is(err, lease.ErrHostKeyMismatch) {
		t.Fatalf("wait ssh with the wrong pinned key: %v, want ErrHostKeyMismatch", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("mismatch took %v; it must not be retried", time.Since(start))
	}

	list, err := e.p.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != srv.ID {
		t.Fatalf("list = %+v, %v", list, err)
	}

	if err := e.p.PowerOff(ctx, srv.ID); err != nil {
		t.Fatalf("power off: %v", err)
	}
	if got, err := e.p.Get(ctx, srv.ID); err != nil || got.Status != "off" {
		t.Fatalf("after power off: %+v, %v", got, err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("machine still listens on %s after power off", addr)
	}
	// Powering off what is off is fine.
	if err := e.p.PowerOff(ctx, srv.ID); err != nil {
		t.Fatalf("second power off: %v", err)
	}

	if err := e.p.PowerOn(ctx, srv.ID); err != nil {
		t.Fatalf("power on: %v", err)
	}
	if got, err := e.p.Get(ctx, srv.ID); err != nil || got.Status != "running" || got.IPv4 != srv.IPv4 {
		t.Fatalf("after power on: %+v, %v", got, err)
	}
	if err := alice.wait(ctx, addr, alice.hostKey); err != nil {
		t.Fatalf("wait ssh after power on: %v", err)
	}
	if out := runOnMachine(t, addr, alice, "cat note"); out != "hello\n" {
		t.Fatalf("the machine's files did not survive a power cycle: %q", out)
	}
	// Powering on what runs is fine.
	if err := e.p.PowerOn(ctx, srv.ID); err != nil {
		t.Fatalf("second power on: %v", err)
	}

	machineDir := filepath.Join(e.dir, "machines", srv.Name)
	if _, err := os.Stat(machineDir); err != nil {
		t.Fatalf("machine folder: %v", err)
	}
	if err := e.p.Delete(ctx, srv.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := e.p.Get(ctx, srv.ID); !errors.Is(err, lease.ErrServerNotFound) {
		t.Fatalf("get after delete: %v, want ErrServerNotFound", err)
	}
	if _, err := os.Stat(machineDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("machine folder after delete: %v", err)
	}
	if keys, err := e.raw.SSHKey.All(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("ssh keys after delete = %+v, %v", keys, err)
	}
	if err := e.p.Delete(ctx, srv.ID); !errors.Is(err, lease.ErrServerNotFound) {
		t.Fatalf("second delete: %v, want ErrServerNotFound", err)
	}
	if err := e.p.PowerOn(ctx, srv.ID); !errors.Is(err, lease.ErrServerNotFound) {
		t.Fatalf("power on deleted server: %v, want ErrServerNotFound", err)
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	alice := newPerson(t, "idem1", e.port)

	first := e.create(t, ctx, alice.spec)
	// A crash after the server was made but before the lease recorded it:
	// the retry must find it, even powered off.
	if err := e.p.PowerOff(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	second, err := e.p.Create(ctx, alice.spec)
	if err != nil {
		t.Fatalf("repeated create: %v", err)
	}
	if second.ID != first.ID || second.Status != "running" {
		t.Fatalf("repeated create gave %+v, want server %d running", second, first.ID)
	}
	servers, err := e.raw.Server.All(ctx)
	if err != nil || len(servers) != 1 {
		t.Fatalf("the project has %d servers (%v), want 1", len(servers), err)
	}
	if err := alice.wait(ctx, e.addr(second), alice.hostKey); err != nil {
		t.Fatal(err)
	}
}

func TestCreateRetriesWhileTheFirstIsStillBooting(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	alice := newPerson(t, "early1", e.port)

	// The first attempt's answer was lost: the server exists, its actions
	// still run.
	res := e.createBehindItsBack(t, ctx, alice.spec, map[string]string{hcloud.LabelGateway: "test", hcloud.LabelLease: "early1"})
	srv := e.create(t, ctx, alice.spec)
	if srv.ID != res.Server.ID || srv.Status != "running" {
		t.Fatalf("create gave %+v, want the existing server %d running", srv, res.Server.ID)
	}
}

func TestCreateRefusesForeignServerOfTheSameName(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	alice := newPerson(t, "foreign1", e.port)
	res := e.createBehindItsBack(t, ctx, alice.spec, nil)
	if err := e.raw.Action.WaitFor(ctx, append(res.NextActions, res.Action)...); err != nil {
		t.Fatal(err)
	}
	_, err := e.p.Create(ctx, alice.spec)
	if err == nil || !strings.Contains(err.Error(), "not labelled cc-gateway=test") {
		t.Fatalf("create over an unlabelled server: %v", err)
	}
	// Nor may the gateway delete or stop it.
	if err := e.p.Delete(ctx, res.Server.ID); err == nil {
		t.Fatal("deleted a server without the gateway's label")
	}
	if err := e.p.PowerOff(ctx, res.Server.ID); err == nil {
		t.Fatal("powered off a server without the gateway's label")
	}
	if got, _, err := e.raw.Server.GetByID(ctx, res.Server.ID); err != nil || got == nil || got.Status != hc.ServerStatusRunning {
		t.Fatalf("the foreign server: %+v, %v", got, err)
	}
	if list, err := e.p.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("list shows foreign servers: %+v, %v", list, err)
	}
}

func TestSSHKeyAlreadyInProject(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	alice := newPerson(t, "dupkey", e.port)

	// Someone registered alice's key by hand, under another name.
	manual, _, err := e.raw.SSHKey.Create(ctx, hc.SSHKeyCreateOpts{Name: "alice laptop", PublicKey: alice.spec.PublicKey + " alice@laptop"})
	if err != nil {
		t.Fatal(err)
	}
	// A second registration is refused the way Hetzner refuses it.
	_, _, err = e.raw.SSHKey.Create(ctx, hc.SSHKeyCreateOpts{Name: "again", PublicKey: alice.spec.PublicKey})
	if !hc.IsError(err, hc.ErrorCodeUniquenessError) {
		t.Fatalf("second registration of a key: %v, want uniqueness_error", err)
	}

	srv, err := e.p.Create(ctx, alice.spec)
	if err != nil {
		t.Fatalf("create with the key already registered: %v", err)
	}
	keys, err := e.raw.SSHKey.All(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != manual.ID {
		t.Fatalf("keys = %+v, %v; want only the manual one", keys, err)
	}
	if err := e.p.Delete(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}
	// The manual key is not the gateway's to delete.
	if k, _, err := e.raw.SSHKey.GetByID(ctx, manual.ID); err != nil || k == nil {
		t.Fatalf("the manually registered key was deleted: %v", err)
	}
}

func TestSSHKeyNameTakenByLeftover(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	alice := newPerson(t, "stale1", e.port)
	other := newPerson(t, "stale1", e.port)
	// A leftover of this lease with a different key (say, an aborted earlier
	// attempt) holds the name.
	_, _, err := e.raw.SSHKey.Create(ctx, hc.SSHKeyCreateOpts{
		Name: "cc-stale1", PublicKey: other.spec.PublicKey,
		Labels: map[string]string{hcloud.LabelGateway: "test", hcloud.LabelLease: "stale1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Create(ctx, alice.spec); err != nil {
		t.Fatalf("create: %v", err)
	}
	keys, err := e.raw.SSHKey.All(ctx)
	if err != nil || len(keys) != 1 || keys[0].PublicKey != alice.spec.PublicKey {
		t.Fatalf("keys = %+v, %v; want only alice's", keys, err)
	}
}

func TestRefusedToken(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 10*time.Second)
	p := newProvider(t, e.cloud.Endpoint(), "not-the-token")
	_, err := p.Get(ctx, 1)
	if err == nil || !strings.Contains(err.Error(), "the Hetzner API refused the token (401): check HCLOUD_TOKEN") {
		t.Fatalf("get with a wrong token: %v", err)
	}
	if strings.Contains(err.Error(), "not-the-token") {
		t.Fatal("the error shows the token")
	}
	_, err = p.Create(ctx, newPerson(t, "tok", e.port).spec)
	if !hc.IsError(err, hc.ErrorCodeUnauthorized) {
		t.Fatalf("create with a wrong token: %v, want an unauthorized API error underneath", err)
	}

	// Without any token the API answers like Hetzner's.
	resp, err := http.Get(e.cloud.Endpoint() + "/servers")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized || body.Error.Code != "unauthorized" {
		t.Fatalf("no token: %d %+v", resp.StatusCode, body)
	}

	if _, err := hcloud.New(hcloud.Config{Image: "debian-12"}); err == nil || !strings.Contains(err.Error(), "HCLOUD_TOKEN") {
		t.Fatalf("new without token: %v", err)
	}
}

func TestCreateRejectsInvalidUserData(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 10*time.Second)
	spec := newPerson(t, "bad1", e.port).spec
	spec.UserData = `{"version":1}`
	_, err := e.p.Create(ctx, spec)
	if !hc.IsError(err, hc.ErrorCodeInvalidInput) || !strings.Contains(err.Error(), "user_data") {
		t.Fatalf("create with invalid user_data: %v", err)
	}
	if servers, err := e.raw.Server.All(ctx); err != nil || len(servers) != 0 {
		t.Fatalf("servers after a refused create: %d, %v", len(servers), err)
	}
}

func TestFailedActionIsAnError(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	e.faults.set("start_server", localcloud.ActionFault{Code: "action_failed", Message: "no host available"})
	_, err := e.p.Create(ctx, newPerson(t, "fail1", e.port).spec)
	if err == nil || !strings.Contains(err.Error(), "action start_server failed: no host available") {
		t.Fatalf("create with a failing start: %v", err)
	}
	var actErr hc.ActionError
	if !errors.As(err, &actErr) {
		t.Fatalf("error %v does not carry the action error", err)
	}
}

func TestPowerOffCutsPowerWhenShutdownFails(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	_, srv := e.server(t, ctx, "acpi1")
	e.faults.set("shutdown_server", localcloud.ActionFault{Code: "action_failed", Message: "guest ignored ACPI"})
	if err := e.p.PowerOff(ctx, srv.ID); err != nil {
		t.Fatalf("power off: %v", err)
	}
	if got, err := e.p.Get(ctx, srv.ID); err != nil || got.Status != "off" {
		t.Fatalf("after power off: %+v, %v", got, err)
	}
}

func TestServerSurvivesRestart(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	alice := newPerson(t, "restart1", e.port)
	bob := newPerson(t, "restart2", e.port)
	srv := e.create(t, ctx, alice.spec)
	stopped := e.create(t, ctx, bob.spec)
	if err := e.p.PowerOff(ctx, stopped.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.cloud.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", e.addr(srv), time.Second); err == nil {
		c.Close()
		t.Fatal("machine still listens after the cloud closed")
	}

	e.start(t)
	got, err := e.p.Get(ctx, srv.ID)
	if err != nil || got.Status != "running" || got.IPv4 != srv.IPv4 || got.Name != srv.Name {
		t.Fatalf("after restart: %+v, %v; want %+v", got, err, srv)
	}
	if err := alice.wait(ctx, e.addr(got), alice.hostKey); err != nil {
		t.Fatalf("wait ssh after restart: %v", err)
	}
	if got, err := e.p.Get(ctx, stopped.ID); err != nil || got.Status != "off" {
		t.Fatalf("stopped server after restart: %+v, %v", got, err)
	}
	// New ids do not collide with old ones.
	carol := newPerson(t, "restart3", e.port)
	third := e.create(t, ctx, carol.spec)
	if third.ID == srv.ID || third.ID == stopped.ID || third.IPv4 == srv.IPv4 {
		t.Fatalf("new server %+v collides with old ones", third)
	}
}

// TestOpenSSHMachine drives a real sshd through the provider: waiting for
// it must recognise OpenSSH answering with the pinned key.
func TestOpenSSHMachine(t *testing.T) {
	t.Parallel()
	osUser, err := machine.OpenSSHUser()
	if err != nil {
		t.Fatal(err)
	}
	e, ctx := newEnvKind(t, localcloud.KindOpenSSH, 30*time.Second)
	alice := newPersonAs(t, "real1", osUser, e.port)
	srv := e.create(t, ctx, alice.spec)
	addr := e.addr(srv)
	if err := alice.wait(ctx, addr, alice.hostKey); err != nil {
		t.Fatalf("wait ssh: %v", err)
	}
	if err := alice.wait(ctx, addr, newPerson(t, "other", e.port).hostKey); !errors.Is(err, lease.ErrHostKeyMismatch) {
		t.Fatalf("wait ssh with the wrong pinned key: %v, want ErrHostKeyMismatch", err)
	}
	if out := runOnMachine(t, addr, alice, "echo real"); out != "real\n" {
		t.Fatalf("command output %q", out)
	}
	if err := e.p.PowerOff(ctx, srv.ID); err != nil {
		t.Fatalf("power off: %v", err)
	}
	if err := e.p.PowerOn(ctx, srv.ID); err != nil {
		t.Fatalf("power on: %v", err)
	}
	if err := alice.wait(ctx, addr, alice.hostKey); err != nil {
		t.Fatalf("wait ssh after power on: %v", err)
	}
	if err := e.p.Delete(ctx, srv.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
}

func TestImageChoice(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	imageOf := func(id int64) *hc.Image {
		t.Helper()
		s, _, err := e.raw.Server.GetByID(ctx, id)
		if err != nil || s == nil || s.Image == nil {
			t.Fatalf("server %d: %+v, %v", id, s, err)
		}
		return s.Image
	}
	provider := func(image, selector string) *hcloud.Provider {
		return newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), func(c *hcloud.Config) {
			c.Image, c.ImageSelector = image, selector
		})
	}

	// The selector wins when a snapshot matches.
	srv, err := provider("debian-12", localcloud.LocalImageLabel).Create(ctx, newPerson(t, "img1", e.port).spec)
	if err != nil {
		t.Fatal(err)
	}
	if im := imageOf(srv.ID); im.Type != hc.ImageTypeSnapshot || im.Labels["cc-gateway"] != "image" {
		t.Errorf("with a matching selector the server runs %+v", im)
	}
	// A selector that matches nothing is an error, not a silent boot of
	// the stock image, which would never present the pinned host key.
	_, err = provider("debian-12", "cc-gateway=nothing").Create(ctx, newPerson(t, "img2", e.port).spec)
	if err == nil || !strings.Contains(err.Error(), "no available snapshot matches") || !strings.Contains(err.Error(), "--provisioning infect") {
		t.Fatalf("create with no matching snapshot: %v", err)
	}
	// Without a selector, the named image.
	srv, err = provider("debian-12", "").Create(ctx, newPerson(t, "img3", e.port).spec)
	if err != nil {
		t.Fatal(err)
	}
	if im := imageOf(srv.ID); im.Name != "debian-12" {
		t.Errorf("without a selector the server runs %+v, want debian-12", im)
	}
	if _, err := hcloud.New(hcloud.Config{Token: "t"}); err == nil {
		t.Fatal("a provider without image settings was accepted")
	}
}

// faults fails chosen actions of the local cloud, counts the actions
// started, and lets a test answer requests itself.
type faults struct {
	mu      sync.Mutex
	actions map[string]localcloud.ActionFault
	started map[string]int
	request func(w http.ResponseWriter, r *http.Request) bool
}

func (f *faults) set(command string, af localcloud.ActionFault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.actions == nil {
		f.actions = map[string]localcloud.ActionFault{}
	}
	f.actions[command] = af
}

// onRequest makes fn see every authenticated request first; true means fn
// answered it.
func (f *faults) onRequest(fn func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.request = fn
}

func (f *faults) Request(w http.ResponseWriter, r *http.Request) bool {
	f.mu.Lock()
	fn := f.request
	f.mu.Unlock()
	return fn != nil && fn(w, r)
}

func (f *faults) Action(command string) localcloud.ActionFault {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.started == nil {
		f.started = map[string]int{}
	}
	f.started[command]++
	return f.actions[command]
}

// count is how many command actions started.
func (f *faults) count(command string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started[command]
}
