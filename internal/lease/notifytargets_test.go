package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

func (d *domain) teller() *recTeller {
	r := &recTeller{}
	d.m.cfg.Teller = r
	return r
}

// Warnings are told out of band whether or not anyone is connected, once
// per lead time like the in-session ones.
func TestWarningsAreToldOutOfBand(t *testing.T) {
	d := newDomain(t, Policy{IdleTimeout: 30 * time.Minute, WarnBefore: []time.Duration{5 * time.Minute, time.Minute}}, ReaperConfig{})
	d.reconciled()
	told := d.teller()
	d.notify.sessions = 0
	l := d.running(t, "a", 1)

	d.clock.Advance(26 * time.Minute)
	d.r.Tick(context.Background())
	d.r.Tick(context.Background())
	d.clock.Advance(3 * time.Minute)
	d.r.Tick(context.Background())

	want := []string{
		l.Fingerprint + " warning: your machine cc-a will be stopped in 4m: it has had no activity for 26m. Any activity keeps it.",
		l.Fingerprint + " warning: your machine cc-a will be stopped in 1m: it has had no activity for 29m. Any activity keeps it.",
	}
	if got := told.got(); !slices.Equal(got, want) {
		t.Errorf("told:\n%q\nwant\n%q", got, want)
	}
}

// A machine made or started over the person's own connection is no news
// to them; one made without it is told.
func TestToldOfMachinesMadeWhileAway(t *testing.T) {
	d := newDomain(t, Policy{DefaultTTL: 4 * time.Hour, MaxTTL: 24 * time.Hour, MaxLifetime: 72 * time.Hour, IdleTimeout: time.Hour}, ReaperConfig{})
	d.reconciled()
	d.m.cfg.Machine.User = "claude"
	d.m.cfg.Machine.GatewayKey = testkit.NewKey(t).Signer.PublicKey()
	status := "running"
	d.cloud.createFn = func(_ context.Context, spec CreateSpec) (Server, error) {
		return Server{ID: 7, Name: spec.Name, Status: "running", IPv4: "192.0.2.7", ServerType: "cx23", Location: "fsn1", Created: d.clock.Now()}, nil
	}
	d.cloud.getFn = func(context.Context, int64) (Server, error) {
		return Server{ID: 7, Status: status, IPv4: "192.0.2.7"}, nil
	}
	d.cloud.powerOnFn = func(context.Context, int64) error { status = "running"; return nil }
	d.cloud.powerOffFn = func(context.Context, int64) error { status = "off"; return nil }
	told := d.teller()
	key := testkit.NewKey(t).Signer.PublicKey()
	fp := Fingerprint(key)
	own := WithConn(context.Background(), "conn0001")

	if _, err := d.m.Ensure(own, key, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.Stop(own, fp); err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.Ensure(own, key, nil); err != nil {
		t.Fatal(err)
	}
	if got := told.got(); len(got) != 0 {
		t.Fatalf("told of their own doing: %q", got)
	}

	if _, err := d.m.Stop(own, fp); err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.Ensure(context.Background(), key, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.Destroy(own, fp); err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.Ensure(context.Background(), key, nil); err != nil {
		t.Fatal(err)
	}
	// Nothing else is news of that kind.
	if _, err := d.m.Extend(context.Background(), fp, time.Hour); err != nil {
		t.Fatal(err)
	}
	got := told.got()
	if len(got) != 2 || !strings.HasPrefix(got[0], fp+" resumed: your machine cc-") ||
		!strings.HasPrefix(got[1], fp+" created: your machine cc-") || !strings.Contains(got[1], "while you were away") {
		t.Errorf("told %q, want a resume and a create", got)
	}
}

func TestNotifyTargetsAreBounded(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	ctx := WithConn(context.Background(), "conn0001")
	fp := "SHA256:alice"
	for i := range MaxNotifyTargets {
		if _, err := d.m.AddNotifyTarget(ctx, fp, fmt.Sprintf("https://ntfy.sh/topic-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The same URL again changes nothing and is no error.
	if p, err := d.m.AddNotifyTarget(ctx, fp, "https://ntfy.sh/topic-0"); err != nil || len(p.Notify) != MaxNotifyTargets {
		t.Fatalf("adding a target again: %d targets, %v", len(p.Notify), err)
	}
	var refused *TargetError
	if _, err := d.m.AddNotifyTarget(ctx, fp, "https://ntfy.sh/one-too-many"); !errors.As(err, &refused) ||
		!strings.Contains(err.Error(), "the most allowed; remove one first") {
		t.Fatalf("a target beyond the bound: %v", err)
	}
	long := "https://ntfy.sh/" + strings.Repeat("x", MaxNotifyURL)
	if _, err := d.m.RemoveNotifyTarget(ctx, fp, "https://ntfy.sh/topic-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.AddNotifyTarget(ctx, fp, long); !errors.As(err, &refused) {
		t.Fatalf("a URL too long: %v", err)
	}
	if _, err := d.m.RemoveNotifyTarget(ctx, fp, "https://ntfy.sh/topic-3"); !errors.As(err, &refused) {
		t.Fatalf("removing a target twice: %v", err)
	}
	p, err := d.m.Person(fp)
	if err != nil || len(p.Notify) != MaxNotifyTargets-1 || p.Notify[3].URL != "https://ntfy.sh/topic-4" {
		t.Fatalf("targets %+v, %v", p.Notify, err)
	}

	// The audit trail names each change, by the connection, without the
	// topic: who knows it can post to it.
	events := d.store.kinds(fp)
	if len(events) != MaxNotifyTargets+1 {
		t.Fatalf("events %q, want one per change", events)
	}
	for _, e := range events {
		if strings.Contains(e, "topic") || !strings.Contains(e, "https://ntfy.sh (") {
			t.Errorf("event %q", e)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for raw, want := range map[string]string{
		"https://ntfy.sh/my-topic":                          "https://ntfy.sh (9 chars of path)",
		"https://ntfy.sh/my-topic#json":                     "https://ntfy.sh (9 chars of path) #json",
		"https://hooks.slack.com/services/T0/B0/XyZ?x=1":    "https://hooks.slack.com (23 chars of path)",
		"https://user:pw@example.com:8443/hook":             "https://(credentials)@example.com:8443 (5 chars of path)",
		"https://example.com":                               "https://example.com",
		"https://example.com/x#secret-fragment-is-not-kept": "https://example.com (2 chars of path)",
		"not a url at all":                                  "(a URL that does not parse, 16 chars)",
	} {
		if got := RedactURL(raw); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", raw, got, want)
		}
	}
}
