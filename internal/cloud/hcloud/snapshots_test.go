package hcloud_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
)

// TestHibernateAndResume takes the path of an idle machine that is
// hibernated: snapshot, delete the server, later create it again from the
// snapshot, and the person's files are back.
func TestHibernateAndResume(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	alice, srv := e.server(t, ctx, "hib1")

	if err := alice.wait(ctx, e.addr(srv), alice.hostKey); err != nil {
		t.Fatal(err)
	}
	runOnMachine(t, e.addr(srv), alice, "mkdir -p work && echo 'kept across hibernation' > work/note")
	if err := e.p.PowerOff(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}

	im, err := e.p.Snapshot(ctx, srv.ID, "hib1")
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if im.ID == 0 || im.LeaseID != "hib1" || im.SizeGB <= 0 || im.Created.IsZero() {
		t.Fatalf("snapshot = %+v", im)
	}
	raw, _, err := e.raw.Image.GetByID(ctx, im.ID)
	if err != nil || raw == nil {
		t.Fatalf("the snapshot at the API: %v", err)
	}
	if raw.Type != hc.ImageTypeSnapshot || raw.Status != hc.ImageStatusAvailable ||
		raw.Labels[hcloud.LabelGateway] != "test" || raw.Labels[hcloud.LabelLease] != "hib1" ||
		!strings.Contains(raw.Description, "hib1") || raw.CreatedFrom == nil || raw.CreatedFrom.ID != srv.ID {
		t.Fatalf("the snapshot at the API: %+v", raw)
	}
	// Repeating the snapshot (a retry after a crash) returns the same one.
	again, err := e.p.Snapshot(ctx, srv.ID, "hib1")
	if err != nil || again.ID != im.ID {
		t.Fatalf("repeated snapshot: %+v, %v; want image %d", again, err, im.ID)
	}
	if n := e.faults.count("create_image"); n != 1 {
		t.Fatalf("%d snapshots were taken, want 1", n)
	}

	if err := e.p.Delete(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}
	// Even with the server gone, the lease's snapshot is found again.
	if again, err := e.p.Snapshot(ctx, srv.ID, "hib1"); err != nil || again.ID != im.ID {
		t.Fatalf("snapshot after the server was deleted: %+v, %v", again, err)
	}
	images, err := e.p.Images(ctx)
	if err != nil || len(images) != 1 || images[0].ID != im.ID || images[0].LeaseID != "hib1" {
		t.Fatalf("images = %+v, %v", images, err)
	}

	resume := alice.spec
	resume.ImageID = im.ID
	back, err := e.p.Create(ctx, resume)
	if err != nil {
		t.Fatalf("create from the snapshot: %v", err)
	}
	if back.ID == srv.ID || back.Status != "running" {
		t.Fatalf("resumed server = %+v", back)
	}
	if got, _, err := e.raw.Server.GetByID(ctx, back.ID); err != nil || got.Image == nil || got.Image.ID != im.ID {
		t.Fatalf("the resumed server does not run the snapshot: %+v, %v", got, err)
	}
	if err := alice.wait(ctx, e.addr(back), alice.hostKey); err != nil {
		t.Fatal(err)
	}
	if out := runOnMachine(t, e.addr(back), alice, "cat work/note"); out != "kept across hibernation\n" {
		t.Fatalf("the file after resuming from the snapshot: %q", out)
	}

	// Expiry: the snapshot goes, once.
	if err := e.p.DeleteImage(ctx, im.ID); err != nil {
		t.Fatalf("delete image: %v", err)
	}
	if err := e.p.DeleteImage(ctx, im.ID); !errors.Is(err, lease.ErrImageNotFound) {
		t.Fatalf("second delete image: %v, want ErrImageNotFound", err)
	}
	if images, err := e.p.Images(ctx); err != nil || len(images) != 0 {
		t.Fatalf("images after delete = %+v, %v", images, err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "images", strconv.FormatInt(im.ID, 10))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the snapshot's folder after delete: %v", err)
	}
	// A resume from a deleted snapshot names the problem.
	other := newPerson(t, "hib2", e.port)
	other.spec.ImageID = im.ID
	if _, err := e.p.Create(ctx, other.spec); !errors.Is(err, lease.ErrImageNotFound) {
		t.Fatalf("create from a deleted snapshot: %v, want ErrImageNotFound", err)
	}
}

// TestSnapshotsStayWithTheirLease: a snapshot holds a person's files, so it
// boots only for its own lease, and the gateway deletes only its own.
func TestSnapshotsStayWithTheirLease(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	_, srv := e.server(t, ctx, "own1")
	im, err := e.p.Snapshot(ctx, srv.ID, "own1")
	if err != nil {
		t.Fatal(err)
	}
	// The server is alice's: no snapshot of it under another lease.
	if _, err := e.p.Snapshot(ctx, srv.ID, "own2"); err == nil || !strings.Contains(err.Error(), `belongs to lease "own1"`) {
		t.Fatalf("snapshot under another lease: %v", err)
	}

	bob := newPerson(t, "own2", e.port)
	bob.spec.ImageID = im.ID
	_, err = e.p.Create(ctx, bob.spec)
	if err == nil || !strings.Contains(err.Error(), "is not a snapshot of lease own2") {
		t.Fatalf("create bob's server from alice's snapshot: %v", err)
	}
	if s, _, _ := e.raw.Server.GetByName(ctx, bob.spec.Name); s != nil {
		t.Fatal("a server was created from another lease's snapshot")
	}

	// A snapshot someone else took (another gateway's) and a system image
	// are left alone.
	res, _, err := e.raw.Server.CreateImage(ctx, &hc.Server{ID: srv.ID}, &hc.ServerCreateImageOpts{
		Type: hc.ImageTypeSnapshot, Labels: map[string]string{hcloud.LabelGateway: "elsewhere"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.raw.Action.WaitFor(ctx, res.Action); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{res.Image.ID, 1} {
		if err := e.p.DeleteImage(ctx, id); err == nil || !strings.Contains(err.Error(), "leaves it alone") {
			t.Fatalf("delete image %d that is not the gateway's: %v", id, err)
		}
		if got, _, err := e.raw.Image.GetByID(ctx, id); err != nil || got == nil {
			t.Fatalf("image %d after the refused delete: %v, %v", id, got, err)
		}
	}
	images, err := e.p.Images(ctx)
	if err != nil || len(images) != 1 || images[0].ID != im.ID {
		t.Fatalf("images = %+v, %v; want only the gateway's", images, err)
	}
	if err := e.p.DeleteImage(ctx, 987654); !errors.Is(err, lease.ErrImageNotFound) {
		t.Fatalf("delete a missing image: %v, want ErrImageNotFound", err)
	}
}

// TestSnapshotAfterCrashWaitsForTheFirst: the gateway asked for a snapshot
// and crashed; the retry finds the one being made and waits for it.
func TestSnapshotAfterCrashWaitsForTheFirst(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	_, srv := e.server(t, ctx, "crash1")
	e.faults.set("create_image", localcloud.ActionFault{Delay: 300 * time.Millisecond})
	res, _, err := e.raw.Server.CreateImage(ctx, &hc.Server{ID: srv.ID}, &hc.ServerCreateImageOpts{
		Type:   hc.ImageTypeSnapshot,
		Labels: map[string]string{hcloud.LabelGateway: "test", hcloud.LabelLease: "crash1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Image.Status != hc.ImageStatusCreating {
		t.Fatalf("a fresh snapshot is %s, want creating", res.Image.Status)
	}
	im, err := e.p.Snapshot(ctx, srv.ID, "crash1")
	if err != nil {
		t.Fatal(err)
	}
	if im.ID != res.Image.ID || e.faults.count("create_image") != 1 {
		t.Fatalf("snapshot %d after %d create_image actions; want the first one, %d", im.ID, e.faults.count("create_image"), res.Image.ID)
	}
	if got, _, err := e.raw.Image.GetByID(ctx, im.ID); err != nil || got.Status != hc.ImageStatusAvailable {
		t.Fatalf("the snapshot is not available: %+v, %v", got, err)
	}
}
