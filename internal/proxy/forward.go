package proxy

import (
	"context"
	"fmt"
	"sync"

	gossh "golang.org/x/crypto/ssh"
)

type forwardKey struct {
	addr string
	port uint32
}

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
