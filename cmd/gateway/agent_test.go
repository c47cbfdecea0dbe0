package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// agentStatus is the part of `status --json` about idleness and the agent.
type agentStatus struct {
	State       string `json:"state"`
	IdleSeconds int64  `json:"idle_seconds"`
	Agent       *struct {
		State string    `json:"state"`
		Since time.Time `json:"since"`
	} `json:"agent"`
}

// TestWorkingAgentKeepsTheMachine: a person marks the agent working with
// the real ssh and leaves; the reaper keeps the machine running pass after
// pass, well past the idle timeout, records one unattended event, and
// status shows the agent. When the agent then waits for an answer with
// nobody there, the person is told at their notification target, and the
// machine stops at the timeout.
func TestWorkingAgentKeepsTheMachine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	alice := newPerson(t, filepath.Join(dir, "alice"))
	list := writeKeyList(t, filepath.Join(dir, "users"), alice)
	g := newLocalGatewayIn(t, dir, "--users", list, "--admins", list,
		"--idle-timeout", "2s", "--reaper-interval", "1s", "--max-unattended", "1h").start(t)

	told := newNotifyReceiver(t)
	if r := alice.ssh(g, "", "notify", "add", told.url+"/alice#json"); r.code != 0 {
		t.Fatalf("notify add: %+v", r)
	}
	if r := alice.ssh(g, "", "cc-agent-state", "working"); r.code != 0 {
		t.Fatalf("cc-agent-state working: %+v", r)
	}
	status := func() agentStatus {
		r := alice.ssh(g, "", "status", "--json")
		var st agentStatus
		if err := json.Unmarshal([]byte(r.stdout), &st); r.code != 0 || err != nil {
			t.Fatalf("status --json: %+v (%v)", r, err)
		}
		return st
	}
	// Three idle timeouts without the person: several passes kept it.
	testkit.Eventually(t, time.Minute, func() error {
		st := status()
		if st.State != "running" {
			t.Fatalf("the machine is %s after %ds idle, with the agent working", st.State, st.IdleSeconds)
		}
		if st.Agent == nil || st.Agent.State != "working" || st.IdleSeconds < 6 {
			return fmt.Errorf("status: idle %ds, agent %+v; want idle 6s or more, agent working", st.IdleSeconds, st.Agent)
		}
		return nil
	})
	if r := alice.ssh(g, "", "status"); !strings.Contains(r.stdout, "Agent") || !strings.Contains(r.stdout, "working since") {
		t.Errorf("status does not show the working agent:\n%s", r.stdout)
	}
	events := alice.ssh(g, "", "admin", "events").stdout
	if n := strings.Count(events, " unattended "); n != 1 {
		t.Errorf("%d unattended events, want 1 for the stretch:\n%s", n, events)
	}

	// The agent asks for a permission while nobody is there: alice is
	// told, and a waiting agent does not keep the machine.
	if r := alice.ssh(g, "", "cc-agent-state", "waiting"); r.code != 0 {
		t.Fatalf("cc-agent-state waiting: %+v", r)
	}
	d := told.waitFor(t, "/alice", "is waiting for you")
	var msg struct{ About, Machine string }
	if err := json.Unmarshal([]byte(d.body), &msg); err != nil || msg.About != "agent" || !strings.HasPrefix(msg.Machine, "cc-") {
		t.Errorf("the waiting agent's notification: %q (%v)", d.body, err)
	}
	testkit.Eventually(t, time.Minute, func() error {
		if st := status(); st.State != "stopped" {
			return fmt.Errorf("the machine is %s with the agent waiting, want stopped", st.State)
		}
		return nil
	})
}
