package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Every write that takes events appends them, in order, after those of
// the writes before it.
func testEventsWithTheirWrite(t *testing.T, h Harness) {
	s := open(t, h)
	fp := "SHA256:aaa"
	ready := poolMachine("p", lease.PoolReady)
	claiming := ready
	claiming.State, claiming.Claimant = lease.PoolClaiming, fp
	l := sampleLease(fp)
	l.ID = ready.ID
	writes := []func() error{
		func() error { return s.Put(sampleLease("SHA256:gone"), event(0)) },
		func() error { return s.Delete("SHA256:gone", event(1)) },
		func() error { return s.PutPerson(lease.Person{Fingerprint: fp}, event(2)) },
		func() error { return s.AppendEvent(event(3)) },
		func() error { return s.PutPoolMachine(ready, "", event(4)) },
		func() error { return s.ClaimPoolMachine(claiming, l, event(5)) },
		func() error { return s.FinishPoolClaim(l, event(6)) },
		func() error { return s.PutPoolMachine(poolMachine("q", lease.PoolDraining), "", event(7)) },
		func() error { return s.DeletePoolMachine("q", event(8)) },
		func() error { return s.Put(l, event(9)) },
	}
	for i, write := range writes {
		if err := write(); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if got, want := eventDetails(t, s, 1), event(i).Detail; len(got) != 1 || got[0] != want {
			t.Fatalf("after write %d the newest event is %q, want %q", i, got, want)
		}
	}
	if err := s.Put(l, event(10), event(11)); err != nil {
		t.Fatal(err)
	}
	if got, want := details(mustEvents(t, s, 2)), []string{"event 10", "event 11"}; !slices.Equal(got, want) {
		t.Errorf("Events(2) after a write of two events = %q, want %q", got, want)
	}
	sameJSON(t, "an event read back", mustEvents(t, s, 1)[0], event(11))
}

func mustEvents(t *testing.T, s Store, n int) []lease.Event {
	t.Helper()
	events, err := s.Events(n)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// The audit log keeps the newest EventLimit events, whether they come
// one at a time or many in one write.
func testEventsBounded(t *testing.T, h Harness) {
	s := open(t, h)
	n := h.EventLimit + 3
	for i := range n {
		if err := s.AppendEvent(event(i)); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for i := n - h.EventLimit; i < n; i++ {
		want = append(want, event(i).Detail)
	}
	if got := eventDetails(t, s, 0); !slices.Equal(got, want) {
		t.Errorf("after %d events with a limit of %d: %q, want %q", n, h.EventLimit, got, want)
	}
	if got := eventDetails(t, s, n+5); !slices.Equal(got, want) {
		t.Errorf("Events(%d) past the limit: %q, want %q", n+5, got, want)
	}

	var batch []lease.Event
	want = want[:0]
	for i := range n {
		batch = append(batch, event(100+i))
		if i >= n-h.EventLimit {
			want = append(want, event(100+i).Detail)
		}
	}
	if err := s.Put(sampleLease("SHA256:aaa"), batch...); err != nil {
		t.Fatal(err)
	}
	if got := eventDetails(t, s, 0); !slices.Equal(got, want) {
		t.Errorf("after one write of %d events with a limit of %d: %q, want %q", n, h.EventLimit, got, want)
	}
}

// Refusal counts are kept apart, with their own bound: strangers knocking
// never push the audit log out, and the audit log never pushes them out.
func testRefusalsApartFromEvents(t *testing.T, h Harness) {
	s := open(t, h)
	if got, err := s.Refusals(0); err != nil || len(got) != 0 {
		t.Fatalf("refusals of an empty store: %+v, %v", got, err)
	}
	if err := s.AppendEvent(event(1)); err != nil {
		t.Fatal(err)
	}
	n := h.RefusalLimit + 3
	var batch []lease.Refusal
	for i := range n - 1 {
		batch = append(batch, refusal(i))
	}
	if err := s.AppendRefusals(batch); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendRefusals([]lease.Refusal{refusal(n - 1)}); err != nil {
		t.Fatal(err)
	}
	var want []lease.Refusal
	for i := n - h.RefusalLimit; i < n; i++ {
		want = append(want, refusal(i))
	}
	got, err := s.Refusals(0)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "refusals past their limit", got, want)
	if got, err := s.Refusals(2); err != nil {
		t.Fatal(err)
	} else {
		sameJSON(t, "Refusals(2)", got, want[len(want)-2:])
	}
	if got := eventDetails(t, s, 0); !slices.Equal(got, []string{"event 1"}) {
		t.Errorf("events after the refusals: %q", got)
	}

	for i := range h.EventLimit + 1 {
		if err := s.AppendEvent(event(10 + i)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.Refusals(0); err != nil || len(got) != h.RefusalLimit {
		t.Errorf("refusals after the audit log filled: %d, %v; want %d", len(got), err, h.RefusalLimit)
	}
}

// A person who kept nothing is their fingerprint alone; what they keep is
// read back whole and replaced whole.
func testPeople(t *testing.T, h Harness) {
	s := open(t, h)
	if p, err := s.Person("SHA256:nobody"); err != nil {
		t.Fatal(err)
	} else {
		sameJSON(t, "a person who kept nothing", p, lease.Person{Fingerprint: "SHA256:nobody"})
	}
	healthy(t, s, "a person who kept nothing")
	want := lease.Person{
		Fingerprint: "SHA256:alice",
		Notify:      []lease.NotifyTarget{{URL: "https://ntfy.sh/alice-agent", Added: t0}},
		Secrets:     []lease.Secret{{Name: "GH_TOKEN", Sealed: []byte{1, 2, 3}, Set: t0}},
		Home: &lease.Home{VolumeID: 7, Name: "cc-home-a", Owner: "a", State: lease.HomeReady, SizeGB: 10, Location: "fsn1",
			Device: "/dev/disk/by-id/scsi-0HC_Volume_7", Created: t0, KeepUntil: t0.Add(720 * time.Hour), Warned: 1},
	}
	if err := s.PutPerson(want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Person(want.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "Person", got, want)

	want.Notify = nil
	if err := s.PutPerson(want); err != nil {
		t.Fatal(err)
	}
	if got, err = s.Person(want.Fingerprint); err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "Person after a replacing PutPerson", got, want)
	if _, err := s.Get(want.Fingerprint); err == nil {
		t.Error("PutPerson made a lease")
	}

	// People lists every record whole, by fingerprint (the reaper finds
	// homes whose person has no lease this way).
	if err := s.PutPerson(lease.Person{Fingerprint: "SHA256:"}); err != nil {
		t.Fatal(err)
	}
	people, err := s.People()
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "People", people, []lease.Person{{Fingerprint: "SHA256:"}, want})
}
