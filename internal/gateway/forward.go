package gateway

import (
	"fmt"

	"charm.land/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
)

// Port forwarding, both ways, goes through the person's machine: `ssh -L
// 8080:localhost:8080` reaches port 8080 on the machine (the machine
// resolves the name), and `ssh -R` listens on the machine.

// handleDirectTCPIP serves a "direct-tcpip" channel (ssh -L, ssh -W): the
// machine opens the connection, with the client's payload unchanged.
func (g *Gateway) handleDirectTCPIP(_ *ssh.Server, _ *gossh.ServerConn, nc gossh.NewChannel, ctx ssh.Context) {
	key, ok := ctx.Value(ssh.ContextKeyPublicKey).(ssh.PublicKey)
	if !ok {
		nc.Reject(gossh.Prohibited, "no public key on this connection")
		return
	}
	g.clientConn(ctx)
	if !g.listed(key) {
		nc.Reject(gossh.Prohibited, revokedMessage)
		return
	}
	if !permitOf(ctx).PortForwarding {
		nc.Reject(gossh.Prohibited, "port forwarding is not permitted for your key")
		return
	}
	var dest struct {
		Addr       string
		Port       uint32
		OriginAddr string
		OriginPort uint32
	}
	if err := gossh.Unmarshal(nc.ExtraData(), &dest); err != nil {
		nc.Reject(gossh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	fp := lease.Fingerprint(key)
	trace := traceOf(ctx)
	about := []any{"fingerprint", fp, "dest", fmt.Sprintf("%s:%d", dest.Addr, dest.Port)}
	log := trace.log.With(about...)
	// A forwarding channel has no terminal to show progress on.
	_, t, err := g.machine(ctx, key, func(st lease.Step) { log.Info("preparing machine for a forward", "step", st.Text) })
	if err != nil {
		nc.Reject(gossh.ConnectionFailed, "cc-gateway: "+trace.tell(err, about...))
		return
	}
	seat, err := g.pool.ChannelSeat(ctx, t)
	if err != nil {
		nc.Reject(gossh.ConnectionFailed, "cc-gateway: "+trace.tell(forPerson(err, "could not connect to your machine"), about...))
		return
	}
	defer seat.Close()
	uch, ureqs, err := seat.OpenChannel("direct-tcpip", nc.ExtraData())
	if err != nil {
		// The machine's own words, e.g. "Connection refused".
		nc.Reject(proxy.RejectReason(err, proxy.LostMessage))
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		uch.Close()
		return
	}
	proxy.Pipe(ch, reqs, uch, ureqs, "direct-tcpip", g.activity(fp), g.pool.Observer())
}

// forwardRequest is the payload of tcpip-forward and cancel-tcpip-forward.
type forwardRequest struct {
	Addr string
	Port uint32
}

// handleTCPIPForward serves a "tcpip-forward" global request (ssh -R): the
// machine listens, and connections it accepts come back to this client
// connection. The reply is the machine's, with the port it chose for port 0.
func (g *Gateway) handleTCPIPForward(ctx ssh.Context, _ *ssh.Server, req *gossh.Request) (bool, []byte) {
	key, ok := ctx.Value(ssh.ContextKeyPublicKey).(ssh.PublicKey)
	if !ok || !permitOf(ctx).PortForwarding {
		return false, nil
	}
	c := g.clientConn(ctx)
	if !g.listed(key) {
		return false, nil
	}
	var r forwardRequest
	if err := gossh.Unmarshal(req.Payload, &r); err != nil {
		return false, nil
	}
	fp := lease.Fingerprint(key)
	log := traceOf(ctx).log.With("fingerprint", fp, "listen", fmt.Sprintf("%s:%d", r.Addr, r.Port))
	_, t, err := g.machine(ctx, key, func(st lease.Step) { log.Info("preparing machine for a remote forward", "step", st.Text) })
	if err != nil {
		log.Warn("remote forward failed", "err", err)
		return false, nil
	}
	f, reply, err := g.pool.Forward(ctx, t, r.Addr, r.Port, c.conn, g.activity(fp))
	if err != nil {
		log.Info("remote forward refused", "err", err)
		return false, nil
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		f.Cancel()
		return false, nil
	}
	c.forwards[forwardAddr{r.Addr, f.Port()}] = f
	c.mu.Unlock()
	go g.watchForward(ctx, c, f)
	return true, reply
}

// watchForward closes a client connection that only forwards once the
// machine connection carrying its remote forward has ended: nothing else
// would tell the person (ssh -N -R) that their forward is gone. A connection
// with sessions is told by them.
func (g *Gateway) watchForward(ctx ssh.Context, c *clientConn, f *proxy.Forward) {
	select {
	case <-ctx.Done():
		return
	case <-f.Done():
	}
	c.mu.Lock()
	idle := !c.closed && c.limits.openSessions() == 0
	c.mu.Unlock()
	if idle {
		traceOf(ctx).log.Info("machine connection carrying a remote forward ended; closing the client connection", "port", f.Port())
		c.conn.Close()
	}
}

// handleCancelTCPIPForward serves "cancel-tcpip-forward".
func (g *Gateway) handleCancelTCPIPForward(ctx ssh.Context, _ *ssh.Server, req *gossh.Request) (bool, []byte) {
	var r forwardRequest
	if err := gossh.Unmarshal(req.Payload, &r); err != nil {
		return false, nil
	}
	c := g.clientConn(ctx)
	k := forwardAddr{r.Addr, r.Port}
	c.mu.Lock()
	f, ok := c.forwards[k]
	delete(c.forwards, k)
	c.mu.Unlock()
	if !ok {
		return false, nil
	}
	if err := f.Cancel(); err != nil {
		traceOf(ctx).log.Info("cancel remote forward", "err", err)
		return false, nil
	}
	return true, nil
}
