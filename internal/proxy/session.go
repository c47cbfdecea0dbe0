package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// ClientSession is a session channel the front door accepted from a client,
// with the requests it already answered (Early: pty-req, env, window-change,
// in order) and the request that starts the program (Start: shell, exec or
// subsystem; not yet replied to).
type ClientSession struct {
	Channel  gossh.Channel
	Requests <-chan *gossh.Request // the rest of the downstream requests
	Early    []*gossh.Request
	Start    *gossh.Request
}

// ErrUpstreamLost is returned by Bridge when the connection to the machine
// went away before the program on it exited.
var ErrUpstreamLost = errors.New("connection to machine lost")

// LostMessage is what the person reads on stderr when the connection to their
// machine breaks mid-session.
const LostMessage = "cc-gateway: connection to your machine was lost"

const (
	// exitLost is the status OpenSSH's client uses for its own failures.
	exitLost = 255
	// probeTimeout bounds the check whether the machine still answers.
	probeTimeout = 5 * time.Second
)

// Upstream is the machine side of a bridge: a connection to the person's
// machine (a *gossh.Client, or a seat on a pooled connection).
type Upstream interface {
	OpenChannel(name string, data []byte) (gossh.Channel, <-chan *gossh.Request, error)
	SendRequest(name string, wantReply bool, payload []byte) (bool, []byte, error)
}

// Hooks are the optional callbacks of a bridge.
type Hooks struct {
	// Activity is called when bytes flow in either direction, at most once
	// per buffer read; it should be cheap (an atomic store).
	Activity func()
	// Lost returns the line the person reads when the machine went away
	// mid-session, for example that it was stopped; LostMessage if nil.
	Lost func() string
	// Log receives the session's log lines; the caller's logger says which
	// connection they are about. slog's default if nil.
	Log *slog.Logger
	// Observer, if not nil, sees the session while it runs and its bytes.
	Observer Observer
}

// Bridge opens a session channel on up, replays s.Early, sends s.Start and
// answers it downstream with upstream's reply, then copies data and requests
// both ways until both sides are done. It returns when the session has ended
// and both channels are closed.
//
// If ctx ends, the session is ended with exit status 255 and a line on
// stderr: the text of context.Cause(ctx) if the caller gave one (for example
// "the gateway is shutting down"), a generic sentence otherwise.
//
// Bridge returns nil when the session ran and ended normally, whatever the
// program's exit status; ErrUpstreamLost when the machine went away; another
// error when the machine refused the session or ctx ended it.
func Bridge(ctx context.Context, up Upstream, s ClientSession, h Hooks) error {
	if up == nil || s.Channel == nil || s.Requests == nil || s.Start == nil {
		return errors.New("bridge session: upstream, channel, requests and start request are required")
	}
	if h.Activity == nil {
		h.Activity = func() {}
	}
	if h.Lost == nil {
		h.Lost = func() string { return LostMessage }
	}
	if h.Log == nil {
		h.Log = slog.Default().With("component", "proxy")
	}
	b := &bridge{
		up:       up,
		down:     s.Channel,
		downReqs: s.Requests,
		activity: h.Activity,
		lost:     h.Lost,
		obs:      h.Observer,
		newline:  "\n",
		log:      h.Log,
	}
	for _, r := range s.Early {
		if r.Type == "pty-req" {
			// The person's terminal is in raw mode: a bare \n would not
			// return the cursor, and a prompt may have left it mid-line.
			b.lead, b.newline = "\r\n", "\r\n"
		}
	}

	uch, ureqs, err := up.OpenChannel("session", nil)
	if err != nil {
		var openErr *gossh.OpenChannelError
		if errors.As(err, &openErr) {
			b.refuse(s.Start, "cc-gateway: your machine refused the session: "+openErr.Message)
			return fmt.Errorf("open session on machine: %w", err)
		}
		b.refuse(s.Start, b.lost())
		return fmt.Errorf("open session on machine: %w: %w", ErrUpstreamLost, err)
	}

	// The front door already said yes to these; replaying them gives the
	// machine the same terminal, size and environment.
	for _, r := range s.Early {
		ok, err := uch.SendRequest(r.Type, r.WantReply, r.Payload)
		if err != nil {
			uch.Close()
			b.refuse(s.Start, b.lost())
			return fmt.Errorf("replay %s request: %w: %w", r.Type, ErrUpstreamLost, err)
		}
		if r.WantReply && !ok {
			b.log.Debug("machine refused early request", "type", r.Type)
		}
	}

	// Always ask for a reply: without it we cannot tell the person whether
	// their program started.
	ok, err := uch.SendRequest(s.Start.Type, true, s.Start.Payload)
	if err != nil {
		uch.Close()
		b.refuse(s.Start, b.lost())
		return fmt.Errorf("send %s request: %w: %w", s.Start.Type, ErrUpstreamLost, err)
	}
	if !ok {
		uch.Close()
		b.refuse(s.Start, "")
		return fmt.Errorf("machine refused %s request", s.Start.Type)
	}
	if err := s.Start.Reply(true, nil); err != nil {
		b.log.Debug("reply to start request", "err", err)
	}
	return b.pump(ctx, uch, ureqs)
}

type bridge struct {
	up       Upstream
	down     gossh.Channel
	downReqs <-chan *gossh.Request
	activity func()
	lost     func() string
	obs      Observer
	lead     string // written before a message of ours
	newline  string
	log      *slog.Logger
}

// refuse answers the start request with false, after an optional message on
// stderr, and closes the downstream channel.
func (b *bridge) refuse(start *gossh.Request, msg string) {
	if msg != "" {
		fmt.Fprint(b.down.Stderr(), b.lead+msg+b.newline)
	}
	start.Reply(false, nil)
	b.down.Close()
	// The requests stream ends once the person's side acknowledges the close.
	for r := range b.downReqs {
		r.Reply(false, nil)
	}
}

// pump runs a started session until both sides are done.
func (b *bridge) pump(ctx context.Context, uch gossh.Channel, ureqs <-chan *gossh.Request) error {
	defer opened(b.obs, "session")()
	// Goroutines reading from the person's side end when that channel closes.
	var downWG sync.WaitGroup
	downGone := make(chan struct{})
	downWG.Go(func() {
		b.copy(uch, b.down, ToMachine)
		// The person's EOF goes on independently: the machine may still
		// be writing (cat big | ssh gw sha256sum).
		uch.CloseWrite()
	})
	downWG.Go(func() {
		defer close(downGone)
		for req := range b.downReqs {
			ok, err := uch.SendRequest(req.Type, req.WantReply, req.Payload)
			req.Reply(ok && err == nil, nil)
		}
	})

	// Output from the machine; once both streams reach EOF every byte has
	// been written downstream.
	var outWG sync.WaitGroup
	outWG.Go(func() { b.copy(b.down, uch, FromMachine) })
	outWG.Go(func() { b.copy(b.down.Stderr(), uch.Stderr(), FromMachine) })
	outDone := make(chan struct{})
	go func() {
		outWG.Wait()
		close(outDone)
	}()

	// The machine's EOF is passed on after its exit report, not on its own:
	// when the connection dies, x/crypto ends the output streams just as an
	// EOF would, and the person must still be able to read why on stderr.
	// The report goes before the EOF because an OpenSSH ControlMaster closes
	// a session once it has seen EOF both ways, and x/crypto answers a close
	// at once: after that nothing more can be sent on the channel. Only a
	// program that closes its output long before it exits sees its EOF
	// delayed.
	var (
		held     []*gossh.Request // exit requests waiting for the output to drain
		drained  bool             // every byte of output was written downstream
		exited   bool             // the machine reported how the program ended
		reported bool             // the exit report and EOF went downstream
		gone     bool             // the person's channel closed
		cause    error            // why ctx ended the session
		outWait  = outDone
		goneC    = downGone
		ctxDone  = ctx.Done()
	)
	report := func() {
		for _, r := range held {
			b.forward(r)
		}
		held = nil
		if !reported {
			reported = true
			b.down.CloseWrite()
		}
	}
loop:
	for ureqs != nil || outWait != nil {
		select {
		case req, ok := <-ureqs:
			if !ok {
				ureqs = nil
				continue
			}
			if req.Type != "exit-status" && req.Type != "exit-signal" {
				b.forward(req)
				continue
			}
			exited = true
			held = append(held, req)
			// sshd may send these before the last output; sending them
			// first could let the client drop the tail.
			if drained {
				report()
			}
		case <-outWait:
			outWait = nil
			drained = true
			if exited {
				report()
			}
		case <-goneC:
			goneC = nil
			gone = true
			// Hang up on the machine so its side of the session ends too.
			uch.Close()
		case <-ctxDone:
			cause = context.Cause(ctx)
			break loop
		}
	}

	var err error
	switch {
	case cause != nil:
		err = fmt.Errorf("session ended by gateway: %w", cause)
		if !reported { // otherwise the program's exit was already reported
			b.end(endMessage(cause))
		}
	case !exited && !gone && !b.upstreamAlive():
		b.end(b.lost())
		err = ErrUpstreamLost
	default:
		report()
	}
	b.down.Close()
	uch.Close()
	downWG.Wait()
	<-outDone
	return err
}

// forward passes a request from the machine to the person and the answer back.
func (b *bridge) forward(req *gossh.Request) {
	ok, err := b.down.SendRequest(req.Type, req.WantReply, req.Payload)
	req.Reply(ok && err == nil, nil)
}

// end tells the person why their session stops and gives it exit status 255.
func (b *bridge) end(msg string) {
	fmt.Fprint(b.down.Stderr(), b.lead+msg+b.newline)
	status := struct{ Status uint32 }{exitLost}
	b.down.SendRequest("exit-status", false, gossh.Marshal(&status))
}

// endMessage turns the cause of a cancelled context into a line for the person.
func endMessage(cause error) string {
	if errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded) {
		return "cc-gateway: the gateway ended this session"
	}
	return "cc-gateway: " + cause.Error()
}

// upstreamAlive reports whether the machine's connection still answers. A
// session channel that closes without an exit status most often means the
// connection died; a global request tells the two apart. If the machine
// neither answers nor hangs up, the probe goroutine ends with the connection.
func (b *bridge) upstreamAlive() bool {
	res := make(chan error, 1)
	go func() {
		_, _, err := b.up.SendRequest("keepalive@openssh.com", true, nil)
		res <- err
	}()
	t := time.NewTimer(probeTimeout)
	defer t.Stop()
	select {
	case err := <-res:
		return err == nil
	case <-t.C:
		return false
	}
}

// copy moves bytes from src to dst, flowing in direction d, until EOF or
// an error on either side.
func (b *bridge) copy(dst io.Writer, src io.Reader, d Direction) {
	copyStream(dst, src, meter{activity: b.activity, obs: b.obs, d: d})
}
