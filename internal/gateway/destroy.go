package gateway

import (
	"context"
	"fmt"
)

var destroyCommand = command{
	name:    "destroy",
	usage:   "destroy --yes",
	summary: "delete your machine and all its files now",
	example: "destroy --yes",
	run:     (*Gateway).destroy,
}

func (g *Gateway) destroy(ctx context.Context, c call) int {
	if len(c.args) != 2 || c.args[1] != "--yes" {
		return refuse(c, "this deletes your machine and every file on it; to confirm, run: %s destroy --yes", g.opts.Invocation)
	}
	l, err := g.opts.Leases.Destroy(ctx, c.fingerprint)
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not destroy your machine"))
	}
	fmt.Fprintf(c.stdout, "%s is destroyed. `%s` creates a new machine.\n", l.ServerName, g.opts.Invocation)
	return 0
}
