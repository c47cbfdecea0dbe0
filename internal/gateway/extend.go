package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

var extendCommand = command{
	name:    "extend",
	usage:   "extend DURATION",
	summary: "push your machine's expiry by DURATION (2h, 90m, 1h30m)",
	example: "extend 2h",
	run:     (*Gateway).extend,
}

func (g *Gateway) extend(ctx context.Context, c call) int {
	if len(c.args) != 2 {
		return refuse(c, "usage: extend DURATION, for example: extend 2h")
	}
	d, err := parseDuration(c.args[1])
	if err != nil {
		return refuse(c, "%v", err)
	}
	l, err := g.opts.Leases.Extend(ctx, c.fingerprint, d)
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not extend your machine's lease"))
	}
	now := g.opts.Clock.Now()
	fmt.Fprintf(c.stdout, "%s now expires at %s (in %s).\n",
		l.ServerName, l.Expires.UTC().Format(timeLayout), lease.FormatDuration(l.Expires.Sub(now)))
	return 0
}

// parseDuration reads a duration as a person types it for extend: 2h, 90m,
// 1h30m. Whether it is long or short enough is the lease policy's call.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write it like 2h, 90m or 1h30m", s)
	}
	return d, nil
}
