package main

// Operators' mistakes: a lost or damaged lease database, local mode on a
// public address. The real gateway binary, the local cloud.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestNewDatabaseKeepsTheCloudsMachines: a gateway whose lease database
// was emptied (a zero-byte gateway.db) while the cloud still holds its
// machine refuses to start, saying what to do, and deletes nothing; with
// --orphans keep it starts, and reconcile reports the machine but leaves
// it running.
func TestNewDatabaseKeepsTheCloudsMachines(t *testing.T) {
	lg := newLocalGateway(t)
	g := lg.start(t)
	alice := newPerson(t, filepath.Join(lg.dir, "alice"))
	if r := alice.ssh(g, lg.hostKeys, "", "true"); r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	g.stop()
	db := filepath.Join(lg.dir, "data", "gateway.db")
	if err := os.Truncate(db, 0); err != nil {
		t.Fatal(err)
	}

	out, err := runGateway([]string{"HCLOUD_TOKEN="}, append(lg.args, "--orphan-grace", "1ms")...)
	if err == nil {
		t.Fatalf("the gateway started on an empty database while the cloud holds a machine:\n%s", out)
	}
	for _, want := range []string{
		"lease database " + db + ": the lease database is new, but the cloud holds 1 server and 0 snapshots labelled as this gateway's",
		"restore the database from a backup", "--orphans keep",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "msg=listening") {
		t.Errorf("the refused gateway listened:\n%s", out)
	}

	g = startGateway(t, []string{"HCLOUD_TOKEN="}, append(lg.args, "--orphan-grace", "1ms", "--orphans", "keep")...)
	testkit.Eventually(t, time.Minute, func() error {
		if !strings.Contains(g.logs.String(), "keeping servers and snapshots labelled as this gateway's") {
			return fmt.Errorf("reconcile has not reported the orphan yet")
		}
		return nil
	})
	servers, _ := cloudContents(t, lg)
	if len(servers) != 1 || servers[0].Status != hcloud.ServerStatusRunning {
		t.Errorf("servers %v, want alice's machine kept running", serverNames(servers))
	}
	g.stop()
}
