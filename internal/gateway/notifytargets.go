package gateway

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Notifications is what the notify command needs of the delivery of
// notifications (internal/notify): whether a URL may be a target at all,
// and trying a person's targets.
type Notifications interface {
	Check(ctx context.Context, rawURL string) error
	Test(ctx context.Context, fingerprint string, report func(target string, status int, err error)) error
}

var notifyCommand = command{
	name:    "notify",
	usage:   "notify add URL | list | remove URL | test",
	summary: "be told at URL (ntfy, a chat webhook) when your machine will stop or your agent needs you; URL#json sends JSON",
	example: "notify add https://ntfy.sh/your-secret-topic",
	run:     (*Gateway).notify,
}

const notifyUsage = "usage: notify add URL | notify list | notify remove URL | notify test"

func (g *Gateway) notify(ctx context.Context, c call) int {
	if g.opts.Notify == nil {
		return refuse(c, "this gateway does not send notifications")
	}
	switch {
	case len(c.args) == 3 && c.args[1] == "add":
		return g.notifyAdd(ctx, c, c.args[2])
	case len(c.args) == 3 && c.args[1] == "remove":
		p, err := g.opts.Leases.RemoveNotifyTarget(ctx, c.fingerprint, c.args[2])
		return g.notifyChange(c, p, err)
	case len(c.args) == 2 && c.args[1] == "list":
		return g.notifyList(c)
	case len(c.args) == 2 && c.args[1] == "test":
		return g.notifyTest(ctx, c)
	}
	return refuse(c, notifyUsage)
}

func (g *Gateway) notifyAdd(ctx context.Context, c call, rawURL string) int {
	if err := g.opts.Notify.Check(ctx, rawURL); err != nil {
		return refuse(c, "%s cannot be a notification target: %v", lease.RedactURL(rawURL), err)
	}
	p, err := g.opts.Leases.AddNotifyTarget(ctx, c.fingerprint, rawURL)
	return g.notifyChange(c, p, err)
}

// notifyChange reports a change to the person's targets: the list as it
// now is, or why the change was refused.
func (g *Gateway) notifyChange(c call, p lease.Person, err error) int {
	var refused *lease.TargetError
	switch {
	case errors.As(err, &refused):
		return refuse(c, "%s", refused.Reason)
	case err != nil:
		return g.leaseError(c, forPerson(err, "could not change your notification targets"))
	}
	fmt.Fprintf(c.stdout, "You have %d notification targets (at most %d).\n", len(p.Notify), lease.MaxNotifyTargets)
	return 0
}

func (g *Gateway) notifyList(c call) int {
	p, err := g.opts.Leases.Person(c.fingerprint)
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not read your notification targets"))
	}
	if len(p.Notify) == 0 {
		fmt.Fprintf(c.stdout, "You have no notification targets; `%s notify add https://ntfy.sh/your-secret-topic` adds one.\n", g.opts.Invocation)
		return 0
	}
	// The whole URL is shown: it is the person's own, and they need it to
	// remove it.
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ADDED\tURL")
	for _, t := range p.Notify {
		fmt.Fprintf(w, "%s\t%s\n", t.Added.UTC().Format(timeLayout), t.URL)
	}
	w.Flush()
	return 0
}

func (g *Gateway) notifyTest(ctx context.Context, c call) int {
	code, tried := 0, 0
	err := g.opts.Notify.Test(ctx, c.fingerprint, func(target string, status int, err error) {
		tried++
		if err != nil {
			code = 1
			fmt.Fprintf(c.stdout, "%s: not delivered: %v\n", target, err)
			return
		}
		fmt.Fprintf(c.stdout, "%s: delivered (status %d)\n", target, status)
	})
	if err != nil {
		return g.leaseError(c, forPerson(err, "could not read your notification targets"))
	}
	if tried == 0 {
		return refuse(c, "you have no notification targets; `%s notify add URL` adds one", g.opts.Invocation)
	}
	return code
}
