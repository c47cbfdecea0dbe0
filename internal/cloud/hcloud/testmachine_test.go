package hcloud_test

import (
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
)

// A test machine carries the gateway's labels, a lease id no lease has
// (so reconcile takes a leftover for an orphan), and a label saying what
// it is; a person's machine does not.
func TestTestMachineIsLabelled(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	trial := newPerson(t, "d4e5f6", e.port)
	trial.spec.TestMachine = true
	srv := e.create(t, ctx, trial.spec)
	if srv.Labels[hcloud.LabelTestMachine] != "true" || srv.Labels[hcloud.LabelGateway] != "test" || srv.Labels[hcloud.LabelLease] != "d4e5f6" {
		t.Errorf("test machine labels = %v", srv.Labels)
	}
	_, person := e.server(t, ctx, "a1b2c3")
	if v, ok := person.Labels[hcloud.LabelTestMachine]; ok {
		t.Errorf("a person's machine is labelled %s=%s", hcloud.LabelTestMachine, v)
	}
}
