package hcloud_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
)

// volumeBehindItsBack creates owner's volume in fsn1 with the plain
// client, as the provider before a crash would, without waiting for it.
func (e *testEnv) volumeBehindItsBack(t *testing.T, ctx context.Context, owner string) hc.VolumeCreateResult {
	t.Helper()
	res, _, err := e.raw.Volume.Create(ctx, hc.VolumeCreateOpts{
		Name: "cc-home-test-" + owner, Size: 10, Location: &hc.Location{Name: "fsn1"},
		Labels: map[string]string{hcloud.LabelGateway: "test", hcloud.LabelHome: owner},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestVolumeLifecycle drives a home volume through the provider: create
// (twice: the second finds the first), attach to the owner's server,
// refused across locations and while attached, detach, delete.
func TestVolumeLifecycle(t *testing.T) {
	e, ctx := newEnv(t, 60*time.Second)
	_, srv := e.server(t, ctx, "vol1") // in fsn1, the default location

	spec := lease.VolumeSpec{Name: "cc-home-test-alice", Owner: "alice", SizeGB: 10, Location: "fsn1"}
	v, err := e.p.CreateVolume(ctx, spec)
	if err != nil {
		t.Fatalf("create volume: %v", err)
	}
	if v.Owner != "alice" || v.SizeGB != 10 || v.Location != "fsn1" || v.Server != 0 || v.Device != fmt.Sprintf("/dev/disk/by-id/scsi-0HC_Volume_%d", v.ID) {
		t.Fatalf("created volume %+v", v)
	}
	raw, _, err := e.raw.Volume.GetByID(ctx, v.ID)
	if err != nil || raw.Labels[hcloud.LabelGateway] != "test" || raw.Labels[hcloud.LabelHome] != "alice" || raw.Format != nil {
		t.Fatalf("the volume at Hetzner: %+v, %v; want labelled and unformatted", raw, err)
	}
	again, err := e.p.CreateVolume(ctx, spec)
	if err != nil || again.ID != v.ID {
		t.Fatalf("create again: %+v, %v; want volume %d", again, err, v.ID)
	}

	if err := e.p.AttachVolume(ctx, v.ID, srv.ID); err != nil {
		t.Fatalf("attach: %v", err)
	}
	if s, _, err := e.raw.Server.GetByID(ctx, srv.ID); err != nil || len(s.Volumes) != 1 || s.Volumes[0].ID != v.ID {
		t.Fatalf("the server's volumes after attach: %+v, %v", s, err)
	}
	if err := e.p.AttachVolume(ctx, v.ID, srv.ID); err != nil {
		t.Errorf("attach to the same server again: %v", err)
	}
	if list, err := e.p.Volumes(ctx, "alice"); err != nil || len(list) != 1 || list[0].Server != srv.ID {
		t.Fatalf("alice's volumes: %+v, %v", list, err)
	}

	// Bound to its location.
	far, err := e.p.CreateVolume(ctx, lease.VolumeSpec{Name: "cc-home-test-bob", Owner: "bob", SizeGB: 10, Location: "hel1"})
	if err != nil {
		t.Fatal(err)
	}
	err = e.p.AttachVolume(ctx, far.ID, srv.ID)
	if err == nil || !strings.Contains(err.Error(), "the volume is in hel1 and the server in fsn1") || !strings.Contains(err.Error(), "create the machine in hel1") {
		t.Errorf("attach across locations: %v, want a sentence naming both locations", err)
	}
	if all, err := e.p.Volumes(ctx, ""); err != nil || len(all) != 2 {
		t.Fatalf("all volumes: %+v, %v", all, err)
	}

	// Deleting an attached volume is refused; detached, it deletes.
	if err := e.p.DeleteVolume(ctx, v.ID); err == nil || !strings.Contains(err.Error(), "attached to server") {
		t.Errorf("delete while attached: %v", err)
	}
	if err := e.p.DetachVolume(ctx, v.ID); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if s, _, err := e.raw.Server.GetByID(ctx, srv.ID); err != nil || len(s.Volumes) != 0 {
		t.Fatalf("the server's volumes after detach: %+v, %v", s, err)
	}
	if err := e.p.DetachVolume(ctx, v.ID); err != nil {
		t.Errorf("detach a detached volume: %v", err)
	}
	if err := e.p.DeleteVolume(ctx, v.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := e.p.DeleteVolume(ctx, v.ID); !errors.Is(err, lease.ErrVolumeNotFound) {
		t.Errorf("delete again: %v, want ErrVolumeNotFound", err)
	}
}

// TestVolumeOfAnotherGatewayIsLeftAlone: nothing unlabelled is touched.
func TestVolumeOfAnotherGatewayIsLeftAlone(t *testing.T) {
	e, ctx := newEnv(t, 30*time.Second)
	res, _, err := e.raw.Volume.Create(ctx, hc.VolumeCreateOpts{Name: "theirs", Size: 10, Location: &hc.Location{Name: "fsn1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.DeleteVolume(ctx, res.Volume.ID); err == nil || !strings.Contains(err.Error(), "leaves it alone") {
		t.Errorf("delete a foreign volume: %v", err)
	}
	if v, _, err := e.raw.Volume.GetByID(ctx, res.Volume.ID); err != nil || v == nil {
		t.Errorf("the foreign volume after the refused delete: %v, %v", v, err)
	}
	if list, err := e.p.Volumes(ctx, ""); err != nil || len(list) != 0 {
		t.Errorf("the gateway's volumes: %+v, %v; want none", list, err)
	}
}

// TestVolumeSpecRefused: bad specs get a sentence before any call.
func TestVolumeSpecRefused(t *testing.T) {
	e, ctx := newEnv(t, 10*time.Second)
	for name, spec := range map[string]lease.VolumeSpec{
		"small":    {Name: "v", Owner: "a", SizeGB: 5, Location: "fsn1"},
		"name":     {Name: "-v", Owner: "a", SizeGB: 10, Location: "fsn1"},
		"owner":    {Name: "v", Owner: "a b", SizeGB: 10, Location: "fsn1"},
		"location": {Name: "v", Owner: "a", SizeGB: 10},
	} {
		if _, err := e.p.CreateVolume(ctx, spec); err == nil {
			t.Errorf("%s: created", name)
		}
	}
}

func TestVolumePrice(t *testing.T) {
	e, ctx := newEnv(t, 10*time.Second)
	prices, err := e.p.Prices(ctx, "cx23", "fsn1")
	// The local cloud's catalogue: 0.044 net, 19 % VAT.
	if price := prices.VolumePerGBMonth; err != nil || price < 0.0523 || price > 0.0524 {
		t.Fatalf("volume price %v, %v; want 0.05236 per GB-month gross", price, err)
	}
}

// TestCreateVolumeFindsOneStillBeingCreated: a volume the owner got before
// a crash, still being created, is waited for and returned, not made twice.
func TestCreateVolumeFindsOneStillBeingCreated(t *testing.T) {
	e, ctx := newEnv(t, 30*time.Second)
	e.faults.set("create_volume", localcloud.ActionFault{Delay: 300 * time.Millisecond})
	res := e.volumeBehindItsBack(t, ctx, "carol")
	v, err := e.p.CreateVolume(ctx, lease.VolumeSpec{Name: "cc-home-test-carol", Owner: "carol", SizeGB: 10, Location: "fsn1"})
	if err != nil || v.ID != res.Volume.ID {
		t.Fatalf("create after a lost answer: %+v, %v; want volume %d", v, err, res.Volume.ID)
	}
	if got, _, err := e.raw.Volume.GetByID(ctx, v.ID); err != nil || got.Status != hc.VolumeStatusAvailable {
		t.Fatalf("the volume CreateVolume returned: %+v, %v; want available", got, err)
	}
	if n := e.faults.count("create_volume"); n != 1 {
		t.Errorf("%d create_volume actions, want 1", n)
	}
}

// TestCreateVolumeActionFails: a create whose action fails leaves no
// volume, is tried again within bounds, and ends in a sentence naming the
// action; once Hetzner recovers, the same call succeeds.
func TestCreateVolumeActionFails(t *testing.T) {
	e, ctx := newEnv(t, 30*time.Second)
	e.faults.set("create_volume", localcloud.ActionFault{Code: "action_failed", Message: "test fault"})
	spec := lease.VolumeSpec{Name: "cc-home-test-dave", Owner: "dave", SizeGB: 10, Location: "fsn1"}
	_, err := e.p.CreateVolume(ctx, spec)
	if err == nil || !strings.Contains(err.Error(), "action create_volume failed") {
		t.Fatalf("create with failing actions: %v", err)
	}
	if n := e.faults.count("create_volume"); n < 2 {
		t.Errorf("%d create_volume actions, want retries", n)
	}
	if list, err := e.p.Volumes(ctx, ""); err != nil || len(list) != 0 {
		t.Fatalf("volumes after failed creates: %+v, %v; want none", list, err)
	}
	e.faults.set("create_volume", localcloud.ActionFault{})
	if _, err := e.p.CreateVolume(ctx, spec); err != nil {
		t.Fatalf("create once Hetzner recovered: %v", err)
	}
}

// TestAttachWaitsForTheVolumesCreation: Hetzner refuses to attach a volume
// still being created ("locked"); the attach waits for the creation
// however long it takes, instead of spending its retries.
func TestAttachWaitsForTheVolumesCreation(t *testing.T) {
	e, ctx := newEnv(t, 30*time.Second)
	_, srv := e.server(t, ctx, "vol2")
	e.faults.set("create_volume", localcloud.ActionFault{Delay: 2 * time.Second})
	res := e.volumeBehindItsBack(t, ctx, "erin")
	if err := e.p.AttachVolume(ctx, res.Volume.ID, srv.ID); err != nil {
		t.Fatalf("attach a volume being created: %v", err)
	}
	if v, _, err := e.raw.Volume.GetByID(ctx, res.Volume.ID); err != nil || v.Server == nil || v.Server.ID != srv.ID {
		t.Fatalf("the volume after attach: %+v, %v", v, err)
	}
}

// TestCreateWithHomeVolume: a server created with a home volume goes to
// the volume's location, whatever the order of preference, boots with
// the volume attached and uses it as the home; a later server of the same
// person finds the files there. A location the gateway does not create in
// gets one sentence naming it.
func TestCreateWithHomeVolume(t *testing.T) {
	e, ctx := newEnv(t, 60*time.Second)
	p := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), func(c *hcloud.Config) { c.Locations = []string{"fsn1", "hel1"} })
	home, err := p.CreateVolume(ctx, lease.VolumeSpec{Name: "cc-home-test-erin", Owner: "erin", SizeGB: 10, Location: "hel1"})
	if err != nil {
		t.Fatal(err)
	}
	erin := newPerson(t, "home1", e.port)
	erin.spec.HomeVolume = home.ID
	srv, err := p.Create(ctx, erin.spec)
	if err != nil {
		t.Fatalf("create with the home volume: %v", err)
	}
	if srv.Location != "hel1" {
		t.Errorf("server in %s, want hel1, the volume's", srv.Location)
	}
	if list, err := p.Volumes(ctx, "erin"); err != nil || len(list) != 1 || list[0].Server != srv.ID {
		t.Fatalf("erin's volumes: %+v, %v; want the one attached to server %d", list, err, srv.ID)
	}
	if err := erin.wait(ctx, e.addr(srv), erin.hostKey); err != nil {
		t.Fatal(err)
	}
	runOnMachine(t, e.addr(srv), erin, "echo kept > notes")
	if err := p.Delete(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}

	again := newPerson(t, "home2", e.port)
	again.spec.HomeVolume = home.ID
	srv, err = p.Create(ctx, again.spec)
	if err != nil {
		t.Fatalf("create again with the home volume: %v", err)
	}
	if err := again.wait(ctx, e.addr(srv), again.hostKey); err != nil {
		t.Fatal(err)
	}
	if out := runOnMachine(t, e.addr(srv), again, "cat notes"); out != "kept\n" {
		t.Errorf("the home's file on the next server: %q", out)
	}

	onlyFsn := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), func(c *hcloud.Config) { c.Locations = []string{"fsn1"} })
	third := newPerson(t, "home3", e.port)
	third.spec.HomeVolume = home.ID
	if err := p.Delete(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}
	_, err = onlyFsn.Create(ctx, third.spec)
	if err == nil || !strings.Contains(err.Error(), "your home volume is in hel1") || !strings.Contains(err.Error(), "add hel1 to --location") {
		t.Errorf("create where the volume is not: %v, want a sentence naming hel1", err)
	}
}
