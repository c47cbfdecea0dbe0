package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestCrashAtEveryStep kills the gateway with SIGKILL at each fault point of
// create, resume, stop, hibernate and destroy, restarts it, and checks that
// reconcile leaves no orphan or duplicate server and a lease that matches
// the cloud. Every point runs twice.
func TestCrashAtEveryStep(t *testing.T) {
	for _, point := range lease.FaultPoints {
		for round := 1; round <= 2; round++ {
			t.Run(fmt.Sprintf("%s/%d", point, round), func(t *testing.T) {
				t.Parallel()
				crashAndRecover(t, point)
			})
		}
	}
}

func crashAndRecover(t *testing.T, point string) {
	dir := t.TempDir()
	heidi := newPerson(t, filepath.Join(dir, "heidi"))
	lg := newLocalGatewayIn(t, dir, "--admins", writeKeyList(t, filepath.Join(dir, "admins"), heidi))
	ssh := func(g *gatewayProc, args ...string) result { return heidi.ssh(g, "", args...) }

	// Bring the machine to where the operation under test starts.
	g := lg.start(t)
	op := strings.Split(point, ".")[0]
	if op != "create" {
		if r := ssh(g, "true"); r.code != 0 {
			t.Fatalf("create: %+v", r)
		}
	}
	if op == "resume" {
		if r := ssh(g, "stop"); r.code != 0 {
			t.Fatalf("stop: %+v", r)
		}
	}
	g.stop()

	// Run the operation with the crash armed; the gateway must die.
	g = lg.start(t, "CC_GATEWAY_CRASH_AT="+point)
	switch op {
	case "create", "resume":
		ssh(g, "true")
	case "stop":
		ssh(g, "stop")
	case "hibernate":
		ssh(g, "admin", "hibernate", heidi.status(g).Name)
	case "destroy":
		ssh(g, "destroy", "--yes")
	}
	waitCrash(t, g, point)

	// Restart: reconcile runs at start-up and settles the lease.
	g = lg.start(t)
	st := waitSettled(t, heidi, g)
	servers, images := cloudContents(t, lg)
	switch st.State {
	case "none":
		if len(servers) != 0 || len(images) != 0 {
			t.Errorf("no lease, but %d servers and %d snapshots", len(servers), len(images))
		}
	case "hibernated":
		if len(servers) != 0 || len(images) != 1 || images[0].Labels[lease.LeaseLabel] != st.LeaseID {
			t.Errorf("hibernated, but %d servers and snapshots %v", len(servers), images)
		}
	default:
		if len(servers) != 1 || servers[0].Labels[lease.LeaseLabel] != st.LeaseID || len(images) != 0 {
			t.Fatalf("lease %s (%s), but servers %v and %d snapshots", st.LeaseID, st.State, serverNames(servers), len(images))
		}
		want := map[string]hcloud.ServerStatus{"running": hcloud.ServerStatusRunning, "stopped": hcloud.ServerStatusOff}[st.State]
		if servers[0].Status != want {
			t.Errorf("lease says %s, the server is %s", st.State, servers[0].Status)
		}
	}

	// Whatever state it settled in, the person gets a working machine.
	if r := ssh(g, "echo alive"); r.code != 0 || r.stdout != "alive\n" {
		t.Errorf("after recovery: %+v", r)
	}
	if servers, _ := cloudContents(t, lg); len(servers) != 1 {
		t.Errorf("after recovery: %d servers", len(servers))
	}
}

// waitCrash waits for the gateway g, armed to crash at point, to die there.
func waitCrash(t *testing.T, g *gatewayProc, point string) {
	t.Helper()
	select {
	case <-g.Done():
	case <-time.After(time.Minute):
		t.Fatalf("the gateway did not crash at %s:\n%s", point, g.logs.String())
	}
}

// waitSettled polls status until the lease is in no transitional state.
func waitSettled(t *testing.T, p *person, g *gatewayProc) statusDoc {
	t.Helper()
	settled := []string{"none", "running", "stopped", "hibernated"}
	var st statusDoc
	testkit.Eventually(t, time.Minute, func() error {
		if st = p.status(g); !slices.Contains(settled, st.State) {
			return fmt.Errorf("the lease is still %s after the restart:\n%s", st.State, g.logs.String())
		}
		return nil
	})
	return st
}

func cloudContents(t *testing.T, lg *localGateway) ([]*hcloud.Server, []*hcloud.Image) {
	t.Helper()
	client := cloudClient(t, lg)
	ctx := context.Background()
	servers, err := client.Server.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	images, err := client.Image.AllWithOpts(ctx, hcloud.ImageListOpts{Type: []hcloud.ImageType{hcloud.ImageTypeSnapshot},
		ListOpts: hcloud.ListOpts{LabelSelector: lease.LeaseLabel}})
	if err != nil {
		t.Fatal(err)
	}
	return servers, images
}

func serverNames(servers []*hcloud.Server) []string {
	var names []string
	for _, s := range servers {
		names = append(names, fmt.Sprintf("%s(%s)", s.Name, s.Status))
	}
	return names
}
