package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// TestWorkingAgentShowsInStatus: on real parts with the reaper's clock, a
// working agent keeps the machine past the idle timeout with one audit
// event, status (text and JSON) shows what the reaper read, and once the
// agent waits the machine stops at the idle timeout.
func TestWorkingAgentShowsInStatus(t *testing.T) {
	p := basePolicy
	p.MaxUnattended = 8 * time.Hour
	w := newWorld(t, p)
	alice := w.personWithMachine()
	w.do(alice, "cc-agent-state working")

	w.at(40 * time.Minute)
	w.at(70 * time.Minute)
	l := w.lease(alice)
	if l.State != lease.StateRunning || l.Agent.State != lease.AgentWorking {
		t.Fatalf("after 70m away with the agent working: %s, agent %+v; want running, working", l.State, l.Agent)
	}
	if n := len(w.events("unattended")); n != 1 {
		t.Errorf("%d unattended events over two passes, want 1", n)
	}

	out, err := w.run(alice, "status")
	if err != nil || !strings.Contains(out, "Agent") || !strings.Contains(out, "working since ") || !strings.Contains(out, "(seen 0s ago)") {
		t.Errorf("status (%v) does not show the agent working, seen now:\n%s", err, out)
	}
	out, err = w.run(alice, "status --json")
	var st statusJSON
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Agent == nil ||
		st.Agent.State != "working" || !st.Agent.Seen.Equal(w.start.Add(70*time.Minute).UTC()) {
		t.Errorf("status --json (%v) agent %+v:\n%s", err, st.Agent, out)
	}

	w.do(alice, "cc-agent-state waiting") // at 70m: activity too
	w.at(100*time.Minute - time.Second)
	if l := w.lease(alice); l.State != lease.StateRunning {
		t.Fatalf("before the idle timeout: %s", l.State)
	}
	w.at(100 * time.Minute)
	l = w.lease(alice)
	if l.State != lease.StateStopped || l.Agent.State != lease.AgentWaiting {
		t.Errorf("a timeout after the last activity with the agent waiting: %s, agent %+v; want stopped", l.State, l.Agent)
	}
	if out, _ := w.run(alice, "status --json"); strings.Contains(out, `"agent"`) {
		t.Errorf("status of a stopped machine shows an agent:\n%s", out)
	}
}
