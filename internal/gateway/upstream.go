package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"charm.land/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
)

// activityEvery is how often a busy channel reports activity to the lease
// manager: often enough for idle timeouts counted in minutes, rarely enough
// that a bulk transfer costs one atomic load per buffer.
const activityEvery = time.Second

// machine returns the person's running machine and how to reach it. Every
// connection asks the lease manager, which checks the lease each time; a
// machine the pool already reaches is answered without asking the cloud.
// The lease manager learns which connection asks.
func (g *Gateway) machine(ctx ssh.Context, key gossh.PublicKey, progress func(lease.Step)) (lease.Lease, proxy.Target, error) {
	l, err := g.opts.Leases.Ensure(lease.WithConn(ctx, traceOf(ctx).id), key, progress)
	if err != nil {
		return l, proxy.Target{}, forPerson(err, "could not prepare your machine")
	}
	t, err := g.target(l)
	if err != nil {
		return l, proxy.Target{}, forPerson(err, "could not connect to your machine %s", l.ServerName)
	}
	return l, t, nil
}

func (g *Gateway) target(l lease.Lease) (proxy.Target, error) {
	hostKey, _, _, _, err := gossh.ParseAuthorizedKey([]byte(l.HostKey))
	if err != nil {
		return proxy.Target{}, fmt.Errorf("its pinned host key is unreadable: %w", err)
	}
	return proxy.Target{Addr: l.Address, User: g.opts.InstanceUser, HostKey: hostKey}, nil
}

// activity returns the callback that counts a channel's traffic as activity
// on the person's lease, at most once per activityEvery.
func (g *Gateway) activity(fingerprint string) func() {
	var next atomic.Int64
	return func() {
		now := time.Now().UnixNano()
		if now < next.Load() {
			return
		}
		next.Store(now + int64(activityEvery))
		g.opts.Leases.Touch(fingerprint)
	}
}

// lostMessage explains why a session's machine went away, as well as the
// lease tells: stopped (by the person, an admin or the reaper), destroyed,
// or just gone.
func (g *Gateway) lostMessage(fingerprint string) string {
	l, err := g.opts.Leases.Status(fingerprint)
	switch {
	case errors.Is(err, lease.ErrNotFound) || err == nil && l.State == lease.StateDestroying:
		return "cc-gateway: your machine was destroyed, which ended this session"
	case err == nil && (l.State == lease.StateStopping || l.State == lease.StateStopped ||
		l.State == lease.StateHibernating || l.State == lease.StateHibernated):
		return fmt.Sprintf("cc-gateway: your machine %s was stopped, which ended this session; `%s` starts it again", l.ServerName, g.opts.Invocation)
	}
	return proxy.LostMessage
}

// clientConn is what the gateway keeps for one client connection beyond
// its channels: the private machine connection that sessions with agent
// forwarding use, the remote forwards it asked for, and what it has used
// of its limits (sessions open, global request rate).
type clientConn struct {
	conn        *gossh.ServerConn
	fingerprint string
	limits      connLimits

	// mu comes before the pool's locks. It is the one lock held across a
	// call out: sessionSeat holds it while the private machine connection
	// is dialled, so one client connection never dials two. Only that
	// client's own sessions wait on it.
	mu       sync.Mutex
	private  *proxy.Conn
	forwards map[forwardAddr]*proxy.Forward
	closed   bool
}

type forwardAddr struct {
	addr string
	port uint32
}

type clientConnKey struct{}

// clientConn returns the state of ctx's client connection, created on first
// use, tracked by the person's fingerprint (revocation closes it), and
// cleaned up when the connection ends.
func (g *Gateway) clientConn(ctx ssh.Context) *clientConn {
	ctx.Lock()
	defer ctx.Unlock()
	if c, ok := ctx.Value(clientConnKey{}).(*clientConn); ok {
		return c
	}
	conn, _ := ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
	c := &clientConn{conn: conn, forwards: map[forwardAddr]*proxy.Forward{}, limits: connLimits{told: map[string]bool{}}}
	if key, ok := ctx.Value(ssh.ContextKeyPublicKey).(ssh.PublicKey); ok {
		c.fingerprint = lease.Fingerprint(key)
	}
	ctx.SetValue(clientConnKey{}, c)
	g.mu.Lock()
	g.conns[c] = struct{}{}
	g.mu.Unlock()
	context.AfterFunc(ctx, func() {
		g.mu.Lock()
		delete(g.conns, c)
		g.mu.Unlock()
		c.close()
	})
	return c
}

// close cancels the connection's remote forwards on the machine, so their
// ports are free for the next connection, and lets its private machine
// connection go.
func (c *clientConn) close() {
	c.mu.Lock()
	c.closed = true
	forwards, private := c.forwards, c.private
	c.forwards, c.private = nil, nil
	c.mu.Unlock()
	for _, f := range forwards {
		f.Cancel()
	}
	if private != nil {
		private.Release()
	}
}

// sessionSeat finds room for a session on the machine: on a shared pooled
// connection, or, with agent forwarding, on the client connection's private
// one, where the machine's requests for the agent can only mean this client.
func (g *Gateway) sessionSeat(ctx ssh.Context, c *clientConn, t proxy.Target, agent bool, activity func()) (*proxy.Seat, error) {
	if !agent {
		return g.pool.SessionSeat(ctx, t)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("the client connection is closing")
	}
	if c.private != nil {
		if seat, err := c.private.SessionSeat(); err == nil && c.private.Target().Equal(t) {
			return seat, nil
		} else if err == nil {
			seat.Close()
		}
		// Dead, or a machine that was since re-created elsewhere.
		c.private.Release()
		c.private = nil
	}
	private, err := g.pool.Private(ctx, t, c.conn, activity)
	if err != nil {
		return nil, err
	}
	c.private = private
	return private.SessionSeat()
}
