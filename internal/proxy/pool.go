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

// Conn is one SSH connection to a machine.
type Conn struct {
	pool   *Pool
	id     string // Target.id; empty for a private connection
	target Target
	client *gossh.Client
	done   chan struct{} // closed once the connection has ended

	// Guarded by pool.mu.
	refs        int // seats, forwards and owners holding the connection
	sessions    int // session channels open or being opened
	maxSessions int // lowered when the machine refuses a session
	idleSince   time.Time
	idle        *time.Timer

	mu       sync.Mutex
	forwards map[forwardKey]route // remote forwards, by listen address
	agent    *route               // where agent channels go (private only)
	channels int                  // channels open on this connection
}

// route is where channels the machine opens are passed on to.
type route struct {
	to       Opener
	activity func()
}

type forwardKey struct {
	addr string
	port uint32
}

// Target is the machine the connection goes to.
func (c *Conn) Target() Target { return c.target }

// Done is closed once the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// alive reports whether the connection still runs.
func (c *Conn) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

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
			err = ErrPoolClosed
			c.client.Close()
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
	p.mu.Lock()
	defer p.mu.Unlock()
	c.refs--
	if session {
		c.sessions--
	}
	if c.refs > 0 {
		return
	}
	if c.id == "" || p.closed {
		c.client.Close()
		return
	}
	since := time.Now()
	c.idleSince = since
	c.idle = time.AfterFunc(p.opts.IdleTimeout, func() {
		p.mu.Lock()
		idle := c.refs == 0 && c.idleSince.Equal(since)
		p.mu.Unlock()
		if idle {
			p.log.Debug("closing idle machine connection", "addr", c.target.Addr)
			c.client.Close()
		}
	})
}

// dial connects to t and starts the goroutines that serve the connection:
// one waits for its end, one sends keepalives, two route the channels the
// machine opens.
func (p *Pool) dial(ctx context.Context, t Target, id string) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.DialTimeout)
	defer cancel()
	client, err := Dial(ctx, t.Addr, t.User, p.opts.Key, t.HostKey)
	if err != nil {
		return nil, err
	}
	c := &Conn{
		pool:        p,
		id:          id,
		target:      t,
		client:      client,
		done:        make(chan struct{}),
		maxSessions: p.opts.MaxSessions,
		forwards:    map[forwardKey]route{},
	}
	p.mu.Lock()
	p.all[c] = struct{}{}
	p.mu.Unlock()

	forwarded := client.HandleChannelOpen("forwarded-tcpip")
	agent := client.HandleChannelOpen("auth-agent@openssh.com")
	go c.routeChannels(forwarded, c.forwardRoute)
	go c.routeChannels(agent, c.agentRoute)
	go c.keepalive()
	go func() {
		err := client.Wait()
		p.log.Debug("machine connection ended", "addr", t.Addr, "err", err)
		close(c.done)
		p.forget(c)
	}()
	p.log.Debug("machine connection opened", "addr", t.Addr, "shared", id != "")
	return c, nil
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

// keepalive asks the machine every Keepalive whether it still answers and
// closes the connection when it does not, so a machine that vanished
// without closing its sockets does not leave sessions hanging.
func (c *Conn) keepalive() {
	every := c.pool.opts.Keepalive
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		timeout := time.NewTimer(every)
		select {
		case err := <-answered:
			timeout.Stop()
			if err != nil {
				c.client.Close()
			}
		case <-timeout.C:
			c.pool.log.Warn("machine stopped answering; closing its connection", "addr", c.target.Addr, "after", every)
			c.client.Close()
		case <-c.done:
			timeout.Stop()
		}
	}
}

// routeChannels passes each channel the machine opens to where route says,
// or refuses it.
func (c *Conn) routeChannels(in <-chan gossh.NewChannel, route func(gossh.NewChannel) (route, bool)) {
	for nc := range in {
		r, ok := route(nc)
		if !ok {
			nc.Reject(gossh.Prohibited, "no client connection asked for this channel")
			continue
		}
		go c.relay(nc, r)
	}
}

// relay opens the same channel on the person's connection and joins the two.
func (c *Conn) relay(nc gossh.NewChannel, r route) {
	dch, dreqs, err := r.to.OpenChannel(nc.ChannelType(), nc.ExtraData())
	if err != nil {
		nc.Reject(RejectReason(err, "the client connection is gone"))
		return
	}
	uch, ureqs, err := nc.Accept()
	if err != nil {
		dch.Close()
		return
	}
	c.countChannel(1)
	defer c.countChannel(-1)
	Pipe(dch, dreqs, uch, ureqs, r.activity)
}

func (c *Conn) countChannel(d int) {
	c.mu.Lock()
	c.channels += d
	c.mu.Unlock()
}

// forwardRoute finds who asked for the remote forward a forwarded-tcpip
// channel arrived on: by listen address and port, or by port alone, since
// the machine may report the address in another form than it was asked.
func (c *Conn) forwardRoute(nc gossh.NewChannel) (route, bool) {
	var msg struct {
		Addr       string
		Port       uint32
		OriginAddr string
		OriginPort uint32
	}
	if err := gossh.Unmarshal(nc.ExtraData(), &msg); err != nil {
		return route{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.forwards[forwardKey{msg.Addr, msg.Port}]; ok {
		return r, true
	}
	for k, r := range c.forwards {
		if k.port == msg.Port {
			return r, true
		}
	}
	return route{}, false
}

func (c *Conn) agentRoute(gossh.NewChannel) (route, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.agent == nil {
		return route{}, false
	}
	return *c.agent, true
}

// Seat is one channel's place on a machine connection: the Machine a bridge
// opens its channel on. Close gives the place back.
type Seat struct {
	pool    *Pool
	ctx     context.Context
	target  Target
	conn    *Conn
	session bool
	shared  bool
	opened  bool

	closeOnce sync.Once
}

// Session reserves a session on a shared connection to t, dialling one if
// none has room.
func (p *Pool) Session(ctx context.Context, t Target) (*Seat, error) {
	return p.seat(ctx, t, true)
}

// Channel reserves room for a channel that is not a session (direct-tcpip)
// on a shared connection to t.
func (p *Pool) Channel(ctx context.Context, t Target) (*Seat, error) {
	return p.seat(ctx, t, false)
}

func (p *Pool) seat(ctx context.Context, t Target, session bool) (*Seat, error) {
	c, err := p.acquire(ctx, t, session)
	if err != nil {
		return nil, err
	}
	return &Seat{pool: p, ctx: ctx, target: t, conn: c, session: session, shared: true}, nil
}

// Session reserves a session on this (private) connection.
func (c *Conn) Session() (*Seat, error) {
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	if !c.alive() {
		return nil, fmt.Errorf("connection to the machine at %s: %w", c.target.Addr, ErrUpstreamLost)
	}
	c.pool.hold(c, true)
	return &Seat{pool: c.pool, target: c.target, conn: c, session: true}, nil
}

// OpenChannel opens a channel on the seat's connection. A session the
// machine refuses while the connection carries others is taken as sshd's
// MaxSessions (which sshd reports as "open failed"): the pool remembers the
// limit and the session moves to a connection with room.
func (s *Seat) OpenChannel(name string, data []byte) (gossh.Channel, <-chan *gossh.Request, error) {
	if s.opened {
		return nil, nil, errors.New("a seat carries one channel")
	}
	for range 4 {
		ch, reqs, err := s.conn.client.OpenChannel(name, data)
		if err == nil {
			s.opened = true
			s.conn.countChannel(1)
			return ch, reqs, nil
		}
		var oe *gossh.OpenChannelError
		if !s.session || !s.shared || !errors.As(err, &oe) {
			return nil, nil, err
		}
		s.pool.mu.Lock()
		others := s.conn.sessions - 1
		if others > 0 && others < s.conn.maxSessions {
			s.conn.maxSessions = others
		}
		s.pool.mu.Unlock()
		if others == 0 {
			return nil, nil, err
		}
		next, aerr := s.pool.acquire(s.ctx, s.target, true)
		if aerr != nil {
			return nil, nil, err
		}
		s.pool.release(s.conn, true)
		s.conn = next
	}
	return nil, nil, fmt.Errorf("the machine at %s refused every session", s.target.Addr)
}

// SendRequest sends a global request on the seat's connection.
func (s *Seat) SendRequest(name string, wantReply bool, payload []byte) (bool, []byte, error) {
	return s.conn.client.SendRequest(name, wantReply, payload)
}

// Close gives the seat back; call it once the channel has closed.
func (s *Seat) Close() {
	s.closeOnce.Do(func() {
		if s.opened {
			s.conn.countChannel(-1)
		}
		s.pool.release(s.conn, s.session)
	})
}

// Private dials a connection to t that serves one client connection only:
// agent channels the machine opens go to agent. The caller holds one
// reference and gives it back with Release; the connection closes as soon
// as nothing holds it.
func (p *Pool) Private(ctx context.Context, t Target, agent Opener, activity func()) (*Conn, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, ErrPoolClosed
	}
	c, err := p.dial(ctx, t, "")
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.agent = &route{to: agent, activity: activity}
	c.mu.Unlock()
	p.mu.Lock()
	c.refs = 1
	p.mu.Unlock()
	return c, nil
}

// Release gives back the reference Private returned.
func (c *Conn) Release() { c.pool.release(c, false) }

// Forward is a remote forward (tcpip-forward) held on a machine connection.
type Forward struct {
	conn *Conn
	key  forwardKey
	once sync.Once
}

// ForwardRefusedError reports that the machine refused a remote forward.
type ForwardRefusedError struct{ Addr string }

func (e *ForwardRefusedError) Error() string {
	return "the machine refused to listen on " + e.Addr
}

// Forward asks the machine at t to listen on addr:port (tcpip-forward) and
// passes the connections it accepts to `to` as forwarded-tcpip channels. It
// returns the machine's reply payload, which holds the port it chose when
// port is 0.
func (p *Pool) Forward(ctx context.Context, t Target, addr string, port uint32, to Opener, activity func()) (*Forward, []byte, error) {
	c, err := p.acquire(ctx, t, false)
	if err != nil {
		return nil, nil, err
	}
	f := &Forward{conn: c, key: forwardKey{addr, port}}
	r := route{to: to, activity: activity}
	// Known before the machine listens, so no early connection is refused.
	if port != 0 {
		if !c.addRoute(f.key, r) {
			p.release(c, false)
			return nil, nil, &ForwardRefusedError{Addr: fmt.Sprintf("%s:%d (already forwarded)", addr, port)}
		}
	}
	req := struct {
		Addr string
		Port uint32
	}{addr, port}
	ok, reply, err := c.client.SendRequest("tcpip-forward", true, gossh.Marshal(&req))
	if err == nil && !ok {
		err = &ForwardRefusedError{Addr: fmt.Sprintf("%s:%d", addr, port)}
	}
	if err == nil && port == 0 {
		var allocated struct{ Port uint32 }
		if uerr := gossh.Unmarshal(reply, &allocated); uerr != nil {
			err = fmt.Errorf("read the port the machine chose: %w", uerr)
		} else {
			f.key.port = allocated.Port
			c.addRoute(f.key, r)
		}
	}
	if err != nil {
		if port != 0 {
			c.removeRoute(f.key)
		}
		p.release(c, false)
		return nil, nil, err
	}
	return f, reply, nil
}

func (c *Conn) addRoute(k forwardKey, r route) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, taken := c.forwards[k]; taken {
		return false
	}
	c.forwards[k] = r
	return true
}

func (c *Conn) removeRoute(k forwardKey) {
	c.mu.Lock()
	delete(c.forwards, k)
	c.mu.Unlock()
}

// Port is the port the machine listens on.
func (f *Forward) Port() uint32 { return f.key.port }

// Done is closed when the connection that carries the forward has ended.
func (f *Forward) Done() <-chan struct{} { return f.conn.done }

// Cancel asks the machine to stop listening (cancel-tcpip-forward) and
// gives back the forward's hold on the connection. Only the first call acts.
func (f *Forward) Cancel() error {
	var err error
	f.once.Do(func() {
		c := f.conn
		if c.alive() {
			req := struct {
				Addr string
				Port uint32
			}{f.key.addr, f.key.port}
			var ok bool
			ok, _, err = c.client.SendRequest("cancel-tcpip-forward", true, gossh.Marshal(&req))
			if err == nil && !ok {
				err = fmt.Errorf("the machine refused to stop listening on %s:%d", f.key.addr, f.key.port)
			}
		}
		c.removeRoute(f.key)
		c.pool.release(c, false)
	})
	return err
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
