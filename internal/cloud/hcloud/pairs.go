package hcloud

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// pair is one server type in one location: a place a new server may go.
type pair struct{ serverType, location string }

func (pr pair) String() string { return pr.serverType + " in " + pr.location }

// pairs lists where new servers may go, in the order they are tried:
// every location with the first server type, then every location with the
// next. The type sets the price and the location only the latency, so the
// cheaper type (listed first) wins over the nearer location.
func (p *Provider) pairs() []pair {
	var out []pair
	for _, t := range p.cfg.ServerTypes {
		for _, loc := range p.cfg.Locations {
			out = append(out, pair{t, loc})
		}
	}
	return out
}

// placeable is pairs less those Hetzner does not offer or no longer sells
// (preflight warned of them), so a create does not end at one, and less
// those whose disk is smaller than minDisk GB: a snapshot of a machine
// that went to a bigger type boots only on a type as big. When the server
// types cannot be read, or no pair is left, every pair is tried and
// Hetzner's answers tell.
func (p *Provider) placeable(ctx context.Context, minDisk float32) []pair {
	all := p.pairs()
	types, err := p.client.ServerType.All(ctx)
	if err != nil {
		p.log.Warn("cannot read the server types; trying every pair", "err", err)
		return all
	}
	byName := typesByName(types)
	now := p.cfg.Clock.Now()
	var out []pair
	for _, pr := range all {
		st := byName[pr.serverType]
		if loc := offer(st, pr.location); loc != nil && !gone(loc, now) && float32(st.Disk) >= minDisk {
			out = append(out, pr)
		}
	}
	if len(out) == 0 {
		return all
	}
	return out
}

func typesByName(types []*hc.ServerType) map[string]*hc.ServerType {
	out := map[string]*hc.ServerType{}
	for _, st := range types {
		out[st.Name] = st
	}
	return out
}

// offer is st's offer in location; nil when Hetzner has none there.
func offer(st *hc.ServerType, location string) *hc.ServerTypeLocation {
	if st == nil {
		return nil
	}
	for i, l := range st.Locations {
		if l.Location != nil && l.Location.Name == location {
			return &st.Locations[i]
		}
	}
	return nil
}

// gone reports whether a deprecated offer is no longer on sale at now.
func gone(loc *hc.ServerTypeLocation, now time.Time) bool {
	return loc.IsDeprecated() && !loc.UnavailableAfter().After(now)
}

// soldOut reports an answer that says Hetzner has no room for the server
// type in the location now, so another pair may still work.
func soldOut(err error) bool {
	return hc.IsError(err, hc.ErrorCodeResourceUnavailable, hc.ErrorCodePlacementError)
}

// createOnPairs asks Hetzner for the server opts describes on each pair in
// turn, moving on while a pair is sold out and telling spec.Progress so.
// Any other error ends it at once; Hetzner's own error stays reachable.
// A location, if not "", is the only one tried: the home volume's.
func (p *Provider) createOnPairs(ctx context.Context, spec lease.CreateSpec, location string, opts hc.ServerCreateOpts) (hc.ServerCreateResult, error) {
	pairs := p.placeable(ctx, opts.Image.DiskSize)
	if location != "" {
		pairs = slices.DeleteFunc(pairs, func(pr pair) bool { return pr.location != location })
		if len(pairs) == 0 {
			return hc.ServerCreateResult{}, fmt.Errorf("create server: your home volume is in %s, and none of the server types %s can go there; add %s to --location (or a server type Hetzner offers there)",
				location, strings.Join(p.cfg.ServerTypes, ", "), location)
		}
	}
	var tried []string
	var last error
	for i, pr := range pairs {
		opts.ServerType = &hc.ServerType{Name: pr.serverType}
		opts.Location = &hc.Location{Name: pr.location}
		res, _, err := p.client.Server.Create(ctx, opts)
		switch {
		case err == nil:
			return res, nil
		case !soldOut(err):
			return res, explain("create server", err)
		}
		tried, last = append(tried, pr.String()), err
		p.log.Warn("server type sold out in location", "server", spec.Name, "server_type", pr.serverType, "location", pr.location, "err", err)
		if i+1 < len(pairs) && spec.Progress != nil {
			next := pairs[i+1]
			if next.serverType == pr.serverType {
				spec.Progress("%s is sold out in %s; trying %s", pr.serverType, pr.location, next.location)
			} else {
				spec.Progress("%s is sold out in %s; trying %s", pr.serverType, pr.location, next)
			}
		}
	}
	var said hc.Error
	errors.As(last, &said)
	if location != "" {
		return hc.ServerCreateResult{}, &providerError{
			msg: fmt.Sprintf("create server: Hetzner has no room for %s right now (%s, %s), and your home volume binds your machine to %s: try again later, or add server types to --server-type",
				strings.Join(tried, ", "), strings.TrimSuffix(said.Message, "."), said.Code, location),
			err: errors.Join(lease.ErrNoRoom, last),
		}
	}
	return hc.ServerCreateResult{}, &providerError{
		msg: fmt.Sprintf("create server: Hetzner has no room for %s right now (%s, %s): try again later, or add server types to --server-type or locations to --location",
			strings.Join(tried, ", "), strings.TrimSuffix(said.Message, "."), said.Code),
		err: errors.Join(lease.ErrNoRoom, last),
	}
}
