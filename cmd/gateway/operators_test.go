package main

// Operators' mistakes: a lost or damaged lease database, local mode on a
// public address. The real gateway binary, the local cloud.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	if r := alice.ssh(g, "", "true"); r.code != 0 {
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

	keep := *lg
	keep.args = append(slices.Clone(lg.args), "--orphan-grace", "1ms", "--orphans", "keep")
	g = keep.start(t)
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

// damageLeasePages overwrites with garbage every page of the bbolt file at
// path that holds a fingerprint (leases and their events), as a failing
// disk or a stray write would. bbolt maps the file shared, so a running
// gateway sees the damage too.
func damageLeasePages(t *testing.T, path string) {
	t.Helper()
	const pageSize = 4096 // bbolt's page size is the OS's, 4 KiB here
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	damaged := 0
	for off := 2 * pageSize; off+pageSize <= len(data); off += pageSize {
		if !bytes.Contains(data[off:off+pageSize], []byte("SHA256:")) {
			continue
		}
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, pageSize), int64(off)); err != nil {
			t.Fatal(err)
		}
		damaged++
	}
	if damaged == 0 {
		t.Fatal("no page holds a fingerprint")
	}
}

// TestDamagedDatabase: damage under a running gateway is logged once and
// people are told in one sentence; the gateway then refuses to start on
// the damaged file, naming it.
func TestDamagedDatabase(t *testing.T) {
	if os.Getpagesize() != 4096 {
		t.Skip("the damage is laid out for 4 KiB pages")
	}
	lg := newLocalGateway(t)
	g := lg.start(t)
	alice := newPerson(t, filepath.Join(lg.dir, "alice"))
	if r := alice.ssh(g, "", "true"); r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	db := filepath.Join(lg.dir, "data", "gateway.db")
	damageLeasePages(t, db)
	for range 2 {
		r := alice.ssh(g, "", "true")
		if r.code == 0 || !strings.Contains(r.stderr, "the gateway's lease database has failed, so no machine can be started or changed until its operator repairs it") {
			t.Errorf("a login on a damaged database: %+v", r)
		}
	}
	if n := strings.Count(g.logs.String(), "the lease database failed;"); n != 1 {
		t.Errorf("the failure was logged %d times, want once:\n%s", n, g.logs.String())
	}
	g.stop()

	out, err := runGateway([]string{"HCLOUD_TOKEN="}, lg.args...)
	if err == nil || !strings.Contains(out, db+" is damaged") || !strings.Contains(out, "restore your newest backup") {
		t.Errorf("start on a damaged database: %v\n%s", err, out)
	}
	if strings.Contains(out, "msg=listening") {
		t.Errorf("the gateway listened on a damaged database:\n%s", out)
	}
}
