package lease

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestDecideReapWithAgent(t *testing.T) {
	now := t0
	p := Policy{IdleTimeout: 30 * time.Minute, MaxUnattended: 2 * time.Hour}
	idleFor := func(d time.Duration, agent Agent) Lease {
		return Lease{State: StateRunning, Expires: now.Add(5 * time.Hour), LastActivity: now.Add(-d), Agent: agent}
	}
	expiry := deadline{"expiry", now.Add(5 * time.Hour)}
	idleAt := func(d time.Duration) deadline { return deadline{"idle", now.Add(d)} }
	seen := func(s AgentState, workingAgo time.Duration) Agent {
		a := Agent{State: s, Seen: now}
		if workingAgo >= 0 {
			a.WorkingSeen = now.Add(-workingAgo)
		}
		return a
	}

	for _, tc := range []struct {
		name   string
		lease  Lease
		policy Policy
		want   reapDecision
	}{
		{"person active: the agent is not asked", idleFor(10*time.Minute, Agent{}), p,
			reapDecision{deadlines: []deadline{expiry, idleAt(20 * time.Minute)}}},
		{"person idle past the timeout: ask the agent", idleFor(40*time.Minute, Agent{Seen: now.Add(-time.Minute), WorkingSeen: now.Add(-time.Minute)}), p,
			reapDecision{action: reapAskAgent, deadlines: []deadline{expiry}}},
		{"working: kept, the idle timeout runs from now", idleFor(40*time.Minute, seen(AgentWorking, 0)), p,
			reapDecision{deadlines: []deadline{expiry, idleAt(30 * time.Minute)}, unattended: true}},
		{"working, already recorded for this stretch", idleFor(40*time.Minute, func() Agent {
			a := seen(AgentWorking, 0)
			a.KeptAfter = now.Add(-40 * time.Minute)
			return a
		}()), p,
			reapDecision{deadlines: []deadline{expiry, idleAt(30 * time.Minute)}}},
		{"idle, never seen working", idleFor(40*time.Minute, seen(AgentIdle, -1)), p,
			reapDecision{action: reapIdle, deadlines: []deadline{expiry}}},
		{"waiting, working 5m ago: the timeout runs from then", idleFor(40*time.Minute, seen(AgentWaiting, 5*time.Minute)), p,
			reapDecision{deadlines: []deadline{expiry, idleAt(25 * time.Minute)}}},
		{"idle, working a timeout ago", idleFor(80*time.Minute, seen(AgentIdle, 30*time.Minute)), p,
			reapDecision{action: reapIdle, deadlines: []deadline{expiry}}},
		{"unreadable: no state, worked long ago", idleFor(40*time.Minute, seen("", 50*time.Minute)), p,
			reapDecision{action: reapIdle, deadlines: []deadline{expiry}}},
		{"past max-unattended: not asked, the timeout runs from its end", idleFor(2*time.Hour+10*time.Minute, Agent{WorkingSeen: now.Add(-time.Minute)}), p,
			reapDecision{deadlines: []deadline{expiry, idleAt(20 * time.Minute)}}},
		{"a timeout past max-unattended: idle, working or not", idleFor(2*time.Hour+30*time.Minute, Agent{State: AgentWorking, WorkingSeen: now.Add(-time.Minute)}), p,
			reapDecision{action: reapIdle, deadlines: []deadline{expiry}}},
		{"no max-unattended: the agent never counts", idleFor(40*time.Minute, seen(AgentWorking, 0)), Policy{IdleTimeout: 30 * time.Minute},
			reapDecision{action: reapIdle, deadlines: []deadline{expiry}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decideReap(tc.lease, tc.policy, now)
			if got.action != tc.want.action || got.unattended != tc.want.unattended || !slices.Equal(got.deadlines, tc.want.deadlines) {
				t.Errorf("decideReap = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// agentDomain is a domain whose machine's agent says what *state says.
func agentDomain(t *testing.T, p Policy) (*domain, *recTeller, *AgentState) {
	d := newDomain(t, p, ReaperConfig{})
	d.reconciled()
	teller := &recTeller{}
	d.m.cfg.Teller = teller
	state := new(AgentState)
	var mu sync.Mutex
	d.machines.agentFn = func(context.Context, string, string) (AgentState, time.Time, error) {
		mu.Lock()
		defer mu.Unlock()
		if *state == "broken" {
			return "", time.Time{}, errors.New("exit status 1: cat: permission denied")
		}
		return *state, t0, nil
	}
	return d, teller, state
}

// TestWorkingAgentKeepsTheMachine: with nobody there, a working agent keeps
// the machine past the idle timeout, with one audit event, up to
// MaxUnattended; once it stops working, the idle timeout runs out and the
// machine stops, and the person is told once of the change.
func TestWorkingAgentKeepsTheMachine(t *testing.T) {
	d, teller, agent := agentDomain(t, Policy{IdleTimeout: 30 * time.Minute, MaxUnattended: 2 * time.Hour})
	l := d.running(t, "a", 1)
	*agent = AgentWorking
	pass := func(advance time.Duration) Lease {
		t.Helper()
		d.clock.Advance(advance)
		d.r.Tick(context.Background())
		after, _ := d.stored(t, l.Fingerprint)
		return after
	}
	for range 4 { // 40m, then 20m at a time to 1h40m
		after := pass(20 * time.Minute)
		if after.State != StateRunning {
			t.Fatalf("at %s: state %s, want running for the working agent", d.clock.Now().Sub(t0), after.State)
		}
	}
	after := pass(0)
	if after.Agent.State != AgentWorking || !after.Agent.WorkingSeen.Equal(d.clock.Now()) || !after.Agent.Since.Equal(t0) {
		t.Errorf("recorded agent %+v, want working, seen now", after.Agent)
	}
	want := []string{"unattended: no activity for 40m but the agent is working; kept running for at most 2h after the last activity"}
	if ev := d.store.kinds(l.Fingerprint); !slices.Equal(ev, want) {
		t.Errorf("events %q, want one unattended event %q", ev, want)
	}
	if _, actions, _ := d.obs.take(); !slices.Equal(actions, []string{"unattended"}) {
		t.Errorf("reaper actions %q, want one unattended", actions)
	}

	*agent = AgentWaiting
	if after := pass(10 * time.Minute); after.State != StateRunning || after.Agent.State != AgentWaiting {
		t.Fatalf("just after the agent stopped working: %s, agent %+v; want running, the idle timeout from its last work", after.State, after.Agent)
	}
	told := []string{"SHA256:a agent: The agent on your machine cc-a is waiting for you (a permission or an answer)."}
	if got := teller.got(); !slices.Equal(got, told) {
		t.Errorf("told %q, want %q", got, told)
	}
	if after := pass(30 * time.Minute); after.State != StateStopped {
		t.Errorf("a timeout after the agent's last work: %s, want stopped", after.State)
	}
	if got := teller.got(); !slices.Equal(got, told) {
		t.Errorf("told %q, want only %q: once per change", got, told)
	}
}

// TestWorkingAgentOnlyUpToMaxUnattended: an agent that works forever keeps
// the machine for MaxUnattended, then one idle timeout more: here the last
// read before the hour is at 50m, so it stops at 1h20m.
func TestWorkingAgentOnlyUpToMaxUnattended(t *testing.T) {
	d, _, agent := agentDomain(t, Policy{IdleTimeout: 30 * time.Minute, MaxUnattended: time.Hour})
	l := d.running(t, "a", 1)
	*agent = AgentWorking
	for i := range 8 { // 10m at a time to 1h20m
		d.clock.Advance(10 * time.Minute)
		d.r.Tick(context.Background())
		after, _ := d.stored(t, l.Fingerprint)
		if want := i < 7; (after.State == StateRunning) != want {
			t.Fatalf("at %s: state %s, want running %v", d.clock.Now().Sub(t0), after.State, want)
		}
	}
}

// TestIdleAgentKeepsNothing: waiting, idle, none and unreadable agents let
// an idle machine stop at the timeout; a busy CPU still keeps it.
func TestIdleAgentKeepsNothing(t *testing.T) {
	for _, tc := range []struct {
		state   AgentState
		cpu     float64
		stopped bool
	}{
		{AgentWaiting, 0, true},
		{AgentIdle, 0, true},
		{"", 0, true},
		{"broken", 0, true},
		{AgentIdle, 90, false},
	} {
		t.Run(string(tc.state), func(t *testing.T) {
			d, teller, agent := agentDomain(t, Policy{IdleTimeout: 30 * time.Minute, MaxUnattended: 8 * time.Hour, BusyCPU: 50})
			d.cloud.cpuUsageFn = func(context.Context, int64, time.Duration) (float64, error) { return tc.cpu, nil }
			*agent = tc.state
			l := d.running(t, "a", 1)
			d.clock.Advance(31 * time.Minute)
			d.r.Tick(context.Background())
			after, _ := d.stored(t, l.Fingerprint)
			if stopped := after.State == StateStopped; stopped != tc.stopped {
				t.Errorf("state %s, want stopped %v", after.State, tc.stopped)
			}
			if got := teller.got(); len(got) != 0 {
				t.Errorf("told %q: nothing changed since a read", got)
			}
		})
	}
}
