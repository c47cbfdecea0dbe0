package lease

import (
	"context"
	"math"
	"time"
)

// Hetzner bills a server for every started hour from its creation to its
// deletion, whether it is on or off, up to its monthly price; its primary
// IPv4 address likewise, apart from it (it lives and dies with the
// server); snapshots per GB and month. These figures follow the prices the
// provider reports.

const (
	hoursPerMonth = 730 // Hetzner's monthly cap applies after this many hours
	priceCacheTTL = time.Hour
	priceTimeout  = 10 * time.Second
)

type cachedPrices struct {
	prices  Prices
	fetched time.Time
}

// serverCost is what a server, with its primary IPv4 address, created at
// from and deleted (or looked at) at to costs.
func serverCost(p Prices, from, to time.Time) float64 {
	if from.IsZero() || !to.After(from) {
		return 0
	}
	hours := math.Ceil(to.Sub(from).Hours())
	return billed(hours, p.ServerHourly, p.ServerMonthly) + billed(hours, p.IPv4Hourly, p.IPv4Monthly)
}

// billed is what hours cost at an hourly price, each month's charges
// capped at the monthly price.
func billed(hours, hourly, monthly float64) float64 {
	months := math.Floor(hours / hoursPerMonth)
	rest := hours - months*hoursPerMonth
	return months*monthly + math.Min(rest*hourly, monthly)
}

// imageCost is what a snapshot of sizeGB kept from from to to costs.
func imageCost(p Prices, sizeGB float64, from, to time.Time) float64 {
	if from.IsZero() || !to.After(from) {
		return 0
	}
	return sizeGB * p.SnapshotPerGBMonth * to.Sub(from).Hours() / hoursPerMonth
}

// Cost is what l has cost so far, in the provider's currency; zero and an
// empty currency when prices are unknown. It reads only the price cache
// (refreshPrices fills it), so it never waits on the network.
func (m *Manager) Cost(l Lease) (float64, string) {
	p, ok := m.cachedPrices(l)
	if !ok {
		return 0, ""
	}
	now := m.cfg.Clock.Now()
	return l.Spent + serverCost(p, l.ServerCreated, now) + imageCost(p, l.ImageSizeGB, l.ImageCreated, now), p.Currency
}

// PoolCost is what the warm pool machine p has cost so far, apart from
// anyone's lease; zero and an empty currency when prices are unknown.
func (m *Manager) PoolCost(p PoolMachine) (float64, string) {
	prices, ok := m.cachedPrices(Lease{ServerType: p.ServerType, Location: p.Location})
	if !ok || p.ServerID == 0 {
		return 0, ""
	}
	return serverCost(prices, p.Created, m.cfg.Clock.Now()), prices.Currency
}

// volumeCost is what a volume of sizeGB kept from from to to costs.
func volumeCost(p Prices, sizeGB int, from, to time.Time) float64 {
	if from.IsZero() || !to.After(from) {
		return 0
	}
	return float64(sizeGB) * p.VolumePerGBMonth * to.Sub(from).Hours() / hoursPerMonth
}

// HomeCost is what the home h has cost since it was created; zero and an
// empty currency when prices are unknown. A volume's price is the same
// for every server type, so any cached price of its location will do.
func (m *Manager) HomeCost(h Home) (float64, string) {
	prices, ok := m.cachedPrices(Lease{ServerType: first(m.cfg.Machine.ServerTypes), Location: h.Location})
	if !ok || h.VolumeID == 0 {
		return 0, ""
	}
	return volumeCost(prices, h.SizeGB, h.Created, m.cfg.Clock.Now()), prices.Currency
}

// priceKey names what a price applies to.
func priceKey(serverType, location string) string { return serverType + "/" + location }

// cachedPrices returns the cached prices of l's server type and location,
// however old: an old price beats none.
func (m *Manager) cachedPrices(l Lease) (Prices, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.prices[priceKey(l.ServerType, l.Location)]
	return c.prices, ok
}

// refreshPrices asks the provider for the prices of the server types and
// locations of leases and of every place new machines may go that the
// cache lacks or has held for priceCacheTTL. The reaper calls it once a pass, off every person's
// lock, so Cost and the bookings of closeServer and dropImage only read.
func (m *Manager) refreshPrices(ctx context.Context, leases []Lease) {
	type kind struct{ serverType, location string }
	kinds := map[kind]bool{}
	for _, t := range m.cfg.Machine.ServerTypes {
		for _, loc := range m.cfg.Machine.Locations {
			kinds[kind{t, loc}] = true
		}
	}
	for _, l := range leases {
		kinds[kind{l.ServerType, l.Location}] = true
	}
	now := m.cfg.Clock.Now()
	for k := range kinds {
		if k.serverType == "" || k.location == "" {
			continue
		}
		key := priceKey(k.serverType, k.location)
		m.mu.Lock()
		c, ok := m.prices[key]
		m.mu.Unlock()
		if ok && now.Sub(c.fetched) < priceCacheTTL {
			continue
		}
		ctx, cancel := context.WithTimeout(ctx, priceTimeout)
		p, err := m.cfg.Provider.Prices(ctx, k.serverType, k.location)
		cancel()
		if err != nil {
			m.log.Warn("prices unknown", "server_type", k.serverType, "location", k.location, "err", err)
			continue
		}
		m.mu.Lock()
		m.prices[key] = cachedPrices{prices: p, fetched: now}
		m.mu.Unlock()
	}
}
