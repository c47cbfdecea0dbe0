package proxy

import (
	"bytes"
	"fmt"
	"io"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
	gossh "golang.org/x/crypto/ssh"
)

func newTestPool(t *testing.T, key gossh.Signer, opts PoolOptions) *Pool {
	t.Helper()
	opts.Key = key
	p := NewPool(opts)
	t.Cleanup(p.Close)
	return p
}

func waitStats(t *testing.T, p *Pool, want PoolStats) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, func() error {
		if got := p.Stats(); got != want {
			return fmt.Errorf("pool holds %+v, want %+v", got, want)
		}
		return nil
	})
}

// openCat opens a session running cat on a seat and checks it echoes.
func openCat(t *testing.T, seat *Seat) gossh.Channel {
	t.Helper()
	ch, reqs, err := seat.OpenChannel("session", nil)
	if err != nil {
		t.Fatalf("open session: %v", err)
	}
	go gossh.DiscardRequests(reqs)
	ok, err := ch.SendRequest("exec", true, gossh.Marshal(struct{ Command string }{"exec cat"}))
	if err != nil || !ok {
		t.Fatalf("exec: ok=%v err=%v", ok, err)
	}
	if _, err := ch.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(ch, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	return ch
}

// TestPoolSharesAndCloses: seats share one connection, which stays open
// while held and closes once idle.
func TestPoolSharesAndCloses(t *testing.T) {
	key := testkit.NewKey(t).Signer
	m := startSSHD(t, key.PublicKey())
	p := newTestPool(t, key, PoolOptions{IdleTimeout: 100 * time.Millisecond})
	target := m.target()
	if p.Has(target) {
		t.Fatal("an empty pool claims a connection")
	}
	var seats []*Seat
	for range 3 {
		seat, err := p.SessionSeat(t.Context(), target)
		if err != nil {
			t.Fatal(err)
		}
		ch := openCat(t, seat)
		defer ch.Close()
		seats = append(seats, seat)
	}
	if st := p.Stats(); st.Conns != 1 || st.Refs != 3 || st.Channels != 3 {
		t.Errorf("three sessions: pool holds %+v, want one connection carrying them", st)
	}
	if !p.Has(target) {
		t.Error("Has is false with a live connection")
	}
	for _, s := range seats {
		s.Close()
		s.Close() // twice is harmless
	}
	waitStats(t, p, PoolStats{})
	if p.Has(target) {
		t.Error("Has is true after the idle connection closed")
	}
}

// TestPoolMoreSessionsThanSSHDAllows: a machine whose sshd allows fewer
// sessions per connection than the pool assumes still gets every session,
// on more connections.
func TestPoolMoreSessionsThanSSHDAllows(t *testing.T) {
	key := testkit.NewKey(t).Signer
	m := startSSHD(t, key.PublicKey(), "MaxSessions 2")
	p := newTestPool(t, key, PoolOptions{})
	target := m.target()
	for i := range 5 {
		seat, err := p.SessionSeat(t.Context(), target)
		if err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
		defer seat.Close()
		ch := openCat(t, seat)
		defer ch.Close()
	}
	if st := p.Stats(); st.Conns != 3 || st.Channels != 5 {
		t.Errorf("five sessions at two per connection: pool holds %+v, want 3 connections and 5 channels", st)
	}
}

// TestPoolKeepaliveClosesSilentMachine: a machine that stops answering
// without closing its connection (frozen, or cut off by the network) is
// noticed by the keepalive, and its connection closed.
func TestPoolKeepaliveClosesSilentMachine(t *testing.T) {
	key := testkit.NewKey(t).Signer
	m := startSSHD(t, key.PublicKey())
	p := newTestPool(t, key, PoolOptions{Keepalive: 200 * time.Millisecond})
	target := m.target()
	seat, err := p.SessionSeat(t.Context(), target)
	if err != nil {
		t.Fatal(err)
	}
	defer seat.Close()
	ch := openCat(t, seat)
	defer ch.Close()

	frozen := sshdDescendants(t, m.cmd.Process.Pid)
	for _, pid := range frozen {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
	defer func() {
		for _, pid := range frozen {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	select {
	case <-seat.conn.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the connection to a frozen machine is still open")
	}
	if p.Has(target) {
		t.Error("the pool still offers the dead connection")
	}
}

// TestSignalAndBreakPassedOn: signal and break requests reach the machine
// and its answers come back, the same as when talking to sshd directly.
func TestSignalAndBreakPassedOn(t *testing.T) {
	m, fd := setup(t.Context(), t)
	proxied := fd.dial(t)
	direct, err := gossh.Dial("tcp", m.addr, &gossh.ClientConfig{
		User: m.user, Auth: []gossh.AuthMethod{gossh.PublicKeys(fd.gatewayKey)},
		HostKeyCallback: gossh.FixedHostKey(m.hostKey), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()

	answers := func(c *gossh.Client) string {
		ch, reqs, err := c.OpenChannel("session", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		go gossh.DiscardRequests(reqs)
		pty := struct {
			Term             string
			Cols, Rows, W, H uint32
			Modes            string
		}{"xterm", 80, 24, 0, 0, ""}
		if ok, err := ch.SendRequest("pty-req", true, gossh.Marshal(&pty)); err != nil || !ok {
			t.Fatalf("pty-req: %v %v", ok, err)
		}
		if ok, err := ch.SendRequest("exec", true, gossh.Marshal(struct{ Command string }{"exec cat"})); err != nil || !ok {
			t.Fatalf("exec: %v %v", ok, err)
		}
		var out []string
		for _, r := range []struct {
			name    string
			payload []byte
		}{
			{"break", gossh.Marshal(struct{ Ms uint32 }{100})},
			{"signal", gossh.Marshal(struct{ Signal string }{"USR1"})},
			{"no-such-request@example.com", nil},
		} {
			ok, err := ch.SendRequest(r.name, true, r.payload)
			out = append(out, fmt.Sprintf("%s=%v/%v", r.name, ok, err))
		}
		return fmt.Sprint(out)
	}
	d, pr := answers(direct), answers(proxied)
	if d != pr {
		t.Errorf("answers through the gateway %s, directly %s", pr, d)
	}
	if !bytes.Contains([]byte(d), []byte("break=true")) {
		t.Errorf("sshd did not take the break on a terminal (%s): the comparison proves little", d)
	}
}

// TestCopyStreamSwitchesBuffers: data arriving in any rhythm (single
// bytes, bursts larger than the idle buffer) arrives unchanged, and every
// read with data counts as activity.
func TestCopyStreamSwitchesBuffers(t *testing.T) {
	var src bytes.Buffer
	var want []byte
	for i := range 50 {
		// Alternate trickles and bursts across the buffer-switch points.
		n := []int{1, idleBufferSize - 1, idleBufferSize, idleBufferSize + 1, 3 * burstBufferSize, 100}[i%6]
		chunk := bytes.Repeat([]byte{byte(i)}, n)
		src.Write(chunk)
		want = append(want, chunk...)
	}
	var dst bytes.Buffer
	reads := 0
	err := copyStream(&dst, iotest.HalfReader(&src), meter{activity: func() { reads++ }})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.Bytes(), want) {
		t.Fatalf("copied %d bytes that differ from the %d sent", dst.Len(), len(want))
	}
	if reads == 0 {
		t.Error("no activity reported")
	}
	errWrite := fmt.Errorf("disk full")
	if err := copyStream(failingWriter{errWrite}, bytes.NewReader(want), meter{activity: func() {}}); err != errWrite {
		t.Errorf("a failing writer ends the copy with %v, want %v", err, errWrite)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// TestPoolCloseTarget: closing a machine's connections (a revoked key's)
// ends the sessions on them, takes them out of the pool at once, and
// leaves other machines' connections alone.
func TestPoolCloseTarget(t *testing.T) {
	key := testkit.NewKey(t).Signer
	revoked, other := startSSHD(t, key.PublicKey()), startSSHD(t, key.PublicKey())
	p := newTestPool(t, key, PoolOptions{})
	var chans []gossh.Channel
	for _, m := range []*sshd{revoked, other} {
		seat, err := p.SessionSeat(t.Context(), m.target())
		if err != nil {
			t.Fatal(err)
		}
		defer seat.Close()
		chans = append(chans, openCat(t, seat))
	}
	if n := p.CloseTarget(revoked.target()); n != 1 {
		t.Errorf("CloseTarget closed %d connections, want 1", n)
	}
	if _, err := io.ReadAll(chans[0]); err != nil {
		t.Errorf("the revoked machine's session: %v", err)
	}
	// At once, not when the closed connection's end is noticed: the
	// revocation's next session on that machine (the key's revocation
	// there) must get a new connection.
	if p.Has(revoked.target()) {
		t.Error("the revoked machine's closed connection is still offered")
	}
	seat, err := p.SessionSeat(t.Context(), revoked.target())
	if err != nil {
		t.Fatalf("a session on the machine after CloseTarget: %v", err)
	}
	openCat(t, seat).Close()
	seat.Close()
	if !p.Has(other.target()) {
		t.Error("the other machine's connection closed too")
	}
	if _, err := chans[1].Write([]byte("ping\n")); err != nil {
		t.Errorf("the other machine's session: %v", err)
	}
}
