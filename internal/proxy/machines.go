package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Bounds of Wait's polling. A machine that comes up during a boot of tens
// of seconds is found at most waitMaxDelay late (2 s cost a resume 1.8 s
// on top of the boot: docs/benchmarks.md, Cold starts); an attempt on a
// machine still booting is one refused or unanswered dial, cheap enough.
const (
	waitFirstDelay = 100 * time.Millisecond
	waitMaxDelay   = 250 * time.Millisecond
	// waitMax caps a wait whose context has no deadline: a machine that
	// has not answered in this long is not going to.
	waitMax = 30 * time.Minute
)

// Machines is lease.Machines on the pool: it reaches machines as the
// instance user with the pool's key, accepting only their pinned host keys.
// Whatever it connects stays pooled, so the session that follows a wait or
// an expiry push finds its machine connection ready.
type Machines struct {
	pool *Pool
	user string
}

var _ lease.Machines = (*Machines)(nil)

// NewMachines returns the Machines that reach machines as user through pool.
func NewMachines(pool *Pool, user string) *Machines {
	return &Machines{pool: pool, user: user}
}

func (m *Machines) target(addr, hostKey string) (Target, error) {
	key, _, _, _, err := gossh.ParseAuthorizedKey([]byte(hostKey))
	if err != nil {
		return Target{}, fmt.Errorf("machine at %s: the pinned host key is not valid: %w", addr, err)
	}
	return Target{Addr: addr, User: m.user, HostKey: key}, nil
}

// Wait returns once the machine at addr answers SSH with hostKey and lets
// the gateway in: at once when the pool holds a live connection to it,
// otherwise by dialling, every so often until ctx ends. A machine that
// answers with another key is an error wrapping lease.ErrHostKeyMismatch,
// at once. With ctx already ended it only looks in the pool.
func (m *Machines) Wait(ctx context.Context, addr, hostKey string) error {
	t, err := m.target(addr, hostKey)
	if err != nil {
		return err
	}
	if m.pool.Has(t) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, waitMax)
	defer cancel()
	delay := waitFirstDelay
	for attempt := 1; ; attempt++ {
		// Reserving room for a channel dials when nothing is pooled; given
		// back unused, the connection stays for the idle timeout.
		seat, err := m.pool.ChannelSeat(ctx, t)
		if err == nil {
			seat.Close()
			return nil
		}
		var mismatch *HostKeyMismatchError
		switch {
		case errors.As(err, &mismatch):
			return fmt.Errorf("%w: %w", lease.ErrHostKeyMismatch, err)
		case errors.Is(err, ErrPoolClosed):
			return err
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("ssh on %s did not answer after %d attempts (last: %v): %w", addr, attempt, err, ctx.Err())
		case <-timer.C:
		}
		delay = min(2*delay, waitMaxDelay)
	}
}

// SetExpiry writes expires into the running machine's expires file
// (bootstrap.ExpiresCommand) over a pooled session.
func (m *Machines) SetExpiry(ctx context.Context, addr, hostKey string, expires time.Time) error {
	return m.runAt(ctx, addr, hostKey, "set expiry", bootstrap.ExpiresCommand(expires), nil)
}

// RevokeKey adds key to the running machine's revoked keys
// (bootstrap.RevokeKeyCommand) over a pooled session.
func (m *Machines) RevokeKey(ctx context.Context, addr, hostKey, key string) error {
	return m.runAt(ctx, addr, hostKey, "revoke key", bootstrap.RevokeKeyCommand(key), nil)
}

// SetSecrets replaces the running machine's secrets file
// (bootstrap.SecretsFile) with secrets, one NAME=value line each, written
// through the standard input of bootstrap.SecretsCommand. Errors name the
// machine, never a value.
func (m *Machines) SetSecrets(ctx context.Context, addr, hostKey string, secrets []lease.SecretValue) error {
	var file bytes.Buffer
	file.WriteString("# Your secrets, from the gateway (ssh GATEWAY secret list); rewritten at every start.\n")
	for _, s := range secrets {
		file.WriteString(s.Name + "=")
		file.Write(s.Value)
		file.WriteString("\n")
	}
	return m.runAt(ctx, addr, hostKey, "set secrets", bootstrap.SecretsCommand, file.Bytes())
}

// Personalise gives the pool machine at addr its person: doc goes to the
// standard input of bootstrap.PersonaliseCommand over a pooled session.
// Errors name the machine, never the document, which holds its host key.
func (m *Machines) Personalise(ctx context.Context, addr, hostKey string, doc string) error {
	return m.runAt(ctx, addr, hostKey, "personalise", bootstrap.PersonaliseCommand, []byte(doc))
}

// AgentState reads the agent state file of the machine at addr
// (bootstrap.AgentStateCommand) over a pooled session.
func (m *Machines) AgentState(ctx context.Context, addr, hostKey string) (lease.AgentState, time.Time, error) {
	t, err := m.target(addr, hostKey)
	if err != nil {
		return "", time.Time{}, err
	}
	out, err := m.run(ctx, t, bootstrap.AgentStateCommand, nil)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("read agent state on machine at %s: %w", addr, err)
	}
	state, since, err := bootstrap.ParseAgentState(out)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("machine at %s: %w", addr, err)
	}
	return lease.AgentState(state), since, nil
}

// runAt runs command on the machine at addr, pinned to hostKey, with stdin
// as its standard input; what names it in the error.
func (m *Machines) runAt(ctx context.Context, addr, hostKey, what, command string, stdin []byte) error {
	t, err := m.target(addr, hostKey)
	if err != nil {
		return err
	}
	if _, err := m.run(ctx, t, command, stdin); err != nil {
		return fmt.Errorf("%s on machine at %s: %w", what, addr, err)
	}
	return nil
}

// run runs command on t in a pooled session, writing stdin to it, waits
// for its exit status and returns the first maxOutput bytes of its output.
func (m *Machines) run(ctx context.Context, t Target, command string, stdin []byte) ([]byte, error) {
	seat, err := m.pool.SessionSeat(ctx, t)
	if err != nil {
		return nil, err
	}
	defer seat.Close()
	ch, reqs, err := seat.OpenChannel("session", nil)
	if err != nil {
		return nil, fmt.Errorf("open session: %w", err)
	}
	defer ch.Close()
	// Closing the channel when ctx ends unblocks the reads below.
	stop := context.AfterFunc(ctx, func() { ch.Close() })
	defer stop()

	ok, err := ch.SendRequest("exec", true, gossh.Marshal(struct{ Command string }{command}))
	if err != nil || !ok {
		return nil, fmt.Errorf("the machine refused to run the command (%v)", err)
	}
	// The commands print a line or two on either stream; keep that much
	// of each, apart, so a warning on stderr never mixes into the output.
	var out, errOut bytes.Buffer
	copied := make(chan struct{}, 2)
	keep := func(w *bytes.Buffer, r io.Reader) {
		io.Copy(w, io.LimitReader(r, maxOutput))
		io.Copy(io.Discard, r)
		copied <- struct{}{}
	}
	go keep(&out, ch)
	go keep(&errOut, ch.Stderr())
	if _, err := ch.Write(stdin); err != nil {
		return nil, fmt.Errorf("write to the command: %w", err)
	}
	ch.CloseWrite()
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
	<-copied
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("no answer: %w", ctx.Err())
	case status != 0:
		return nil, fmt.Errorf("exit status %d: %s", status, bytes.TrimSpace(append(out.Bytes(), errOut.Bytes()...)))
	}
	return out.Bytes(), nil
}

// maxOutput bounds what run keeps of each of a command's output streams.
const maxOutput = 4096
