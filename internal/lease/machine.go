package lease

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
)

// document is the bootstrap document of l's machine: the instance user
// with l's key and the gateway's authorised, l's host key to present.
func (s MachineSpec) document(l Lease) (bootstrap.Document, error) {
	person, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l.PublicKey))
	if err != nil {
		return bootstrap.Document{}, fmt.Errorf("parse lease key: %w", err)
	}
	keys := []ssh.PublicKey{person}
	// A test machine's only key is the gateway's: authorised once.
	if s.GatewayKey != nil && !bytes.Equal(s.GatewayKey.Marshal(), person.Marshal()) {
		keys = append(keys, s.GatewayKey)
	}
	return bootstrap.New(l.ID, l.ServerName, s.User, l.Expires, s.SSHPort, keys, l.HostKeyPEM)
}

// userData renders the user_data of l's new server: its bootstrap
// document, marked as a warm pool machine's when pool is set, naming the
// person's home volume's device when home is not nil. A fresh
// machine under infect provisioning gets the document that installs
// NixOS; one restored from its snapshot has NixOS already.
func (s MachineSpec) userData(l Lease, pool bool, home *Home) (string, error) {
	doc, err := s.document(l)
	if err != nil {
		return "", err
	}
	doc.Pool = pool
	doc.HomeDevice = homeDevice(home)
	if s.Infect != nil && l.ImageID == 0 {
		return doc.RenderInfect(*s.Infect)
	}
	return doc.Render()
}

// personalisation renders the document that gives a claimed pool
// machine its person (Machines.Personalise): l's, with the pool
// machine's instance id and host key, which l took over, and the
// person's home (nil: none). It depends only on stored values, so a claim
// finished again sends the same document.
func (s MachineSpec) personalisation(l Lease, home *Home) (string, error) {
	doc, err := s.document(l)
	if err != nil {
		return "", err
	}
	doc.HomeDevice = homeDevice(home)
	return doc.Render()
}

// homeDevice is where the machine finds home; "" for none.
func homeDevice(home *Home) string {
	if home == nil {
		return ""
	}
	return home.Device
}

// infectPoll is how often an installing machine is asked for its host key.
const infectPoll = 10 * time.Second

// waitPinned returns once the machine at addr, the server name, presents
// hostKey and lets the gateway in, polling through machines until ctx
// ends. While NixOS installs over a stock image, the stock sshd answers
// with a key of its own: not ready yet, and never trusted; installing is
// called the first time that is seen.
func (s MachineSpec) waitPinned(ctx context.Context, machines Machines, name, addr, hostKey string, installing func()) error {
	for seen := false; ; seen = true {
		err := machines.Wait(ctx, addr, hostKey)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrHostKeyMismatch) || s.Infect == nil {
			return fmt.Errorf("wait for ssh on %s: %w", addr, err)
		}
		if !seen {
			installing()
		}
		if err := pause(ctx, infectPoll); err != nil {
			return fmt.Errorf("wait for NixOS to install on %s: %w", name, err)
		}
	}
}

// pause waits d, or until ctx ends, when it returns ctx's error.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
