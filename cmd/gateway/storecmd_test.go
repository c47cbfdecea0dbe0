package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/store/bolt"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestStoreExportImport moves a store's content with the real binary:
// bolt -> export -> import into a 3-member etcd cluster -> export is the
// same document, and so is etcd -> import into a fresh bolt -> export.
// Import refuses a store that holds anything unless --force, saying what,
// and a document of an unknown version.
func TestStoreExportImport(t *testing.T) {
	t.Parallel()
	cluster := testkit.StartEtcd(t, 3)
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	src, err := bolt.Open(filepath.Join(dir, "a", "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		src.Put(lease.Lease{Fingerprint: "SHA256:alice", ID: "a1", State: lease.StateRunning, HostKeyPEM: []byte("pem"), Expires: t0},
			lease.Event{Time: t0, Kind: "create", Fingerprint: "SHA256:alice", Detail: "first"}),
		src.Put(lease.Lease{Fingerprint: "SHA256:bob", ID: "b1", State: lease.StateStopped, Created: t0},
			lease.Event{Time: t0, Kind: "create", Fingerprint: "SHA256:bob"}, lease.Event{Time: t0, Kind: "stop", Detail: "idle"}),
		src.PutPerson(lease.Person{Fingerprint: "SHA256:alice", Notify: []lease.NotifyTarget{{URL: "https://ntfy.sh/a", Added: t0}}}),
		src.PutPoolMachine(lease.PoolMachine{ID: "p1", State: lease.PoolReady, ServerID: 7, Created: t0}, ""),
		src.AppendRefusals([]lease.Refusal{{Minute: t0, Source: "192.0.2.1", Kind: lease.RefusedKey, Count: 3}}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}

	etcdOpts := []string{"--etcd-endpoints", strings.Join(cluster.Endpoints(), ","), "--etcd-prefix", "/moved/"}
	store := func(args ...string) string {
		t.Helper()
		out, err := runGateway([]string{"HCLOUD_TOKEN="}, append([]string{"store"}, args...)...)
		if err != nil {
			t.Fatalf("gateway store %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	file := func(name string) string { return filepath.Join(dir, name) }
	same := func(a, b string) {
		t.Helper()
		x, _ := os.ReadFile(file(a))
		y, _ := os.ReadFile(file(b))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s and %s differ:\n%s\n---\n%s", a, b, x, y)
		}
	}

	store("export", "--data-dir", file("a"), "--out", file("from-bolt.json"))
	if info, err := os.Stat(file("from-bolt.json")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("the export file: %v, %v; want mode 0600", info, err)
	}
	out := store(append([]string{"import", "--in", file("from-bolt.json")}, etcdOpts...)...)
	if !strings.Contains(out, "imported 2 leases, 1 people, 1 pool machines, 3 events and 1 refusal counts") {
		t.Errorf("import into etcd said %q", out)
	}
	store(append([]string{"export", "--out", file("from-etcd.json")}, etcdOpts...)...)
	same("from-bolt.json", "from-etcd.json")

	store("import", "--data-dir", file("b"), "--in", file("from-etcd.json"))
	store("export", "--data-dir", file("b"), "--out", file("back-in-bolt.json"))
	same("from-bolt.json", "back-in-bolt.json")

	out, err = runGateway([]string{"HCLOUD_TOKEN="}, append([]string{"store", "import", "--in", file("from-bolt.json")}, etcdOpts...)...)
	if err == nil || !strings.Contains(out, "the store holds 2 leases, 1 people, 1 pool machines, 3 events and 1 refusal counts, which the import would replace; give --force") {
		t.Errorf("import into a store holding records: %v, %q; want a refusal naming what it holds", err, out)
	}
	store(append([]string{"import", "--force", "--in", file("from-bolt.json")}, etcdOpts...)...)

	if err := os.WriteFile(file("future.json"), []byte(`{"version": 99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runGateway([]string{"HCLOUD_TOKEN="}, "store", "import", "--data-dir", file("c"), "--in", file("future.json"))
	if err == nil || !strings.Contains(out, "version 99: unknown document version") {
		t.Errorf("import of version 99: %v, %q; want it refused", err, out)
	}
	if _, err := os.Stat(file("c")); !os.IsNotExist(err) {
		t.Errorf("a refused document opened the store: %v", err)
	}
}
