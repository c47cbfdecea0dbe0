package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

var destroyCommand = command{
	name:    "destroy",
	usage:   "destroy --yes [--with-home]",
	summary: "delete your machine and all its files now; your home volume is kept unless --with-home",
	example: "destroy --yes",
	run:     (*Gateway).destroy,
}

func (g *Gateway) destroy(ctx context.Context, c call) int {
	args := c.args[1:]
	withHome := slices.Contains(args, "--with-home")
	valid := len(args) == 1 && args[0] == "--yes" ||
		len(args) == 2 && slices.Contains(args, "--yes") && withHome
	if !valid {
		p, err := g.opts.Leases.Person(c.fingerprint)
		if err != nil {
			return g.leaseError(c, forPerson(err, "could not read your home volume"))
		}
		switch {
		case withHome && p.Home == nil:
			return refuse(c, "you have no home volume; to delete your machine, run: %s destroy --yes", g.opts.Invocation)
		case withHome:
			return refuse(c, "this deletes your machine, and %s; to confirm, run: %s destroy --yes --with-home", lease.HomeLoss(*p.Home), g.opts.Invocation)
		case p.Home != nil:
			return refuse(c, "this deletes your machine and every file on it outside your home folder; to confirm, run: %s destroy --yes", g.opts.Invocation)
		}
		return refuse(c, "this deletes your machine and every file on it; to confirm, run: %s destroy --yes", g.opts.Invocation)
	}
	if withHome {
		return g.destroyWithHome(ctx, c)
	}
	l, err := g.opts.Leases.Destroy(ctx, c.fingerprint)
	if errors.Is(err, lease.ErrNotFound) {
		if p, perr := g.opts.Leases.Person(c.fingerprint); perr == nil && p.Home != nil {
			return refuse(c, "you have no machine; your home volume %s is kept until %s, and `%s destroy --yes --with-home` deletes it now",
				p.Home.Name, p.Home.KeepUntil.UTC().Format(timeLayout), g.opts.Invocation)
		}
	}
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not destroy your machine"))
	}
	fmt.Fprintf(c.stdout, "%s is destroyed. `%s` creates a new machine.\n", l.ServerName, g.opts.Invocation)
	if p, err := g.opts.Leases.Person(c.fingerprint); err == nil && p.Home != nil && !p.Home.KeepUntil.IsZero() {
		fmt.Fprintf(c.stdout, "Your home volume %s is kept until %s and comes back with your next machine. `%s destroy --yes --with-home` deletes it now.\n",
			p.Home.Name, p.Home.KeepUntil.UTC().Format(timeLayout), g.opts.Invocation)
	}
	return 0
}

// destroyWithHome deletes the person's machine and home, saying first
// what is lost.
func (g *Gateway) destroyWithHome(ctx context.Context, c call) int {
	p, err := g.opts.Leases.Person(c.fingerprint)
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not read your home volume"))
	}
	if p.Home != nil {
		what := lease.HomeLoss(*p.Home)
		if _, err := g.opts.Leases.Status(c.fingerprint); err == nil {
			what = "your machine and " + what
		}
		fmt.Fprintf(c.stdout, "Deleting %s.\n", what)
	}
	l, home, err := g.opts.Leases.DestroyWithHome(ctx, c.fingerprint)
	if errors.Is(err, lease.ErrNotFound) {
		return refuse(c, "you have no machine and no home volume")
	}
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not destroy your machine and home volume"))
	}
	if l.ServerName != "" {
		fmt.Fprintf(c.stdout, "%s is destroyed.\n", l.ServerName)
	}
	if home != nil {
		fmt.Fprintf(c.stdout, "Your home volume %s is deleted.\n", home.Name)
	}
	fmt.Fprintf(c.stdout, "`%s` creates a new machine.\n", g.opts.Invocation)
	return 0
}
