package hcloud

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/preflight"
)

// Preflight checks, read-only, that the cloud gives the gateway what it
// needs: the token is accepted, the location exists, the server type
// exists and is offered there, the image new machines boot exists, and
// the prices can be read. A cloud that refuses the token or does not
// answer is one problem, and nothing else is checked. ctx bounds it all.
func (p *Provider) Preflight(ctx context.Context) []preflight.Check {
	locations, err := p.client.Location.All(ctx)
	if err != nil {
		return []preflight.Check{preflight.Failed("token", "%s", sentence(err))}
	}
	checks := []preflight.Check{preflight.Passed("token", "the Hetzner API accepts it")}

	var names []string
	known := false
	for _, l := range locations {
		names = append(names, l.Name)
		known = known || l.Name == p.cfg.Location
	}
	if known {
		checks = append(checks, preflight.Passed("location", "%s", p.cfg.Location))
	} else {
		checks = append(checks, preflight.Failed("location",
			"Hetzner has no location %q: set --location to one of %s", p.cfg.Location, strings.Join(names, ", ")))
	}

	st, stCheck := p.checkServerType(ctx, known)
	checks = append(checks, stCheck, p.checkImage(ctx, st))
	if st != nil && known {
		if pr, err := p.Prices(ctx, p.cfg.ServerType, p.cfg.Location); err != nil {
			checks = append(checks, preflight.Failed("prices", "%v", err))
		} else {
			checks = append(checks, preflight.Passed("prices", "%s %.4f per hour, %.2f per month, snapshots %.4f per GB-month (gross)",
				pr.Currency, pr.ServerHourly, pr.ServerMonthly, pr.SnapshotPerGBMonth))
		}
	}
	return append(checks, p.checkFirewall(ctx))
}

// checkServerType finds the server type and, when the location is known,
// checks that it is offered there and not yet unavailable; the type is
// nil when it does not exist.
func (p *Provider) checkServerType(ctx context.Context, locationKnown bool) (*hc.ServerType, preflight.Check) {
	const name = "server type"
	st, _, err := p.client.ServerType.GetByName(ctx, p.cfg.ServerType)
	if err != nil {
		return nil, preflight.Failed(name, "%s", sentence(err))
	}
	if st == nil {
		return nil, preflight.Failed(name, "Hetzner has no server type %q: set --server-type to one it offers, like %s", p.cfg.ServerType, DefaultServerType)
	}
	if !locationKnown {
		return st, preflight.Passed(name, "%s exists (%d vCPU, %.0f GB RAM, %s)", st.Name, st.Cores, st.Memory, st.Architecture)
	}
	for _, l := range st.Locations {
		if l.Location == nil || l.Location.Name != p.cfg.Location {
			continue
		}
		if l.IsDeprecated() && !l.UnavailableAfter().After(p.cfg.Clock.Now()) {
			return st, preflight.Failed(name, "%s is no longer available in %s since %s: choose another --server-type or --location",
				st.Name, p.cfg.Location, l.UnavailableAfter().Format("2006-01-02"))
		}
		return st, preflight.Passed(name, "%s in %s (%d vCPU, %.0f GB RAM, %s)", st.Name, p.cfg.Location, st.Cores, st.Memory, st.Architecture)
	}
	return st, preflight.Failed(name, "Hetzner does not offer %s in %s: choose another --server-type or --location", st.Name, p.cfg.Location)
}

// checkImage finds what new machines boot: a snapshot matching the
// selector (no fallback: a stock image ignores the gateway's bootstrap),
// else the named image. With the server type known, the image must be
// built for its architecture.
func (p *Provider) checkImage(ctx context.Context, st *hc.ServerType) preflight.Check {
	const name = "image"
	var arch []hc.Architecture
	if st != nil {
		arch = []hc.Architecture{st.Architecture}
	}
	if p.cfg.ImageSelector != "" {
		list, err := p.snapshots(ctx, arch)
		if err != nil {
			return preflight.Failed(name, "%s", sentence(err))
		}
		if len(list) == 0 {
			return preflight.Failed(name, "%s", noSnapshot(p.cfg.ImageSelector))
		}
		return preflight.Passed(name, "%d snapshot(s) match %q, newest %d", len(list), p.cfg.ImageSelector, newestImage(list).ID)
	}
	if id, err := strconv.ParseInt(p.cfg.Image, 10, 64); err == nil {
		im, _, err := p.client.Image.GetByID(ctx, id)
		switch {
		case err != nil:
			return preflight.Failed(name, "%s", sentence(err))
		case im == nil:
			return preflight.Failed(name, "Hetzner has no image %d: set --image to an image this project can use", id)
		case st != nil && im.Architecture != st.Architecture:
			return preflight.Failed(name, "image %d is built for %s, server type %s is %s: choose a matching --image or --server-type", id, im.Architecture, st.Name, st.Architecture)
		}
		return preflight.Passed(name, "image %d (%s)", id, im.Description)
	}
	list, err := p.client.Image.AllWithOpts(ctx, hc.ImageListOpts{Name: p.cfg.Image, Architecture: arch})
	if err != nil {
		return preflight.Failed(name, "%s", sentence(err))
	}
	if len(list) == 0 {
		return preflight.Failed(name, "Hetzner has no image named %q for this server type: set --image to one like debian-12", p.cfg.Image)
	}
	return preflight.Passed(name, "%s", p.cfg.Image)
}

// snapshots lists the available snapshots matching the image selector,
// for the given architectures (any when none is given).
func (p *Provider) snapshots(ctx context.Context, arch []hc.Architecture) ([]*hc.Image, error) {
	return p.client.Image.AllWithOpts(ctx, hc.ImageListOpts{
		ListOpts:     hc.ListOpts{LabelSelector: p.cfg.ImageSelector},
		Type:         []hc.ImageType{hc.ImageTypeSnapshot},
		Status:       []hc.ImageStatus{hc.ImageStatusAvailable},
		Architecture: arch,
	})
}

// noSnapshot is the sentence for a selector that matches no snapshot.
func noSnapshot(selector string) string {
	return fmt.Sprintf("no available snapshot matches --image-selector %q: build and upload the NixOS image (docs/nixos.md), or use --provisioning infect to install NixOS over the stock --image", selector)
}

func newestImage(list []*hc.Image) *hc.Image {
	var newest *hc.Image
	for _, im := range list {
		if newest == nil || im.Created.After(newest.Created) {
			newest = im
		}
	}
	return newest
}
