package gateway

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

var adminCommand = command{
	name:    "admin",
	usage:   "admin SUBCOMMAND",
	summary: "for admins: list, events [N], refusals [N], stop|hibernate|destroy LEASE, extend LEASE DURATION",
	run:     (*Gateway).admin,
	admin:   true,
}

const adminUsage = "usage: admin list | admin events [N] | admin refusals [N] | admin stop|hibernate|destroy LEASE | admin extend LEASE DURATION (LEASE is a lease id or machine name)"

func (g *Gateway) admin(ctx context.Context, c call) int {
	if !g.isAdmin(c.key, c.remote) {
		return refuse(c, "admin commands are for the keys on the gateway's admin list, and yours is not on it")
	}
	if len(c.args) < 2 {
		return refuse(c, adminUsage)
	}
	sub, rest := c.args[1], c.args[2:]
	switch {
	case sub == "list" && len(rest) == 0:
		return g.adminList(c)
	case (sub == "events" || sub == "refusals") && len(rest) <= 1:
		n := 50
		if len(rest) == 1 {
			var err error
			if n, err = strconv.Atoi(rest[0]); err != nil || n < 1 {
				return refuse(c, "%q is not a positive number of %s", rest[0], sub)
			}
		}
		if sub == "refusals" {
			return g.adminRefusals(c, n)
		}
		return g.adminEvents(c, n)
	case (sub == "stop" || sub == "hibernate" || sub == "destroy") && len(rest) == 1,
		sub == "extend" && len(rest) == 2:
		return g.adminAct(ctx, c, sub, rest)
	}
	return refuse(c, adminUsage)
}

func (g *Gateway) adminList(c call) int {
	leases, err := g.opts.Leases.List()
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not list the leases"))
	}
	now := g.opts.Clock.Now()
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "LEASE\tMACHINE\tSTATE\tEXPIRES IN\tIDLE\tSESSIONS\tCOST\tOWNER")
	total, currency := 0.0, ""
	for _, l := range leases {
		cost, cur := g.opts.Leases.Cost(l)
		total, currency = total+cost, cur
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", l.ID, l.ServerName, l.State,
			lease.FormatDuration(l.Expires.Sub(now)), lease.FormatDuration(now.Sub(l.LastActivity)),
			g.Sessions(l.Fingerprint), money(cost, cur), l.Fingerprint)
	}
	w.Flush()
	fmt.Fprintf(c.stdout, "%d leases, %s so far\n", len(leases), money(total, currency))
	if code := g.adminPool(c, now); code != 0 {
		return code
	}
	return g.adminHomes(c)
}

// adminHomes lists people's home volumes, if any, and their cost apart
// from the leases': a home outlives them.
func (g *Gateway) adminHomes(c call) int {
	people, err := g.opts.Leases.Homes()
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not list the home volumes"))
	}
	if len(people) == 0 {
		return 0
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nHOME\tSTATE\tSIZE\tLOCATION\tKEPT UNTIL\tCOST\tOWNER")
	total, currency := 0.0, ""
	for _, p := range people {
		h := *p.Home
		cost, cur := g.opts.Leases.HomeCost(h)
		total, currency = total+cost, cur
		kept := "-"
		if !h.KeepUntil.IsZero() {
			kept = h.KeepUntil.UTC().Format(timeLayout)
		}
		fmt.Fprintf(w, "%s\t%s\t%d GB\t%s\t%s\t%s\t%s\n", h.Name, h.State, h.SizeGB, h.Location, kept, money(cost, cur), p.Fingerprint)
	}
	w.Flush()
	fmt.Fprintf(c.stdout, "%d home volumes, %s so far, apart from the leases\n", len(people), money(total, currency))
	return 0
}

// adminPool lists the warm pool's machines, if any, and their cost apart
// from the leases': nobody owns them.
func (g *Gateway) adminPool(c call, now time.Time) int {
	pool, err := g.opts.Leases.Pool()
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not list the warm pool"))
	}
	if len(pool) == 0 {
		return 0
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nPOOL\tMACHINE\tSTATE\tAGE\tCOST")
	total, currency := 0.0, ""
	for _, p := range pool {
		cost, cur := g.opts.Leases.PoolCost(p)
		total, currency = total+cost, cur
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.ID, p.ServerName, p.State, lease.FormatDuration(now.Sub(p.Created)), money(cost, cur))
	}
	w.Flush()
	fmt.Fprintf(c.stdout, "%d pool machines, %s so far, apart from the leases\n", len(pool), money(total, currency))
	return 0
}

func (g *Gateway) adminEvents(c call, n int) int {
	events, err := g.opts.Leases.Events(n)
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not read the events"))
	}
	for _, e := range events {
		fmt.Fprintf(c.stdout, "%s  %-12s  %-10s  %s  %-8s  %s\n", e.Time.UTC().Format(time.RFC3339), e.Kind,
			orDash(e.LeaseID), orDash(e.Fingerprint), orDash(e.Conn), e.Detail)
	}
	return 0
}

// adminRefusals shows the newest n counts of refused connections: keys on
// no list, and connections dropped by the startup limits.
func (g *Gateway) adminRefusals(c call, n int) int {
	refusals, err := g.opts.Leases.Refusals(n)
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not read the refusals"))
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "MINUTE\tSOURCE\tKIND\tCOUNT\tFIRST\tLAST\tKEYS")
	for _, r := range refusals {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Minute.UTC().Format(time.RFC3339), r.Source, r.Kind, r.Count,
			r.First.UTC().Format(time.TimeOnly), r.Last.UTC().Format(time.TimeOnly), orDash(strings.Join(r.Fingerprints, " ")))
	}
	w.Flush()
	return 0
}

// adminAct runs a lease command on someone else's lease.
func (g *Gateway) adminAct(ctx context.Context, c call, sub string, rest []string) int {
	l, ok := g.findLease(rest[0])
	if !ok {
		return refuse(c, "no lease has the id or machine name %q; `admin list` shows them", rest[0])
	}
	var err error
	switch sub {
	case "stop":
		l, err = g.opts.Leases.Stop(ctx, l.Fingerprint)
	case "hibernate":
		l, err = g.opts.Leases.Hibernate(ctx, l.Fingerprint)
	case "destroy":
		l, err = g.opts.Leases.Destroy(ctx, l.Fingerprint)
	case "extend":
		d, perr := parseDuration(rest[1])
		if perr != nil {
			return refuse(c, "%v", perr)
		}
		l, err = g.opts.Leases.Extend(ctx, l.Fingerprint, d)
	}
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not %s %s", sub, l.ServerName))
	}
	g.opts.Leases.Record(lease.Event{Kind: "admin", Fingerprint: l.Fingerprint, LeaseID: l.ID, Conn: c.trace.id,
		Detail: fmt.Sprintf("%s by %s", strings.Join(c.args[1:], " "), c.fingerprint)})
	fmt.Fprintf(c.stdout, "%s: %s done; state %s, expires %s.\n", l.ServerName, sub, l.State, l.Expires.UTC().Format(timeLayout))
	return 0
}

func (g *Gateway) findLease(idOrName string) (lease.Lease, bool) {
	leases, err := g.opts.Leases.List()
	if err != nil {
		return lease.Lease{}, false
	}
	for _, l := range leases {
		if l.ID == idOrName || l.ServerName == idOrName {
			return l, true
		}
	}
	return lease.Lease{}, false
}

// money prints an amount with its currency, or "unknown" without prices.
func money(amount float64, currency string) string {
	if currency == "" {
		return "unknown"
	}
	return fmt.Sprintf("%.4f %s", amount, currency)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
