package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cc-gateway/cc-gateway/internal/proxy"
)

// channelTypes maps the SSH channel types the proxy carries to their
// label; any other type is "other", so the label stays a fixed set.
var channelTypes = map[string]string{
	"session":                "session",
	"direct-tcpip":           "direct-tcpip",
	"forwarded-tcpip":        "forwarded-tcpip",
	"auth-agent@openssh.com": "auth-agent",
}

const otherChannel = "other"

// Proxy implements proxy.Observer: the channels proxied to machines and
// their bytes.
type Proxy struct {
	// bytes is indexed by proxy.Direction; Carried runs on the copy path,
	// so it adds to a counter resolved up front (an atomic add, no lock,
	// no allocation).
	bytes    [2]prometheus.Counter
	channels map[string]prometheus.Gauge // by label; read only after Proxy()
}

var _ proxy.Observer = (*Proxy)(nil)

// Proxy registers the proxy's metrics and returns their observer.
func (r *Registry) Proxy() *Proxy {
	p := &Proxy{channels: map[string]prometheus.Gauge{}}
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "proxy_bytes_total",
		Help: "Bytes passed on between people and their machines: to_machine (what people send) or from_machine.",
	}, []string{"direction"})
	p.bytes[proxy.ToMachine] = bytes.WithLabelValues("to_machine")
	p.bytes[proxy.FromMachine] = bytes.WithLabelValues("from_machine")
	channels := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "proxy_channels_active",
		Help: "Channels proxied to machines now, by type: session, direct-tcpip (ssh -L), forwarded-tcpip (ssh -R), auth-agent (ssh -A) or other.",
	}, []string{"type"})
	for _, label := range channelTypes {
		p.channels[label] = channels.WithLabelValues(label)
	}
	p.channels[otherChannel] = channels.WithLabelValues(otherChannel)
	r.register(bytes, channels)
	return p
}

// ChannelOpened and ChannelClosed move the gauge of kind's label.
func (p *Proxy) ChannelOpened(kind string) { p.channel(kind).Inc() }
func (p *Proxy) ChannelClosed(kind string) { p.channel(kind).Dec() }

func (p *Proxy) channel(kind string) prometheus.Gauge {
	label, ok := channelTypes[kind]
	if !ok {
		label = otherChannel
	}
	return p.channels[label]
}

// Carried adds n bytes flowing in direction d.
func (p *Proxy) Carried(d proxy.Direction, n int) { p.bytes[d].Add(float64(n)) }
