package hcloud

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/preflight"
)

// Preflight checks, read-only, that the cloud gives the gateway what it
// needs: the API answers and accepts the token, every configured location
// and server type exists, at least one pair of them can take new servers,
// the image new machines boot exists, and the prices can be read. A pair
// Hetzner does not offer (or no longer) is a warning while another pair
// can serve; a deprecated server type still on sale and a pair sold out
// right now are warnings. An API that refuses the token or does not
// answer is one problem, and nothing else is checked. ctx bounds it all.
func (p *Provider) Preflight(ctx context.Context) []preflight.Check {
	locations, err := p.client.Location.All(ctx)
	if err != nil {
		return []preflight.Check{preflight.Failed("API", "%s", sentence(err))}
	}
	locCheck := p.checkLocations(locations)
	checks := []preflight.Check{preflight.Passed("API", "Hetzner's API answers and accepts the token"), locCheck}

	types, err := p.client.ServerType.All(ctx)
	if err != nil {
		return append(checks, preflight.Failed("server type", "%s", sentence(err)))
	}
	byName := typesByName(types)
	typeCheck, known := p.checkServerTypes(byName)
	checks = append(checks, typeCheck)
	if !typeCheck.OK() || !locCheck.OK() {
		return append(checks, p.checkImage(ctx, nil))
	}
	serving, pairChecks := p.checkPairs(byName, types)
	checks = append(checks, pairChecks...)
	checks = append(checks, p.checkImage(ctx, known[0]))
	if len(serving) > 0 {
		checks = append(checks, p.checkPrices(ctx, serving))
	}
	return append(checks, p.checkFirewall(ctx))
}

// checkLocations finds every configured location among Hetzner's.
func (p *Provider) checkLocations(locations []*hc.Location) preflight.Check {
	var names []string
	for _, l := range locations {
		names = append(names, l.Name)
	}
	for _, want := range p.cfg.Locations {
		if !slices.Contains(names, want) {
			return preflight.Failed("location", "Hetzner has no location %q: set --location to names from %s", want, strings.Join(names, ", "))
		}
	}
	return preflight.Passed("location", "%s", strings.Join(p.cfg.Locations, ", "))
}

// checkServerTypes finds every configured server type and returns them in
// order. One image serves every machine, so the types must share an
// architecture.
func (p *Provider) checkServerTypes(byName map[string]*hc.ServerType) (preflight.Check, []*hc.ServerType) {
	const name = "server type"
	var known []*hc.ServerType
	for _, want := range p.cfg.ServerTypes {
		st := byName[want]
		if st == nil {
			return preflight.Failed(name, "Hetzner has no server type %q: set --server-type to types it offers, like %s", want, DefaultServerType), nil
		}
		if len(known) > 0 && st.Architecture != known[0].Architecture {
			return preflight.Failed(name, "%s is %s but %s is %s, and one image cannot boot both: list server types of one architecture in --server-type",
				known[0].Name, known[0].Architecture, st.Name, st.Architecture), nil
		}
		known = append(known, st)
	}
	var desc []string
	for _, st := range known {
		desc = append(desc, fmt.Sprintf("%s (%d vCPU, %.0f GB RAM)", st.Name, st.Cores, st.Memory))
	}
	return preflight.Passed(name, "%s, %s", strings.Join(desc, ", "), known[0].Architecture), known
}

// checkPairs looks at every pair the gateway may create servers on and
// returns those on sale. A pair that is not is a warning while another is
// (creates skip it), a problem when none is; a deprecated type still on
// sale is a warning naming its last day and a type to choose instead, and
// a pair sold out right now is a warning.
func (p *Provider) checkPairs(byName map[string]*hc.ServerType, all []*hc.ServerType) ([]pair, []preflight.Check) {
	const name = "pairs"
	now := p.cfg.Clock.Now()
	var serving []pair
	var notes, sold []string
	var checks []preflight.Check
	for _, pr := range p.pairs() {
		st := byName[pr.serverType]
		loc := offer(st, pr.location)
		switch {
		case loc == nil:
			notes = append(notes, fmt.Sprintf("Hetzner does not offer %s", pr))
			continue
		case gone(loc, now):
			notes = append(notes, fmt.Sprintf("%s is no longer available since %s", pr, day(loc.UnavailableAfter())))
			continue
		case loc.IsDeprecated():
			checks = append(checks, preflight.Warned("deprecation", "%s is deprecated: Hetzner stops selling it after %s; %s",
				pr, day(loc.UnavailableAfter()), insteadOf(st, pr.location, all)))
		}
		if !loc.Available {
			sold = append(sold, pr.String())
		}
		serving = append(serving, pr)
	}
	switch {
	case len(serving) == 0:
		return nil, append(checks, preflight.Failed(name, "no configured server type can be created in a configured location (%s): choose another --server-type or --location",
			strings.Join(notes, "; ")))
	case len(notes) > 0:
		checks = append(checks, preflight.Warned(name, "%s; new machines go to the other pairs: remove these from --server-type or --location",
			strings.Join(notes, "; ")))
	}
	// Stock changes by the hour, so a sold-out pair never stops the
	// gateway: creates try it, and move on.
	switch {
	case len(sold) == len(serving):
		checks = append(checks, preflight.Warned("stock", "Hetzner has sold out %s right now: new machines cannot be created until it has room again; add server types or locations to --server-type and --location",
			strings.Join(sold, ", ")))
	case len(sold) > 0:
		checks = append(checks, preflight.Warned("stock", "Hetzner has sold out %s right now: new machines go to the next pair in order", strings.Join(sold, ", ")))
	}
	return serving, checks
}

// insteadOf suggests the cheapest type, not deprecated in location, of
// st's architecture and at least its cores and memory.
func insteadOf(st *hc.ServerType, location string, all []*hc.ServerType) string {
	var best *hc.ServerType
	bestPrice := 0.0
	for _, c := range all {
		loc := offer(c, location)
		if loc == nil || loc.IsDeprecated() || c.Architecture != st.Architecture || c.Cores < st.Cores || c.Memory < st.Memory {
			continue
		}
		price := monthlyIn(c, location)
		if best == nil || price < bestPrice {
			best, bestPrice = c, price
		}
	}
	if best == nil {
		return "choose another --server-type"
	}
	return "choose another --server-type, like " + best.Name
}

// monthlyIn is st's gross monthly price in location; 0 when unknown.
func monthlyIn(st *hc.ServerType, location string) float64 {
	for _, pr := range st.Pricings {
		if pr.Location != nil && pr.Location.Name == location {
			v, _ := strconv.ParseFloat(pr.Monthly.Gross, 64)
			return v
		}
	}
	return 0
}

func day(t time.Time) string { return t.UTC().Format("2006-01-02") }

// checkPrices reads the prices of every pair that can serve, as the
// cost shown to people needs them; the first pair's are shown.
func (p *Provider) checkPrices(ctx context.Context, serving []pair) preflight.Check {
	var first string
	for _, pr := range serving {
		prices, err := p.Prices(ctx, pr.serverType, pr.location)
		if err != nil {
			return preflight.Failed("prices", "%v", err)
		}
		if first == "" {
			first = fmt.Sprintf("%s: %s %.4f per hour, %.2f per month, its IPv4 address %.2f per month, snapshots %.4f per GB-month (gross)",
				pr, prices.Currency, prices.ServerHourly, prices.ServerMonthly, prices.IPv4Monthly, prices.SnapshotPerGBMonth)
		}
	}
	return preflight.Passed("prices", "%s", first)
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
