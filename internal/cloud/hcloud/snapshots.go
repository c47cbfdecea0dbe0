package hcloud

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Snapshot images the server's disk as a snapshot labelled with the
// gateway and leaseID and waits until it is available. It is safe to
// repeat: a snapshot the lease already has is returned (after waiting for
// it to become available) instead of a second one. Hetzner recommends
// powering a server off first so its disk is consistent.
func (p *Provider) Snapshot(ctx context.Context, serverID int64, leaseID string) (lease.Image, error) {
	if leaseID == "" || !labelValuePattern.MatchString(leaseID) {
		return lease.Image{}, fmt.Errorf("snapshot server %d: lease id %q is not usable", serverID, leaseID)
	}
	return retryOp(ctx, p, "snapshot", func() (lease.Image, error) { return p.snapshot(ctx, serverID, leaseID) })
}

func (p *Provider) snapshot(ctx context.Context, serverID int64, leaseID string) (lease.Image, error) {
	if im, err := p.existingSnapshot(ctx, leaseID); err != nil || im != nil {
		if err != nil {
			return lease.Image{}, err
		}
		return toImage(im), nil
	}
	srv, err := p.owned(ctx, serverID)
	if err != nil {
		return lease.Image{}, err
	}
	if owner := srv.Labels[LabelLease]; owner != leaseID {
		return lease.Image{}, fmt.Errorf("snapshot server %s: it belongs to lease %q, not %q; the gateway will not label it otherwise", srv.Name, owner, leaseID)
	}
	op := "snapshot server " + srv.Name
	if err := p.waitIdle(ctx, serverID); err != nil {
		return lease.Image{}, err
	}
	description := fmt.Sprintf("cc-gateway %s: lease %s (server %s)", p.cfg.Gateway, leaseID, srv.Name)
	res, _, err := p.client.Server.CreateImage(ctx, srv, &hc.ServerCreateImageOpts{
		Type:        hc.ImageTypeSnapshot,
		Description: &description,
		Labels:      p.labels(leaseID),
	})
	if err != nil {
		return lease.Image{}, serverErr(op, err)
	}
	p.log.Info("snapshot started", "server", srv.Name, "image", res.Image.ID, "lease", leaseID)
	if err := p.wait(ctx, op, res.Action); err != nil {
		return lease.Image{}, err
	}
	im, _, err := p.client.Image.GetByID(ctx, res.Image.ID)
	if err != nil {
		return lease.Image{}, explain(op, err)
	}
	if im == nil {
		return lease.Image{}, fmt.Errorf("%s: the snapshot vanished right after it was taken: %w", op, lease.ErrImageNotFound)
	}
	p.log.Info("snapshot available", "server", srv.Name, "image", im.ID, "size_gb", im.ImageSize)
	return toImage(im), nil
}

// existingSnapshot returns the lease's available snapshot, waiting for one
// still being created, or nil if it has none. Broken leftovers
// ("unavailable") are deleted so a new one can be taken.
func (p *Provider) existingSnapshot(ctx context.Context, leaseID string) (*hc.Image, error) {
	list, err := p.client.Image.AllWithOpts(ctx, hc.ImageListOpts{
		ListOpts: hc.ListOpts{LabelSelector: p.selector(leaseID)},
		Type:     []hc.ImageType{hc.ImageTypeSnapshot},
	})
	if err != nil {
		return nil, explain("look for the lease's snapshot", err)
	}
	// Newest first: that is the one worth keeping.
	slices.SortFunc(list, func(a, b *hc.Image) int { return b.Created.Compare(a.Created) })
	for _, im := range list {
		switch im.Status {
		case hc.ImageStatusAvailable:
			return im, nil
		case hc.ImageStatusCreating:
			ready, err := p.waitImage(ctx, im.ID)
			if err != nil || ready != nil {
				return ready, err
			}
		default:
			p.log.Warn("deleting the lease's unusable snapshot", "image", im.ID, "status", im.Status, "lease", leaseID)
			if _, err := p.client.Image.Delete(ctx, im); err != nil && !hc.IsError(err, hc.ErrorCodeNotFound) {
				return nil, explain(fmt.Sprintf("delete unusable snapshot %d", im.ID), err)
			}
		}
	}
	return nil, nil
}

// waitImage polls an image until it is available; nil without an error
// means it disappeared (its creation failed).
func (p *Provider) waitImage(ctx context.Context, id int64) (*hc.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, maxActionWait)
	defer cancel()
	delay := p.cfg.PollInterval
	for {
		im, _, err := p.client.Image.GetByID(ctx, id)
		if err != nil {
			return nil, explain(fmt.Sprintf("wait for snapshot %d", id), err)
		}
		if im == nil || im.Status == hc.ImageStatusAvailable {
			return im, nil
		}
		if im.Status != hc.ImageStatusCreating {
			return nil, fmt.Errorf("wait for snapshot %d: Hetzner reports it %s; delete it and hibernate again", id, im.Status)
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("wait for snapshot %d: still being created: %w", id, ctx.Err())
		case <-timer.C:
		}
		delay = p.slower(delay)
	}
}

// Images returns this gateway's snapshots, whatever their status.
func (p *Provider) Images(ctx context.Context) ([]lease.Image, error) {
	list, err := p.client.Image.AllWithOpts(ctx, hc.ImageListOpts{
		ListOpts: hc.ListOpts{LabelSelector: LabelGateway + "=" + p.cfg.Gateway},
		Type:     []hc.ImageType{hc.ImageTypeSnapshot},
	})
	if err != nil {
		return nil, explain("list snapshots", err)
	}
	out := make([]lease.Image, 0, len(list))
	for _, im := range list {
		out = append(out, toImage(im))
	}
	return out, nil
}

// DeleteImage deletes one of this gateway's snapshots; any other image is
// refused. An image that is gone is lease.ErrImageNotFound.
func (p *Provider) DeleteImage(ctx context.Context, id int64) error {
	op := fmt.Sprintf("delete snapshot %d", id)
	im, _, err := p.client.Image.GetByID(ctx, id)
	if err != nil {
		return explain(op, err)
	}
	if im == nil {
		return fmt.Errorf("%s: %w", op, lease.ErrImageNotFound)
	}
	if im.Type != hc.ImageTypeSnapshot || im.Labels[LabelGateway] != p.cfg.Gateway {
		return fmt.Errorf("%s: it is not a snapshot labelled %s=%s; the gateway leaves it alone", op, LabelGateway, p.cfg.Gateway)
	}
	if _, err := p.client.Image.Delete(ctx, im); err != nil {
		if hc.IsError(err, hc.ErrorCodeNotFound) {
			return fmt.Errorf("%s: %w", op, lease.ErrImageNotFound)
		}
		return explain(op, err)
	}
	p.log.Info("snapshot deleted", "image", id, "lease", im.Labels[LabelLease])
	return nil
}

func toImage(im *hc.Image) lease.Image {
	return lease.Image{
		ID:      im.ID,
		LeaseID: im.Labels[LabelLease],
		// Hetzner's float32 sizes, without float32's noise in float64.
		SizeGB:  math.Round(float64(im.ImageSize)*1e6) / 1e6,
		Created: im.Created,
	}
}
