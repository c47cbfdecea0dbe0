package proxy

import (
	"context"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

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

	// mu guards the routes and the channel count; it comes after Pool.mu
	// and is held only to read or change these fields.
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
	Pipe(dch, dreqs, uch, ureqs, nc.ChannelType(), r.activity, c.pool.opts.Observer)
}

func (c *Conn) countChannel(d int) {
	c.mu.Lock()
	c.channels += d
	c.mu.Unlock()
}

func (c *Conn) agentRoute(gossh.NewChannel) (route, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.agent == nil {
		return route{}, false
	}
	return *c.agent, true
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
