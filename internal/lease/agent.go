package lease

import (
	"context"
	"fmt"
	"time"
)

// AgentState is what the coding agent on a machine says it is doing.
type AgentState string

// The agent states a machine records (cc-agent-state); "" is none.
const (
	AgentWorking AgentState = "working" // a prompt or a tool is running
	AgentWaiting AgentState = "waiting" // it asks the person for permission or input
	AgentIdle    AgentState = "idle"    // it finished and waits for a prompt
)

// Agent is what the reaper last read of a machine's agent. Since is by the
// machine's clock and only shown; the reaper decides by Seen and
// WorkingSeen, the gateway's clock.
type Agent struct {
	State AgentState `json:"state,omitempty"` // "" when none was recorded or it could not be read
	Since time.Time  `json:"since,omitzero"`  // when the agent entered State, by the machine's clock
	Seen  time.Time  `json:"seen,omitzero"`   // when the reaper read it
	// WorkingSeen is the latest read that found the agent working: up to
	// MaxUnattended after the person's last activity, it counts as activity.
	WorkingSeen time.Time `json:"working_seen,omitzero"`
	// KeptAfter is the LastActivity past which the reaper last kept the
	// machine for a working agent, so the audit log says so once per
	// stretch without the person, not at every pass.
	KeptAfter time.Time `json:"kept_after,omitzero"`
}

// readAgent reads the agent of l's machine at now into l.Agent and tells
// the person when it has changed to waiting or idle since the last read.
// A state that cannot be read counts as none: it keeps nothing running.
func (r *Reaper) readAgent(ctx context.Context, l Lease, now time.Time) Lease {
	m := r.m
	prev := l.Agent
	next := Agent{Seen: now, WorkingSeen: prev.WorkingSeen, KeptAfter: prev.KeptAfter}
	// A quarter of the lease's time: a machine that does not answer must
	// leave the rest for stopping it.
	readCtx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTimeout/4)
	defer cancel()
	state, since, err := m.cfg.Machines.AgentState(readCtx, l.Address, l.HostKey)
	if err != nil {
		m.log.Warn("reaper: agent state unreadable; counted as none", "lease", l.ID, "err", err)
	} else {
		next.State, next.Since = state, since
	}
	if next.State == AgentWorking {
		next.WorkingSeen = now
	}
	l.Agent = next
	if msg := agentNews(prev.State, next.State, l.ServerName); msg != "" {
		m.cfg.Teller.Tell(l.Fingerprint, "agent", msg)
	}
	return l
}

// agentNews is what the person is told when the agent on their machine,
// read while nobody is active on it, went from prev to next; "" for nothing.
// Only a change seen between two reads counts, so each is told once.
func agentNews(prev, next AgentState, server string) string {
	if prev == "" || prev == next {
		return ""
	}
	switch next {
	case AgentWaiting:
		return fmt.Sprintf("The agent on your machine %s is waiting for you (a permission or an answer).", server)
	case AgentIdle:
		return fmt.Sprintf("The agent on your machine %s has finished and is idle.", server)
	}
	return ""
}
