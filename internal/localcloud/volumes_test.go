package localcloud_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/localcloud/machine"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// createVolume makes a volume in location through the raw API and waits
// for it.
func createVolume(ctx context.Context, t *testing.T, raw *hc.Client, name, location string) *hc.Volume {
	t.Helper()
	res, _, err := raw.Volume.Create(ctx, hc.VolumeCreateOpts{
		Name: name, Size: 10, Location: &hc.Location{Name: location}, Labels: map[string]string{"cc-gateway": "home"},
	})
	if err != nil {
		t.Fatalf("create volume %s: %v", name, err)
	}
	if err := raw.Action.WaitFor(ctx, res.Action); err != nil {
		t.Fatal(err)
	}
	return res.Volume
}

func waitFor(ctx context.Context, t *testing.T, raw *hc.Client, a *hc.Action, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Action.WaitFor(ctx, a); err != nil {
		t.Fatal(err)
	}
}

// TestVolumesMatchOpenAPI drives every volume endpoint of the fake, with
// the answers Hetzner gives to bad requests, through hcloud-go, and checks
// each answer against the API description.
func TestVolumesMatchOpenAPI(t *testing.T) {
	port := testkit.FreePort(t)
	dir := t.TempDir()
	cloud := startCloud(t, dir, port)
	v := newValidator(t, cloud.Handler())
	ts := httptest.NewServer(v)
	defer ts.Close()
	raw := rawClient(ts.URL+"/v1", cloud.Token())
	ctx := testkit.Context(t, 30*time.Second)

	srv := createServer(t, ctx, raw, "vol1", port, &hc.Image{Name: "debian-12"}) // in fsn1

	// A volume made beside a server is attached to it by a second action.
	res, _, err := raw.Volume.Create(ctx, hc.VolumeCreateOpts{
		Name: "home-a", Size: 10, Server: srv, Labels: map[string]string{"cc-gateway": "home", "person": "a"},
		Format: hc.Ptr("ext4"), Automount: hc.Ptr(false),
	})
	if err != nil {
		t.Fatalf("create volume beside a server: %v", err)
	}
	vol := res.Volume
	if vol.Status != hc.VolumeStatusCreating || vol.Location.Name != "fsn1" || vol.Server != nil || vol.Size != 10 ||
		vol.LinuxDevice != fmt.Sprintf("/dev/disk/by-id/scsi-0HC_Volume_%d", vol.ID) || vol.Format == nil || *vol.Format != "ext4" {
		t.Fatalf("fresh volume: %+v", vol)
	}
	if len(res.NextActions) != 1 || res.NextActions[0].Command != "attach_volume" {
		t.Fatalf("next actions %+v, want one attach_volume", res.NextActions)
	}
	if err := raw.Action.WaitFor(ctx, append(res.NextActions, res.Action)...); err != nil {
		t.Fatal(err)
	}
	got, _, err := raw.Volume.GetByID(ctx, vol.ID)
	if err != nil || got.Status != hc.VolumeStatusAvailable || got.Server == nil || got.Server.ID != srv.ID {
		t.Fatalf("volume after its actions: %+v, %v", got, err)
	}
	if s, _, err := raw.Server.GetByID(ctx, srv.ID); err != nil || len(s.Volumes) != 1 || s.Volumes[0].ID != vol.ID {
		t.Fatalf("server's volumes: %+v, %v", s, err)
	}

	// One server per volume; an attached volume is not deleted.
	if _, _, err := raw.Volume.Attach(ctx, got, srv); !hc.IsError(err, hc.ErrorCodeVolumeAlreadyAttached) {
		t.Errorf("attach an attached volume: %v, want volume_already_attached", err)
	}
	if _, err := raw.Volume.Delete(ctx, got); !hc.IsError(err, hc.ErrorCodeVolumeAlreadyAttached) {
		t.Errorf("delete an attached volume: %v, want volume_already_attached", err)
	}

	// A volume in another location does not attach.
	far := createVolume(ctx, t, raw, "home-far", "hel1")
	if _, _, err := raw.Volume.Attach(ctx, far, srv); !hc.IsError(err, hc.ErrorCodeInvalidInput) {
		t.Errorf("attach across locations: %v, want invalid_input", err)
	}

	// Lists filter by label, name and status; update names and labels.
	list, err := raw.Volume.AllWithOpts(ctx, hc.VolumeListOpts{ListOpts: hc.ListOpts{LabelSelector: "person=a"}})
	if err != nil || len(list) != 1 || list[0].ID != vol.ID {
		t.Fatalf("list by label: %v %+v", err, list)
	}
	if byName, _, err := raw.Volume.GetByName(ctx, "home-far"); err != nil || byName == nil || byName.ID != far.ID {
		t.Fatalf("get by name: %v %+v", err, byName)
	}
	if list, err := raw.Volume.AllWithOpts(ctx, hc.VolumeListOpts{Status: []hc.VolumeStatus{hc.VolumeStatusCreating}}); err != nil || len(list) != 0 {
		t.Fatalf("list creating: %v %+v", err, list)
	}
	if _, _, err := raw.Volume.Update(ctx, far, hc.VolumeUpdateOpts{Name: "home-b", Labels: map[string]string{"person": "b"}}); err != nil {
		t.Fatalf("update: %v", err)
	}
	if _, _, err := raw.Volume.Update(ctx, far, hc.VolumeUpdateOpts{Name: "home-a"}); !hc.IsError(err, hc.ErrorCodeUniquenessError) {
		t.Errorf("rename to a taken name: %v, want uniqueness_error", err)
	}

	// Grow, never shrink.
	a, _, err := raw.Volume.Resize(ctx, got, 20)
	waitFor(ctx, t, raw, a, err)
	if _, _, err := raw.Volume.Resize(ctx, got, 15); !hc.IsError(err, hc.ErrorCodeInvalidInput) {
		t.Errorf("shrink: %v, want invalid_input", err)
	}
	if got, _, err = raw.Volume.GetByID(ctx, vol.ID); err != nil || got.Size != 20 {
		t.Fatalf("after resize: %+v, %v", got, err)
	}

	// Bad creates get Hetzner's answers.
	for name, opts := range map[string]hc.VolumeCreateOpts{
		"too small":        {Name: "v-small", Size: 9, Location: &hc.Location{Name: "fsn1"}},
		"too large":        {Name: "v-large", Size: 10241, Location: &hc.Location{Name: "fsn1"}},
		"bad name":         {Name: "-v", Size: 10, Location: &hc.Location{Name: "fsn1"}},
		"unknown location": {Name: "v-nowhere", Size: 10, Location: &hc.Location{Name: "mars1"}},
		"bad format":       {Name: "v-fat", Size: 10, Location: &hc.Location{Name: "fsn1"}, Format: hc.Ptr("vfat")},
	} {
		if _, _, err := raw.Volume.Create(ctx, opts); !hc.IsError(err, hc.ErrorCodeInvalidInput) {
			t.Errorf("create %s: %v, want invalid_input", name, err)
		}
	}
	if _, _, err := raw.Volume.Create(ctx, hc.VolumeCreateOpts{Name: "home-a", Size: 10, Location: &hc.Location{Name: "fsn1"}}); !hc.IsError(err, hc.ErrorCodeUniquenessError) {
		t.Errorf("create with a taken name: %v, want uniqueness_error", err)
	}
	if v, _, err := raw.Volume.GetByID(ctx, 99999); err != nil || v != nil {
		t.Errorf("missing volume: %v %v", v, err)
	}

	// Detach, then the server shows none and the volume deletes.
	a, _, err = raw.Volume.Detach(ctx, got)
	waitFor(ctx, t, raw, a, err)
	if s, _, err := raw.Server.GetByID(ctx, srv.ID); err != nil || len(s.Volumes) != 0 {
		t.Fatalf("server's volumes after detach: %+v, %v", s, err)
	}
	if _, _, err := raw.Volume.Detach(ctx, got); !hc.IsError(err, hc.ErrorCodeInvalidInput) {
		t.Errorf("detach a detached volume: %v, want invalid_input", err)
	}

	// A volume's own actions; hcloud-go reads one at /volumes/actions/{id}
	// (not served, as for firewalls), so the one under the volume is
	// fetched by hand.
	actions, err := raw.Volume.Action.AllFor(ctx, got, hc.ActionListOpts{})
	if err != nil || len(actions) != 4 { // create, attach, resize, detach
		t.Fatalf("volume actions: %v %+v", err, actions)
	}
	one, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/volumes/%d/actions/%d", ts.URL, vol.ID, a.ID), nil)
	if err != nil {
		t.Fatal(err)
	}
	one.Header.Set("Authorization", "Bearer "+cloud.Token())
	if resp, err := http.DefaultClient.Do(one); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("get a volume's action: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	if _, err := raw.Volume.Delete(ctx, got); err != nil {
		t.Fatalf("delete: %v", err)
	}

	// State persists: a volume and its attachment survive a restart, and
	// deleting the server detaches it.
	a, _, err = raw.Volume.Attach(ctx, &hc.Volume{ID: createVolume(ctx, t, raw, "home-c", "fsn1").ID}, srv)
	waitFor(ctx, t, raw, a, err)
	if err := cloud.Close(); err != nil {
		t.Fatal(err)
	}
	again := startCloud(t, dir, port)
	raw2 := rawClient(again.Endpoint(), again.Token())
	s, _, err := raw2.Server.GetByID(ctx, srv.ID)
	if err != nil || len(s.Volumes) != 1 {
		t.Fatalf("after a restart the server is %+v, %v", s, err)
	}
	deleted, _, err := raw2.Server.DeleteWithResult(ctx, s)
	waitFor(ctx, t, raw2, deleted.Action, err)
	if c, _, err := raw2.Volume.GetByID(ctx, s.Volumes[0].ID); err != nil || c.Server != nil {
		t.Fatalf("volume of a deleted server: %+v, %v", c, err)
	}

	v.report(t, []string{
		"POST /volumes 201",
		"POST /volumes 400",
		"POST /volumes 409",
		"GET /volumes 200",
		"GET /volumes/{id} 200",
		"GET /volumes/{id} 404",
		"PUT /volumes/{id} 200",
		"PUT /volumes/{id} 409",
		"DELETE /volumes/{id} 204",
		"DELETE /volumes/{id} 422",
		"GET /volumes/{id}/actions 200",
		"GET /volumes/{id}/actions/{action_id} 200",
		"POST /volumes/{id}/actions/attach 201",
		"POST /volumes/{id}/actions/attach 400",
		"POST /volumes/{id}/actions/attach 422",
		"POST /volumes/{id}/actions/detach 201",
		"POST /volumes/{id}/actions/detach 400",
		"POST /volumes/{id}/actions/resize 201",
		"POST /volumes/{id}/actions/resize 400",
		"GET /servers/{id} 200",
	})
}

// TestVolumeIsLinkedLikeADevice: a server created with a volume finds it
// where the NixOS image finds the block device, a link at its linux_device
// under the machine's root to the volume's folder; the folder outlives the
// server and comes back on the next server it is attached to; a snapshot
// leaves it out; deleting the volume deletes the folder. (home_test.go has
// the machines make it HOME.)
func TestVolumeIsLinkedLikeADevice(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	dir, port := t.TempDir(), testkit.FreePort(t)
	cloud := startCloud(t, dir, port)
	raw := rawClient(cloud.Endpoint(), cloud.Token())
	vol := createVolume(ctx, t, raw, "home-p", "fsn1")
	folder := filepath.Join(dir, "volumes", strconv.FormatInt(vol.ID, 10))

	create := func(leaseID string) *hc.Server {
		t.Helper()
		spec, _ := newSpec(t, leaseID, port)
		res, _, err := raw.Server.Create(ctx, hc.ServerCreateOpts{
			Name: spec.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{Name: "debian-12"},
			UserData: spec.UserData, Location: &hc.Location{Name: "fsn1"}, Volumes: []*hc.Volume{vol},
		})
		if err != nil {
			t.Fatalf("create %s with the volume: %v", spec.Name, err)
		}
		if len(res.Server.Volumes) != 1 || res.Server.Volumes[0].ID != vol.ID {
			t.Fatalf("new server's volumes %+v", res.Server.Volumes)
		}
		if err := raw.Action.WaitFor(ctx, append(res.NextActions, res.Action)...); err != nil {
			t.Fatal(err)
		}
		return res.Server
	}
	linked := func(s *hc.Server) string {
		target, _ := os.Readlink(filepath.Join(dir, "machines", s.Name, machine.RootDir, vol.LinuxDevice))
		return target
	}
	first := create("home1")
	if got := linked(first); got != folder {
		t.Fatalf("the machine's link to its volume: %q, want %q", got, folder)
	}
	if fi, err := os.Stat(folder); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the volume's folder: %v, %v; want it made private", fi, err)
	}
	if err := os.WriteFile(filepath.Join(folder, "work.txt"), []byte("kept\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Busy elsewhere: a second server cannot have it.
	spec, _ := newSpec(t, "home2", port)
	if _, _, err := raw.Server.Create(ctx, hc.ServerCreateOpts{
		Name: spec.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{Name: "debian-12"},
		UserData: spec.UserData, Location: &hc.Location{Name: "fsn1"}, Volumes: []*hc.Volume{vol},
	}); !hc.IsError(err, hc.ErrorCodeVolumeAlreadyAttached) {
		t.Fatalf("create with an attached volume: %v, want volume_already_attached", err)
	}
	if _, _, err := raw.Server.Create(ctx, hc.ServerCreateOpts{
		Name: spec.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{Name: "debian-12"},
		UserData: spec.UserData, Location: &hc.Location{Name: "nbg1"}, Volumes: []*hc.Volume{vol},
	}); !hc.IsError(err, hc.ErrorCodeInvalidInput) {
		t.Fatalf("create in another location than the volume: %v, want invalid_input", err)
	}

	deleted, _, err := raw.Server.DeleteWithResult(ctx, first)
	waitFor(ctx, t, raw, deleted.Action, err)
	third := create("home3")
	if b, err := os.ReadFile(filepath.Join(folder, "work.txt")); err != nil || string(b) != "kept\n" || linked(third) != folder {
		t.Fatalf("the volume on a new server: %q, %v, linked to %q", b, err, linked(third))
	}
	// A snapshot is of the server's own disk: the volume is not in it.
	im := snapshot(t, ctx, raw, third, nil)
	if _, err := os.Stat(filepath.Join(dir, "images", strconv.FormatInt(im.ID, 10), "home", "work.txt")); !os.IsNotExist(err) {
		t.Fatalf("the volume's file in a snapshot: %v", err)
	}

	// Detached, the volume deletes and its folder goes.
	a, _, err := raw.Volume.Detach(ctx, vol)
	waitFor(ctx, t, raw, a, err)
	if got := linked(third); got != "" {
		t.Fatalf("the machine's link after the detach: %q", got)
	}
	if _, err := raw.Volume.Delete(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(folder); !os.IsNotExist(err) {
		t.Fatalf("volume folder after delete: %v", err)
	}
}

// TestRestartRemovesFoldersOfDeletedVolumes: a crash between a volume's
// delete and its folder's removal leaves a folder; the next start removes
// it and keeps the folders of volumes that exist.
func TestRestartRemovesFoldersOfDeletedVolumes(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	dir, port := t.TempDir(), testkit.FreePort(t)
	cloud := startCloud(t, dir, port)
	raw := rawClient(cloud.Endpoint(), cloud.Token())
	kept := filepath.Join(dir, "volumes", strconv.FormatInt(createVolume(ctx, t, raw, "home-kept", "fsn1").ID, 10))
	orphan := filepath.Join(dir, "volumes", "999")
	for _, d := range []string{kept, orphan} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := cloud.Close(); err != nil {
		t.Fatal(err)
	}
	startCloud(t, dir, port)
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("folder of a deleted volume after a restart: %v", err)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("folder of a kept volume after a restart: %v", err)
	}
}
