package localcloud_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// createServer makes a server through the raw API and waits until it runs.
func createServer(t *testing.T, ctx context.Context, raw *hc.Client, leaseID string, port int, image *hc.Image) *hc.Server {
	t.Helper()
	spec, _ := newSpec(t, leaseID, port)
	res, _, err := raw.Server.Create(ctx, hc.ServerCreateOpts{
		Name: spec.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: image, UserData: spec.UserData,
	})
	if err != nil {
		t.Fatalf("create %s: %v", spec.Name, err)
	}
	if err := raw.Action.WaitFor(ctx, append(res.NextActions, res.Action)...); err != nil {
		t.Fatal(err)
	}
	return res.Server
}

// startWithServer starts a cloud for the test and makes one server there
// from debian-12 through the raw API. It returns the cloud's folder and
// machine port, the client and the running server.
func startWithServer(t *testing.T, ctx context.Context, leaseID string) (string, int, *hc.Client, *hc.Server) {
	t.Helper()
	dir, port := t.TempDir(), testkit.FreePort(t)
	cloud := startCloud(t, dir, port)
	raw := rawClient(cloud.Endpoint(), cloud.Token())
	return dir, port, raw, createServer(t, ctx, raw, leaseID, port, &hc.Image{Name: "debian-12"})
}

func snapshot(t *testing.T, ctx context.Context, raw *hc.Client, srv *hc.Server, labels map[string]string) *hc.Image {
	t.Helper()
	res, _, err := raw.Server.CreateImage(ctx, srv, &hc.ServerCreateImageOpts{Type: hc.ImageTypeSnapshot, Labels: labels})
	if err != nil {
		t.Fatalf("snapshot %s: %v", srv.Name, err)
	}
	if err := raw.Action.WaitFor(ctx, res.Action); err != nil {
		t.Fatal(err)
	}
	im, _, err := raw.Image.GetByID(ctx, res.Image.ID)
	if err != nil || im == nil {
		t.Fatalf("snapshot %d: %v", res.Image.ID, err)
	}
	return im
}

func TestSnapshotCarriesHomeToNewServer(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	dir, port, raw, srv := startWithServer(t, ctx, "snap1")
	home := filepath.Join(dir, "machines", srv.Name, "home")
	if err := os.MkdirAll(filepath.Join(home, "work"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "work", "notes.txt"), []byte("hello from before\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("work/notes.txt", filepath.Join(home, "latest")); err != nil {
		t.Fatal(err)
	}

	res, _, err := raw.Server.CreateImage(ctx, srv, &hc.ServerCreateImageOpts{
		Type: hc.ImageTypeSnapshot, Description: hc.Ptr("before hibernation"), Labels: map[string]string{"lease": "snap1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Image.Status != hc.ImageStatusCreating || res.Image.ImageSize != 0 || res.Image.CreatedFrom == nil || res.Image.CreatedFrom.ID != srv.ID {
		t.Fatalf("fresh snapshot: %+v", res.Image)
	}
	if len(res.Action.Resources) != 2 || res.Action.Resources[1].Type != hc.ActionResourceTypeImage || res.Action.Resources[1].ID != res.Image.ID {
		t.Fatalf("create_image resources: %+v", res.Action.Resources)
	}
	if err := raw.Action.WaitFor(ctx, res.Action); err != nil {
		t.Fatal(err)
	}
	im, _, err := raw.Image.GetByID(ctx, res.Image.ID)
	if err != nil || im.Status != hc.ImageStatusAvailable || im.Type != hc.ImageTypeSnapshot || im.Description != "before hibernation" ||
		im.ImageSize < 1 || im.DiskSize != 40 || im.Labels["lease"] != "snap1" || im.Name != "" {
		t.Fatalf("finished snapshot: %+v, %v", im, err)
	}

	// Filters.
	count := func(opts hc.ImageListOpts) int {
		t.Helper()
		list, err := raw.Image.AllWithOpts(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	if n := count(hc.ImageListOpts{Type: []hc.ImageType{hc.ImageTypeSnapshot}}); n != 2 {
		t.Errorf("%d snapshots, want the catalog's and ours", n)
	}
	if n := count(hc.ImageListOpts{ListOpts: hc.ListOpts{LabelSelector: "lease=snap1"}}); n != 1 {
		t.Errorf("%d images labelled lease=snap1, want 1", n)
	}
	if n := count(hc.ImageListOpts{Status: []hc.ImageStatus{hc.ImageStatusCreating}}); n != 0 {
		t.Errorf("%d images being created, want 0", n)
	}
	if n := count(hc.ImageListOpts{Type: []hc.ImageType{hc.ImageTypeSystem}}); n != 3 {
		t.Errorf("%d system images, want 3", n)
	}

	// The server made from it has the files before it even boots.
	spec, _ := newSpec(t, "snap2", port)
	created, _, err := raw.Server.Create(ctx, hc.ServerCreateOpts{
		Name: spec.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{ID: im.ID}, UserData: spec.UserData,
	})
	if err != nil {
		t.Fatalf("create from the snapshot: %v", err)
	}
	newHome := filepath.Join(dir, "machines", spec.Name, "home")
	if b, err := os.ReadFile(filepath.Join(newHome, "latest")); err != nil || string(b) != "hello from before\n" {
		t.Fatalf("restored file through the restored link: %q, %v", b, err)
	}
	if info, err := os.Stat(filepath.Join(newHome, "work", "notes.txt")); err != nil || info.Mode().Perm() != 0o640 {
		t.Fatalf("restored file: %v, %v", info, err)
	}
	if err := raw.Action.WaitFor(ctx, append(created.NextActions, created.Action)...); err != nil {
		t.Fatal(err)
	}
	if s, _, err := raw.Server.GetByID(ctx, created.Server.ID); err != nil || s.Status != hc.ServerStatusRunning || s.Image == nil || s.Image.ID != im.ID {
		t.Fatalf("server from the snapshot: %+v, %v", s, err)
	}

	// Deleting the snapshot leaves the server; its image reads as null.
	if _, err := raw.Image.Delete(ctx, im); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "images", strconv.FormatInt(im.ID, 10))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("snapshot folder after delete: %v", err)
	}
	if s, _, err := raw.Server.GetByID(ctx, created.Server.ID); err != nil || s.Image != nil {
		t.Fatalf("server after its snapshot was deleted: %+v, %v", s, err)
	}
	if b, err := os.ReadFile(filepath.Join(newHome, "work", "notes.txt")); err != nil || string(b) != "hello from before\n" {
		t.Fatalf("the server's own copy after the snapshot was deleted: %q, %v", b, err)
	}
	spec3, _ := newSpec(t, "snap3", port)
	_, _, err = raw.Server.Create(ctx, hc.ServerCreateOpts{
		Name: spec3.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{ID: im.ID}, UserData: spec3.UserData,
	})
	if !hc.IsError(err, hc.ErrorCodeInvalidInput) {
		t.Fatalf("create from a deleted snapshot: %v, want invalid_input", err)
	}
}

// delayImages holds create_image actions for a long time and lets
// everything else run.
type delayImages struct{}

func (delayImages) Request(http.ResponseWriter, *http.Request) bool { return false }
func (delayImages) Action(command string) localcloud.ActionFault {
	if command == "create_image" {
		return localcloud.ActionFault{Delay: time.Hour}
	}
	return localcloud.ActionFault{}
}

// TestSnapshotsAcrossRestart: a finished snapshot survives a restart of
// the cloud; one interrupted halfway is dropped, as a failed one would be.
func TestSnapshotsAcrossRestart(t *testing.T) {
	dir, port := t.TempDir(), testkit.FreePort(t)
	opts := localcloud.Options{DataDir: dir, SSHPort: port, ActionDuration: 20 * time.Millisecond, Faults: delayImages{}, Logger: testkit.Log(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cloud, err := localcloud.Start(localcloud.Options{DataDir: dir, SSHPort: port, ActionDuration: 20 * time.Millisecond, Logger: testkit.Log(t)})
	if err != nil {
		t.Fatal(err)
	}
	raw := rawClient(cloud.Endpoint(), cloud.Token())
	srv := createServer(t, ctx, raw, "keep1", port, &hc.Image{Name: "debian-12"})
	done := snapshot(t, ctx, raw, srv, nil)
	if err := cloud.Close(); err != nil {
		t.Fatal(err)
	}

	cloud, err = localcloud.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	raw = rawClient(cloud.Endpoint(), cloud.Token())
	res, _, err := raw.Server.CreateImage(ctx, srv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cloud.Close(); err != nil {
		t.Fatal(err)
	}

	cloud = startCloud(t, dir, port)
	raw = rawClient(cloud.Endpoint(), cloud.Token())
	if im, _, err := raw.Image.GetByID(ctx, done.ID); err != nil || im == nil || im.Status != hc.ImageStatusAvailable {
		t.Fatalf("finished snapshot after restarts: %+v, %v", im, err)
	}
	if im, _, err := raw.Image.GetByID(ctx, res.Image.ID); err != nil || im != nil {
		t.Fatalf("interrupted snapshot after restart: %+v, %v", im, err)
	}
	// Ids are not handed out twice.
	next := snapshot(t, ctx, raw, srv, nil)
	if next.ID == done.ID || next.ID == res.Image.ID {
		t.Fatalf("new snapshot reuses id %d", next.ID)
	}
}

// TestConcurrentSnapshotAndDelete races a snapshot against deleting the
// server and the snapshot: whatever wins, nothing is left half made.
func TestConcurrentSnapshotAndDelete(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	dir, _, raw, srv := startWithServer(t, ctx, "race1")
	res, _, err := raw.Server.CreateImage(ctx, srv, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var del *hc.ServerDeleteResult
	var delErr error
	wg.Add(2)
	go func() { defer wg.Done(); del, _, delErr = raw.Server.DeleteWithResult(ctx, srv) }()
	go func() { defer wg.Done(); _, _ = raw.Image.Delete(ctx, res.Image) }()
	wg.Wait()
	if delErr != nil {
		t.Fatal(delErr)
	}
	_ = raw.Action.WaitFor(ctx, res.Action) // fails if the delete overtook it
	if err := raw.Action.WaitFor(ctx, del.Action); err != nil {
		t.Fatal(err)
	}
	if s, _, err := raw.Server.GetByID(ctx, srv.ID); err != nil || s != nil {
		t.Fatalf("server after deleting it: %+v, %v", s, err)
	}
	if im, _, err := raw.Image.GetByID(ctx, res.Image.ID); err != nil || im != nil {
		t.Fatalf("snapshot after deleting it: %+v, %v", im, err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "images"))
	if err != nil || len(entries) != 0 {
		t.Fatalf("images folder after the race: %v, %v", entries, err)
	}
}
