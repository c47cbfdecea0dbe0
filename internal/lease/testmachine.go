package lease

// A test machine is the operator's smoke test (`gateway preflight
// --create-test-machine`): one machine made exactly as a person's would be
// (the same provider, image, bootstrap document, SSH port and wait for the
// pinned host key), timed phase by phase, then deleted whatever happened.
// Its lease id is one no lease has, so if the preflight itself is killed the
// machine is an orphan to reconcile: powered off, deleted after its grace.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// The phases of a test machine's run, in order.
const (
	PhaseCreate   = "create"    // the API call until the server runs
	PhaseBoot     = "boot"      // until the machine's SSH port answers
	PhaseSSHReady = "ssh ready" // until the pinned host key is presented and the gateway's key accepted
	PhaseDelete   = "delete"
)

// TestMachinePrefix starts a test machine's name, so operators recognise it
// in the cloud's console.
const TestMachinePrefix = "cc-preflight-"

// Phase is one phase of a test machine's run, ended.
type Phase struct {
	Name   string
	Took   time.Duration
	Result string // what was found, when it succeeded
	Err    error  // a *TestMachineError when it failed
}

// Rounded is how long the phase took, to a precision worth reading.
func (p Phase) Rounded() time.Duration {
	switch {
	case p.Took < time.Second:
		return p.Took.Round(time.Millisecond)
	case p.Took < 10*time.Second:
		return p.Took.Round(100 * time.Millisecond)
	}
	return p.Took.Round(time.Second)
}

// TestMachineError is a failed phase: the sentence for the operator, and the
// cause.
type TestMachineError struct {
	Phase string
	Fix   string // what to do, one sentence
	Err   error
}

func (e *TestMachineError) Error() string {
	return fmt.Sprintf("test machine %s failed: %s", e.Phase, e.Fix)
}

func (e *TestMachineError) Unwrap() error { return e.Err }

// failed is phase's TestMachineError: the fix as format says, unless the run
// was interrupted, when there is nothing to fix.
func failed(phase string, err error, format string, args ...any) *TestMachineError {
	fix := fmt.Sprintf(format, args...)
	if errors.Is(err, context.Canceled) {
		fix = "interrupted before it finished"
	}
	return &TestMachineError{Phase: phase, Fix: fix, Err: err}
}

// TestMachine makes one machine as the gateway would for a person.
type TestMachine struct {
	Provider Provider
	Machines Machines
	Machine  MachineSpec // GatewayKey is required: it is the machine's only key
	// Dial reaches the machine's SSH port, to tell when it has booted;
	// default a net.Dialer's.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Clock times the phases; default the system clock.
	Clock Clock
	// Timeout bounds create, boot and SSH ready together; default 10m.
	Timeout time.Duration
	// DeleteTimeout bounds the delete, which runs on a context of its own
	// so that an interrupted run still deletes; default 5m.
	DeleteTimeout time.Duration
	// Progress, if set, hears a line as each phase starts and ends.
	Progress func(line string)
}

// Bounds of the wait for the SSH port.
const (
	bootFirstDelay = 100 * time.Millisecond
	bootMaxDelay   = 2 * time.Second
)

// Run makes the test machine, waits until it is ready, and deletes it. It
// returns the phases that ran, and an error (joined with the delete's, when
// that failed too) naming the phase that failed and the fix. Cancelling
// ctx stops the run but not the delete.
func (t TestMachine) Run(ctx context.Context) ([]Phase, error) {
	if t.Machine.GatewayKey == nil {
		return nil, errors.New("test machine: no gateway key to authorise")
	}
	if t.Clock == nil {
		t.Clock = SystemClock{}
	}
	if t.Dial == nil {
		t.Dial = (&net.Dialer{}).DialContext
	}
	t.Timeout = cmp.Or(t.Timeout, 10*time.Minute)
	t.DeleteTimeout = cmp.Or(t.DeleteTimeout, 5*time.Minute)
	if t.Progress == nil {
		t.Progress = func(string) {}
	}

	l, err := t.lease()
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithTimeout(ctx, t.Timeout)
	phases, srv, runErr := t.run(runCtx, l)
	cancel()

	delCtx, cancelDel := context.WithTimeout(context.WithoutCancel(ctx), t.DeleteTimeout)
	defer cancelDel()
	del := t.delete(delCtx, l, srv)
	phases = append(phases, del)
	return phases, errors.Join(runErr, del.Err)
}

// lease is the test machine's: a fresh id and host key, the gateway's key
// as the only one authorised.
func (t TestMachine) lease() (Lease, error) {
	id, hostPEM, hostPub, err := newIdentity()
	if err != nil {
		return Lease{}, err
	}
	now := t.Clock.Now()
	return Lease{
		ID:         id,
		PublicKey:  strings.TrimSpace(string(ssh.MarshalAuthorizedKey(t.Machine.GatewayKey))),
		ServerName: TestMachinePrefix + id,
		HostKey:    hostPub,
		HostKeyPEM: hostPEM,
		ServerType: first(t.Machine.ServerTypes),
		Location:   first(t.Machine.Locations),
		Created:    now,
		Expires:    now.Add(t.Timeout),
	}, nil
}

// run creates the machine and waits for it, phase by phase, within ctx. It
// returns the server when one was created.
func (t TestMachine) run(ctx context.Context, l Lease) ([]Phase, Server, error) {
	var phases []Phase
	start := t.Clock.Now()
	end := func(name, result string, err error) Phase {
		now := t.Clock.Now()
		p := Phase{Name: name, Took: now.Sub(start), Result: result, Err: err}
		start = now
		phases = append(phases, p)
		if err != nil {
			t.Progress(fmt.Sprintf("%s failed after %s", name, p.Rounded()))
		} else {
			t.Progress(fmt.Sprintf("%s took %s: %s", name, p.Rounded(), result))
		}
		return p
	}

	userData, err := t.Machine.userData(l, false, nil)
	if err != nil {
		return nil, Server{}, err
	}
	t.Progress(fmt.Sprintf("creating %s (%s in %s)", l.ServerName, l.ServerType, l.Location))
	srv, err := t.Provider.Create(ctx, CreateSpec{
		Name: l.ServerName, LeaseID: l.ID, UserData: userData, PublicKey: l.PublicKey, TestMachine: true,
		Progress: func(format string, args ...any) { t.Progress(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		fix := "%v; fix what it names and run preflight again"
		if errors.Is(err, context.DeadlineExceeded) {
			fix = "%v; the cloud did not make the server in the time allowed: allow more time (--test-machine-timeout), or try again later"
		}
		p := end(PhaseCreate, "", failed(PhaseCreate, err, fix, err))
		return phases, Server{}, p.Err
	}
	addr := net.JoinHostPort(srv.IPv4, strconv.Itoa(t.Machine.SSHPort))
	end(PhaseCreate, fmt.Sprintf("server %d %s at %s", srv.ID, srv.Name, srv.IPv4), nil)

	if err := t.waitPort(ctx, addr); err != nil {
		p := end(PhaseBoot, "", failed(PhaseBoot, err,
			"nothing answered on %s (%v); check that the image boots with sshd on port %d and that no firewall keeps this host out",
			addr, err, t.Machine.SSHPort))
		return phases, srv, p.Err
	}
	end(PhaseBoot, "port "+strconv.Itoa(t.Machine.SSHPort)+" answers", nil)

	installing := func() { t.Progress("installing NixOS (the stock system answers until it reboots)") }
	if err := t.Machine.waitPinned(ctx, t.Machines, l.ServerName, addr, l.HostKey, installing); err != nil {
		p := end(PhaseSSHReady, "", failed(PhaseSSHReady, err, "%s", t.sshFix(err)))
		return phases, srv, p.Err
	}
	end(PhaseSSHReady, "pinned host key presented, gateway key accepted", nil)
	return phases, srv, nil
}

// sshFix says what to do when the machine booted but never let the
// gateway in with its pinned host key.
func (t TestMachine) sshFix(err error) string {
	switch {
	case errors.Is(err, ErrHostKeyMismatch):
		return fmt.Sprintf("%v; the image does not apply the gateway's bootstrap document: build it from nix/ (docs/nixos.md) or use infect provisioning", err)
	case t.Machine.Infect != nil:
		return fmt.Sprintf("%v; NixOS did not come up with the pinned host key in time: check that the infect flake builds (docs/nixos.md), or allow more time (--test-machine-timeout)", err)
	}
	return fmt.Sprintf("%v; the machine's bootstrap unit did not apply the document: see journalctl -u cloud-instance-bootstrap on a machine of this image (docs/nixos.md)", err)
}

// waitPort returns once something accepts connections at addr, trying
// every so often until ctx ends.
func (t TestMachine) waitPort(ctx context.Context, addr string) error {
	delay := bootFirstDelay
	for {
		conn, err := t.Dial(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return nil
		}
		if perr := pause(ctx, delay); perr != nil {
			return fmt.Errorf("last: %v: %w", err, perr)
		}
		delay = min(2*delay, bootMaxDelay)
	}
}

// delete removes the test machine; srv is zero when create failed, and then
// the server is looked up by name in case the cloud made it anyway.
func (t TestMachine) delete(ctx context.Context, l Lease, srv Server) Phase {
	start := t.Clock.Now()
	p := Phase{Name: PhaseDelete}
	err := t.deleteServer(ctx, l, &srv)
	p.Took = t.Clock.Now().Sub(start)
	switch {
	case err != nil:
		p.Err = &TestMachineError{Phase: PhaseDelete, Err: err, Fix: fmt.Sprintf(
			"%v; delete server %s in the cloud's console, or leave it to the gateway's reconcile, which powers it off and deletes it as an orphan after --orphan-grace",
			err, l.ServerName)}
		t.Progress(fmt.Sprintf("%s of %s failed after %s", PhaseDelete, l.ServerName, p.Rounded()))
		return p
	case srv.ID == 0:
		p.Result = "no server was made"
	default:
		p.Result = fmt.Sprintf("server %d %s deleted", srv.ID, srv.Name)
	}
	t.Progress(fmt.Sprintf("%s took %s: %s", PhaseDelete, p.Rounded(), p.Result))
	return p
}

func (t TestMachine) deleteServer(ctx context.Context, l Lease, srv *Server) error {
	if srv.ID == 0 {
		list, err := t.Provider.List(ctx)
		if err != nil {
			return fmt.Errorf("look for server %s: %w", l.ServerName, err)
		}
		for _, s := range list {
			if s.Name == l.ServerName {
				*srv = s
			}
		}
		if srv.ID == 0 {
			return nil
		}
	}
	if err := t.Provider.Delete(ctx, srv.ID); err != nil && !errors.Is(err, ErrServerNotFound) {
		return fmt.Errorf("delete server %s: %w", l.ServerName, err)
	}
	return nil
}
