package hcloud

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// What a server uses and what it costs: the figures the reaper's busy
// check and the lease's cost come from.

// cpuSamples is about how many points CPUUsage asks for, whatever the
// window.
const cpuSamples = 60

// CPUUsage is the server's average CPU use over the window ending now, in
// percent of the whole machine (0 to 100). Hetzner's "cpu" metric is not
// normalised: it counts per vCPU, so 100 is one busy vCPU and a busy
// 2-vCPU server reports 200; CPUUsage divides by the server type's vCPUs.
// A server without any figures in the window yet (just booted, or off) is
// an error, not zero: nobody knows it is idle.
func (p *Provider) CPUUsage(ctx context.Context, id int64, window time.Duration) (float64, error) {
	op := fmt.Sprintf("read CPU use of server %d", id)
	if window < time.Second {
		return 0, fmt.Errorf("%s: the window %s is shorter than a second", op, window)
	}
	cores, err := p.cores(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	end := p.cfg.Clock.Now().UTC().Truncate(time.Second)
	start := end.Add(-window)
	step := max(1, int(window/time.Second)/cpuSamples)
	m, _, err := p.client.Server.GetMetrics(ctx, &hc.Server{ID: id}, hc.ServerGetMetricsOpts{
		Types: []hc.ServerMetricType{hc.ServerMetricCPU}, Start: start, End: end, Step: step,
	})
	if err != nil {
		return 0, serverErr(op, err)
	}
	var sum float64
	var n int
	for _, v := range m.TimeSeries["cpu"] {
		f, err := strconv.ParseFloat(v.Value, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			continue // gaps come as "NaN"
		}
		sum += f
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("%s: Hetzner has no CPU figures for the last %s yet", op, window)
	}
	return sum / float64(n) / float64(cores), nil
}

// cores is the server's vCPU count, asked of Hetzner only the first time:
// the reaper looks at an idle machine's CPU every pass.
func (p *Provider) cores(ctx context.Context, id int64) (int, error) {
	if n, ok := p.vcpus.Load(id); ok {
		return n.(int), nil
	}
	srv, err := p.get(ctx, id)
	if err != nil {
		return 0, err
	}
	if srv.ServerType == nil || srv.ServerType.Cores < 1 {
		return 0, errors.New("Hetzner reports no vCPU count for its server type")
	}
	p.vcpus.Store(id, srv.ServerType.Cores)
	return srv.ServerType.Cores, nil
}

// Prices reads what Hetzner charges, gross, for serverType in location, for
// the server's primary IPv4 address there (billed apart from the server
// type), and for snapshots.
func (p *Provider) Prices(ctx context.Context, serverType, location string) (lease.Prices, error) {
	op := fmt.Sprintf("read prices of %s in %s", serverType, location)
	pr, err := p.pricing(ctx)
	if err != nil {
		return lease.Prices{}, explain(op, err)
	}
	snapshot, err := gross(pr.Image.PerGBMonth)
	if err != nil {
		return lease.Prices{}, fmt.Errorf("%s: snapshot price: %w", op, err)
	}
	volume, err := gross(pr.Volume.PerGBMonthly)
	if err != nil {
		return lease.Prices{}, fmt.Errorf("%s: volume price: %w", op, err)
	}
	for _, st := range pr.ServerTypes {
		if st.ServerType == nil || st.ServerType.Name != serverType {
			continue
		}
		for _, lp := range st.Pricings {
			if lp.Location == nil || lp.Location.Name != location {
				continue
			}
			hourly, err := gross(lp.Hourly)
			if err != nil {
				return lease.Prices{}, fmt.Errorf("%s: hourly price: %w", op, err)
			}
			monthly, err := gross(lp.Monthly)
			if err != nil {
				return lease.Prices{}, fmt.Errorf("%s: monthly price: %w", op, err)
			}
			ipv4Hourly, ipv4Monthly, err := primaryIPv4Price(pr, location)
			if err != nil {
				return lease.Prices{}, fmt.Errorf("%s: %w", op, err)
			}
			return lease.Prices{
				Currency:           pr.Currency,
				ServerHourly:       hourly,
				ServerMonthly:      monthly,
				IPv4Hourly:         ipv4Hourly,
				IPv4Monthly:        ipv4Monthly,
				SnapshotPerGBMonth: snapshot,
				VolumePerGBMonth:   volume,
			}, nil
		}
		return lease.Prices{}, fmt.Errorf("%s: Hetzner does not offer %s in %s; choose another location or server type", op, serverType, location)
	}
	return lease.Prices{}, fmt.Errorf("%s: Hetzner lists no server type %q; check the server type setting", op, serverType)
}

// pricing reads the price list. hcloud-go (v2.52) panics on a list with
// more primary IP types than floating IP types (it sizes one list by the
// other); Hetzner lists the same types in both, but a change there must
// not bring the gateway down.
func (p *Provider) pricing(ctx context.Context) (pr hc.Pricing, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("hcloud-go could not read Hetzner's price list: %v", r)
		}
	}()
	pr, _, err = p.client.Pricing.Get(ctx)
	return pr, err
}

// primaryIPv4Price is what a primary IPv4 address costs in location, per
// hour and per month (the cap), gross.
func primaryIPv4Price(pr hc.Pricing, location string) (hourly, monthly float64, err error) {
	for _, ip := range pr.PrimaryIPs {
		if ip.Type != string(hc.PrimaryIPTypeIPv4) {
			continue
		}
		for _, lp := range ip.Pricings {
			if lp.Location != location {
				continue
			}
			if hourly, err = gross(hc.Price{Gross: lp.Hourly.Gross}); err != nil {
				return 0, 0, fmt.Errorf("hourly price of a primary IPv4 address: %w", err)
			}
			if monthly, err = gross(hc.Price{Gross: lp.Monthly.Gross}); err != nil {
				return 0, 0, fmt.Errorf("monthly price of a primary IPv4 address: %w", err)
			}
			return hourly, monthly, nil
		}
	}
	return 0, 0, fmt.Errorf("Hetzner lists no price for a primary IPv4 address in %s", location)
}

func gross(pr hc.Price) (float64, error) {
	v, err := strconv.ParseFloat(pr.Gross, 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("Hetzner reported %q, which is not a price", pr.Gross)
	}
	return v, nil
}
