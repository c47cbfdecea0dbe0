package hcloud

import (
	"github.com/cc-gateway/cc-gateway/internal/lease"

	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrHostKeyMismatch means an SSH server answered with a key other than the
// pinned one. WaitSSH returns it at once: retrying could only end in
// trusting the wrong machine.
var ErrHostKeyMismatch = lease.ErrHostKeyMismatch

// Bounds of WaitSSH's polling.
const (
	sshFirstDelay   = 100 * time.Millisecond
	sshMaxDelay     = 2 * time.Second
	sshDialTimeout  = 5 * time.Second
	sshProbeTimeout = 10 * time.Second
	// sshMaxWait caps a wait whose context has no deadline: a machine that
	// has not answered in this long is not going to.
	sshMaxWait = 10 * time.Minute
)

// WaitSSH returns once the SSH server at addr proves it holds hostKey
// (authorized_keys form). It polls with growing pauses until ctx ends. The
// probe never authenticates: a server that completes the key exchange with
// the pinned key has answered, whatever it then says about authentication.
func (p *Provider) WaitSSH(ctx context.Context, addr, hostKey string) error {
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostKey))
	if err != nil {
		return fmt.Errorf("wait for ssh on %s: the pinned host key is not valid: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, sshMaxWait)
	defer cancel()

	delay := sshFirstDelay
	for attempt := 1; ; attempt++ {
		err := probeSSH(ctx, addr, want)
		if err == nil {
			p.log.Debug("ssh answered with the pinned host key", "addr", addr, "attempts", attempt)
			return nil
		}
		if errors.Is(err, ErrHostKeyMismatch) {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("ssh on %s did not answer after %d attempts (last: %v): %w", addr, attempt, err, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, sshMaxDelay)
	}
}

// probeSSH makes one attempt: nil if the pinned key answered, an error
// wrapping ErrHostKeyMismatch if another key did, any other error if no
// SSH server is (yet) there.
func probeSSH(ctx context.Context, addr string, want ssh.PublicKey) error {
	d := net.Dialer{Timeout: sshDialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(sshProbeTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	// The callback runs on the SSH transport's goroutine, after the server
	// proved possession of the key by signing the exchange.
	var (
		mu       sync.Mutex
		verified bool
		mismatch error
	)
	cfg := &ssh.ClientConfig{
		User: "cc-gateway-probe",
		HostKeyCallback: func(_ string, _ net.Addr, got ssh.PublicKey) error {
			mu.Lock()
			defer mu.Unlock()
			if bytes.Equal(got.Marshal(), want.Marshal()) {
				verified = true
				return nil
			}
			mismatch = fmt.Errorf("%w: %s answered with %s, the lease pins %s; refusing to connect",
				ErrHostKeyMismatch, addr, ssh.FingerprintSHA256(got), ssh.FingerprintSHA256(want))
			return mismatch
		},
		// Ask for the pinned key's type, so a server holding several host
		// keys shows the one we can check.
		HostKeyAlgorithms: hostKeyAlgorithms(want),
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err == nil {
		// Unusual: the server let us in without credentials. It still
		// proved the pinned key.
		_ = ssh.NewClient(c, chans, reqs).Close()
		return nil
	}
	mu.Lock()
	defer mu.Unlock()
	switch {
	case mismatch != nil:
		return mismatch
	case verified:
		return nil
	default:
		return err
	}
}

func hostKeyAlgorithms(k ssh.PublicKey) []string {
	if k.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{k.Type()}
}
