package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestHomeOutlivesExpiry: the reaper deletes an expired machine and keeps
// its home volume, whose files are back on the next connection's machine.
func TestHomeOutlivesExpiry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ivy := newPerson(t, filepath.Join(dir, "ivy"))
	lg := newLocalGatewayIn(t, dir, withHomes("--default-ttl", "20s", "--warn-before", "5s", "--reaper-interval", "1s")...)
	g := lg.start(t)
	if r := ivy.ssh(g, "", "echo survived > notes"); r.code != 0 {
		t.Fatalf("write a file in the home: %+v", r)
	}
	testkit.Eventually(t, time.Minute, func() error {
		if st := ivy.status(g); st.State != "none" || st.Home == nil || st.Home.KeptUntil.IsZero() {
			return fmt.Errorf("not yet expired with its home kept: %+v", st)
		}
		return nil
	})
	if r := ivy.ssh(g, "", "cat notes"); r.code != 0 || r.stdout != "survived\n" {
		t.Fatalf("the home's file on the next machine: %+v", r)
	}
	if st := ivy.status(g); st.Home == nil || !st.Home.KeptUntil.IsZero() {
		t.Errorf("a home in use again is kept while the machine lives: %+v", st.Home)
	}
	checkVolumes(t, lg, 1)
}

// TestCrashAtHomeSteps kills the gateway with SIGKILL at each fault point
// of a home's creation and deletion, restarts it, and checks that no
// volume is lost, leaked or shared, and that the person's home works.
func TestCrashAtHomeSteps(t *testing.T) {
	for _, point := range lease.HomeFaultPoints {
		if point == lease.FaultHomeAttached {
			continue // a claim's step: TestClaimCrashAtEveryStep
		}
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			crashAtHomeStep(t, point)
		})
	}
}

func crashAtHomeStep(t *testing.T, point string) {
	dir := t.TempDir()
	judy := newPerson(t, filepath.Join(dir, "judy"))
	lg := newLocalGatewayIn(t, dir, withHomes("--reaper-interval", "1s")...)
	ssh := func(g *gatewayProc, args ...string) result { return judy.ssh(g, "", args...) }
	deleting := point == lease.FaultHomeDeleting || point == lease.FaultHomeDeleted

	if deleting {
		g := lg.start(t)
		if r := ssh(g, "echo old > notes"); r.code != 0 {
			t.Fatalf("create: %+v", r)
		}
		g.stop()
	}
	g := lg.start(t, "CC_GATEWAY_CRASH_AT="+point)
	if deleting {
		ssh(g, "destroy", "--yes", "--with-home")
	} else {
		ssh(g, "echo new > notes")
	}
	waitCrash(t, g, point)

	g = lg.start(t)
	if deleting {
		// The reaper finishes the deletion: no machine, no home, no volume.
		testkit.Eventually(t, time.Minute, func() error {
			if st := judy.status(g); st.State != "none" || st.Home != nil {
				return fmt.Errorf("after the restart: %+v", st)
			}
			return nil
		})
		checkVolumes(t, lg, 0)
		if r := ssh(g, "cat notes"); r.code == 0 {
			t.Errorf("a deleted home's file is back: %+v", r)
		}
	}
	// The next connection finishes what is left, and the person has a
	// home.
	if r := ssh(g, "echo new > notes"); r.code != 0 {
		t.Fatalf("after the restart: %+v", r)
	}
	checkVolumes(t, lg, 1)
	// The home is the person's and outlives the machine.
	if r := ssh(g, "destroy", "--yes"); r.code != 0 {
		t.Fatalf("destroy: %+v", r)
	}
	if r := ssh(g, "cat notes"); r.code != 0 || r.stdout != "new\n" {
		t.Errorf("the home's file after destroy: %+v", r)
	}
	checkVolumes(t, lg, 1)
}

// checkVolumes checks the local cloud holds want labelled volumes, each
// of a different owner, and no two attached to one server.
func checkVolumes(t *testing.T, lg *localGateway, want int) {
	t.Helper()
	volumes, err := cloudClient(t, lg).Volume.All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	owners, servers := map[string]bool{}, map[int64]bool{}
	for _, v := range volumes {
		owner := v.Labels["cc-gateway-home"]
		if owner == "" || owners[owner] {
			t.Errorf("volume %s: owner %q unlabelled or with two volumes", v.Name, owner)
		}
		owners[owner] = true
		if v.Server != nil {
			if servers[v.Server.ID] {
				t.Errorf("two volumes on server %d", v.Server.ID)
			}
			servers[v.Server.ID] = true
		}
	}
	if len(volumes) != want {
		t.Errorf("%d volumes, want %d: %v", len(volumes), want, volumeNames(volumes))
	}
}

func volumeNames(volumes []*hcloud.Volume) []string {
	var out []string
	for _, v := range volumes {
		out = append(out, fmt.Sprintf("%s(%d)", v.Name, v.ID))
	}
	return out
}

// TestHomeWithTheWarmPool: a new person takes a pool machine and gets
// their home attached to it hot, mounted as their home; after destroy,
// the next pool machine they take has the home's files.
func TestHomeWithTheWarmPool(t *testing.T) {
	dir := t.TempDir()
	kim := newPerson(t, filepath.Join(dir, "kim"))
	lg := newLocalGatewayIn(t, dir, withHomes("--warm-pool", "1", "--metrics-listen", "127.0.0.1:0")...)
	g := lg.start(t)
	waitPool(t, lg, g, 1)
	r := kim.ssh(g, "", "echo claimed > notes")
	if r.code != 0 || !strings.Contains(r.stderr, "A machine was ready for you") {
		t.Fatalf("the first connection, from the pool: %+v", r)
	}
	if r := kim.ssh(g, "", "destroy", "--yes"); r.code != 0 {
		t.Fatalf("destroy: %+v", r)
	}
	waitPool(t, lg, g, 1)
	r = kim.ssh(g, "", "cat notes")
	if r.code != 0 || r.stdout != "claimed\n" || !strings.Contains(r.stderr, "A machine was ready for you") {
		t.Errorf("the home's file on the next pool machine: %+v", r)
	}
	checkVolumes(t, lg, 1)
}
