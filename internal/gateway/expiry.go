package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/lease"
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

// runOnMachine runs command on l's machine through the pool, so a session
// that follows (after a start) finds the machine connection ready.
func (g *Gateway) runOnMachine(ctx context.Context, l lease.Lease, command string) error {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	t, err := g.target(l)
	if err != nil {
		return err
	}
	seat, err := g.pool.Session(ctx, t)
	if err != nil {
		return err
	}
	defer seat.Close()
	ch, reqs, err := seat.OpenChannel("session", nil)
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	defer ch.Close()
	// Closing the channel when ctx ends unblocks the reads below.
	stop := context.AfterFunc(ctx, func() { ch.Close() })
	defer stop()

	ok, err := ch.SendRequest("exec", true, gossh.Marshal(struct{ Command string }{command}))
	if err != nil || !ok {
		return fmt.Errorf("the machine refused to run the command (%v)", err)
	}
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&out, io.MultiReader(ch, ch.Stderr()))
		close(copied)
	}()
	status := -1
	for req := range reqs {
		if req.Type == "exit-status" && len(req.Payload) >= 4 {
			status = int(binary.BigEndian.Uint32(req.Payload))
		}
		if req.WantReply {
			req.Reply(false, nil)
		}
	}
	<-copied
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("no answer within %s", pushTimeout)
	case status != 0:
		return fmt.Errorf("exit status %d: %s", status, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
