package lease_test

import (
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestRevoke: the machine of a key that left the allow list is stopped,
// kept or destroyed as the policy says, and the audit log says so. The
// machine (a real local one) refuses the key from then on: at once when
// kept running, from its next start when stopped; the gateway's own key
// still works there.
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
			person := testkit.NewKey(t)
			key := person.Public()
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
			if c.wantState != "" {
				got := revokedOnMachine(t, w, m, fp, person)
				if !got.KeyRevoked {
					t.Errorf("lease %+v; want its key marked revoked", got)
				}
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

// revokedOnMachine checks that fp's machine refuses person's key and takes
// the gateway's, starting it if stopped (the start revokes the key), and
// returns the lease.
func revokedOnMachine(t *testing.T, w *world, m *lease.Manager, fp string, person testkit.Key) lease.Lease {
	t.Helper()
	l, err := w.store.Get(fp)
	if err != nil {
		t.Fatal(err)
	}
	if l.State != lease.StateRunning {
		if l, err = m.Ensure(ctx(t), person.Public(), nil); err != nil {
			t.Fatalf("start after the revocation: %v", err)
		}
	}
	hostKey, _, _, _, err := gossh.ParseAuthorizedKey([]byte(l.HostKey))
	if err != nil {
		t.Fatal(err)
	}
	c, err := gossh.Dial("tcp", l.Address, &gossh.ClientConfig{
		User: "claude", Auth: []gossh.AuthMethod{gossh.PublicKeys(person.Signer)},
		HostKeyCallback: gossh.FixedHostKey(hostKey), Timeout: 10 * time.Second,
	})
	if err == nil {
		c.Close()
		t.Errorf("the revoked key logged in to its machine directly")
	} else if !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("direct login with the revoked key: %v; want it refused", err)
	}
	if err := w.machines.SetExpiry(ctx(t), l.Address, l.HostKey, l.Expires); err != nil {
		t.Errorf("the gateway's key on the machine after the revocation: %v", err)
	}
	return l
}
