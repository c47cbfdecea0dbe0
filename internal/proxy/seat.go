package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"

	gossh "golang.org/x/crypto/ssh"
)

// Seat is one channel's place on a machine connection: the Upstream a bridge
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

// SessionSeat reserves a session on a shared connection to t, dialling one
// if none has room.
func (p *Pool) SessionSeat(ctx context.Context, t Target) (*Seat, error) {
	return p.seat(ctx, t, true)
}

// ChannelSeat reserves room for a channel that is not a session
// (direct-tcpip) on a shared connection to t.
func (p *Pool) ChannelSeat(ctx context.Context, t Target) (*Seat, error) {
	return p.seat(ctx, t, false)
}

func (p *Pool) seat(ctx context.Context, t Target, session bool) (*Seat, error) {
	c, err := p.acquire(ctx, t, session)
	if err != nil {
		return nil, err
	}
	return &Seat{pool: p, ctx: ctx, target: t, conn: c, session: session, shared: true}, nil
}

// SessionSeat reserves a session on this (private) connection.
func (c *Conn) SessionSeat() (*Seat, error) {
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
