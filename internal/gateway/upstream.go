package gateway

import (
	"context"
	"fmt"
	"time"

	"charm.land/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
)

type upstreamKey struct{}

// upstreamConn is the one connection to a machine that all channels of one
// client connection share (ControlMaster clients open many).
type upstreamConn struct {
	client  *gossh.Client
	address string
	dead    chan struct{}
}

// upstream returns the client connection's upstream, dialling it on first
// use or when the previous one died (the machine was stopped and resumed).
func (g *Gateway) upstream(ctx ssh.Context, l lease.Lease) (*gossh.Client, error) {
	ctx.Lock()
	defer ctx.Unlock()
	if u, ok := ctx.Value(upstreamKey{}).(*upstreamConn); ok && u.address == l.Address {
		select {
		case <-u.dead:
		default:
			return u.client, nil
		}
	}
	hostKey, _, _, _, err := gossh.ParseAuthorizedKey([]byte(l.HostKey))
	if err != nil {
		return nil, fmt.Errorf("pinned host key of %s is unreadable: %w", l.ServerName, err)
	}
	dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client, err := proxy.Dial(dialCtx, l.Address, g.opts.InstanceUser, g.opts.UpstreamKey, hostKey)
	if err != nil {
		return nil, err
	}
	u := &upstreamConn{client: client, address: l.Address, dead: make(chan struct{})}
	go func() {
		client.Wait()
		close(u.dead)
	}()
	go func() {
		// The client connection's context ends when it closes.
		select {
		case <-ctx.Done():
			client.Close()
		case <-u.dead:
		}
	}()
	ctx.SetValue(upstreamKey{}, u)
	return client, nil
}
