package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestSoldOutLocation: with cx23 sold out in fsn1, a person's first
// connection moves on to nbg1, their new home volume with it, and says
// so; the shell works, and status shows where the machine and the home
// really are.
func TestSoldOutLocation(t *testing.T) {
	lg := newLocalGateway(t, withHomes("--local-faults", "unavailable=cx23@fsn1", "--server-type", "cx23", "--location", "fsn1,nbg1")...)
	g := lg.start(t)
	mia := newPerson(t, lg.dir+"/mia")

	r := mia.ssh(g, "", "echo hello from $(hostname)")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "hello from ") {
		t.Fatalf("first command: %+v", r)
	}
	if !strings.Contains(r.stderr, "Hetzner has no room in fsn1; trying nbg1, where your new home volume goes too") {
		t.Errorf("progress does not show the move:\n%s", r.stderr)
	}
	r = mia.ssh(g, "", "status")
	if r.code != 0 || !regexp.MustCompile(`(?m)^Type\s+cx23 in nbg1$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^Home\s+cc-home-\S+, 10 GB in nbg1 `).MatchString(r.stdout) {
		t.Errorf("status does not say nbg1: %+v", r)
	}
	checkVolumes(t, lg, 1)
}

// TestSoldOutLocationWithoutHomes: without home volumes the provider
// itself moves on from a sold-out location, and says so.
func TestSoldOutLocationWithoutHomes(t *testing.T) {
	lg := newLocalGateway(t, "--local-faults", "unavailable=cx23@fsn1", "--server-type", "cx23", "--location", "fsn1,nbg1", "--home-volume", "0")
	g := lg.start(t)
	mia := newPerson(t, lg.dir+"/mia")
	if r := mia.ssh(g, "", "true"); r.code != 0 || !strings.Contains(r.stderr, "cx23 is sold out in fsn1; trying nbg1") {
		t.Errorf("first command: %+v, want the provider's move in its progress", r)
	}
	checkVolumes(t, lg, 0)
}
