package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"charm.land/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Limits bound what one allowed person can make the gateway hold or do, so
// that nobody can exhaust its memory and the others stay unaffected.
// docs/security.md sets each beside sshd's.
type Limits struct {
	// SessionsPerConn is how many session channels one client connection
	// may have open at once: sshd's MaxSessions.
	SessionsPerConn int
	// ConnsPerPerson is how many authenticated connections one key may
	// hold at once.
	ConnsPerPerson int
	// EarlyRequests and EarlyBytes bound what a session may send before its
	// program starts (env, pty-req, window-change, agent forwarding), which
	// the gateway keeps to replay on the machine: how many requests, and
	// their payloads' bytes in total.
	EarlyRequests, EarlyBytes int
	// GlobalRate (per second, refilled) and GlobalBurst bound one
	// connection's global requests (keepalives, tcpip-forward). Over the
	// rate a request is refused; a connection refused GlobalBurst requests
	// in a row is closed.
	GlobalRate, GlobalBurst int
}

// DefaultLimits are the limits of a Gateway whose Options leave them zero.
// SessionsPerConn is sshd's MaxSessions. Twenty connections at once leave
// room for a person's terminals, transfers and editor, and for parallel jobs
// without a ControlMaster (xargs -P, a test harness), while bounding what
// one key can make the gateway buffer: each channel may also hold an SSH
// window (2 MiB in x/crypto) of data not yet passed on. A session of
// OpenSSH sends a pty-req and a few env requests (sshd itself ignores env
// requests past 128). Keepalives every 15 s and a ControlMaster's forwards
// come nowhere near 10 requests a second, and a config with many -R
// forwards fits in the burst.
var DefaultLimits = Limits{
	SessionsPerConn: 10,
	ConnsPerPerson:  20,
	EarlyRequests:   64,
	EarlyBytes:      64 << 10,
	GlobalRate:      10,
	GlobalBurst:     100,
}

// withDefaults fills l's zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	or := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	or(&l.SessionsPerConn, DefaultLimits.SessionsPerConn)
	or(&l.ConnsPerPerson, DefaultLimits.ConnsPerPerson)
	or(&l.EarlyRequests, DefaultLimits.EarlyRequests)
	or(&l.EarlyBytes, DefaultLimits.EarlyBytes)
	or(&l.GlobalRate, DefaultLimits.GlobalRate)
	or(&l.GlobalBurst, DefaultLimits.GlobalBurst)
	return l
}

// The limits as audit events and log lines name them.
const (
	limitSessions    = "sessions per connection"
	limitConnections = "connections per person"
	limitEarly       = "requests before a program starts"
	limitGlobal      = "global request rate"
)

// limited logs that fingerprint hit a limit and records it as an audit
// event of kind "limited". Callers call it at most once per connection and
// limit, so a person who keeps hitting one cannot flood the trail.
func (g *Gateway) limited(fingerprint, limit string, ctx ssh.Context, detail string) {
	trace := traceOf(ctx)
	trace.log.Warn("limit hit", "fingerprint", fingerprint, "limit", limit, "remote", ctx.RemoteAddr(), "detail", detail)
	g.opts.Leases.Record(lease.Event{Kind: "limited", Fingerprint: fingerprint, Conn: trace.id,
		Detail: fmt.Sprintf("%s: %s, from %s", limit, detail, ctx.RemoteAddr())})
}

// people counts each person's authenticated connections.
type people struct {
	mu sync.Mutex // a leaf: held only to read or change the map
	// by fingerprint; an entry goes when its last connection ends
	conns map[string]*personConns
}

type personConns struct {
	n int // connections open
	// told is set once a refusal was logged and recorded, until the person
	// is back under the limit: one audit event per episode, however many
	// connections they keep trying.
	told bool
}

// admit takes one of fingerprint's most connection slots. When all are
// taken it reports false, and first tells whether this is the first
// refusal since the person was last under the limit.
func (p *people) admit(fingerprint string, most int) (ok, first bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conns[fingerprint]
	if c == nil {
		c = &personConns{}
		p.conns[fingerprint] = c
	}
	if c.n >= most {
		first, c.told = !c.told, true
		return false, first
	}
	c.n++
	return true, false
}

// leave gives back one of fingerprint's slots.
func (p *people) leave(fingerprint string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conns[fingerprint]
	if c == nil {
		return
	}
	c.n--
	c.told = false
	if c.n <= 0 {
		delete(p.conns, fingerprint)
	}
}

// errTooManyConnections is the log's side of refusing a connection at the
// limit; the person reads the banner.
var errTooManyConnections = errors.New("too many connections for this key")

// admitConnection is the gateway's VerifiedPublicKeyCallback for the
// connection of ctx: it runs once the client has proved it holds the key,
// so a stranger who knows only the public half learns nothing and writes
// nothing. It counts the connection against its person's limit until the
// connection ends, and records it in the audit log. OpenSSH shows the
// banner of a refusal above "Permission denied".
func (g *Gateway) admitConnection(ctx ssh.Context) func(gossh.ConnMetadata, gossh.PublicKey, *gossh.Permissions, string) (*gossh.Permissions, error) {
	return func(_ gossh.ConnMetadata, key gossh.PublicKey, perms *gossh.Permissions, _ string) (*gossh.Permissions, error) {
		fp := lease.Fingerprint(key)
		most := g.opts.Limits.ConnsPerPerson
		ok, first := g.people.admit(fp, most)
		if !ok {
			g.opts.Observer.Authenticated(AuthLimited)
			g.opts.Observer.Limited(LimitConnections)
			if first {
				g.limited(fp, limitConnections, ctx, fmt.Sprintf("%d open", most))
			}
			return nil, &gossh.BannerError{Err: errTooManyConnections, Message: fmt.Sprintf(
				"cc-gateway: this key already has %d connections open, the most allowed at once; close one (or share one with ControlMaster) and try again\r\n", most)}
		}
		g.opts.Observer.Authenticated(AuthAccepted)
		context.AfterFunc(ctx, func() { g.people.leave(fp) })
		g.opts.Leases.Record(lease.Event{Kind: "connect", Fingerprint: fp, Conn: traceOf(ctx).id, Detail: fmt.Sprintf("from %s", ctx.RemoteAddr())})
		return perms, nil
	}
}

// tokenBucket allows burst events at once, then rate events a second.
type tokenBucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newTokenBucket(rate, burst int, now time.Time) *tokenBucket {
	return &tokenBucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: now}
}

// take spends a token if one is left at now.
func (b *tokenBucket) take(now time.Time) bool {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(b.burst, b.tokens+elapsed.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// connLimits is what one client connection has used of its limits.
type connLimits struct {
	mu       sync.Mutex // a leaf: held only to read or change these fields
	sessions int        // session channels open
	global   *tokenBucket
	refused  int             // global requests refused in a row
	told     map[string]bool // limits already logged and recorded
}

// first reports whether limit is hit for the first time on this connection.
func (l *connLimits) first(limit string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.told[limit] {
		return false
	}
	l.told[limit] = true
	return true
}

// openSession takes a session slot; false when most are open.
func (l *connLimits) openSession(most int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sessions >= most {
		return false
	}
	l.sessions++
	return true
}

func (l *connLimits) closeSession() {
	l.mu.Lock()
	l.sessions--
	l.mu.Unlock()
}

func (l *connLimits) openSessions() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sessions
}

// globalRequest spends a token of the connection's global request rate.
// It reports whether the request may be served, and whether the
// connection has been refused burst requests in a row and must close.
func (l *connLimits) globalRequest(now time.Time, rate, burst int) (ok, flooding bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.global == nil {
		l.global = newTokenBucket(rate, burst, now)
	}
	if l.global.take(now) {
		l.refused = 0
		return true, false
	}
	l.refused++
	return false, l.refused >= burst
}

// limitGlobalRequests wraps a global request handler in the connection's
// rate: over it the request is refused, and a connection that keeps
// flooding is closed.
func (g *Gateway) limitGlobalRequests(next ssh.RequestHandler) ssh.RequestHandler {
	return func(ctx ssh.Context, srv *ssh.Server, req *gossh.Request) (bool, []byte) {
		c := g.clientConn(ctx)
		lim := g.opts.Limits
		ok, flooding := c.limits.globalRequest(g.opts.Clock.Now(), lim.GlobalRate, lim.GlobalBurst)
		if ok {
			return next(ctx, srv, req)
		}
		g.opts.Observer.Limited(LimitGlobalRequests)
		// The request's type is the client's text: neither logged nor kept.
		fp := fingerprintOf(ctx)
		if c.limits.first(limitGlobal) {
			g.limited(fp, limitGlobal, ctx, fmt.Sprintf("more than %d a second (bursts of %d)", lim.GlobalRate, lim.GlobalBurst))
		}
		if flooding {
			traceOf(ctx).log.Warn("closing a connection that keeps flooding global requests", "fingerprint", fp, "remote", ctx.RemoteAddr(), "refused_in_a_row", lim.GlobalBurst)
			c.conn.Close()
		}
		return false, nil
	}
}

// refuseRequest answers a global request the gateway does not serve, such
// as keepalive@openssh.com, which OpenSSH's sshd refuses too.
func refuseRequest(ssh.Context, *ssh.Server, *gossh.Request) (bool, []byte) { return false, nil }

// fingerprintOf is the fingerprint of the key ctx's connection logged in
// with; every connection that gets to send requests has one.
func fingerprintOf(ctx ssh.Context) string {
	if key, ok := ctx.Value(ssh.ContextKeyPublicKey).(ssh.PublicKey); ok {
		return lease.Fingerprint(key)
	}
	return ""
}
