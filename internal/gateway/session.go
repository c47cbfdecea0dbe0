package gateway

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"charm.land/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
)

// exitGatewayFailure is what a session exits with when the gateway could not
// reach the person's machine; OpenSSH uses 255 for its own failures too.
const exitGatewayFailure = 255

// handleSession serves one "session" channel: it answers the requests
// that set the session up, and on the request that starts a program either
// runs a gateway command or proxies the session to the person's machine.
func (g *Gateway) handleSession(_ *ssh.Server, _ *gossh.ServerConn, nc gossh.NewChannel, ctx ssh.Context) {
	key, ok := ctx.Value(ssh.ContextKeyPublicKey).(ssh.PublicKey)
	if !ok {
		nc.Reject(gossh.Prohibited, "no public key on this connection")
		return
	}
	fp := lease.Fingerprint(key)
	c := g.clientConn(ctx)
	trace := traceOf(ctx)
	if !g.listed(key) {
		nc.Reject(gossh.Prohibited, revokedMessage)
		return
	}
	if most := g.opts.Limits.SessionsPerConn; !c.limits.openSession(most) {
		g.opts.Observer.Limited(LimitSessions)
		if c.limits.first(limitSessions) {
			g.limited(fp, limitSessions, ctx, fmt.Sprintf("%d open", most))
		}
		// OpenSSH prints this after "open failed", as it does for sshd's MaxSessions.
		nc.Reject(gossh.ResourceShortage, fmt.Sprintf("cc-gateway: this connection already has %d sessions open, the most allowed; close one, or open another connection", most))
		return
	}
	defer c.limits.closeSession()
	raw, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	ch := &syncChannel{Channel: raw}
	defer ch.Close()
	sctx, stop := context.WithCancel(ctx)
	defer stop()

	s := proxy.ClientSession{Channel: ch, Requests: permitted(sctx, reqs, permitOf(ctx))}
	started, limit, over := g.collect(ctx, &s)
	hasPTY := false
	for _, r := range s.Early {
		hasPTY = hasPTY || r.Type == "pty-req"
	}
	if over != "" {
		g.opts.Observer.Limited(limit)
		if c.limits.first(limitEarly) {
			g.limited(fp, limitEarly, ctx, over)
		}
		newLiveSession(fp, ch, hasPTY).end(over)
		return
	}
	if !started {
		return
	}

	if s.Start.Type == "exec" {
		if args, ok := gatewayCommand(execCommand(s.Start.Payload)); ok {
			s.Start.Reply(true, nil)
			go discardRequests(s.Requests)
			code := g.runCommand(lease.WithConn(ctx, trace.id), call{args: args, key: key, remote: ctx.RemoteAddr(), fingerprint: fp,
				trace: trace, stdin: ch, stdout: ch, stderr: ch.Stderr()})
			sendExit(ch, code)
			return
		}
	}

	if answer, refused, done := g.sessionStart(s.Start, hasPTY, fp); refused || done {
		s.Start.Reply(true, nil)
		go discardRequests(s.Requests)
		out, code := io.Writer(ch), 0
		if refused {
			out, code = ch.Stderr(), 1
		}
		fmt.Fprintln(out, answer)
		sendExit(ch, code)
		return
	}

	live := newLiveSession(fp, ch, hasPTY)
	defer g.track(live)()

	l, t, err := g.machine(ctx, key, func(st lease.Step) {
		live.mu.Lock()
		fmt.Fprintf(live.out, "[%3ds] %s%s", int(st.Elapsed.Seconds()), st.Text, live.newline)
		live.mu.Unlock()
	})
	if err != nil {
		g.fail(ch, s.Start, live, trace, err)
		return
	}
	g.remindExpiry(live, l)
	activity := g.activity(fp)
	seat, err := g.sessionSeat(ctx, c, t, wantsAgent(s.Early), activity)
	if err != nil {
		g.fail(ch, s.Start, live, trace, forPerson(err, "could not connect to your machine %s", l.ServerName))
		return
	}
	defer seat.Close()
	hooks := proxy.Hooks{Activity: activity, Lost: func() string { return g.lostMessage(fp) }, Observer: g.pool.Observer(),
		Log: g.opts.Logger.With("component", "proxy", "conn", trace.id, "fingerprint", fp)}
	if err := proxy.Bridge(ctx, seat, s, hooks); err != nil {
		trace.log.Debug("session ended", "fingerprint", fp, "err", err)
	}
}

// wantsAgent reports whether the client asked for agent forwarding.
func wantsAgent(early []*gossh.Request) bool {
	for _, r := range early {
		if r.Type == agentRequest {
			return true
		}
	}
	return false
}

// permitted passes on the session requests permit allows and refuses the
// others (a terminal under no-pty, an agent under no-agent-forwarding),
// before the program starts and after, until ctx ends.
func permitted(ctx context.Context, reqs <-chan *gossh.Request, permit Permit) <-chan *gossh.Request {
	if permit.PTY && permit.AgentForwarding {
		return reqs
	}
	out := make(chan *gossh.Request)
	go func() {
		defer close(out)
		for req := range reqs {
			if permit.allows(req.Type) {
				select {
				case out <- req:
					continue
				case <-ctx.Done(): // nobody reads out any more
				}
			}
			req.Reply(false, nil)
		}
	}()
	return out
}

// agentRequest asks for agent forwarding (ssh -A) on a session.
const agentRequest = "auth-agent-req@openssh.com"

// collect answers the requests that set up a session until the one that
// starts a program, which it leaves unanswered in s.Start, and reports
// whether it came. What it keeps for the machine is bounded by
// Limits.EarlyRequests and EarlyBytes: going over refuses the request and
// returns the limit and the sentence that tells the person why. It reports
// false when the client went away or took too long.
func (g *Gateway) collect(ctx context.Context, s *proxy.ClientSession) (started bool, limit Limit, over string) {
	timeout := time.NewTimer(g.opts.StartTimeout)
	defer timeout.Stop()
	maxCount, maxBytes := g.opts.Limits.EarlyRequests, g.opts.Limits.EarlyBytes
	kept := 0 // payload bytes in s.Early
	for {
		select {
		case req, ok := <-s.Requests:
			if !ok {
				return false, "", ""
			}
			switch req.Type {
			case "shell", "exec", "subsystem":
				s.Start = req
				return true, "", ""
			case "pty-req", "env", "window-change", agentRequest:
				kept += len(req.Payload)
				switch {
				case len(s.Early) >= maxCount:
					req.Reply(false, nil)
					return false, LimitEarlyRequests, fmt.Sprintf("this session sent more than %d requests (environment variables, terminal settings) before starting its program, the most allowed; send fewer (see SendEnv and SetEnv in your ssh config)", maxCount)
				case kept > maxBytes:
					req.Reply(false, nil)
					return false, LimitEarlyBytes, fmt.Sprintf("this session's environment variables and terminal settings came to more than %d bytes before its program started, the most allowed; send fewer or smaller ones (see SendEnv and SetEnv in your ssh config)", maxBytes)
				}
				s.Early = append(s.Early, req)
				req.Reply(true, nil)
			default:
				req.Reply(false, nil)
			}
		case <-timeout.C:
			return false, "", ""
		case <-ctx.Done():
			return false, "", ""
		}
	}
}

// fail tells the person why their session cannot go on (see tell), then
// ends it.
func (g *Gateway) fail(ch gossh.Channel, start *gossh.Request, live *liveSession, trace *connTrace, err error) {
	start.Reply(true, nil)
	live.notify(trace.tell(err, "fingerprint", live.fingerprint))
	sendExit(ch, exitGatewayFailure)
}

func sendExit(ch gossh.Channel, code int) {
	ch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{uint32(code)}))
	ch.CloseWrite()
}

func discardRequests(reqs <-chan *gossh.Request) {
	for req := range reqs {
		if req.WantReply {
			req.Reply(false, nil)
		}
	}
}

// execCommand decodes an exec request's payload: one SSH string.
func execCommand(payload []byte) string {
	var msg struct{ Command string }
	if err := gossh.Unmarshal(payload, &msg); err != nil {
		return ""
	}
	return msg.Command
}

// gatewayCommand splits cmd and reports whether its first word names a
// gateway command; anything else runs on the person's machine.
func gatewayCommand(cmd string) ([]string, bool) {
	args := strings.Fields(cmd)
	if len(args) == 0 {
		return nil, false
	}
	_, ok := commands[args[0]]
	return args, ok
}
