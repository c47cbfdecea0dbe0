package gateway

import (
	"fmt"
	"io"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// expiryReminder is how close to expiry a login is reminded of it.
const expiryReminder = 30 * time.Minute

// noticeWait bounds how long the reaper waits for a notice to be written: a
// client that stops reading must not stall it.
const noticeWait = 2 * time.Second

// Lock order: Gateway.mu, then liveSession.mu, then syncChannel.mu.
// Gateway.mu is held only to copy the list of live sessions (sessionsOf,
// Shutdown) or of client connections (connsOf; clientConn adds to it under
// the ssh context's lock), never while writing to one. The two per-channel locks are held
// across the write itself, which x/crypto needs serialised: a client that
// stops reading stalls only writers to its own channel, and Warn, End and
// Shutdown wait for it at most noticeWait.

// syncChannel serialises writes to a session channel. x/crypto reuses one
// packet buffer per stream and keeps its EOF flag unguarded, so the
// proxy's copying and the gateway's notices must never write at once.
type syncChannel struct {
	gossh.Channel
	mu sync.Mutex // held across each write; takes no other lock
}

func (c *syncChannel) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Channel.Write(p)
}

func (c *syncChannel) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Channel.CloseWrite()
}

func (c *syncChannel) Stderr() io.ReadWriter { return syncStderr{c} }

type syncStderr struct{ c *syncChannel }

func (s syncStderr) Read(p []byte) (int, error) { return s.c.Channel.Stderr().Read(p) }

func (s syncStderr) Write(p []byte) (int, error) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.c.Channel.Stderr().Write(p)
}

// liveSession is a session channel the gateway is serving, kept so that
// shutdown and the reaper can speak to the person on it.
type liveSession struct {
	fingerprint string
	ch          gossh.Channel

	mu      sync.Mutex // orders notices with progress lines; before syncChannel.mu
	out     io.Writer  // the terminal with a PTY, stderr without
	newline string
}

func newLiveSession(fingerprint string, ch gossh.Channel, hasPTY bool) *liveSession {
	s := &liveSession{fingerprint: fingerprint, ch: ch, out: ch.Stderr(), newline: "\n"}
	if hasPTY {
		// The client's terminal is raw: it needs carriage returns.
		s.out, s.newline = ch, "\r\n"
	}
	return s
}

// notify writes one line where the person sees it.
func (s *liveSession) notify(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, "\r\ncc-gateway: %s%s", msg, s.newline)
}

// end tells the person why their session stops, then stops it with the
// status OpenSSH gives its own failures.
func (s *liveSession) end(msg string) {
	s.notify(msg)
	sendExit(s.ch, exitGatewayFailure)
	s.ch.Close()
}

// sessionsOf returns the live sessions of one person.
func (g *Gateway) sessionsOf(fingerprint string) []*liveSession {
	return ownedBy(g, g.sessions, fingerprint)
}

// owned is what the gateway keeps per person: a live session, a client
// connection.
type owned interface {
	comparable
	owner() string
}

func (s *liveSession) owner() string { return s.fingerprint }
func (c *clientConn) owner() string  { return c.fingerprint }

// ownedBy copies, under g.mu, the members of set that belong to
// fingerprint, so they can be spoken to without the lock.
func ownedBy[T owned](g *Gateway, set map[T]struct{}, fingerprint string) []T {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []T
	for x := range set {
		if x.owner() == fingerprint {
			out = append(out, x)
		}
	}
	return out
}

// Warn writes message on every live session of the person (the reaper's
// warnings), here and on the other gateways, and reports on how many.
func (g *Gateway) Warn(fingerprint, message string) int {
	g.tellElsewhere(fingerprint, message, false)
	return g.warnHere(fingerprint, message) + g.sessionsElsewhere(fingerprint)
}

// End ends every live session of the person, here and on the other
// gateways, saying why.
func (g *Gateway) End(fingerprint, message string) {
	g.tellElsewhere(fingerprint, message, true)
	g.endHere(fingerprint, message)
}

func (g *Gateway) warnHere(fingerprint, message string) int {
	sessions := g.sessionsOf(fingerprint)
	forEach(sessions, func(s *liveSession) { s.notify(message) })
	return len(sessions)
}

func (g *Gateway) endHere(fingerprint, message string) {
	forEach(g.sessionsOf(fingerprint), func(s *liveSession) { s.end(message) })
}

// forEach runs fn on every session at once and waits for them, at most
// noticeWait.
func forEach(sessions []*liveSession, fn func(*liveSession)) {
	done := make(chan struct{}, len(sessions))
	for _, s := range sessions {
		go func() {
			fn(s)
			done <- struct{}{}
		}()
	}
	timeout := time.NewTimer(noticeWait)
	defer timeout.Stop()
	for range sessions {
		select {
		case <-done:
		case <-timeout.C:
			return
		}
	}
}

var _ lease.Notifier = (*Gateway)(nil)

// remindExpiry tells a person who logs in shortly before their machine
// expires how to keep it.
func (g *Gateway) remindExpiry(s *liveSession, l lease.Lease) {
	left := l.Expires.Sub(g.opts.Clock.Now())
	if left > expiryReminder {
		return
	}
	s.notify(fmt.Sprintf("your machine %s expires in %s and will then be deleted with its files; run `%s extend 2h` to keep it.",
		l.ServerName, lease.FormatTimeLeft(left), g.opts.Invocation))
}
