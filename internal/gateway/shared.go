package gateway

// Several gateways on one etcd store share what people see across them
// (docs/ha.md): each publishes its live session counts, status sums them,
// and the reaper's warnings and session ends, decided on one gateway,
// reach the person's sessions on every gateway.

// Shared is what the gateway shares with the other gateways on its store
// (internal/store/etcd's Presence implements it). Options.Shared nil: one
// gateway, which sees everything itself.
type Shared interface {
	// SessionsElsewhere counts the person's live sessions on the other
	// gateways.
	SessionsElsewhere(fingerprint string) (int, error)
	// Tell passes a warning, or with end the end of their sessions, to
	// the person's sessions on the other gateways, which Deliver it.
	Tell(fingerprint, message string, end bool) error
}

// Counts returns the number of live sessions of each person with any: what
// this gateway publishes for the others.
func (g *Gateway) Counts() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	counts := map[string]int{}
	for s := range g.sessions {
		counts[s.fingerprint]++
	}
	return counts
}

// Deliver passes a notice from another gateway to the person's sessions
// here, as if this gateway had decided it.
func (g *Gateway) Deliver(fingerprint, message string, end bool) {
	if end {
		g.endHere(fingerprint, message)
		return
	}
	g.warnHere(fingerprint, message)
}

// tellElsewhere passes a notice to the other gateways, if any. A failure
// is logged: the notice still reached this gateway's sessions, and the
// person's notification targets.
func (g *Gateway) tellElsewhere(fingerprint, message string, end bool) {
	if g.opts.Shared == nil {
		return
	}
	if err := g.opts.Shared.Tell(fingerprint, message, end); err != nil {
		g.log.Warn("tell the other gateways", "fingerprint", fingerprint, "err", err)
	}
}

// sessionsElsewhere counts the person's sessions on the other gateways: 0
// with none, or when the store cannot say (logged).
func (g *Gateway) sessionsElsewhere(fingerprint string) int {
	if g.opts.Shared == nil {
		return 0
	}
	n, err := g.opts.Shared.SessionsElsewhere(fingerprint)
	if err != nil {
		g.log.Warn("count sessions on the other gateways", "fingerprint", fingerprint, "err", err)
	}
	return n
}
