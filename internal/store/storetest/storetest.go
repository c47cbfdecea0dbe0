// Package storetest is the contract every lease store keeps, as a test
// suite: each store (bolt now, etcd next) runs Run against itself, so the
// gateway behaves the same whichever keeps its state.
//
// The suite asserts what lease.Store and lease.PoolStore document, and what
// the gateway needs besides (Healthy, Close): records read back whole,
// lists in key order, events appended in the same write as the change they
// describe and bounded, refusals bounded apart, the pool's compare-and-sets
// (one winner among concurrent writers, losers writing nothing), and a
// reopen keeping everything.
package storetest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Store is everything the gateway asks of its lease store.
type Store interface {
	lease.Store
	lease.PoolStore
	// Healthy returns nil while the store works; otherwise an error
	// wrapping lease.ErrStoreFailed, or lease.ErrStoreUnavailable while a
	// store on a cluster cannot reach it (it is a /readyz check).
	Healthy() error
	Close() error
}

// Harness opens the stores the suite tests.
type Harness struct {
	// Open returns a new, empty store; the harness closes it when the
	// test ends, unless Reopen was handed it.
	Open func(t *testing.T) Store
	// Reopen closes s and returns a store on the same data, as a gateway
	// restarting finds it.
	Reopen func(t *testing.T, s Store) Store
	// EventLimit and RefusalLimit are the bounds the stores of Open and
	// Reopen keep: small (a few), so the suite reaches them quickly.
	EventLimit, RefusalLimit int
}

// Run runs the whole contract against the stores of h.
func Run(t *testing.T, h Harness) {
	if h.EventLimit < 2 || h.RefusalLimit < 2 || h.EventLimit > 100 || h.RefusalLimit > 100 {
		t.Fatalf("storetest: limits %d and %d: give the suite small bounds, 2 to 100", h.EventLimit, h.RefusalLimit)
	}
	tests := []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"LeaseReadBackWhole", testLeaseReadBackWhole},
		{"PutReplaces", testPutReplaces},
		{"GetMissing", testGetMissing},
		{"Delete", testDelete},
		{"ListInFingerprintOrder", testListInFingerprintOrder},
		{"RecordsWithoutKeyRefused", testRecordsWithoutKeyRefused},
		{"EventsWithTheirWrite", testEventsWithTheirWrite},
		{"EventsBounded", testEventsBounded},
		{"RefusalsApartFromEvents", testRefusalsApartFromEvents},
		{"People", testPeople},
		{"PoolMachines", testPoolMachines},
		{"PoolCompareAndSet", testPoolCompareAndSet},
		{"ClaimOnlyFromReady", testClaimOnlyFromReady},
		{"FinishPoolClaim", testFinishPoolClaim},
		{"ConcurrentPuts", testConcurrentPuts},
		{"ConcurrentEvents", testConcurrentEvents},
		{"ConcurrentClaimsOneWinner", testConcurrentClaimsOneWinner},
		{"ConcurrentPoolWritesOneWinner", testConcurrentPoolWritesOneWinner},
		{"ReopenKeepsEverything", testReopenKeepsEverything},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, h) })
	}
}

// t0 is the suite's fixed time: records carry times, never the wall clock.
var t0 = time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)

// sampleLease has every field set, so a field a store drops shows.
func sampleLease(fp string) lease.Lease {
	return lease.Lease{
		Fingerprint: fp, PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample",
		ID: "k3x9", State: lease.StateRunning, ServerID: 4711, ServerName: "cc-k3x9",
		Address: "127.0.0.1:2022", HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHost",
		HostKeyPEM: []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"),
		ServerType: "cx23", Location: "fsn1",
		Created: t0, Expires: t0.Add(4 * time.Hour), LastActivity: t0.Add(time.Minute),
		KeyRevoked: true, KeyRevokedOn: 4711,
		ServerCreated: t0, ImageID: 9, ImageSizeGB: 1.5, ImageCreated: t0.Add(time.Hour), Spent: 0.25,
		Agent: lease.Agent{State: "working", Since: t0.Add(2 * time.Minute)},
	}
}

func poolMachine(id string, state lease.PoolState) lease.PoolMachine {
	return lease.PoolMachine{
		ID: id, State: state, ServerID: 42, ServerName: "cc-" + id,
		Address: "127.0.0.1:2222", HostKey: "ssh-ed25519 AAAA", HostKeyPEM: []byte("pem"),
		ServerType: "cx22", Location: "nbg1", Created: t0,
	}
}

func event(i int) lease.Event {
	return lease.Event{
		Time: t0.Add(time.Duration(i) * time.Second), Kind: "extend",
		Fingerprint: "SHA256:x", LeaseID: "abc", Conn: "c1", Detail: fmt.Sprintf("event %d", i),
	}
}

func refusal(i int) lease.Refusal {
	minute := t0.Add(time.Duration(i) * time.Minute)
	return lease.Refusal{
		Minute: minute, Source: fmt.Sprintf("192.0.2.%d", i), Kind: lease.RefusedKey, Count: 100 + i,
		Fingerprints: []string{"SHA256:a", "SHA256:b"}, First: minute, Last: minute.Add(59 * time.Second),
	}
}

func fingerprintOf(i int) string { return fmt.Sprintf("SHA256:person-%02d", i) }

// open opens a store closed at the test's end, unless reopened first.
func open(t *testing.T, h Harness) *handle {
	t.Helper()
	hd := &handle{Store: h.Open(t)}
	t.Cleanup(func() { hd.Close() })
	return hd
}

// handle is the store a test currently holds; reopen swaps it.
type handle struct{ Store }

func (hd *handle) reopen(t *testing.T, h Harness) {
	t.Helper()
	hd.Store = h.Reopen(t, hd.Store)
}

// asJSON is how records are compared: a store keeps what the JSON of a
// record says (times to the nanosecond, in UTC as written).
func asJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	if g, w := asJSON(t, got), asJSON(t, want); g != w {
		t.Errorf("%s\n got %s\nwant %s", what, g, w)
	}
}

// details lists the Detail of events, to compare orders at a glance.
func details(events []lease.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Detail
	}
	return out
}

func eventDetails(t *testing.T, s Store, n int) []string {
	t.Helper()
	events, err := s.Events(n)
	if err != nil {
		t.Fatalf("Events(%d): %v", n, err)
	}
	return details(events)
}

func healthy(t *testing.T, s Store, after string) {
	t.Helper()
	if err := s.Healthy(); err != nil {
		t.Errorf("%s made the store unhealthy: %v", after, err)
	}
}
