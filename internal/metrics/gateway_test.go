package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cc-gateway/cc-gateway/internal/gateway"
)

func TestGatewayObserver(t *testing.T) {
	r := New()
	g := r.Gateway()
	g.ConnectionOpened()
	g.ConnectionOpened()
	g.ConnectionClosed()
	g.SessionStarted()
	g.Authenticated(gateway.AuthAccepted)
	g.Authenticated(gateway.AuthRefused)
	g.Authenticated(gateway.AuthRefused)
	g.Limited(gateway.LimitStartupsPerSource)
	g.Limited(gateway.LimitGlobalRequests)
	g.Limited(gateway.LimitGlobalRequests)

	want := `
# HELP cc_gateway_auth_attempts_total Keys decided on: accepted, refused (not allowed; one per key a client tries) or limited (allowed, but at --max-connections).
# TYPE cc_gateway_auth_attempts_total counter
cc_gateway_auth_attempts_total{result="accepted"} 1
cc_gateway_auth_attempts_total{result="limited"} 0
cc_gateway_auth_attempts_total{result="refused"} 2
# HELP cc_gateway_connections_active SSH connections the gateway serves now, authenticated or not (dropped ones never count).
# TYPE cc_gateway_connections_active gauge
cc_gateway_connections_active 1
# HELP cc_gateway_limited_total Connections dropped, logins, sessions and requests refused by a limit, by the option that sets it.
# TYPE cc_gateway_limited_total counter
cc_gateway_limited_total{limit="global-request-rate"} 2
cc_gateway_limited_total{limit="max-connections"} 0
cc_gateway_limited_total{limit="max-early-bytes"} 0
cc_gateway_limited_total{limit="max-early-requests"} 0
cc_gateway_limited_total{limit="max-sessions"} 0
cc_gateway_limited_total{limit="max-startups"} 0
cc_gateway_limited_total{limit="max-startups-per-source"} 1
# HELP cc_gateway_sessions_active Sessions headed for a machine now: waiting for it, or proxied to it.
# TYPE cc_gateway_sessions_active gauge
cc_gateway_sessions_active 1
`
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(want),
		"cc_gateway_auth_attempts_total", "cc_gateway_connections_active", "cc_gateway_limited_total", "cc_gateway_sessions_active"); err != nil {
		t.Error(err)
	}
}
