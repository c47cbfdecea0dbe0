package lease

import (
	"context"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestEventsCarryTheConnectionThatCausedThem: what a person's connection
// causes (create, extend, stop, destroy) is recorded with its id, including
// the creation that runs on past the connection's context; what the reaper
// does is recorded with none.
func TestEventsCarryTheConnectionThatCausedThem(t *testing.T) {
	d := newDomain(t, Policy{DefaultTTL: 4 * time.Hour, MaxTTL: 24 * time.Hour, MaxLifetime: 72 * time.Hour, IdleTimeout: time.Hour}, ReaperConfig{})
	d.reconciled()
	d.m.cfg.Machine.User = "claude"
	d.m.cfg.Machine.GatewayKey = testkit.NewKey(t).Signer.PublicKey()
	d.cloud.createFn = func(_ context.Context, spec CreateSpec) (Server, error) {
		return Server{ID: 7, Name: spec.Name, Status: "running", IPv4: "192.0.2.7", ServerType: "cx23", Location: "fsn1", Created: d.clock.Now()}, nil
	}
	key := testkit.NewKey(t).Signer.PublicKey()
	fp := Fingerprint(key)
	byConn := func(conn string) context.Context { return WithConn(context.Background(), conn) }

	if _, err := d.m.Ensure(byConn("conn0001"), key, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.Extend(byConn("conn0002"), fp, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.Stop(byConn("conn0003"), fp); err != nil {
		t.Fatal(err)
	}
	// Idle and stopped: the reaper leaves it, then, expired, destroys it.
	d.clock.Advance(6 * time.Hour)
	d.r.Tick(context.Background())

	events, err := d.store.Events(0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"create": "conn0001", "extend": "conn0002", "stop": "conn0003", "destroy": ""}
	for _, e := range events {
		conn, ok := want[e.Kind]
		if !ok {
			continue
		}
		delete(want, e.Kind)
		if e.Conn != conn {
			t.Errorf("%s event carries connection %q, want %q", e.Kind, e.Conn, conn)
		}
	}
	if len(want) != 0 {
		t.Errorf("no events of kinds %v among %+v", want, events)
	}
}
