// Package metrics is the gateway's Prometheus exposition: one registry
// holding every cc_gateway_ metric, the Go runtime's and the process's,
// and the HTTP listener that serves them with the health endpoints
// (server.go).
//
// The domain packages do not import Prometheus. Each declares the small
// observer interface it needs (lease.Observer, proxy.Observer, …), and
// this package implements it, one file per domain, so every metric name
// lives here and nowhere else.
//
// Conventions (https://prometheus.io/docs/practices/naming/): every name
// starts with cc_gateway_, carries its unit (_seconds, _bytes, _euros)
// and counters end in _total. Labels take a few fixed values only: never
// a fingerprint, lease id, server name or address.
package metrics

import (
	"net/http"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace starts every metric name the gateway exports.
const Namespace = "cc_gateway"

// Registry holds the gateway's metrics.
type Registry struct {
	reg *prometheus.Registry
}

// New makes a registry with the Go runtime's and the process's collectors
// and cc_gateway_build_info.
func New() *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace,
		Name:      "build_info",
		Help:      "Always 1; its labels say which gateway build runs.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(Version(), runtime.Version()).Set(1)
	reg.MustRegister(build)
	return &Registry{reg: reg}
}

// Version is the gateway's module version as the Go toolchain recorded it
// ("(devel)" for a build from a checkout), with the VCS revision when
// known.
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}

// Handler serves the registry in the Prometheus exposition format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// register adds collectors that this package defines; a name registered
// twice is a programming error.
func (r *Registry) register(cs ...prometheus.Collector) {
	r.reg.MustRegister(cs...)
}

// ReadyCheck is one condition of readiness (the store is usable, the SSH
// listener accepts, the cloud answered recently): nil when it holds, else
// an error whose text is the one line /readyz answers, naming what is
// wrong.
type ReadyCheck func() error
