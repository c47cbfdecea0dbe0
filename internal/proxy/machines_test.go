package proxy

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

func authorized(k gossh.PublicKey) string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k)))
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestMachinesWaitKeepsTheConnection: a wait leaves its connection in the
// pool, where the next wait finds it without dialling (even with an ended
// context) and the session that follows runs on it.
func TestMachinesWaitKeepsTheConnection(t *testing.T) {
	key := testkit.NewKey(t).Signer
	s := startSSHD(t, key.PublicKey())
	p := newTestPool(t, key, PoolOptions{})
	m := NewMachines(p, s.user)
	if err := m.Wait(testCtx(t, 20*time.Second), s.addr, authorized(s.hostKey)); err != nil {
		t.Fatalf("wait: %v", err)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Wait(ended, s.addr, authorized(s.hostKey)); err != nil {
		t.Errorf("wait with an ended context on a pooled machine: %v", err)
	}
	seat, err := p.SessionSeat(testCtx(t, 20*time.Second), Target{Addr: s.addr, User: s.user, HostKey: s.hostKey})
	if err != nil {
		t.Fatal(err)
	}
	openCat(t, seat).Close()
	seat.Close()
	if st := p.Stats(); st.Conns != 1 {
		t.Errorf("the pool holds %d connections after a wait and a session, want 1", st.Conns)
	}
}

// TestMachinesWaitRefusesAnotherKey: a machine answering with a key other
// than the pinned one is refused at once, never retried or trusted.
func TestMachinesWaitRefusesAnotherKey(t *testing.T) {
	key := testkit.NewKey(t).Signer
	s := startSSHD(t, key.PublicKey())
	other := testkit.NewKey(t).Signer
	m := NewMachines(newTestPool(t, key, PoolOptions{}), s.user)
	err := m.Wait(testCtx(t, time.Minute), s.addr, authorized(other.PublicKey()))
	if !errors.Is(err, lease.ErrHostKeyMismatch) {
		t.Fatalf("wait with the wrong pinned key: %v, want ErrHostKeyMismatch", err)
	}
}

// TestMachinesWaitGivesUp: nothing listening, the wait ends with its
// context; with an ended context it does not dial at all; an unreadable
// pinned key is refused.
func TestMachinesWaitGivesUp(t *testing.T) {
	key := testkit.NewKey(t).Signer
	p := newTestPool(t, key, PoolOptions{})
	m := NewMachines(p, "claude")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testkit.FreePort(t)))
	if err := m.Wait(testCtx(t, 300*time.Millisecond), addr, authorized(key.PublicKey())); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait on a closed port: %v, want deadline exceeded", err)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Wait(ended, addr, authorized(key.PublicKey())); !errors.Is(err, context.Canceled) {
		t.Errorf("wait with an ended context and nothing pooled: %v", err)
	}
	if err := m.Wait(context.Background(), addr, "not a key"); err == nil {
		t.Error("wait accepted an invalid pinned key")
	}
}

// TestMachinesSetExpiry writes the expires file on a real sshd, and
// reports a machine that cannot.
func TestMachinesSetExpiry(t *testing.T) {
	key := testkit.NewKey(t).Signer
	dir := t.TempDir()
	s := startSSHD(t, key.PublicKey(), "SetEnv CLOUD_INSTANCE_DIR="+dir)
	m := NewMachines(newTestPool(t, key, PoolOptions{}), s.user)
	expires := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	if err := m.SetExpiry(testCtx(t, 20*time.Second), s.addr, authorized(s.hostKey), expires); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "expires"))
	if err != nil || string(got) != "2026-12-02T03:00:00Z\n" {
		t.Errorf("expires file %q, %v", got, err)
	}

	// A folder where the new file would go: the script fails, even as root.
	if err := os.Mkdir(filepath.Join(dir, "expires.new"), 0o700); err != nil {
		t.Fatal(err)
	}
	err = m.SetExpiry(testCtx(t, 20*time.Second), s.addr, authorized(s.hostKey), expires)
	if err == nil || !strings.Contains(err.Error(), "exit status") {
		t.Errorf("setting the expiry where it cannot be written: %v, want the exit status", err)
	}
}
