package hcloud_test

import (
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
)

// A pool machine carries the gateway's labels, its id as the lease label
// (the claiming lease takes that id) and the pool label; claiming it
// removes the pool label and keeps the rest, and removing it again, as a
// claim retried after a crash does, is no error.
func TestPoolMachineLabelledUntilClaimed(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	pooled := newPerson(t, "f00d01", e.port)
	pooled.spec.Pool = true
	srv := e.create(t, ctx, pooled.spec)
	if srv.Labels[hcloud.LabelPool] != "true" || srv.Labels[hcloud.LabelGateway] != "test" || srv.Labels[hcloud.LabelLease] != "f00d01" {
		t.Fatalf("pool machine labels = %v", srv.Labels)
	}
	_, person := e.server(t, ctx, "a1b2c3")
	if v, ok := person.Labels[hcloud.LabelPool]; ok {
		t.Errorf("a person's machine is labelled %s=%s", hcloud.LabelPool, v)
	}

	for range 2 {
		if err := e.p.Unpool(ctx, srv.ID); err != nil {
			t.Fatalf("unpool: %v", err)
		}
	}
	got, err := e.p.Get(ctx, srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Labels[hcloud.LabelPool]; ok || got.Labels[hcloud.LabelGateway] != "test" || got.Labels[hcloud.LabelLease] != "f00d01" {
		t.Errorf("claimed machine labels = %v, want the gateway's and the lease's only", got.Labels)
	}
	if err := e.p.Unpool(ctx, person.ID); err != nil {
		t.Errorf("unpool of a person's machine: %v", err)
	}
}

// Unpool, like every provider call, leaves servers that are not the
// gateway's alone.
func TestUnpoolLeavesOthersAlone(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	other := newPerson(t, "beef02", e.port)
	res := e.createBehindItsBack(t, ctx, other.spec, map[string]string{hcloud.LabelPool: "true"})
	if err := e.p.Unpool(ctx, res.Server.ID); err == nil {
		t.Fatal("unpool relabelled a server that is not the gateway's")
	}
	srv, _, err := e.raw.Server.GetByID(ctx, res.Server.ID)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Labels[hcloud.LabelPool] != "true" {
		t.Errorf("labels of a server not the gateway's changed to %v", srv.Labels)
	}
}
