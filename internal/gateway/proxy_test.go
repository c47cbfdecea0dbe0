package gateway

// The proxy behind the front door, in process: x/crypto clients against the
// gateway, the real lease manager on bbolt, the Hetzner provider, and the
// local cloud with machines that run sshd. These tests look inside the
// gateway: its goroutines and machine connections after people disconnect,
// activity on every kind of channel, and the shortcut that skips the cloud
// for a machine known to run. (cmd/gateway drives the same paths with the
// real OpenSSH tools.)

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// countingProvider is the real provider, counting the cloud's lookups.
type countingProvider struct {
	lease.Provider
	gets atomic.Int32
}

func (c *countingProvider) Get(ctx context.Context, id int64) (lease.Server, error) {
	c.gets.Add(1)
	return c.Provider.Get(ctx, id)
}

// proxyRig is a gateway whose machines run sshd, with one person.
type proxyRig struct {
	*rig
	t        *testing.T
	cloud    *countingProvider
	person   gossh.Signer
	observer *countingObserver
	channels *channelCounter
}

// channelCounter counts what the proxy tells its Observer.
type channelCounter struct {
	mu     sync.Mutex
	opened map[string]int // by channel type, since the start
	open   int
	bytes  [2]int // by proxy.Direction
}

func (c *channelCounter) ChannelOpened(kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opened[kind]++
	c.open++
}

func (c *channelCounter) ChannelClosed(string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
}

func (c *channelCounter) Carried(d proxy.Direction, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes[d] += n
}

// idleClose is the pool's idle timeout in these tests: short, so a test can
// watch machine connections close.
const idleClose = 200 * time.Millisecond

func newProxyRig(t *testing.T) *proxyRig {
	t.Helper()
	user := localcloudtest.OpenSSHUser(t)
	cloud := localcloudtest.Start(t, localcloud.KindOpenSSH)
	provider := &countingProvider{Provider: cloud.Provider}
	obs, channels := newCountingObserver(), &channelCounter{opened: map[string]int{}}
	r := startRig(t, rigSpec{
		provider: provider, sshPort: cloud.SSHPort, user: user, idle: idleClose,
		policy: plainPolicy, observer: obs, proxyObs: channels,
	})
	return &proxyRig{rig: r, t: t, cloud: provider, person: testkit.NewKey(t).Signer, observer: obs, channels: channels}
}

// connect connects the rig's person to the gateway.
func (r *proxyRig) connect() *gossh.Client { return r.dial(r.t, r.person) }

func (r *proxyRig) run(c *gossh.Client, cmd string, stdin []byte) string {
	r.t.Helper()
	s, err := c.NewSession()
	if err != nil {
		r.t.Fatal(err)
	}
	defer s.Close()
	if stdin != nil {
		s.Stdin = bytes.NewReader(stdin)
	}
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		r.t.Fatalf("%q: %v (output %q)", cmd, err, out)
	}
	return string(out)
}

// waitPool polls until the pool's counts are want.
func (r *proxyRig) waitPool(want proxy.PoolStats) {
	r.t.Helper()
	testkit.Eventually(r.t, 20*time.Second, func() error {
		if got := r.g.pool.Stats(); got != want {
			return fmt.Errorf("pool holds %+v, want %+v", got, want)
		}
		return nil
	})
}

// holdSession keeps a session open on c, running cat, until the test ends.
func holdSession(t *testing.T, c *gossh.Client) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	in, _ := s.StdinPipe()
	if err := s.Start("exec cat"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
}

// echoTrip sends data over c, half-closes, and checks it comes back.
func echoTrip(t *testing.T, c net.Conn, n int) {
	t.Helper()
	defer c.Close()
	data := make([]byte, n)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if cw, ok := c.(interface{ CloseWrite() error }); ok && err == nil {
			err = cw.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if werr := <-errc; werr != nil || err != nil {
		t.Fatalf("echo: write %v, read %v", werr, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo returned %d bytes that differ from the %d sent", len(got), n)
	}
}

// TestDisconnectLeavesNothingBehind opens every kind of channel the proxy
// serves (sessions with and without agent forwarding, a local forward, a
// remote forward), hangs up, and checks that the gateway has no goroutine
// more than before, no channel, forward or connection to the machine left,
// and that the machine listens no more on the remote forward's port.
func TestDisconnectLeavesNothingBehind(t *testing.T) {
	r := newProxyRig(t)
	echo := testkit.EchoServer(t)

	// Warm up: the machine exists and the pool has drained.
	r.run(r.connect(), "true", nil)
	r.waitPool(proxy.PoolStats{})
	base := runtime.NumGoroutine()

	c := r.connect()
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: testkit.NewKey(t).Private}); err != nil {
		t.Fatal(err)
	}
	if err := agent.ForwardToAgent(c, keyring); err != nil {
		t.Fatal(err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.RequestAgentForwarding(s); err != nil {
		t.Fatal(err)
	}
	out, err := s.CombinedOutput("ssh-add -l")
	if err != nil || !strings.Contains(string(out), "ED25519") {
		t.Fatalf("ssh-add -l with agent forwarding: %q, %v", out, err)
	}

	// A session left running, a local forward, a remote forward.
	holdSession(t, c)
	conn, err := c.Dial("tcp", echo.Addr().String())
	if err != nil {
		t.Fatalf("direct-tcpip: %v", err)
	}
	echoTrip(t, conn, 1<<20)
	remote, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tcpip-forward: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { testkit.Echo(remote, &wg) })
	back, err := net.Dial("tcp", remote.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	echoTrip(t, back, 1<<20)
	if st := r.g.pool.Stats(); st.Forwards != 1 || st.Channels < 1 || st.Conns < 2 {
		t.Errorf("while open the pool holds %+v; want the forward, the running session and a private connection for the agent", st)
	}

	c.Close()
	wg.Wait()
	r.waitPool(proxy.PoolStats{})
	testkit.Eventually(t, 20*time.Second, func() error { return testkit.GoroutinesAtMost(base) }) // as before the connection
	// The port is free again on the machine: the forward was cancelled.
	again, err := r.connect().Listen("tcp", remote.Addr().String())
	if err != nil {
		t.Fatalf("forwarding the same port after the first client left: %v", err)
	}
	again.Close()
}

// TestActivityOnEveryChannel: bytes in either direction on any channel
// count as activity on the lease.
func TestActivityOnEveryChannel(t *testing.T) {
	r := newProxyRig(t)
	echo := testkit.EchoServer(t)
	c := r.connect()
	r.run(c, "true", nil)
	fp := lease.Fingerprint(r.person.PublicKey())
	expect := func(what string, traffic func()) {
		t.Helper()
		before := time.Now()
		traffic()
		testkit.Eventually(t, 10*time.Second, func() error {
			l, err := r.leases.Status(fp)
			if err != nil {
				return err
			}
			if l.LastActivity.Before(before) {
				return fmt.Errorf("%s: last activity %s, before the traffic at %s", what, l.LastActivity, before)
			}
			return nil
		})
	}
	expect("output", func() { r.run(c, "echo hi", nil) })
	expect("input only", func() { r.run(c, "cat >/dev/null", []byte("typed")) })
	expect("sftp subsystem", func() {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		in, _ := s.StdinPipe()
		out, _ := s.StdoutPipe()
		if err := s.RequestSubsystem("sftp"); err != nil {
			t.Fatal(err)
		}
		// SSH_FXP_INIT, version 3; the server answers SSH_FXP_VERSION.
		in.Write([]byte{0, 0, 0, 5, 1, 0, 0, 0, 3})
		var n uint32
		if err := binary.Read(out, binary.BigEndian, &n); err != nil || n == 0 {
			t.Fatalf("sftp version reply: %d, %v", n, err)
		}
	})
	expect("local forward", func() {
		conn, err := c.Dial("tcp", echo.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		echoTrip(t, conn, 1000)
	})
	expect("remote forward", func() {
		ln, err := c.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { testkit.Echo(ln, &wg) })
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		echoTrip(t, conn, 1000)
		ln.Close()
	})

	// The metrics saw every kind of channel, each counted open until it
	// closed, and at least the bytes each way of the two forwards' echoes.
	testkit.Eventually(t, 10*time.Second, func() error {
		r.channels.mu.Lock()
		defer r.channels.mu.Unlock()
		r.observer.mu.Lock()
		defer r.observer.mu.Unlock()
		if r.channels.open != 0 || r.observer.sessions != 0 {
			return fmt.Errorf("%d channels and %d sessions still counted open", r.channels.open, r.observer.sessions)
		}
		return nil
	})
	want := map[string]int{"session": 4, "direct-tcpip": 1, "forwarded-tcpip": 1}
	if fmt.Sprint(r.channels.opened) != fmt.Sprint(want) {
		t.Errorf("channels counted %v, want %v", r.channels.opened, want)
	}
	if b := r.channels.bytes; b[proxy.ToMachine] < 2000 || b[proxy.FromMachine] < 2000 {
		t.Errorf("bytes counted: %d to the machine, %d from it; want at least the 2000 each way of the echoes", b[proxy.ToMachine], b[proxy.FromMachine])
	}
}

// TestRunningMachineSkipsTheCloud: while the pool holds a connection to the
// person's machine, new sessions do not ask the cloud for it (the lease
// manager still checks the lease: TestExpiredLeaseGetsNoShell).
func TestRunningMachineSkipsTheCloud(t *testing.T) {
	r := newProxyRig(t)
	c := r.connect()
	holdSession(t, c)
	first := r.cloud.gets.Load()
	for range 3 {
		if out := r.run(r.connect(), "echo hi", nil); out != "hi\n" {
			t.Fatalf("output %q", out)
		}
	}
	if n := r.cloud.gets.Load() - first; n != 0 {
		t.Errorf("%d sessions asked the cloud for a machine the pool already reaches", n)
	}
}
