package lease

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestRevokeKeyOnMachine: a revoked key is marked on its lease with the
// revocation's event, in one write, and revoked on its machine: at once
// when the machine is kept running, else once it runs again. A machine
// that cannot be told is no failure: the mark stays for the next start.
func TestRevokeKeyOnMachine(t *testing.T) {
	const key = "ssh-ed25519 AAAAperson"
	failed := errors.New("ssh: handshake failed")
	for _, c := range []struct {
		name      string
		action    RevokedAction
		state     State
		revokeErr error
		wantCalls []string // provider and machine calls of the revocation
		wantState State
	}{
		{"keep running", RevokedKeep, StateRunning, nil, []string{"RevokeKey 192.0.2.1:22"}, StateRunning},
		{"keep running, machine fails", RevokedKeep, StateRunning, failed, []string{"RevokeKey 192.0.2.1:22"}, StateRunning},
		{"keep stopped", RevokedKeep, StateStopped, nil, nil, StateStopped},
		{"stop running", RevokedStop, StateRunning, nil, []string{"PowerOff 1"}, StateStopped},
		{"stop stopped", RevokedStop, StateStopped, nil, nil, StateStopped},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDomain(t, Policy{RevokedAction: c.action}, ReaperConfig{})
			l := d.running(t, "a", 1, in(c.state), func(l *Lease) { l.PublicKey = key })
			var revoked []string
			d.machines.revokeKeyFn = func(_ context.Context, addr, hostKey, k string) error {
				revoked = append(revoked, k)
				return c.revokeErr
			}
			writes := d.store.writes
			if err := d.m.Revoke(context.Background(), l.Fingerprint); err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			if got := d.cloud.changes(); !slices.Equal(got, c.wantCalls) {
				t.Errorf("calls %q, want %q", got, c.wantCalls)
			}
			stored, _ := d.stored(t, l.Fingerprint)
			if !stored.KeyRevoked || stored.State != c.wantState {
				t.Errorf("lease after revoke: %+v; want the key marked revoked, %s", stored, c.wantState)
			}
			if len(revoked) > 0 && revoked[0] != key {
				t.Errorf("revoked %q on the machine, want %q", revoked, key)
			}
			// The mark and the revoke event: one write, then the stop's
			// own (intent, then done).
			wantWrites := 1
			if c.action == RevokedStop && c.state == StateRunning {
				wantWrites = 3
			}
			if got := d.store.writes - writes; got != wantWrites {
				t.Errorf("%d writes, want %d", got, wantWrites)
			}
			if ev := d.store.kinds(l.Fingerprint); len(ev) == 0 || ev[0] != "revoke: the key left the allow list; revoked action: "+string(c.action) {
				t.Errorf("events %q", ev)
			}

			// The next start revokes it (again: the command is idempotent,
			// and a fresh disk would not know).
			if stored.State == StateRunning {
				return
			}
			d.cloud.getFn = func(context.Context, int64) (Server, error) { return Server{ID: 1, Status: "off"}, nil }
			before := len(d.cloud.made(""))
			if _, err := d.m.ensure(context.Background(), l.Fingerprint, nil, func(string, ...any) {}); err != nil {
				t.Fatalf("start after the revocation: %v", err)
			}
			got := d.cloud.made("")[before:]
			want := []string{"Get 1", "PowerOn 1", "Wait 192.0.2.1:22", "RevokeKey 192.0.2.1:22", "SetExpiry 192.0.2.1:22"}
			if !slices.Equal(got, want) {
				t.Errorf("start: calls %q, want %q", got, want)
			}
			if len(revoked) != 1 || revoked[0] != key {
				t.Errorf("revoked on the machine: %q, want %q once", revoked, key)
			}
		})
	}
}

// TestStartWithoutRevocation: a machine whose key was never revoked is
// never asked to revoke it.
func TestStartWithoutRevocation(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	l := d.running(t, "a", 1, in(StateStopped))
	d.cloud.getFn = func(context.Context, int64) (Server, error) { return Server{ID: 1, Status: "off"}, nil }
	if _, err := d.m.ensure(context.Background(), l.Fingerprint, nil, func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	if got := d.cloud.made("RevokeKey"); len(got) != 0 {
		t.Errorf("calls %q; want no revocation", got)
	}
}
