package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestEtcdStore: a gateway whose store is a 3-member etcd cluster serves a
// person end to end with the real ssh (a command on the machine, status,
// extend) and keeps nothing in --data-dir's database; restarted, it finds
// the lease as it was, and with one member stopped nobody notices. With a
// second stopped (no quorum) a person is told the store is temporarily
// unavailable; with both back, the same gateway serves again.
func TestEtcdStore(t *testing.T) {
	t.Parallel()
	cluster := testkit.StartEtcd(t, 3)
	dir := t.TempDir()
	heidi := newPerson(t, filepath.Join(dir, "heidi"))
	lg := newLocalGatewayIn(t, dir, "--etcd-endpoints", strings.Join(cluster.Endpoints(), ","), "--etcd-prefix", "/test-gw/")
	g := lg.start(t)
	if r := heidi.ssh(g, "", "echo", "on-etcd"); r.code != 0 || strings.TrimSpace(r.stdout) != "on-etcd" {
		t.Fatalf("first connection: %+v", r)
	}
	before := heidi.status(g)
	if before.State != "running" {
		t.Fatalf("status after the first connection: %+v", before)
	}
	if r := heidi.ssh(g, "", "extend", "1h"); r.code != 0 || !strings.Contains(r.stdout, "now expires at") {
		t.Fatalf("extend 1h: %+v", r)
	}
	extended := heidi.status(g)
	if got := extended.Expires.Sub(before.Expires); got != time.Hour {
		t.Errorf("extend 1h moved the expiry by %s", got)
	}
	g.stop()
	if _, err := os.Stat(filepath.Join(dir, "data", "gateway.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a gateway on etcd made a bbolt database: %v", err)
	}

	cluster.Members[0].Stop()
	g = lg.start(t)
	after := heidi.status(g)
	if after.LeaseID != before.LeaseID || !after.Expires.Equal(extended.Expires) || after.State != "running" {
		t.Errorf("after a restart with one member stopped: %+v, want the lease %s running until %s", after, before.LeaseID, extended.Expires)
	}
	if r := heidi.ssh(g, "", "echo", "still"); r.code != 0 || strings.TrimSpace(r.stdout) != "still" {
		t.Errorf("a command with one member stopped: %+v", r)
	}

	cluster.Members[1].Stop()
	if r := heidi.ssh(g, "", "extend", "1h"); r.code != 1 || !strings.Contains(r.stderr, "the gateway's store is temporarily unavailable; try again") {
		t.Errorf("extend without quorum: %+v, want exit 1 and the store temporarily unavailable", r)
	}
	cluster.Members[0].Start()
	cluster.Members[1].Start()
	if back := heidi.status(g); !back.Expires.Equal(extended.Expires) {
		t.Errorf("with quorum back the lease expires at %s, want %s: the refused extend wrote nothing", back.Expires, extended.Expires)
	}
}
