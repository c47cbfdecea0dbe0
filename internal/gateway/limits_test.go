package gateway

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/store/bolt"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// limitRig is a gateway with open access and the default limits, its
// audit trail on a bbolt file. It has no cloud: these tests never start a
// program on a machine.
type limitRig struct {
	addr    string
	hostKey gossh.PublicKey
	leases  *lease.Manager
	obs     *countingObserver
}

func startLimitRig(t *testing.T, clock lease.Clock) *limitRig {
	t.Helper()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	users, _ := LoadKeyList("", testkit.Quiet)
	hostKey := testkit.NewKey(t).Signer
	r := &limitRig{hostKey: hostKey.PublicKey(), leases: lease.NewManager(lease.Config{Store: store, Logger: testkit.Quiet}), obs: newCountingObserver()}
	g, err := New(Options{
		HostKey: hostKey, Pool: newPool(testkit.NewKey(t).Signer), Users: users, Admins: users, OpenAccess: true,
		Leases: r.leases, Clock: clock, Logger: testkit.Quiet, Observer: r.obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.addr = serve(t, g)
	return r
}

// dial connects as person; banner receives what the gateway says before
// authentication ends, if not nil.
func (r *limitRig) dial(person gossh.Signer, banner *string) (*gossh.Client, error) {
	return gossh.Dial("tcp", r.addr, &gossh.ClientConfig{
		User: "person", Auth: []gossh.AuthMethod{gossh.PublicKeys(person)},
		HostKeyCallback: gossh.FixedHostKey(r.hostKey), Timeout: 10 * time.Second,
		BannerCallback: func(msg string) error {
			if banner != nil {
				*banner += msg
			}
			return nil
		},
	})
}

func (r *limitRig) mustDial(t *testing.T, person gossh.Signer) *gossh.Client {
	t.Helper()
	c, err := r.dial(person, nil)
	if err != nil {
		t.Fatalf("dial gateway: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// limitedEvents returns the audit events of kind "limited".
func (r *limitRig) limitedEvents(t *testing.T) []lease.Event {
	t.Helper()
	events, err := r.leases.Events(1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []lease.Event
	for _, e := range events {
		if e.Kind == "limited" {
			out = append(out, e)
		}
	}
	return out
}

// wantOneLimited checks that exactly one "limited" event names limit and
// fingerprint.
func (r *limitRig) wantOneLimited(t *testing.T, limit, fingerprint string) {
	t.Helper()
	var n int
	for _, e := range r.limitedEvents(t) {
		if strings.HasPrefix(e.Detail, limit+":") && e.Fingerprint == fingerprint {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d audit events of kind limited for %q and %s, want 1: %+v", n, limit, fingerprint, r.limitedEvents(t))
	}
}

func TestSessionsPerConnectionAreBounded(t *testing.T) {
	r := startLimitRig(t, nil)
	person := testkit.NewKey(t).Signer
	c := r.mustDial(t, person)
	most := DefaultLimits.SessionsPerConn
	var open []gossh.Channel
	for i := range most {
		ch, reqs, err := c.OpenChannel("session", nil)
		if err != nil {
			t.Fatalf("session %d of %d: %v", i+1, most, err)
		}
		go gossh.DiscardRequests(reqs)
		open = append(open, ch)
	}
	// Over the limit, again and again: refused with the reason, one audit
	// event for the connection.
	for range 3 {
		_, _, err := c.OpenChannel("session", nil)
		var oce *gossh.OpenChannelError
		if !errors.As(err, &oce) || oce.Reason != gossh.ResourceShortage || !strings.Contains(oce.Message, fmt.Sprintf("%d sessions open", most)) {
			t.Fatalf("session %d: %v, want refused for resource shortage naming the limit", most+1, err)
		}
	}
	r.wantOneLimited(t, limitSessions, lease.Fingerprint(person.PublicKey()))
	// The metrics count every refusal.
	r.obs.wantLimited(t, map[Limit]int{LimitSessions: 3})

	// Another connection of the same person, and another person, are
	// unaffected.
	for _, other := range []gossh.Signer{person, testkit.NewKey(t).Signer} {
		ch, _, err := r.mustDial(t, other).OpenChannel("session", nil)
		if err != nil {
			t.Fatalf("a session on another connection: %v", err)
		}
		ch.Close()
	}

	// A session that ends frees its slot.
	open[0].Close()
	testkit.Eventually(t, 10*time.Second, func() error {
		ch, _, err := c.OpenChannel("session", nil)
		if err != nil {
			return err
		}
		open[0] = ch
		return nil
	})
}

func TestConnectionsPerPersonAreBounded(t *testing.T) {
	r := startLimitRig(t, nil)
	person := testkit.NewKey(t).Signer
	most := DefaultLimits.ConnsPerPerson
	var conns []*gossh.Client
	for range most {
		conns = append(conns, r.mustDial(t, person))
	}
	for range 3 {
		var banner string
		c, err := r.dial(person, &banner)
		if err == nil {
			c.Close()
			t.Fatalf("connection %d of one key got in", most+1)
		}
		if !strings.Contains(banner, fmt.Sprintf("already has %d connections open", most)) {
			t.Fatalf("connection %d refused (%v) with banner %q, want one naming the limit", most+1, err, banner)
		}
	}
	r.wantOneLimited(t, limitConnections, lease.Fingerprint(person.PublicKey()))
	r.obs.wantLimited(t, map[Limit]int{LimitConnections: 3})
	r.obs.mu.Lock()
	if r.obs.auth[AuthAccepted] != most || r.obs.auth[AuthLimited] != 3 {
		t.Errorf("authentications counted %v, want %d accepted and 3 limited", r.obs.auth, most)
	}
	r.obs.mu.Unlock()

	// Someone else gets in.
	r.mustDial(t, testkit.NewKey(t).Signer)

	// A connection that ends frees its slot.
	conns[0].Close()
	testkit.Eventually(t, 10*time.Second, func() error {
		c, err := r.dial(person, nil)
		if err != nil {
			return err
		}
		conns[0] = c
		return nil
	})
	conns[0].Close()
}

// failedSession reads what a session the gateway ended said on stderr, and
// its exit status.
func failedSession(t *testing.T, ch gossh.Channel, reqs <-chan *gossh.Request) (string, int) {
	t.Helper()
	status := -1
	done := make(chan struct{})
	go func() {
		defer close(done)
		for req := range reqs {
			if req.Type == "exit-status" && len(req.Payload) == 4 {
				status = int(req.Payload[3])
			}
		}
	}()
	stderr, _ := io.ReadAll(ch.Stderr())
	io.Copy(io.Discard, ch)
	select {
	case <-done:
	case <-time.After(10 * time.Second): // bounds the test only
		t.Fatal("the gateway kept the session open")
	}
	return string(stderr), status
}

func TestEarlyRequestsAreBounded(t *testing.T) {
	t.Run("count", func(t *testing.T) {
		r := startLimitRig(t, nil)
		person := testkit.NewKey(t).Signer
		c := r.mustDial(t, person)
		ch, reqs, err := c.OpenChannel("session", nil)
		if err != nil {
			t.Fatal(err)
		}
		most := DefaultLimits.EarlyRequests
		for i := range most {
			ok, err := ch.SendRequest("env", true, gossh.Marshal(struct{ Name, Value string }{fmt.Sprintf("V%d", i), "x"}))
			if !ok || err != nil {
				t.Fatalf("env request %d of %d: %v, %v", i+1, most, ok, err)
			}
		}
		if ok, _ := ch.SendRequest("window-change", true, make([]byte, 16)); ok {
			t.Fatalf("request %d was kept", most+1)
		}
		stderr, status := failedSession(t, ch, reqs)
		if !strings.Contains(stderr, fmt.Sprintf("more than %d requests", most)) || status != exitGatewayFailure {
			t.Errorf("session ended with %q and status %d, want the limit named and %d", stderr, status, exitGatewayFailure)
		}
		r.wantOneLimited(t, limitEarly, lease.Fingerprint(person.PublicKey()))
		r.obs.wantLimited(t, map[Limit]int{LimitEarlyRequests: 1})
	})
	t.Run("bytes", func(t *testing.T) {
		r := startLimitRig(t, nil)
		person := testkit.NewKey(t).Signer
		c := r.mustDial(t, person)
		// Each session over the limit: 200 KiB env values, as an attacker
		// would send them. One audit event for the connection.
		for range 3 {
			ch, reqs, err := c.OpenChannel("session", nil)
			if err != nil {
				t.Fatal(err)
			}
			big := gossh.Marshal(struct{ Name, Value string }{"BIG", strings.Repeat("x", 200<<10)})
			if ok, _ := ch.SendRequest("env", true, big); ok {
				t.Fatalf("a %d-byte env request was kept", len(big))
			}
			stderr, status := failedSession(t, ch, reqs)
			if !strings.Contains(stderr, fmt.Sprintf("more than %d bytes", DefaultLimits.EarlyBytes)) || status != exitGatewayFailure {
				t.Errorf("session ended with %q and status %d, want the limit named and %d", stderr, status, exitGatewayFailure)
			}
		}
		r.wantOneLimited(t, limitEarly, lease.Fingerprint(person.PublicKey()))
		r.obs.wantLimited(t, map[Limit]int{LimitEarlyBytes: 3})

		// Up to the limit is kept: a terminal and environment variables
		// that fill it.
		ch, _, err := c.OpenChannel("session", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		value := strings.Repeat("y", DefaultLimits.EarlyBytes/2-64)
		for i := range 2 {
			if ok, err := ch.SendRequest("env", true, gossh.Marshal(struct{ Name, Value string }{fmt.Sprintf("V%d", i), value})); !ok || err != nil {
				t.Fatalf("env request %d, within the limit: %v, %v", i+1, ok, err)
			}
		}
	})
}

func TestGlobalRequestRate(t *testing.T) {
	clock := testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := startLimitRig(t, clock)
	person := testkit.NewKey(t).Signer
	lim := DefaultLimits

	// A ControlMaster's keepalives every 15 s for a day, and a burst of
	// forwards at its start: never limited. (The gateway refuses keepalives,
	// as sshd does; the client only wants an answer.)
	c := r.mustDial(t, person)
	for range lim.GlobalBurst {
		if _, _, err := c.SendRequest("cancel-tcpip-forward", true, gossh.Marshal(forwardRequest{"localhost", 8080})); err != nil {
			t.Fatal(err)
		}
	}
	for range 24 * 60 * 4 {
		clock.Advance(15 * time.Second)
		if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil {
			t.Fatalf("keepalive: %v", err)
		}
	}
	if ev := r.limitedEvents(t); len(ev) != 0 {
		t.Fatalf("normal use was limited: %+v", ev)
	}

	// A flood without the clock moving: the burst is served, then
	// requests are refused, and a connection refused a burst's worth in a
	// row is closed.
	flood := r.mustDial(t, person)
	var err error
	sent := 0
	for ; sent < 3*lim.GlobalBurst && err == nil; sent++ {
		_, _, err = flood.SendRequest("keepalive@openssh.com", true, nil)
	}
	if err == nil {
		t.Fatalf("%d global requests at once, and the connection is still open", sent)
	}
	if sent > 2*lim.GlobalBurst+1 {
		t.Errorf("the connection closed after %d requests, want after %d", sent, 2*lim.GlobalBurst)
	}
	r.wantOneLimited(t, limitGlobal, lease.Fingerprint(person.PublicKey()))
	// Every refused request counts: all but the burst's.
	r.obs.wantLimited(t, map[Limit]int{LimitGlobalRequests: sent - lim.GlobalBurst})

	// The person's other connection is unaffected.
	if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil {
		t.Errorf("the other connection: %v", err)
	}
}

func TestTokenBucket(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newTokenBucket(2, 3, now)
	for i := range 3 {
		if !b.take(now) {
			t.Fatalf("burst: token %d refused", i+1)
		}
	}
	if b.take(now) {
		t.Fatal("a fourth token at once")
	}
	now = now.Add(500 * time.Millisecond) // one token at 2 a second
	if !b.take(now) || b.take(now) {
		t.Fatal("after half a second, want exactly one token")
	}
	now = now.Add(time.Hour) // refills up to the burst, no further
	for i := range 3 {
		if !b.take(now) {
			t.Fatalf("after an hour: token %d refused", i+1)
		}
	}
	if b.take(now) {
		t.Fatal("the bucket filled past its burst")
	}
}

// publicHalfOnly offers a key it cannot sign with: what a stranger who
// copied someone's public key can do.
type publicHalfOnly struct{ gossh.Signer }

func (publicHalfOnly) Sign(io.Reader, []byte) (*gossh.Signature, error) {
	return nil, errors.New("no private key")
}

// TestConnectNeedsProof: a connection is counted and recorded only once the
// client has proved it holds the key. Offering someone's public key alone
// must neither take their connection slots nor write to the audit trail.
func TestConnectNeedsProof(t *testing.T) {
	r := startLimitRig(t, nil)
	person := testkit.NewKey(t).Signer
	fp := lease.Fingerprint(person.PublicKey())
	connects := func() int {
		events, err := r.leases.Events(1000)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range events {
			if e.Kind == "connect" && e.Fingerprint == fp {
				n++
			}
		}
		return n
	}
	for range DefaultLimits.ConnsPerPerson + 1 {
		if c, err := r.dial(publicHalfOnly{person}, nil); err == nil {
			c.Close()
			t.Fatal("a key got in without a signature")
		}
	}
	if n := connects(); n != 0 {
		t.Errorf("%d connect events for a key offered without proof, want 0", n)
	}
	r.mustDial(t, person)
	if n := connects(); n != 1 {
		t.Errorf("%d connect events for one connection, want 1", n)
	}
}
