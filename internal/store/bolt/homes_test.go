package bolt

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// People lists every person's record in fingerprint order, a home read
// back whole, after a reopen too.
func TestPeopleListsHomes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	home := lease.Home{VolumeID: 7, Name: "cc-home-a", Owner: "a", State: lease.HomeReady, SizeGB: 10,
		Location: "fsn1", Device: "/dev/disk/by-id/scsi-0HC_Volume_7", Created: at, KeepUntil: at.Add(720 * time.Hour), Warned: 1}
	for _, p := range []lease.Person{{Fingerprint: "SHA256:bob"}, {Fingerprint: "SHA256:alice", Home: &home}} {
		if err := s.PutPerson(p); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	people, err := s.People()
	if err != nil || len(people) != 2 || people[0].Fingerprint != "SHA256:alice" || people[1].Fingerprint != "SHA256:bob" ||
		people[0].Home == nil || *people[0].Home != home || people[1].Home != nil {
		t.Errorf("People = %+v, %v; want alice with her home, then bob", people, err)
	}
}
