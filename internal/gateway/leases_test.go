package gateway

// The lease lifecycle on real parts: the front door serving real SSH
// sessions, the lease manager and reaper on a bbolt file, the Hetzner
// provider, and the local cloud's API fake with machines that answer SSH.
// Time is an injected clock the test moves; the reaper's passes are called
// by the test.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

type world struct {
	*rig
	t        *testing.T
	clock    *testkit.Clock
	start    time.Time
	reaper   *lease.Reaper
	provider *hcloud.Provider
	cloudDir string
}

func newWorld(t *testing.T, policy lease.Policy) *world {
	t.Helper()
	start := time.Now().Truncate(time.Second)
	cloud := localcloudtest.Start(t, localcloud.KindBuiltin)
	w := &world{t: t, clock: testkit.NewClock(start), start: start, provider: cloud.Provider, cloudDir: cloud.DataDir}
	w.rig = startRig(t, rigSpec{provider: cloud.Provider, sshPort: cloud.SSHPort, policy: policy, clock: w.clock})
	w.reaper = lease.NewReaper(w.leases, w.g, lease.ReaperConfig{Invocation: "ssh gw", OrphanGrace: 10 * time.Minute})
	return w
}

// at moves the clock to start+d and makes one reaper pass.
func (w *world) at(d time.Duration) {
	w.clock.Set(w.start.Add(d))
	w.reaper.Tick(context.Background())
}

// openSession is a person's open session through the gateway, its stderr
// collected as it arrives.
type openSession struct {
	session *gossh.Session
	stderr  *testkit.Buffer
	done    chan error
}

// run runs cmd through the gateway and returns its output.
func (w *world) run(person gossh.Signer, cmd string) (string, error) {
	s, err := w.dial(w.t, person).NewSession()
	if err != nil {
		w.t.Fatal(err)
	}
	out, err := s.Output(cmd)
	return string(out), err
}

// do runs cmd through the gateway and fails the test if it fails.
func (w *world) do(person gossh.Signer, cmd string) {
	w.t.Helper()
	if out, err := w.run(person, cmd); err != nil {
		w.t.Fatalf("%q: %v (output %q)", cmd, err, out)
	}
}

// personWithMachine is a new person who has connected once, so their
// machine runs.
func (w *world) personWithMachine() gossh.Signer {
	w.t.Helper()
	person := testkit.NewKey(w.t).Signer
	w.do(person, "true")
	return person
}

// open starts a long, silent command and keeps the session open.
func (w *world) open(person gossh.Signer) *openSession {
	w.t.Helper()
	s, err := w.dial(w.t, person).NewSession()
	if err != nil {
		w.t.Fatal(err)
	}
	o := &openSession{session: s, stderr: &testkit.Buffer{}, done: make(chan error, 1)}
	s.Stderr = o.stderr
	if err := s.Start("echo started >&2; exec sleep 3600"); err != nil {
		w.t.Fatal(err)
	}
	go func() { o.done <- s.Wait() }()
	o.waitFor(w.t, "started")
	return o
}

// waitFor waits, bounded, until the session's stderr holds want.
func (o *openSession) waitFor(t *testing.T, want string) {
	t.Helper()
	if !o.stderr.WaitFor(want, 20*time.Second) {
		t.Fatalf("session never showed %q; it showed:\n%s", want, o.stderr.String())
	}
}

// ended waits, bounded, for the session to end and returns its exit status.
func (o *openSession) ended(t *testing.T) int {
	t.Helper()
	select {
	case err := <-o.done:
		var ee *gossh.ExitError
		if errors.As(err, &ee) {
			return ee.ExitStatus()
		}
		if err != nil {
			t.Fatalf("session ended with %v", err)
		}
		return 0
	case <-time.After(20 * time.Second):
		t.Fatalf("session still open; it showed:\n%s", o.stderr.String())
		return 0
	}
}

func (w *world) lease(person gossh.Signer) lease.Lease {
	w.t.Helper()
	l, err := w.store.Get(lease.Fingerprint(person.PublicKey()))
	if err != nil {
		w.t.Fatal(err)
	}
	return l
}

func (w *world) serverStatus(id int64) string {
	w.t.Helper()
	srv, err := w.provider.Get(context.Background(), id)
	if errors.Is(err, lease.ErrServerNotFound) {
		return "gone"
	}
	if err != nil {
		w.t.Fatal(err)
	}
	return srv.Status
}

func (w *world) events(kind string) []lease.Event {
	all, err := w.store.Events(0)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []lease.Event
	for _, e := range all {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

var basePolicy = lease.Policy{
	DefaultTTL: 4 * time.Hour, MaxTTL: 24 * time.Hour, MaxLifetime: 72 * time.Hour,
	IdleTimeout: 30 * time.Minute, IdleAction: lease.IdleStop,
	WarnBefore: []time.Duration{15 * time.Minute, 5 * time.Minute, time.Minute},
}

func TestIdleMachineIsWarnedThenStopped(t *testing.T) {
	w := newWorld(t, basePolicy)
	alice := testkit.NewKey(t).Signer
	s := w.open(alice)

	w.at(14 * time.Minute)
	if strings.Contains(s.stderr.String(), "will be stopped") {
		t.Fatalf("warned 16m before the idle stop:\n%s", s.stderr.String())
	}
	w.at(15 * time.Minute)
	s.waitFor(t, "will be stopped in 15m")
	w.at(25*time.Minute + 30*time.Second)
	s.waitFor(t, "will be stopped in 5m")
	w.at(29*time.Minute + 10*time.Second)
	s.waitFor(t, "will be stopped in 50s")
	if n := strings.Count(s.stderr.String(), "will be stopped"); n != 3 {
		t.Errorf("%d warnings, want 3 (one per lead time):\n%s", n, s.stderr.String())
	}

	w.at(30 * time.Minute)
	s.waitFor(t, "is being stopped: it had no activity for 30m")
	if code := s.ended(t); code == 0 {
		t.Error("the session ended with status 0; want non-zero")
	}
	l := w.lease(alice)
	if l.State != lease.StateStopped || w.serverStatus(l.ServerID) != "off" {
		t.Errorf("after the idle stop: lease %s, server %s", l.State, w.serverStatus(l.ServerID))
	}
	if len(w.events("warning")) != 3 || len(w.events("stop")) != 1 {
		t.Errorf("events: %d warnings, %d stops", len(w.events("warning")), len(w.events("stop")))
	}
}

func TestActivityPostponesIdleStop(t *testing.T) {
	w := newWorld(t, basePolicy)
	bob := w.personWithMachine()
	w.at(20 * time.Minute)
	if out, err := w.run(bob, "echo busy"); err != nil || out != "busy\n" {
		t.Fatalf("run: %q, %v", out, err)
	}
	w.at(35 * time.Minute) // 35m after start, 15m after the last traffic
	l := w.lease(bob)
	if l.State != lease.StateRunning {
		t.Fatalf("stopped although active 15m ago: %s", l.State)
	}
	if want := w.start.Add(20 * time.Minute); !l.LastActivity.Equal(want) {
		t.Errorf("stored last activity %s, want %s (flushed by the reaper)", l.LastActivity, want)
	}
	w.at(50 * time.Minute)
	if l := w.lease(bob); l.State != lease.StateStopped {
		t.Errorf("30m after the last traffic: %s, want stopped", l.State)
	}
}

func TestBusyCPUKeepsIdleMachineRunning(t *testing.T) {
	policy := basePolicy
	policy.BusyCPU = 50
	w := newWorld(t, policy)
	carol := w.personWithMachine()
	l := w.lease(carol)
	cpu := filepath.Join(w.cloudDir, "machines", l.ServerName, localcloud.CPUFile)
	if err := os.WriteFile(cpu, []byte("80\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.at(31 * time.Minute)
	if l := w.lease(carol); l.State != lease.StateRunning || len(w.events("busy")) != 1 {
		t.Fatalf("a busy machine: %s, %d busy events; want running and one", l.State, len(w.events("busy")))
	}
	// Busy counts as activity: the next idle stop is 30m after this pass.
	if err := os.WriteFile(cpu, []byte("3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.at(60 * time.Minute)
	if l := w.lease(carol); l.State != lease.StateRunning {
		t.Fatalf("stopped 29m after the busy pass: %s", l.State)
	}
	w.at(61 * time.Minute)
	if l := w.lease(carol); l.State != lease.StateStopped {
		t.Fatalf("an idle machine with 3%% CPU: %s, want stopped", l.State)
	}
}

func TestHibernateAndResumeKeepsFiles(t *testing.T) {
	policy := basePolicy
	policy.IdleAction = lease.IdleHibernate
	w := newWorld(t, policy)
	dave := testkit.NewKey(t).Signer
	w.do(dave, "echo precious > notes.txt")
	first := w.lease(dave)
	w.at(31 * time.Minute)
	l := w.lease(dave)
	if l.State != lease.StateHibernated || l.ImageID == 0 || l.ServerID != 0 || w.serverStatus(first.ServerID) != "gone" {
		t.Fatalf("after idle hibernate: %+v, old server %s", l, w.serverStatus(first.ServerID))
	}
	images, err := w.provider.Images(context.Background())
	if err != nil || len(images) != 1 {
		t.Fatalf("snapshots while hibernated: %v, %v", images, err)
	}

	out, err := w.run(dave, "cat notes.txt")
	if err != nil || out != "precious\n" {
		t.Fatalf("after resume: %q, %v", out, err)
	}
	l = w.lease(dave)
	if l.State != lease.StateRunning || l.ImageID != 0 || l.ID != first.ID {
		t.Errorf("after resume: %+v", l)
	}
	if images, _ := w.provider.Images(context.Background()); len(images) != 0 {
		t.Errorf("the snapshot outlived the resume: %v", images)
	}
}

func TestExpiryWarnsThenDestroys(t *testing.T) {
	policy := basePolicy
	policy.IdleTimeout = 0 // only expiry here
	w := newWorld(t, policy)
	erin := testkit.NewKey(t).Signer
	s := w.open(erin)
	l := w.lease(erin)

	w.at(3*time.Hour + 45*time.Minute)
	s.waitFor(t, "expires in 15m and will then be deleted with its files; run `ssh gw extend 2h` to keep it")

	// A login this close to expiry is reminded too.
	login := w.open(erin)
	login.waitFor(t, "expires in 15m")

	w.at(4 * time.Hour)
	s.waitFor(t, "expired at")
	if code := s.ended(t); code == 0 {
		t.Error("the session ended with status 0")
	}
	if _, err := w.store.Get(l.Fingerprint); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("lease after expiry: %v", err)
	}
	if st := w.serverStatus(l.ServerID); st != "gone" {
		t.Errorf("server after expiry: %s", st)
	}
}

func TestExtendedLeaseIsNotReaped(t *testing.T) {
	policy := basePolicy
	policy.IdleTimeout = 0
	w := newWorld(t, policy)
	frank := w.personWithMachine()
	w.at(3 * time.Hour)
	if out, err := w.run(frank, "extend 2h"); err != nil || !strings.Contains(out, "now expires") {
		t.Fatalf("extend: %q, %v", out, err)
	}
	w.at(4*time.Hour + time.Minute)
	if l := w.lease(frank); l.State != lease.StateRunning {
		t.Errorf("an extended lease was reaped: %s", l.State)
	}
}

func TestReconcile(t *testing.T) {
	w := newWorld(t, basePolicy)
	ctx := context.Background()
	gina := w.personWithMachine()

	// A labelled server no lease claims: an orphan, powered off after the
	// grace and deleted a grace later.
	orphan, err := w.provider.Create(ctx, lease.CreateSpec{
		Name: "cc-orphan", LeaseID: "orphan", UserData: mustUserData(t, w), PublicKey: w.lease(gina).PublicKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Set(orphan.Created.Add(5 * time.Minute))
	if err := w.reaper.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.serverStatus(orphan.ID); st == "gone" {
		t.Fatal("an orphan was deleted within its grace period")
	}
	w.clock.Set(orphan.Created.Add(11 * time.Minute))
	if err := w.reaper.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.serverStatus(orphan.ID); st != "off" {
		t.Errorf("orphan after its grace: %s, want off", st)
	}
	w.clock.Set(orphan.Created.Add(21 * time.Minute))
	if err := w.reaper.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.serverStatus(orphan.ID); st != "gone" {
		t.Errorf("orphan a grace after it was powered off: %s", st)
	}

	// A lease whose server vanished is closed.
	l := w.lease(gina)
	if err := w.provider.Delete(ctx, l.ServerID); err != nil {
		t.Fatal(err)
	}
	if err := w.reaper.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.Get(l.Fingerprint); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("lease of a vanished server: %v", err)
	}
	if len(w.events("reconcile")) < 2 {
		t.Errorf("reconcile findings were not recorded: %+v", w.events("reconcile"))
	}
}

// mustUserData renders a valid bootstrap document for a server made behind
// the gateway's back.
func mustUserData(t *testing.T, w *world) string {
	t.Helper()
	l, err := w.store.List()
	if err != nil || len(l) == 0 {
		t.Fatal("no lease to borrow a document from")
	}
	key, _, _, _, err := gossh.ParseAuthorizedKey([]byte(l[0].PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := bootstrap.New("orphan", "cc-orphan", "claude", time.Time{}, 22, []gossh.PublicKey{key}, l[0].HostKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	out, err := doc.Render()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExtendTellsTheMachine: after extend the machine's expires file holds
// the new expiry, so programs there know the time left.
func TestExtendTellsTheMachine(t *testing.T) {
	w := newWorld(t, basePolicy)
	ivan := w.personWithMachine()
	if out, err := w.run(ivan, "extend 90m"); err != nil {
		t.Fatalf("extend: %q, %v", out, err)
	}
	l := w.lease(ivan)
	data, err := os.ReadFile(filepath.Join(w.cloudDir, "machines", l.ServerName, "expires"))
	if err != nil {
		t.Fatal(err)
	}
	if want := l.Expires.UTC().Format(time.RFC3339) + "\n"; string(data) != want {
		t.Errorf("machine's expires file holds %q, want %q", data, want)
	}
}

// TestResumedMachineLearnsItsExpiry: a machine extended while stopped
// learns the new expiry when it starts again.
func TestResumedMachineLearnsItsExpiry(t *testing.T) {
	w := newWorld(t, basePolicy)
	jane := w.personWithMachine()
	w.do(jane, "stop")
	w.do(jane, "extend 3h")
	w.do(jane, "true")
	l := w.lease(jane)
	want := l.Expires.UTC().Format(time.RFC3339) + "\n"
	data, err := os.ReadFile(filepath.Join(w.cloudDir, "machines", l.ServerName, "expires"))
	if err != nil || string(data) != want {
		t.Fatalf("machine's expires file holds %q (%v), want %q", data, err, want)
	}
}

// TestExpiredLeaseGetsNoShell: once the lease has run out, a new session
// is refused even while the gateway holds a live connection to the machine
// (the reaper has not come by yet). The pool saves the dial, never a check.
func TestExpiredLeaseGetsNoShell(t *testing.T) {
	w := newWorld(t, basePolicy)
	kim := testkit.NewKey(t).Signer
	held := w.open(kim) // keeps the machine connection in the pool
	if out, err := w.run(kim, "echo in"); err != nil || out != "in\n" {
		t.Fatalf("before expiry: %q, %v", out, err)
	}
	w.clock.Set(w.start.Add(4*time.Hour + 2*time.Second))
	s, err := w.dial(w.t, kim).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	s.Stderr = &stderr
	out, err := s.Output("echo in")
	if err == nil || string(out) == "in\n" {
		t.Fatalf("an expired lease ran a command: %q, %v", out, err)
	}
	if !strings.Contains(stderr.String(), "expired at") {
		t.Errorf("the refusal does not say the lease expired: %q", stderr.String())
	}
	held.session.Close()
}
