package lease

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestRevokeKeyOnMachine: a revoked key is marked on its lease with the
// revocation's event, in one write, and revoked on its machine: at once
// when the machine is kept running, else once it runs again; each time
// the machine refuses it, that is recorded (one write), so a later start
// of the same server does not ask again.
func TestRevokeKeyOnMachine(t *testing.T) {
	const key = "ssh-ed25519 AAAAperson"
	for _, c := range []struct {
		name      string
		action    RevokedAction
		state     State
		wantCalls []string // provider and machine calls of the revocation
		wantState State
		wantOn    int64 // the server seen to refuse the key
		wantPuts  int
	}{
		{"keep running", RevokedKeep, StateRunning, []string{"RevokeKey 192.0.2.1:22"}, StateRunning, 1, 2},
		{"keep stopped", RevokedKeep, StateStopped, nil, StateStopped, 0, 1},
		// A stop's intent, then its end.
		{"stop running", RevokedStop, StateRunning, []string{"PowerOff 1"}, StateStopped, 0, 3},
		{"stop stopped", RevokedStop, StateStopped, nil, StateStopped, 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDomain(t, Policy{RevokedAction: c.action}, ReaperConfig{})
			l := d.running(t, "a", 1, in(c.state), func(l *Lease) { l.PublicKey = key })
			var revoked []string
			d.machines.revokeKeyFn = func(_ context.Context, addr, hostKey, k string) error {
				revoked = append(revoked, k)
				return nil
			}
			writes := d.store.writes
			if err := d.m.Revoke(context.Background(), l.Fingerprint); err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			if got := d.cloud.changes(); !slices.Equal(got, c.wantCalls) {
				t.Errorf("calls %q, want %q", got, c.wantCalls)
			}
			stored, _ := d.stored(t, l.Fingerprint)
			if !stored.KeyRevoked || stored.State != c.wantState || stored.KeyRevokedOn != c.wantOn {
				t.Errorf("lease after revoke: %+v; want the key marked revoked, %s, refused on server %d", stored, c.wantState, c.wantOn)
			}
			if got := d.store.writes - writes; got != c.wantPuts {
				t.Errorf("%d writes, want %d", got, c.wantPuts)
			}
			ev := d.store.kinds(l.Fingerprint)
			if len(ev) == 0 || ev[0] != "revoke: the key left the allow list; revoked action: "+string(c.action) {
				t.Errorf("events %q", ev)
			}
			if c.wantOn != 0 && !slices.Contains(ev, "revoke: key revoked on server 1") {
				t.Errorf("events %q; want the machine's refusal recorded", ev)
			}
			if stored.State == StateRunning {
				return
			}

			// The next start revokes it; a later start of the same server
			// does not ask again (its disk keeps the revocation).
			d.cloud.getFn = func(context.Context, int64) (Server, error) { return Server{ID: 1, Status: "off"}, nil }
			start := func() []string {
				t.Helper()
				before := len(d.cloud.made(""))
				if _, err := d.m.ensure(context.Background(), l.Fingerprint, nil, func(string, ...any) {}); err != nil {
					t.Fatalf("start after the revocation: %v", err)
				}
				return d.cloud.made("")[before:]
			}
			want := []string{"Get 1", "PowerOn 1", "Wait 192.0.2.1:22", "RevokeKey 192.0.2.1:22", "SetExpiry 192.0.2.1:22"}
			if got := start(); !slices.Equal(got, want) {
				t.Errorf("start: calls %q, want %q", got, want)
			}
			if len(revoked) != 1 || revoked[0] != key {
				t.Errorf("revoked on the machine: %q, want %q once", revoked, key)
			}
			if _, err := d.m.Stop(context.Background(), l.Fingerprint); err != nil {
				t.Fatal(err)
			}
			if got := start(); slices.Contains(got, "RevokeKey 192.0.2.1:22") {
				t.Errorf("second start of the same server: calls %q; want no revocation", got)
			}
		})
	}
}

// TestRevokeKeyRetried: a kept machine that could not be told is told at
// the reaper's next pass, and not again once it refuses the key.
func TestRevokeKeyRetried(t *testing.T) {
	d := newDomain(t, Policy{RevokedAction: RevokedKeep}, ReaperConfig{})
	d.reconciled()
	l := d.running(t, "a", 1, func(l *Lease) { l.PublicKey = "ssh-ed25519 AAAAperson" })
	d.machines.revokeKeyFn = func(context.Context, string, string, string) error { return errors.New("ssh: handshake failed") }
	if err := d.m.Revoke(context.Background(), l.Fingerprint); err != nil {
		t.Fatalf("Revoke with the machine unreachable: %v", err)
	}
	if stored, _ := d.stored(t, l.Fingerprint); !stored.KeyRevoked || stored.KeyRevokedOn != 0 {
		t.Fatalf("lease %+v; want the revocation pending", stored)
	}
	d.machines.revokeKeyFn = nil
	d.r.Tick(context.Background())
	if stored, _ := d.stored(t, l.Fingerprint); stored.KeyRevokedOn != 1 {
		t.Errorf("lease after a reaper pass %+v; want the key refused on server 1", stored)
	}
	d.r.Tick(context.Background())
	if got := d.cloud.made("RevokeKey"); len(got) != 2 {
		t.Errorf("calls %q; want the failed one and one retry", got)
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
	d.r.Tick(context.Background())
	if got := d.cloud.made("RevokeKey"); len(got) != 0 {
		t.Errorf("calls %q; want no revocation", got)
	}
}
