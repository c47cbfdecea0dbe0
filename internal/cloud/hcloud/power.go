package hcloud

import (
	"context"
	"fmt"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// shutdown asks the server to shut down and waits up to ShutdownTimeout
// for it to be off; false without an error means it is still on.
//
// On Hetzner a shutdown is an ACPI request: its action succeeds once the
// request is delivered, and the server stays running until its system has
// shut down, which takes seconds, or forever if it ignores the request.
// The server is polled at growing intervals (PollInterval, then half as
// long again each time, up to ten times it), so a wait of 30 s costs about
// a dozen requests of the rate limit's budget, not sixty.
func (p *Provider) shutdown(ctx context.Context, srv *hc.Server) (bool, error) {
	a, _, err := p.client.Server.Shutdown(ctx, srv)
	if err != nil {
		return false, serverErr("shut down server "+srv.Name, err)
	}
	if err := p.wait(ctx, "shut down server "+srv.Name, a); err != nil {
		return false, err
	}
	deadline := time.NewTimer(p.cfg.ShutdownTimeout)
	defer deadline.Stop()
	delay := p.cfg.PollInterval
	for {
		cur, err := p.get(ctx, srv.ID)
		if err != nil {
			return false, err
		}
		if cur.Status == hc.ServerStatusOff {
			return true, nil
		}
		poll := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			poll.Stop()
			return false, fmt.Errorf("wait for server %s to shut down: %w", srv.Name, ctx.Err())
		case <-deadline.C:
			poll.Stop()
			return false, nil
		case <-poll.C:
		}
		delay = p.slower(delay)
	}
}

// slower is the next interval of a poll that started at PollInterval.
func (p *Provider) slower(d time.Duration) time.Duration {
	return min(d*3/2, 10*p.cfg.PollInterval)
}
