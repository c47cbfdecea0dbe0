package proxy

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
	gossh "golang.org/x/crypto/ssh"
)

func TestDialPinnedHostKey(t *testing.T) {
	gatewayKey := testkit.NewKey(t).Signer
	m := startSSHD(t, gatewayKey.PublicKey())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	c, err := Dial(ctx, m.addr, m.user, gatewayKey, m.hostKey)
	if err != nil {
		t.Fatalf("dial with the right host key: %v", err)
	}
	out, err := func() ([]byte, error) {
		s, err := c.NewSession()
		if err != nil {
			return nil, err
		}
		defer s.Close()
		return s.Output("echo hello")
	}()
	c.Close()
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("session over dialed client: %q, %v", out, err)
	}

	wrong := testkit.NewKey(t).Signer
	_, err = Dial(ctx, m.addr, m.user, gatewayKey, wrong.PublicKey())
	var mismatch *HostKeyMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("dial with a wrong pinned key: got %v, want HostKeyMismatchError", err)
	}
	for _, fp := range []string{gossh.FingerprintSHA256(m.hostKey), gossh.FingerprintSHA256(wrong.PublicKey())} {
		if !strings.Contains(err.Error(), fp) {
			t.Errorf("error %q does not name fingerprint %s", err, fp)
		}
	}
}

func TestDialRejectedClientKey(t *testing.T) {
	authorized := testkit.NewKey(t).Signer
	m := startSSHD(t, authorized.PublicKey())
	other := testkit.NewKey(t).Signer
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if c, err := Dial(ctx, m.addr, m.user, other, m.hostKey); err == nil {
		c.Close()
		t.Fatal("dial with an unauthorized key succeeded")
	}
}

// TestDialBoundedByContext dials a listener that accepts and never speaks.
func TestDialBoundedByContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	defer func() {
		if c, ok := <-accepted; ok {
			c.Close()
		}
	}()

	key := testkit.NewKey(t).Signer
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		c, err := Dial(ctx, ln.Addr().String(), "claude", key, key.PublicKey())
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want deadline exceeded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dial ignored its context")
	}
}
