package lease_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestRevoke: the machine of a key that left the allow list is stopped,
// kept or destroyed as the policy says, and the audit log says so.
func TestRevoke(t *testing.T) {
	for _, c := range []struct {
		action    lease.RevokedAction
		wantState lease.State // "" for no lease left
		wantPower string
	}{
		{"", lease.StateStopped, "off"},
		{lease.RevokedStop, lease.StateStopped, "off"},
		{lease.RevokedKeep, lease.StateRunning, "running"},
		{lease.RevokedDestroy, "", ""},
	} {
		t.Run(string(c.action), func(t *testing.T) {
			w := newWorld(t)
			key := testkit.NewKey(t).Public()
			fp := lease.Fingerprint(key)
			l, err := w.m.Ensure(ctx(t), key, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The same parts, with the revoked action under test.
			m := lease.NewManager(lease.Config{
				Store: w.store, Provider: w.provider, Machines: w.machines, Clock: w.clock, Logger: testkit.Quiet,
				Policy: lease.Policy{DefaultTTL: 4 * time.Hour, MaxTTL: 24 * time.Hour, MaxLifetime: 72 * time.Hour, RevokedAction: c.action},
			})
			if err := m.Revoke(ctx(t), fp); err != nil {
				t.Fatal(err)
			}
			got, err := w.store.Get(fp)
			switch {
			case c.wantState == "" && err == nil:
				t.Errorf("lease after revoke: %+v; want none", got)
			case c.wantState != "" && (err != nil || got.State != c.wantState):
				t.Errorf("lease after revoke: %+v, %v; want %s", got, err, c.wantState)
			}
			srv, err := w.provider.Get(ctx(t), l.ServerID)
			if c.wantPower == "" && err == nil || c.wantPower != "" && (err != nil || srv.Status != c.wantPower) {
				t.Errorf("server after revoke: %+v, %v; want %q", srv, err, c.wantPower)
			}
			events, err := w.store.Events(10)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, e := range events {
				kinds = append(kinds, e.Kind+": "+e.Detail)
			}
			if !strings.Contains(strings.Join(kinds, "\n"), "revoke: the key left the allow list") {
				t.Errorf("audit log:\n%s\nwant the revocation", strings.Join(kinds, "\n"))
			}
		})
	}

	// A key without a machine: only the record.
	w := newWorld(t)
	if err := w.m.Revoke(ctx(t), "SHA256:nobody"); err != nil {
		t.Fatal(err)
	}
	if events, _ := w.store.Events(1); len(events) != 1 || events[0].Kind != "revoke" || events[0].Fingerprint != "SHA256:nobody" {
		t.Errorf("events: %+v; want the revocation", events)
	}
}
