package gateway

import (
	"context"
	"fmt"
)

var stopCommand = command{
	name:    "stop",
	usage:   "stop",
	summary: "power your machine off now, keeping its disk; the next connection starts it",
	example: "stop",
	run:     (*Gateway).stop,
}

func (g *Gateway) stop(ctx context.Context, c call) int {
	if len(c.args) != 1 {
		return refuse(c, "stop takes no arguments")
	}
	l, err := g.opts.Leases.Stop(ctx, c.fingerprint)
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not stop your machine"))
	}
	fmt.Fprintf(c.stdout, "%s is stopped; its disk is kept. `%s` starts it again.\n", l.ServerName, g.opts.Invocation)
	return 0
}
