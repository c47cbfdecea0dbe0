package gateway

// Strangers: people whose keys are not on the lists, and connections that
// never authenticate. They must not be able to flush the audit trail, nor
// hold the door shut for the people allowed in.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/store/bolt"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// countingStore counts the writes that reach the store: on bbolt each is
// one write transaction, and so one fsync.
type countingStore struct {
	lease.Store
	writes atomic.Int64
}

func (s *countingStore) Put(l lease.Lease, events ...lease.Event) error {
	s.writes.Add(1)
	return s.Store.Put(l, events...)
}

func (s *countingStore) Delete(fp string, events ...lease.Event) error {
	s.writes.Add(1)
	return s.Store.Delete(fp, events...)
}

func (s *countingStore) AppendEvent(e lease.Event) error {
	s.writes.Add(1)
	return s.Store.AppendEvent(e)
}

func (s *countingStore) AppendRefusals(rs []lease.Refusal) error {
	s.writes.Add(1)
	return s.Store.AppendRefusals(rs)
}

// door is a gateway with an allow list and an admin list, its leases on a
// bbolt file behind a countingStore, and no cloud: strangers never get
// past the front door.
type door struct {
	addr    string
	g       *Gateway
	leases  *lease.Manager
	store   *countingStore
	clock   *testkit.Clock
	allowed gossh.Signer // on the users list
	admin   gossh.Signer // on the admins list
}

// doorSpec is what a door's test changes of its gateway's options.
type doorSpec func(o *Options)

func startDoor(t *testing.T, specs ...doorSpec) *door {
	t.Helper()
	d := &door{
		clock:   testkit.NewClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)),
		allowed: testkit.NewKey(t).Signer,
		admin:   testkit.NewKey(t).Signer,
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "users"), line(d.allowed.PublicKey(), "allowed"))
	writeFile(t, filepath.Join(dir, "admins"), line(d.admin.PublicKey(), "admin"))
	users, err := LoadKeyList(filepath.Join(dir, "users"), testkit.Quiet)
	if err != nil {
		t.Fatal(err)
	}
	admins, err := LoadKeyList(filepath.Join(dir, "admins"), testkit.Quiet)
	if err != nil {
		t.Fatal(err)
	}
	store, err := bolt.Open(filepath.Join(dir, "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	d.store = &countingStore{Store: store}
	d.leases = lease.NewManager(lease.Config{Store: d.store, Clock: d.clock, Logger: testkit.Quiet})
	opts := Options{
		HostKey: testkit.NewKey(t).Signer, Pool: newPool(testkit.NewKey(t).Signer), Users: users, Admins: admins,
		Leases: d.leases, Clock: d.clock, Logger: testkit.Quiet, Invocation: "ssh gw",
	}
	for _, s := range specs {
		s(&opts)
	}
	if d.g, err = New(opts); err != nil {
		t.Fatal(err)
	}
	d.addr = serve(t, d.g)
	return d
}

// dial connects from the loopback address from (127.0.0.1 if empty).
func (d *door) dial(t *testing.T, from string) net.Conn {
	t.Helper()
	if from == "" {
		from = "127.0.0.1"
	}
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	conn, err := dialer.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// login authenticates as key from the loopback address from; the
// connection closes when the test ends.
func (d *door) login(t *testing.T, from string, key gossh.Signer) *gossh.Client {
	t.Helper()
	conn := d.dial(t, from)
	cc, chans, reqs, err := gossh.NewClientConn(conn, d.addr, &gossh.ClientConfig{
		User: "person", Auth: []gossh.AuthMethod{gossh.PublicKeys(key)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("log in from %s as %s: %v", conn.LocalAddr(), gossh.FingerprintSHA256(key.PublicKey()), err)
	}
	c := gossh.NewClient(cc, chans, reqs)
	t.Cleanup(func() { c.Close() })
	return c
}

// run runs a gateway command as key and returns its output.
func (d *door) run(t *testing.T, key gossh.Signer, cmd string) string {
	t.Helper()
	c := d.login(t, "", key)
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("%q: %v (output %q)", cmd, err, out)
	}
	return string(out)
}

// flood offers the gateway keys strangers refused: conns connections at
// once, each offering perConn keys none of which is on a list. It returns
// the keys' fingerprints.
func (d *door) flood(t *testing.T, conns, perConn int) []string {
	t.Helper()
	var fps []string
	signers := make([][]gossh.Signer, conns)
	for i := range signers {
		for range perConn {
			k := testkit.NewKey(t).Signer
			signers[i] = append(signers[i], k)
			fps = append(fps, gossh.FingerprintSHA256(k.PublicKey()))
		}
	}
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			_, err := gossh.Dial("tcp", d.addr, &gossh.ClientConfig{
				User: "stranger", Auth: []gossh.AuthMethod{gossh.PublicKeys(signers[i]...)},
				HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
			})
			if err == nil {
				t.Error("a stranger got in")
			}
		})
	}
	wg.Wait()
	return fps
}

// TestRefusedKeysCannotFlushTheAuditTrail: hundreds of refused keys leave
// the admin's earlier event in `admin events`, cost no write each, and show
// up, counted, in `admin refusals`.
func TestRefusedKeysCannotFlushTheAuditTrail(t *testing.T) {
	// Thirty strangers at once from one address: the startup limits stay
	// out of the way here (TestStartupLimits is about them).
	d := startDoor(t, func(o *Options) { o.MaxStartups = StartupLimits{Start: 100, Full: 100, PerSource: 100} })
	d.leases.Record(lease.Event{Kind: "admin", LeaseID: "abc", Detail: "extend abc 2h by an admin"})

	writes := d.store.writes.Load()
	// Ten keys a connection: x/crypto refuses each of them before it
	// gives up on the connection (see TestAuthAttemptsAreBounded).
	fps := d.flood(t, 30, 10)
	if n := d.store.writes.Load() - writes; n > 0 {
		t.Errorf("%d refused keys took %d writes to the store, want none until the minute is over", len(fps), n)
	}

	events := d.run(t, d.admin, "admin events")
	if !strings.Contains(events, "extend abc 2h by an admin") {
		t.Errorf("after %d refused keys, `admin events` lost the admin's event:\n%s", len(fps), events)
	}
	if strings.Contains(events, "auth-refused") {
		t.Errorf("`admin events` lists refusals one by one:\n%s", events)
	}

	// The admin sees them counted: one line for the source and minute.
	refusals := d.run(t, d.admin, "admin refusals")
	want := fmt.Sprintf("2026-12-01T10:00:00Z  127.0.0.1  auth-refused  %d ", len(fps))
	if !strings.Contains(refusals, want) || strings.Count(refusals, "\n") != 2 {
		t.Errorf("`admin refusals` after %d refused keys from 127.0.0.1:\n%s\nwant one line starting %q", len(fps), refusals, want)
	}
}

// silent opens a connection from the loopback address from that says
// nothing, and reports whether the gateway took it: a connection it takes
// gets its version line, a dropped one is closed without a word, as sshd
// does. The connection stays open until the test ends.
func (d *door) silent(t *testing.T, from string) (net.Conn, bool) {
	t.Helper()
	conn := d.dial(t, from)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds the test only
	line, err := bufio.NewReader(conn).ReadString('\n')
	switch {
	case err == nil && strings.HasPrefix(line, "SSH-2.0-"):
		return conn, true
	case line == "" && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)):
		return conn, false
	}
	t.Fatalf("connection from %s: read %q, %v", from, line, err)
	return nil, false
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}

// TestStartupLimits: connections that have not authenticated are bounded
// per source and overall, with random early drops between the soft and the
// hard limit, so strangers holding silent connections cannot keep a
// person from another address out.
func TestStartupLimits(t *testing.T) {
	var draw atomic.Int32 // the early-drop draw, 0 to 99: lower drops more
	logger, logs := testkit.Logger()
	obs := newCountingObserver()
	d := startDoor(t, func(o *Options) {
		o.MaxStartups = StartupLimits{Start: 4, Rate: 50, Full: 8, PerSource: 3}
		o.Percent = func() int { return int(draw.Load()) }
		o.Logger = logger
		o.Observer = obs
	})
	draw.Store(99) // spares every connection between the limits
	mustTake := func(from string) net.Conn {
		t.Helper()
		conn, ok := d.silent(t, from)
		if !ok {
			t.Fatalf("a connection from %s was dropped; want it taken", from)
		}
		return conn
	}
	mustDrop := func(from, why string) {
		t.Helper()
		if _, ok := d.silent(t, from); ok {
			t.Fatalf("a connection from %s was taken; want it dropped (%s)", from, why)
		}
	}

	// One source holds three; its fourth is dropped whatever the draw.
	first := mustTake("127.0.0.1")
	mustTake("127.0.0.1")
	mustTake("127.0.0.1")
	mustDrop("127.0.0.1", "per source")
	// Another source: four unauthenticated, the soft limit.
	mustTake("127.0.0.2")

	// A person from a third address gets in when the draw spares them; once
	// authenticated, their connection no longer counts.
	person := d.login(t, "127.0.0.3", d.allowed)
	if total := d.g.startups.count(); total != 4 {
		t.Errorf("%d unauthenticated connections counted after a login, want 4", total)
	}
	// Between the limits a low draw drops a stranger.
	draw.Store(0)
	mustDrop("127.0.0.4", "early drop")
	draw.Store(99)

	// Up to the hard limit, then every new connection is dropped.
	mustTake("127.0.0.4")
	mustTake("127.0.0.4")
	mustTake("127.0.0.5")
	mustTake("127.0.0.5")
	mustDrop("127.0.0.6", "full")

	// A startup that ends frees its place.
	first.Close()
	testkit.Eventually(t, 10*time.Second, func() error {
		if n := d.g.startups.count(); n != 7 {
			return fmt.Errorf("%d unauthenticated connections counted, want 7", n)
		}
		return nil
	})
	mustTake("127.0.0.6")

	// The person's connection still works.
	if _, _, err := person.SendRequest("keepalive@openssh.com", true, nil); err != nil {
		t.Errorf("the person's connection: %v", err)
	}

	// Drops are counted with the other refusals, per source ...
	refusals, err := d.leases.Refusals(0)
	if err != nil {
		t.Fatal(err)
	}
	limited := map[string]int{}
	for _, r := range refusals {
		if r.Kind == lease.RefusedLimited {
			limited[r.Source] += r.Count
		}
	}
	if want := map[string]int{"127.0.0.1": 1, "127.0.0.4": 1, "127.0.0.6": 1}; fmt.Sprint(limited) != fmt.Sprint(want) {
		t.Errorf("limited connections counted per source: %v, want %v", limited, want)
	}
	// ... and logged, at most once per dropLogEvery, naming a source.
	if n := strings.Count(logs.String(), "dropped a connection"); n != 1 {
		t.Errorf("three drops in one instant logged %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "remote=127.0.0.1") {
		t.Errorf("the drop log does not name the source:\n%s", logs)
	}
	d.clock.Advance(dropLogEvery)
	mustDrop("127.0.0.7", "full")
	// The metrics count every drop, by limit, and only taken connections
	// as open: eight unauthenticated and the person's.
	obs.wantLimited(t, map[Limit]int{LimitStartupsPerSource: 1, LimitStartups: 3})
	obs.wantOpen(t, 9)
	if n := strings.Count(logs.String(), "dropped a connection"); n != 2 || !strings.Contains(logs.String(), "dropped=3") {
		t.Errorf("after %s, a drop logged %d lines in all, want 2, the second counting 3 drops since the first:\n%s", dropLogEvery, n, logs)
	}
}

// TestEarlyDropRises: between the soft and the hard limit the chance of a
// drop rises from the rate to certainty, as sshd's MaxStartups.
func TestEarlyDropRises(t *testing.T) {
	l := StartupLimits{Start: 10, Rate: 30, Full: 100}
	for _, tc := range []struct{ total, percent int }{
		{0, 0}, {9, 0}, {10, 30}, {55, 65}, {99, 99}, {100, 100}, {500, 100},
	} {
		if got := l.dropPercent(tc.total); got != tc.percent {
			t.Errorf("with %d unauthenticated, drop chance %d%%, want %d%%", tc.total, got, tc.percent)
		}
	}
}
