package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Target is one machine's sshd as the gateway reaches it.
type Target struct {
	Addr    string          // host:port
	User    string          // the account on the machine
	HostKey gossh.PublicKey // the pinned host key; nothing else is accepted
}

func (t Target) id() string {
	return t.User + "@" + t.Addr + " " + string(t.HostKey.Marshal())
}

// Equal reports whether t and o name the same sshd with the same key.
func (t Target) Equal(o Target) bool { return t.id() == o.id() }

// PoolOptions configure a Pool.
type PoolOptions struct {
	Key gossh.Signer // the gateway's client key on machines
	// IdleTimeout is how long a shared connection nobody uses stays open
	// for the person's next connection. Default 45s.
	IdleTimeout time.Duration
	// Keepalive is how often every connection asks its machine whether it
	// still answers; one that does not answer within the same time is
	// closed, which ends its sessions with a clear message. Default 15s.
	Keepalive time.Duration
	// MaxSessions is how many sessions one connection carries before the
	// pool opens another: sshd's MaxSessions, 10 unless configured.
	MaxSessions int
	// DialTimeout bounds connecting and the SSH handshake. Default 30s.
	DialTimeout time.Duration
	Logger      *slog.Logger
	// Observer, if not nil, sees every channel the proxy carries and its
	// bytes: those of the machine connections' channels, and those of the
	// sessions and forwards the gateway bridges (see Pool.Observer).
	Observer Observer
}

// ErrPoolClosed is returned once the pool has been closed.
var ErrPoolClosed = errors.New("the gateway is shutting down")

// Pool keeps connections to machines so that the channels of a person's
// client connections share them: a new client connection finds its
// machine's connection ready, which makes `ssh gateway true` about as fast
// as ssh to the machine itself. A connection unused for IdleTimeout closes.
//
// Connections that carry agent forwarding are private to one client
// connection (see Private): a machine's request for the agent names no
// session, so only a connection with a single owner can route it.
type Pool struct {
	opts PoolOptions
	log  *slog.Logger

	// mu guards the maps below and every Conn's seat counts. Lock order:
	// a caller's own locks (the gateway's per-client-connection lock), then
	// Pool.mu, then Conn.mu; today nothing holds Pool.mu and Conn.mu at
	// once. Neither is held while calling out: dials, closes, channel opens
	// and requests, and the routes' Openers and activity callbacks all run
	// after the lock is released, so a slow machine or client stalls only
	// its own channel.
	mu      sync.Mutex
	shared  map[string][]*Conn       // by Target.id, live connections only
	dialing map[string]chan struct{} // closed when that target's dial ends
	all     map[*Conn]struct{}       // shared and private, for Close and Stats
	closed  bool
}

// NewPool returns an empty pool.
func NewPool(opts PoolOptions) *Pool {
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 45 * time.Second
	}
	if opts.Keepalive == 0 {
		opts.Keepalive = 15 * time.Second
	}
	if opts.MaxSessions == 0 {
		opts.MaxSessions = 10
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Pool{
		opts:    opts,
		log:     opts.Logger.With("component", "proxy"),
		shared:  map[string][]*Conn{},
		dialing: map[string]chan struct{}{},
		all:     map[*Conn]struct{}{},
	}
}

// Observer is the pool's Observer, for the channels the gateway bridges
// onto its connections; nil when it has none.
func (p *Pool) Observer() Observer { return p.opts.Observer }

// Has reports whether the pool holds a live shared connection to t: proof,
// without asking the cloud, that the machine runs.
func (p *Pool) Has(t Target) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.shared[t.id()] {
		if c.alive() {
			return true
		}
	}
	return false
}

// acquire returns a shared connection to t with a reference held for the
// caller and, if session is set, a session slot reserved. It dials when no
// connection has room, one dial per target at a time.
func (p *Pool) acquire(ctx context.Context, t Target, session bool) (*Conn, error) {
	id := t.id()
	// Each pass either returns or waits for another caller's dial to end;
	// the bound only guards against a machine that keeps failing.
	for range 8 {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		if c := p.pick(id, session); c != nil {
			p.hold(c, session)
			p.mu.Unlock()
			return c, nil
		}
		if wait, ok := p.dialing[id]; ok {
			p.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		wait := make(chan struct{})
		p.dialing[id] = wait
		p.mu.Unlock()

		c, err := p.dial(ctx, t, id)

		p.mu.Lock()
		delete(p.dialing, id)
		close(wait)
		if err == nil && p.closed {
			p.mu.Unlock()
			c.client.Close()
			return nil, ErrPoolClosed
		}
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		p.shared[id] = append(p.shared[id], c)
		p.hold(c, session)
		p.mu.Unlock()
		return c, nil
	}
	return nil, fmt.Errorf("no connection to the machine at %s has room for another channel", t.Addr)
}

// pick returns the live connection to id with the fewest references that
// has room, or nil. Called with p.mu held.
func (p *Pool) pick(id string, session bool) *Conn {
	var best *Conn
	for _, c := range p.shared[id] {
		if !c.alive() || session && c.sessions >= c.maxSessions {
			continue
		}
		if best == nil || c.refs < best.refs {
			best = c
		}
	}
	return best
}

// hold takes a reference (and a session slot). Called with p.mu held.
func (p *Pool) hold(c *Conn, session bool) {
	c.refs++
	if session {
		c.sessions++
	}
	if c.idle != nil {
		c.idle.Stop()
		c.idle = nil
	}
}

// release gives back what hold took. A shared connection nobody holds
// closes after the idle timeout; a private one at once.
func (p *Pool) release(c *Conn, session bool) {
	if p.unhold(c, session) {
		c.client.Close()
	}
}

// unhold is release under p.mu: it reports whether the connection is to
// close now, which the caller does once the lock is released.
func (p *Pool) unhold(c *Conn, session bool) (closeNow bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.refs--
	if session {
		c.sessions--
	}
	if c.refs > 0 {
		return false
	}
	if c.id == "" || p.closed {
		return true
	}
	since := time.Now()
	c.idleSince = since
	c.idle = time.AfterFunc(p.opts.IdleTimeout, func() {
		p.mu.Lock()
		idle := c.refs == 0 && c.idleSince.Equal(since)
		if idle {
			// Out of the pool before the lock is released, so no new seat
			// picks a connection that is about to close.
			p.unshare(c)
		}
		p.mu.Unlock()
		if idle {
			p.log.Debug("closing idle machine connection", "addr", c.target.Addr)
			c.client.Close()
		}
	})
	return false
}

// forget drops an ended connection from the pool.
func (p *Pool) forget(c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.all, c)
	if c.idle != nil {
		c.idle.Stop()
		c.idle = nil
	}
	p.unshare(c)
}

// unshare takes c off the list of shared connections that seats are
// picked from. Called with p.mu held.
func (p *Pool) unshare(c *Conn) {
	list := p.shared[c.id]
	for i, x := range list {
		if x == c {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(p.shared, c.id)
	} else {
		p.shared[c.id] = list
	}
}

// PoolStats counts what a pool holds, for tests and diagnostics.
type PoolStats struct {
	Conns    int // open connections to machines
	Refs     int // seats, forwards and owners holding them
	Channels int // channels open on them
	Forwards int // remote forwards routed
}

// Stats counts the pool's connections and what they carry.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	conns := make([]*Conn, 0, len(p.all))
	var s PoolStats
	for c := range p.all {
		conns = append(conns, c)
		s.Refs += c.refs
	}
	p.mu.Unlock()
	s.Conns = len(conns)
	for _, c := range conns {
		c.mu.Lock()
		s.Channels += c.channels
		s.Forwards += len(c.forwards)
		c.mu.Unlock()
	}
	return s
}

// CloseTarget closes every connection to t, shared and private, and
// reports how many: a revoked key's machine keeps no connection the key's
// sessions could go on using. Each ends as if the machine had gone away.
func (p *Pool) CloseTarget(t Target) int {
	id := t.id()
	p.mu.Lock()
	var conns []*Conn
	for c := range p.all {
		if c.target.id() == id {
			conns = append(conns, c)
			// No seat may be picked on it from now on: the client sees
			// the close only later, and the revocation that called this
			// runs a session on the machine next.
			p.unshare(c)
		}
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.client.Close()
	}
	return len(conns)
}

// Close closes every connection; sessions on them end as if the machine
// had gone away (the gateway ends them itself first when it shuts down).
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	conns := make([]*Conn, 0, len(p.all))
	for c := range p.all {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.client.Close()
	}
}
