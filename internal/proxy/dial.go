// Package proxy connects the gateway to a person's machine: it dials the
// machine's sshd with the gateway's key and the machine's pinned host key,
// keeps those connections in a pool that a person's client connections
// share, and joins the person's channels (sessions, forwards, agent) with
// the machine's, both ways. See docs/proxy.md.
package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"

	gossh "golang.org/x/crypto/ssh"
)

// HostKeyMismatchError reports that a machine presented a host key other
// than the one pinned for it. The gateway never falls back to trusting it.
type HostKeyMismatchError struct {
	Addr string
	Want gossh.PublicKey // the pinned key
	Got  gossh.PublicKey // the key the machine presented
}

func (e *HostKeyMismatchError) Error() string {
	return fmt.Sprintf("host key mismatch for machine at %s: it presented %s %s, but the pinned key is %s %s",
		e.Addr, e.Got.Type(), gossh.FingerprintSHA256(e.Got), e.Want.Type(), gossh.FingerprintSHA256(e.Want))
}

// Dial connects to a machine's sshd at addr as user, authenticating with key
// and accepting only hostKey (no trust on first use). The TCP connect and the
// SSH handshake are both bounded by ctx. The caller closes the client.
func Dial(ctx context.Context, addr, user string, key gossh.Signer, hostKey gossh.PublicKey) (*gossh.Client, error) {
	if key == nil {
		return nil, errors.New("dial machine: no client key")
	}
	if hostKey == nil {
		return nil, errors.New("dial machine: no pinned host key")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial machine at %s: %w", addr, err)
	}

	cfg := &gossh.ClientConfig{
		User: user,
		Auth: []gossh.AuthMethod{gossh.PublicKeys(key)},
		HostKeyCallback: func(_ string, _ net.Addr, got gossh.PublicKey) error {
			if bytes.Equal(got.Marshal(), hostKey.Marshal()) {
				return nil
			}
			return &HostKeyMismatchError{Addr: addr, Want: hostKey, Got: got}
		},
		// Ask for the pinned key's type, so a machine with several host keys
		// shows us the one we know rather than failing the comparison.
		HostKeyAlgorithms: hostKeyAlgorithms(hostKey),
	}

	// The handshake takes no context; closing the connection is how ctx ends it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := gossh.NewClientConn(conn, addr, cfg)
	if !stop() {
		if err == nil {
			c.Close()
		}
		return nil, fmt.Errorf("ssh handshake with machine at %s: %w", addr, context.Cause(ctx))
	}
	if err != nil {
		return nil, fmt.Errorf("ssh handshake with machine at %s: %w", addr, err)
	}
	return gossh.NewClient(c, chans, reqs), nil
}

// hostKeyAlgorithms lists the signature algorithms that can verify key.
func hostKeyAlgorithms(key gossh.PublicKey) []string {
	if key.Type() == gossh.KeyAlgoRSA {
		return []string{gossh.KeyAlgoRSASHA512, gossh.KeyAlgoRSASHA256}
	}
	return []string{key.Type()}
}
