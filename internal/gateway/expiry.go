package gateway

import (
	"context"
	"fmt"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
)

// pushTimeout bounds telling a machine its new expiry.
const pushTimeout = 15 * time.Second

// pushExpiry writes the lease's expiry into the running machine's
// /etc/cloud-instance/expires, so programs there (Claude Code among them)
// know the time left. The machine booted with the expiry of its bootstrap
// document, so this follows every extend and every start. A failure is
// logged, never fatal: the lease itself is what counts.
func (g *Gateway) pushExpiry(ctx context.Context, l lease.Lease) {
	if l.State != lease.StateRunning {
		return
	}
	if err := g.runOnMachine(ctx, l, bootstrap.ExpiresCommand(l.Expires)); err != nil {
		g.log.Warn("could not tell the machine its new expiry", "server", l.ServerName, "err", err)
	}
}

// runOnMachine runs command on l's machine over a connection of its own.
func (g *Gateway) runOnMachine(ctx context.Context, l lease.Lease, command string) error {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	hostKey, _, _, _, err := gossh.ParseAuthorizedKey([]byte(l.HostKey))
	if err != nil {
		return fmt.Errorf("pinned host key of %s is unreadable: %w", l.ServerName, err)
	}
	up, err := proxy.Dial(ctx, l.Address, g.opts.InstanceUser, g.opts.UpstreamKey, hostKey)
	if err != nil {
		return err
	}
	defer up.Close()
	// Closing the connection when ctx ends unblocks the session below.
	stop := context.AfterFunc(ctx, func() { up.Close() })
	defer stop()
	s, err := up.NewSession()
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	defer s.Close()
	if out, err := s.CombinedOutput(command); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}
