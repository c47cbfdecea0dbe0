package storetest

import (
	"slices"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// A reopened store holds everything the closed one did, and its logs go
// on from where they were: a new event or refusal is the newest, the
// bounds still hold.
func testReopenKeepsEverything(t *testing.T, h Harness) {
	s := open(t, h)
	l := sampleLease("SHA256:aaa")
	p := lease.Person{Fingerprint: l.Fingerprint, Notify: []lease.NotifyTarget{{URL: "https://ntfy.sh/a", Added: t0}}}
	pm := poolMachine("m", lease.PoolReady)
	var events []lease.Event
	for i := range h.EventLimit {
		events = append(events, event(i))
	}
	var refusals []lease.Refusal
	for i := range h.RefusalLimit {
		refusals = append(refusals, refusal(i))
	}
	for _, err := range []error{
		s.Put(l, events...),
		s.PutPerson(p),
		s.PutPoolMachine(pm, ""),
		s.AppendRefusals(refusals),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}

	s.reopen(t, h)
	healthy(t, s, "a reopen")
	if got, err := s.Get(l.Fingerprint); err != nil {
		t.Errorf("lease after a reopen: %v", err)
	} else {
		sameJSON(t, "lease after a reopen", got, l)
	}
	if got, err := s.Person(p.Fingerprint); err != nil {
		t.Errorf("person after a reopen: %v", err)
	} else {
		sameJSON(t, "person after a reopen", got, p)
	}
	if got, err := s.PoolMachines(); err != nil {
		t.Errorf("pool after a reopen: %v", err)
	} else {
		sameJSON(t, "pool after a reopen", got, []lease.PoolMachine{pm})
	}
	sameJSON(t, "events after a reopen", mustEvents(t, s, 0), events)
	if got, err := s.Refusals(0); err != nil {
		t.Errorf("refusals after a reopen: %v", err)
	} else {
		sameJSON(t, "refusals after a reopen", got, refusals)
	}

	if err := s.AppendEvent(event(100)); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendRefusals([]lease.Refusal{refusal(100)}); err != nil {
		t.Fatal(err)
	}
	want := append(details(events[1:]), event(100).Detail)
	if got := eventDetails(t, s, 0); !slices.Equal(got, want) {
		t.Errorf("events after a reopen and one more: %q, want %q", got, want)
	}
	rs, err := s.Refusals(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != h.RefusalLimit || rs[len(rs)-1].Source != refusal(100).Source || rs[0].Source != refusal(1).Source {
		t.Errorf("refusals after a reopen and one more: %+v", rs)
	}
}
