package lease

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// testMachineRig is a TestMachine on the fakes, its clock moved by the fake cloud and
// machine as they work, so each phase takes a known time.
type testMachineRig struct {
	tm       TestMachine
	provider *fakeProvider
	machines *fakeMachines
	clock    *testkit.Clock
	spec     CreateSpec // what Create was asked for
	dials    int
	progress []string
}

func newTestMachineRig(t *testing.T) *testMachineRig {
	r := &testMachineRig{clock: testkit.NewClock(time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC))}
	r.provider = &fakeProvider{t: t}
	r.provider.createFn = func(ctx context.Context, spec CreateSpec) (Server, error) {
		r.spec = spec
		r.clock.Advance(12300 * time.Millisecond)
		return Server{ID: 7, Name: spec.Name, IPv4: "127.0.0.9", Status: "running"}, nil
	}
	r.machines = &fakeMachines{calls: r.provider, waitFn: func(ctx context.Context, addr, hostKey string) error {
		r.clock.Advance(2 * time.Second)
		return nil
	}}
	r.tm = TestMachine{
		Provider: r.provider,
		Machines: r.machines,
		Machine: MachineSpec{
			User: "claude", SSHPort: 2022, GatewayKey: testkit.NewKey(t).Public(),
			ServerTypes: []string{"cx23"}, Locations: []string{"fsn1"},
		},
		Clock: r.clock,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			r.dials++
			r.provider.record("Dial %s", addr)
			r.clock.Advance(31 * time.Second)
			c1, c2 := net.Pipe()
			c2.Close()
			return c1, nil
		},
		Progress: func(line string) { r.progress = append(r.progress, line) },
	}
	return r
}

func phaseNames(phases []Phase) []string {
	var out []string
	for _, p := range phases {
		out = append(out, p.Name)
	}
	return out
}

func TestTestMachineReportsEachPhaseAndDeletes(t *testing.T) {
	r := newTestMachineRig(t)
	phases, err := r.tm.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		took time.Duration
	}{{PhaseCreate, 12300 * time.Millisecond}, {PhaseBoot, 31 * time.Second}, {PhaseSSHReady, 2 * time.Second}, {PhaseDelete, 0}}
	if len(phases) != len(want) {
		t.Fatalf("phases %v, want %v", phaseNames(phases), want)
	}
	for i, w := range want {
		if p := phases[i]; p.Name != w.name || p.Took != w.took || p.Err != nil {
			t.Errorf("phase %d: %+v, want %s taking %s", i, p, w.name, w.took)
		}
	}
	if got := phases[0].Rounded(); got != 12*time.Second {
		t.Errorf("create rounded to %s, want 12s", got)
	}
	if got := r.provider.made(""); !slices.Equal(got, []string{"Create " + r.spec.Name, "Dial 127.0.0.9:2022", "Wait 127.0.0.9:2022", "Delete 7"}) {
		t.Errorf("calls %q", got)
	}
	if !r.spec.TestMachine || !strings.HasPrefix(r.spec.Name, TestMachinePrefix) || r.spec.Name != TestMachinePrefix+r.spec.LeaseID {
		t.Errorf("create spec %+v: want a test machine named %s<lease id>", r.spec, TestMachinePrefix)
	}
	// The machine gets the document a person's would, with the gateway's
	// key as its only key.
	doc, err := bootstrap.Parse([]byte(r.spec.UserData))
	if err != nil {
		t.Fatal(err)
	}
	if gw := testkit.AuthorizedKey(r.tm.Machine.GatewayKey); !slices.Equal(doc.AuthorizedKeys, []string{gw}) {
		t.Errorf("authorized keys %q, want only the gateway's %q", doc.AuthorizedKeys, gw)
	}
	if doc.User != "claude" || doc.SSHPort != 2022 || doc.InstanceID != r.spec.LeaseID {
		t.Errorf("document %+v", doc)
	}
	if len(r.progress) != 5 || !strings.HasPrefix(r.progress[0], "creating "+r.spec.Name+" (cx23 in fsn1)") ||
		r.progress[1] != "create took 12s: server 7 "+r.spec.Name+" at 127.0.0.9" {
		t.Errorf("progress %q", r.progress)
	}
}

func TestTestMachineKeepsPollingThePortUntilItAnswers(t *testing.T) {
	r := newTestMachineRig(t)
	dial := r.tm.Dial
	r.tm.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if r.dials < 2 {
			r.dials++
			return nil, errors.New("connection refused")
		}
		return dial(ctx, network, addr)
	}
	if _, err := r.tm.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r.dials != 3 {
		t.Errorf("dialled %d times, want 3", r.dials)
	}
}

func TestTestMachineDeletesWhenTheMachineFails(t *testing.T) {
	r := newTestMachineRig(t)
	r.machines.waitFn = func(ctx context.Context, addr, hostKey string) error {
		return ErrHostKeyMismatch
	}
	phases, err := r.tm.Run(t.Context())
	var te *TestMachineError
	if !errors.As(err, &te) || te.Phase != PhaseSSHReady || !strings.Contains(err.Error(), "docs/nixos.md") {
		t.Fatalf("error %v, want the ssh ready phase failing with a fix", err)
	}
	if got := phaseNames(phases); !slices.Equal(got, []string{PhaseCreate, PhaseBoot, PhaseSSHReady, PhaseDelete}) || phases[3].Err != nil {
		t.Errorf("phases %v", phases)
	}
	if got := r.provider.made("Delete"); !slices.Equal(got, []string{"Delete 7"}) {
		t.Errorf("deletes %q", got)
	}
}

func TestTestMachineDeletesAServerWhoseCreateFailed(t *testing.T) {
	r := newTestMachineRig(t)
	r.provider.createFn = func(ctx context.Context, spec CreateSpec) (Server, error) {
		r.spec = spec
		return Server{}, errors.New("create server: wait for action: timed out")
	}
	r.provider.listFn = func(ctx context.Context) ([]Server, error) {
		return []Server{{ID: 3, Name: "cc-someone"}, {ID: 8, Name: r.spec.Name}}, nil
	}
	phases, err := r.tm.Run(t.Context())
	var te *TestMachineError
	if !errors.As(err, &te) || te.Phase != PhaseCreate || !strings.Contains(err.Error(), "timed out; fix what it names") {
		t.Fatalf("error %v, want the create phase failing", err)
	}
	if got := phaseNames(phases); !slices.Equal(got, []string{PhaseCreate, PhaseDelete}) {
		t.Errorf("phases %v", got)
	}
	if got := r.provider.made("Delete"); !slices.Equal(got, []string{"Delete 8"}) {
		t.Errorf("deletes %q, want the server the failed create made", got)
	}
}

func TestTestMachineInterruptedStillDeletes(t *testing.T) {
	r := newTestMachineRig(t)
	ctx, cancel := context.WithCancel(t.Context())
	r.machines.waitFn = func(ctx context.Context, addr, hostKey string) error {
		cancel() // Ctrl-C while waiting for SSH
		<-ctx.Done()
		return ctx.Err()
	}
	r.provider.deleteFn = func(ctx context.Context, id int64) error {
		return ctx.Err() // the delete's context is its own
	}
	phases, err := r.tm.Run(ctx)
	var te *TestMachineError
	if !errors.As(err, &te) || te.Phase != PhaseSSHReady || te.Fix != "interrupted before it finished" {
		t.Fatalf("error %v, want the ssh ready phase interrupted", err)
	}
	if last := phases[len(phases)-1]; last.Name != PhaseDelete || last.Err != nil {
		t.Errorf("last phase %+v, want the delete done", last)
	}
}

func TestTestMachineFailedDeleteNamesTheServerAndReconcile(t *testing.T) {
	r := newTestMachineRig(t)
	r.provider.deleteFn = func(ctx context.Context, id int64) error { return errors.New("503 service unavailable") }
	phases, err := r.tm.Run(t.Context())
	var te *TestMachineError
	if !errors.As(err, &te) || te.Phase != PhaseDelete {
		t.Fatalf("error %v, want the delete phase failing", err)
	}
	for _, want := range []string{r.spec.Name, "orphan"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if phases[2].Err != nil {
		t.Errorf("ssh ready %+v, want done", phases[2])
	}
}

func TestTestMachineTakesAServerAlreadyGoneAsDeleted(t *testing.T) {
	r := newTestMachineRig(t)
	r.provider.deleteFn = func(ctx context.Context, id int64) error { return ErrServerNotFound }
	if _, err := r.tm.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// Under infect provisioning the machine gets the install script, and the
// stock system's own host key means "installing", not a failure: the run
// keeps waiting (here until it is interrupted) and deletes the machine.
func TestTestMachineWaitsWhileNixOSInstalls(t *testing.T) {
	r := newTestMachineRig(t)
	r.tm.Machine.Infect = &bootstrap.InfectOptions{Flake: "github:me/machines?dir=nix"}
	ctx, cancel := context.WithCancel(t.Context())
	r.machines.waitFn = func(ctx context.Context, addr, hostKey string) error {
		return fmt.Errorf("stock sshd: %w", ErrHostKeyMismatch)
	}
	progress := r.tm.Progress
	r.tm.Progress = func(line string) {
		progress(line)
		if strings.HasPrefix(line, "installing NixOS") {
			cancel()
		}
	}
	phases, err := r.tm.Run(ctx)
	var te *TestMachineError
	if !errors.As(err, &te) || te.Phase != PhaseSSHReady || te.Fix != "interrupted before it finished" {
		t.Fatalf("error %v, want the ssh ready phase interrupted while installing", err)
	}
	if !slices.Contains(r.progress, "installing NixOS (the stock system answers until it reboots)") {
		t.Errorf("progress %q does not say NixOS is installing", r.progress)
	}
	if last := phases[len(phases)-1]; last.Name != PhaseDelete || last.Err != nil {
		t.Errorf("last phase %+v, want the delete done", last)
	}
	doc, err := bootstrap.ParseUserData([]byte(r.spec.UserData))
	if err != nil || !strings.HasPrefix(r.spec.UserData, "#!") || doc.InstanceID != r.spec.LeaseID {
		t.Errorf("user data is not the infect script for the test machine: %v", err)
	}
}

func TestPhaseRounded(t *testing.T) {
	for took, want := range map[time.Duration]time.Duration{
		1234567 * time.Nanosecond:  time.Millisecond,
		3456 * time.Millisecond:    3500 * time.Millisecond,
		83456 * time.Millisecond:   83 * time.Second,
		10*time.Minute + time.Hour: 70 * time.Minute,
	} {
		if got := (Phase{Took: took}).Rounded(); got != want {
			t.Errorf("%s rounded to %s, want %s", took, got, want)
		}
	}
}
