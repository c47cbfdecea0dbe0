package hcloud

import (
	"context"
	"fmt"
	"regexp"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// A person's home that outlives their machines lives on a Hetzner Volume:
// block storage billed per GB-month, bound to a location, attached to one
// server of that location at a time. The provider creates it unformatted
// (the NixOS image formats it on first use), labelled cc-gateway=<gateway>
// and cc-gateway-home=<owner>, and never touches a volume without its
// gateway's label. When to create, attach, detach and delete one is the
// lease side's to decide.

// LabelHome names whose home a volume is.
const LabelHome = "cc-gateway-home"

// Hetzner's limits on a volume's size, in GB.
const (
	MinVolumeSize = 10
	MaxVolumeSize = 10240
)

// volumeNamePattern is Hetzner's rule for volume names.
var volumeNamePattern = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,62}[a-zA-Z0-9])?$`)

// CreateVolume makes the volume spec describes and waits until it is
// available. It is safe to repeat after a crash: a volume the owner
// already has is returned instead of a second one, wherever and however
// large it is.
func (p *Provider) CreateVolume(ctx context.Context, spec lease.VolumeSpec) (lease.Volume, error) {
	switch {
	case !volumeNamePattern.MatchString(spec.Name):
		return lease.Volume{}, fmt.Errorf("create volume: name %q is not usable: use up to 64 letters, digits, '-', '_' or '.'", spec.Name)
	case spec.Owner == "" || !labelValuePattern.MatchString(spec.Owner):
		return lease.Volume{}, fmt.Errorf("create volume %s: owner %q cannot be a Hetzner label value", spec.Name, spec.Owner)
	case spec.SizeGB < MinVolumeSize || spec.SizeGB > MaxVolumeSize:
		return lease.Volume{}, fmt.Errorf("create volume %s: %d GB is not a volume size Hetzner offers: choose %d to %d GB", spec.Name, spec.SizeGB, MinVolumeSize, MaxVolumeSize)
	case spec.Location == "":
		return lease.Volume{}, fmt.Errorf("create volume %s: no location", spec.Name)
	}
	return retryOp(ctx, p, "create volume", func() (lease.Volume, error) { return p.createVolume(ctx, spec) })
}

func (p *Provider) createVolume(ctx context.Context, spec lease.VolumeSpec) (lease.Volume, error) {
	op := "create volume " + spec.Name
	existing, err := p.ownerVolumes(ctx, spec.Owner)
	if err != nil {
		return lease.Volume{}, err
	}
	if len(existing) > 0 {
		// Made before a crash, or by a create whose answer was lost: wait
		// for its creation to end, then it is the one.
		v := existing[0]
		if err := p.waitVolumeIdle(ctx, v.ID); err != nil {
			return lease.Volume{}, err
		}
		return p.volume(ctx, v.ID)
	}
	labels := map[string]string{LabelGateway: p.cfg.Gateway, LabelHome: spec.Owner}
	res, _, err := p.client.Volume.Create(ctx, hc.VolumeCreateOpts{
		Name: spec.Name, Size: spec.SizeGB, Location: &hc.Location{Name: spec.Location}, Labels: labels,
	})
	if err != nil {
		if hc.IsError(err, hc.ErrorCodeUniquenessError) {
			return lease.Volume{}, fmt.Errorf("%s: another volume in the project has that name, without the labels %s=%s,%s=%s; rename or delete it", op, LabelGateway, p.cfg.Gateway, LabelHome, spec.Owner)
		}
		return lease.Volume{}, explain(op, err)
	}
	p.log.Info("volume created", "volume", spec.Name, "id", res.Volume.ID, "size_gb", spec.SizeGB, "location", spec.Location, "owner", spec.Owner)
	if err := p.wait(ctx, op, res.Action); err != nil {
		return lease.Volume{}, err
	}
	return p.volume(ctx, res.Volume.ID)
}

// AttachVolume attaches the volume to the server and waits until it is.
// A volume attached to that server already is no error; one attached to
// another server, or in another location, is refused with a sentence
// saying so.
func (p *Provider) AttachVolume(ctx context.Context, volumeID, serverID int64) error {
	return retryOpErr(ctx, p, "attach volume", func() error {
		v, err := p.ownedIdleVolume(ctx, volumeID)
		if err != nil {
			return err
		}
		srv, err := p.owned(ctx, serverID)
		if err != nil {
			return err
		}
		op := fmt.Sprintf("attach volume %s to server %s", v.Name, srv.Name)
		switch {
		case v.Server != nil && v.Server.ID == serverID:
			return nil
		case v.Server != nil:
			return fmt.Errorf("%s: it is attached to server %d; detach it first", op, v.Server.ID)
		case srv.Location == nil || v.Location == nil || srv.Location.Name != v.Location.Name:
			return fmt.Errorf("%s: the volume is in %s and the server in %s, and Hetzner attaches a volume only to servers in its own location; create the machine in %s",
				op, locationName(v.Location), locationName(srv.Location), locationName(v.Location))
		}
		// Hetzner refuses an attach while the server is busy.
		if err := p.waitIdle(ctx, serverID); err != nil {
			return err
		}
		a, _, err := p.client.Volume.AttachWithOpts(ctx, v, hc.VolumeAttachOpts{Server: srv, Automount: hc.Ptr(false)})
		if err != nil {
			return volumeErr(op, err)
		}
		if err := p.wait(ctx, op, a); err != nil {
			return err
		}
		p.log.Info("volume attached", "volume", v.Name, "id", v.ID, "server", srv.Name)
		return nil
	})
}

// DetachVolume detaches the volume from its server, if it has one, and
// waits until it is detached.
func (p *Provider) DetachVolume(ctx context.Context, volumeID int64) error {
	return retryOpErr(ctx, p, "detach volume", func() error {
		v, err := p.ownedIdleVolume(ctx, volumeID)
		if err != nil || v.Server == nil {
			return err
		}
		op := fmt.Sprintf("detach volume %s from server %d", v.Name, v.Server.ID)
		a, _, err := p.client.Volume.Detach(ctx, v)
		if err != nil {
			return volumeErr(op, err)
		}
		if err := p.wait(ctx, op, a); err != nil {
			return err
		}
		p.log.Info("volume detached", "volume", v.Name, "id", v.ID, "server", v.Server.ID)
		return nil
	})
}

// DeleteVolume deletes a detached volume and everything on it. An attached
// one is refused; one that is gone is lease.ErrVolumeNotFound.
func (p *Provider) DeleteVolume(ctx context.Context, volumeID int64) error {
	return retryOpErr(ctx, p, "delete volume", func() error {
		v, err := p.ownedIdleVolume(ctx, volumeID)
		if err != nil {
			return err
		}
		op := "delete volume " + v.Name
		if v.Server != nil {
			return fmt.Errorf("%s: it is attached to server %d; detach it first", op, v.Server.ID)
		}
		if _, err := p.client.Volume.Delete(ctx, v); err != nil {
			return volumeErr(op, err)
		}
		p.log.Info("volume deleted", "volume", v.Name, "id", v.ID, "owner", v.Labels[LabelHome])
		return nil
	})
}

// Volumes lists the gateway's volumes of owner, or all of them when owner
// is empty.
func (p *Provider) Volumes(ctx context.Context, owner string) ([]lease.Volume, error) {
	list, err := p.ownerVolumes(ctx, owner)
	if err != nil {
		return nil, err
	}
	out := make([]lease.Volume, 0, len(list))
	for _, v := range list {
		out = append(out, toVolume(v))
	}
	return out, nil
}

// ownerVolumes lists the gateway's volumes of owner (all, when empty),
// oldest first.
func (p *Provider) ownerVolumes(ctx context.Context, owner string) ([]*hc.Volume, error) {
	selector := LabelGateway + "=" + p.cfg.Gateway
	if owner != "" {
		selector += "," + LabelHome + "=" + owner
	}
	list, err := p.client.Volume.AllWithOpts(ctx, hc.VolumeListOpts{ListOpts: hc.ListOpts{LabelSelector: selector}, Sort: []string{"id"}})
	if err != nil {
		return nil, explain("list volumes", err)
	}
	return list, nil
}

// volume fetches one of the gateway's volumes.
func (p *Provider) volume(ctx context.Context, id int64) (lease.Volume, error) {
	v, err := p.ownedVolume(ctx, id)
	if err != nil {
		return lease.Volume{}, err
	}
	return toVolume(v), nil
}

// ownedVolume fetches a volume and refuses to act on one without this
// gateway's label.
func (p *Provider) ownedVolume(ctx context.Context, id int64) (*hc.Volume, error) {
	op := fmt.Sprintf("get volume %d", id)
	v, _, err := p.client.Volume.GetByID(ctx, id)
	if err != nil {
		return nil, volumeErr(op, err)
	}
	if v == nil {
		return nil, fmt.Errorf("%s: %w", op, lease.ErrVolumeNotFound)
	}
	if v.Labels[LabelGateway] != p.cfg.Gateway {
		return nil, fmt.Errorf("volume %s (%d) is not labelled %s=%s; the gateway leaves it alone", v.Name, id, LabelGateway, p.cfg.Gateway)
	}
	return v, nil
}

// ownedIdleVolume is ownedVolume for a volume about to be acted on, which
// Hetzner refuses while an action runs on it (one being created, say): it
// waits until none does, then fetches the volume again.
func (p *Provider) ownedIdleVolume(ctx context.Context, id int64) (*hc.Volume, error) {
	if _, err := p.ownedVolume(ctx, id); err != nil {
		return nil, err
	}
	if err := p.waitVolumeIdle(ctx, id); err != nil {
		return nil, err
	}
	return p.ownedVolume(ctx, id)
}

// waitVolumeIdle waits until no action runs on the volume, whatever their
// outcome.
func (p *Provider) waitVolumeIdle(ctx context.Context, id int64) error {
	return p.waitRunning(ctx, fmt.Sprintf("volume %d", id), func(opts hc.ActionListOpts) ([]*hc.Action, error) {
		return p.client.Volume.Action.AllFor(ctx, &hc.Volume{ID: id}, opts)
	})
}

// volumeErr is explain for calls on one volume: a volume that vanished
// meanwhile becomes lease.ErrVolumeNotFound.
func volumeErr(op string, err error) error {
	switch {
	case hc.IsError(err, hc.ErrorCodeNotFound):
		return fmt.Errorf("%s: %w", op, lease.ErrVolumeNotFound)
	case hc.IsError(err, hc.ErrorCodeVolumeAlreadyAttached):
		return &providerError{msg: op + ": the volume is attached to a server; detach it first", err: err}
	}
	return explain(op, err)
}

func locationName(l *hc.Location) string {
	if l == nil {
		return "an unknown location"
	}
	return l.Name
}

func toVolume(v *hc.Volume) lease.Volume {
	out := lease.Volume{
		ID: v.ID, Name: v.Name, Owner: v.Labels[LabelHome], SizeGB: v.Size,
		Location: locationName(v.Location), Device: v.LinuxDevice, Created: v.Created,
	}
	if v.Server != nil {
		out.Server = v.Server.ID
	}
	return out
}
