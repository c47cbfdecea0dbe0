package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cc-gateway/cc-gateway/internal/gateway"
)

// Gateway implements gateway.Observer: the front door's connections,
// sessions, authentications and limits.
type Gateway struct {
	connections prometheus.Gauge
	sessions    prometheus.Gauge
	auth        map[gateway.AuthResult]prometheus.Counter
	limited     map[gateway.Limit]prometheus.Counter
}

var _ gateway.Observer = (*Gateway)(nil)

// Gateway registers the front door's metrics and returns their observer.
// Every label value is known up front, so each series shows from zero and
// the maps are only read afterwards.
func (r *Registry) Gateway() *Gateway {
	g := &Gateway{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "connections_active",
			Help: "SSH connections the gateway serves now, authenticated or not (dropped ones never count).",
		}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "sessions_active",
			Help: "Sessions headed for a machine now: waiting for it, or proxied to it.",
		}),
		auth:    map[gateway.AuthResult]prometheus.Counter{},
		limited: map[gateway.Limit]prometheus.Counter{},
	}
	auth := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "auth_attempts_total",
		Help: "Keys decided on: accepted, refused (not allowed; one per key a client tries) or limited (allowed, but at --max-connections).",
	}, []string{"result"})
	for _, res := range gateway.EveryAuthResult {
		g.auth[res] = auth.WithLabelValues(string(res))
	}
	limited := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "limited_total",
		Help: "Connections dropped, logins, sessions and requests refused by a limit, by the option that sets it.",
	}, []string{"limit"})
	for _, l := range gateway.EveryLimit {
		g.limited[l] = limited.WithLabelValues(string(l))
	}
	r.register(g.connections, g.sessions, auth, limited)
	return g
}

// ConnectionOpened and the three below move the gauges of gateway.Observer.
func (g *Gateway) ConnectionOpened() { g.connections.Inc() }
func (g *Gateway) ConnectionClosed() { g.connections.Dec() }
func (g *Gateway) SessionStarted()   { g.sessions.Inc() }
func (g *Gateway) SessionEnded()     { g.sessions.Dec() }

// Authenticated counts one decision; a result not in
// gateway.EveryAuthResult is a programming error and is not counted.
func (g *Gateway) Authenticated(res gateway.AuthResult) {
	if c, ok := g.auth[res]; ok {
		c.Inc()
	}
}

// Limited counts one refusal; a limit not in gateway.EveryLimit is a
// programming error and is not counted.
func (g *Gateway) Limited(l gateway.Limit) {
	if c, ok := g.limited[l]; ok {
		c.Inc()
	}
}
