package gateway

import (
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"charm.land/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// StartupLimits bound the connections that have not finished
// authenticating ("startups"), as sshd's MaxStartups start:rate:full and
// PerSourceMaxStartups do. From Start startups on, a new connection is
// dropped with a chance of Rate percent, rising linearly to certainty at
// Full; a source (an IPv4 address, an IPv6 /64) holding PerSource startups
// has its next connection dropped.
type StartupLimits struct {
	Start, Rate, Full int
	PerSource         int
}

// DefaultStartupLimits are sshd's MaxStartups 10:30:100, and a per-source
// limit below the soft limit, so one address alone never makes others see
// early drops. (The gateway's options, internal/config, default to the
// same.)
var DefaultStartupLimits = StartupLimits{Start: 10, Rate: 30, Full: 100, PerSource: 8}

// dropPercent is the chance, in percent, that a new connection is dropped
// while total connections are unauthenticated.
func (l StartupLimits) dropPercent(total int) int {
	switch {
	case total < l.Start:
		return 0
	case total >= l.Full:
		return 100
	}
	return l.Rate + (100-l.Rate)*(total-l.Start)/(l.Full-l.Start)
}

// startups counts the connections that have not authenticated yet.
type startups struct {
	limits  StartupLimits
	percent func() int // a draw from 0 to 99

	mu       sync.Mutex // a leaf, guarding the counts
	total    int
	bySource map[string]int
}

func newStartups(limits StartupLimits, percent func() int) *startups {
	if percent == nil {
		percent = func() int { return rand.IntN(100) }
	}
	return &startups{limits: limits, percent: percent, bySource: map[string]int{}}
}

// admit counts a new connection from source, or says which limit drops it
// and why. release, safe to call more than once, ends the count: when the
// connection authenticates or closes.
func (s *startups) admit(source string) (release func(), limit Limit, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch chance := s.limits.dropPercent(s.total); {
	case s.bySource[source] >= s.limits.PerSource:
		return nil, LimitStartupsPerSource, "too many unauthenticated connections from this source"
	case chance == 100:
		return nil, LimitStartups, "too many unauthenticated connections"
	case chance > 0 && s.percent() < chance:
		return nil, LimitStartups, "many unauthenticated connections: random early drop"
	}
	s.total++
	s.bySource[source]++
	var once sync.Once
	return func() { once.Do(func() { s.release(source) }) }, "", ""
}

func (s *startups) release(source string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.bySource[source]--; s.bySource[source] == 0 {
		delete(s.bySource, source)
	}
}

// count is how many connections are unauthenticated.
func (s *startups) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// startupConn is an admitted connection that counts as a startup until
// it authenticates (see the gateway's AuthLogCallback) or closes.
type startupConn struct {
	net.Conn
	release func()
	trace   *connTrace
}

// startupKey holds a connection's release in its ssh.Context.
type startupKey struct{}

// authenticated ends the startup of the connection of ctx.
func authenticated(ctx ssh.Context) {
	if release, ok := ctx.Value(startupKey{}).(func()); ok {
		release()
	}
}

// dropLogEvery is how often at most a dropped connection is logged; the
// line counts the drops since the last one. Each is also counted, per
// source and minute, with the refusals.
const dropLogEvery = 10 * time.Second

// dropLog rate-limits the log of dropped connections.
type dropLog struct {
	mu      sync.Mutex // a leaf
	last    time.Time
	dropped int // since the last line
}

// drop counts a dropped connection and says whether to log it now, with
// how many were dropped since the last line, this one included.
func (d *dropLog) drop(now time.Time) (logNow bool, dropped int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropped++
	if !d.last.IsZero() && now.Sub(d.last) < dropLogEvery {
		return false, 0
	}
	d.last, dropped, d.dropped = now, d.dropped, 0
	return true, dropped
}

// accept admits conn as a startup and serves it, or drops it at once
// without a word, as sshd does, counting, logging and recording the drop.
func (g *Gateway) accept(conn net.Conn) {
	trace := g.newConnTrace()
	source := sourceOf(conn.RemoteAddr())
	release, limit, why := g.startups.admit(source)
	if release == nil {
		g.opts.Observer.Limited(limit)
		// Counted and logged before the close, so whoever sees the close
		// finds the drop on record.
		g.opts.Leases.Refused(lease.RefusedLimited, source, "")
		if logNow, dropped := g.drops.drop(g.opts.Clock.Now()); logNow {
			trace.log.Warn("dropped a connection before its handshake", "remote", source, "reason", why, "dropped", dropped)
		}
		conn.Close()
		return
	}
	// A remote address names one open TCP connection to the listener.
	remote := conn.RemoteAddr().String()
	g.serving.Store(remote, trace)
	g.opts.Observer.ConnectionOpened()
	go func() {
		defer g.serving.Delete(remote)
		defer g.opts.Observer.ConnectionClosed()
		defer release()
		g.server.HandleConn(&startupConn{Conn: conn, release: release, trace: trace})
	}()
}
