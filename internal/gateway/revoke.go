package gateway

import (
	"context"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// listCheckEvery is how often the allow lists' files are looked at for
// changes: a removed key loses its connections within this long even if
// nobody logs in and no SIGHUP comes.
const listCheckEvery = 2 * time.Second

// revokedMessage is the line a revoked key's sessions end with.
const revokedMessage = "your key was removed from the gateway's allow list; this connection is closed"

// listed reports whether key is still on an allow list (whatever its
// line's options say), or any key gets in. A connection whose key is no
// longer listed may open nothing new.
func (g *Gateway) listed(key gossh.PublicKey) bool {
	return g.opts.OpenAccess || g.opts.Users.Contains(key) || g.opts.Admins.Contains(key)
}

// watchLists re-reads changed allow lists every listCheckEvery until done
// closes; removals reach revokeRemoved through the lists' OnRemove.
func (g *Gateway) watchLists(done <-chan struct{}) {
	tick := time.NewTicker(listCheckEvery)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			g.opts.Users.Refresh()
			g.opts.Admins.Refresh()
		}
	}
}

// revokeRemoved revokes the keys a list no longer holds, unless the other
// list still does.
func (g *Gateway) revokeRemoved(keys []gossh.PublicKey) {
	for _, key := range keys {
		if !g.listed(key) {
			g.revoke(key)
		}
	}
}

// revoke ends everything a key that left the allow lists still holds: its
// sessions (each told why), its client connections, and the pooled
// connections to its machine; then the lease domain deals with the
// machine (Policy.RevokedAction), has it refuse the key, and records the
// revocation.
func (g *Gateway) revoke(key gossh.PublicKey) {
	fp := lease.Fingerprint(key)
	log := g.log.With("fingerprint", fp)
	sessions := g.sessionsOf(fp)
	forEach(sessions, func(s *liveSession) { s.end(revokedMessage) })
	conns := g.connsOf(fp)
	for _, c := range conns {
		c.conn.Close()
	}
	machineConns := 0
	if l, err := g.opts.Leases.Status(fp); err == nil && l.Address != "" {
		if t, err := g.target(l); err == nil {
			machineConns = g.pool.CloseTarget(t)
		}
	}
	log.Info("key revoked: it left the allow list", "sessions", len(sessions), "connections", len(conns), "machine_connections", machineConns)
	if err := g.opts.Leases.Revoke(context.Background(), fp); err != nil {
		log.Error("revoked key's machine", "err", err)
	}
}

// connsOf returns the client connections of one person.
func (g *Gateway) connsOf(fingerprint string) []*clientConn {
	return ownedBy(g, g.conns, fingerprint)
}
