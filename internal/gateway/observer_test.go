package gateway

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// countingObserver counts what the gateway tells its Observer; the
// metrics package's implementation is tested against the real gateway in
// cmd/gateway.
type countingObserver struct {
	mu                    sync.Mutex
	connections, sessions int
	auth                  map[AuthResult]int
	limited               map[Limit]int
}

func newCountingObserver() *countingObserver {
	return &countingObserver{auth: map[AuthResult]int{}, limited: map[Limit]int{}}
}

func (o *countingObserver) add(f func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f()
}

func (o *countingObserver) ConnectionOpened() { o.add(func() { o.connections++ }) }
func (o *countingObserver) ConnectionClosed() { o.add(func() { o.connections-- }) }
func (o *countingObserver) SessionStarted()   { o.add(func() { o.sessions++ }) }
func (o *countingObserver) SessionEnded()     { o.add(func() { o.sessions-- }) }
func (o *countingObserver) Authenticated(r AuthResult) {
	o.add(func() { o.auth[r]++ })
}
func (o *countingObserver) Limited(l Limit) { o.add(func() { o.limited[l]++ }) }

// wantLimited checks the counts of limits hit; limits not in want are 0.
func (o *countingObserver) wantLimited(t *testing.T, want map[Limit]int) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range EveryLimit {
		if o.limited[l] != want[l] {
			t.Errorf("limit %s counted %d times, want %d (all: %v)", l, o.limited[l], want[l], o.limited)
		}
	}
}

// wantOpen waits until the connections open come to n (they end after
// the client's side).
func (o *countingObserver) wantOpen(t *testing.T, n int) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, func() error {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.connections != n {
			return fmt.Errorf("%d connections open, want %d", o.connections, n)
		}
		return nil
	})
}

// flakyListener fails its next Accept with each error sent on fail, as a
// listener out of file descriptors does.
type flakyListener struct {
	net.Listener
	fail chan error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	select {
	case err := <-l.fail:
		return nil, err
	default:
		return l.Listener.Accept()
	}
}

// TestAccepting: the readiness of the SSH listener follows Serve and its
// accepts.
func TestAccepting(t *testing.T) {
	nobody, _ := LoadKeyList("", testkit.Quiet)
	g, err := New(Options{
		HostKey: testkit.NewKey(t).Signer, Pool: newPool(testkit.NewKey(t).Signer), Users: nobody, Admins: nobody,
		Leases: lease.NewManager(lease.Config{Logger: testkit.Quiet}), Logger: testkit.Quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Accepting(); err == nil || !strings.Contains(err.Error(), "not serving") {
		t.Errorf("before Serve: %v, want not serving", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &flakyListener{Listener: ln, fail: make(chan error, 1)}
	l.fail <- syscall.EMFILE
	served := make(chan error, 1)
	go func() { served <- g.Serve(l) }()
	testkit.Eventually(t, 10*time.Second, func() error {
		if err := g.Accepting(); err == nil || !errors.Is(err, syscall.EMFILE) {
			return fmt.Errorf("after a failed accept: %v, want it named", err)
		}
		return nil
	})
	// The next accept works: ready again.
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	testkit.Eventually(t, 10*time.Second, g.Accepting)

	g.Shutdown(time.Second)
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := g.Accepting(); err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("after Shutdown: %v, want shutting down", err)
	}
}
