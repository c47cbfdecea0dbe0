package lease

import (
	"context"
	"math"
	"time"
)

// Hetzner bills a server for every started hour from its creation to its
// deletion, whether it is on or off, up to its monthly price; snapshots per
// GB and month. These figures follow the prices the provider reports.

const (
	hoursPerMonth = 730 // Hetzner's monthly cap applies after this many hours
	priceCacheTTL = time.Hour
	priceTimeout  = 10 * time.Second
)

type cachedPrices struct {
	prices  Prices
	fetched time.Time
}

// serverCost is what a server created at from and deleted (or looked at)
// at to costs.
func serverCost(p Prices, from, to time.Time) float64 {
	if from.IsZero() || !to.After(from) {
		return 0
	}
	hours := math.Ceil(to.Sub(from).Hours())
	months := math.Floor(hours / hoursPerMonth)
	rest := hours - months*hoursPerMonth
	return months*p.ServerMonthly + math.Min(rest*p.ServerHourly, p.ServerMonthly)
}

// imageCost is what a snapshot of sizeGB kept from from to to costs.
func imageCost(p Prices, sizeGB float64, from, to time.Time) float64 {
	if from.IsZero() || !to.After(from) {
		return 0
	}
	return sizeGB * p.SnapshotPerGBMonth * to.Sub(from).Hours() / hoursPerMonth
}

// Cost is what l has cost so far, in the provider's currency; zero and an
// empty currency when prices are unknown.
func (m *Manager) Cost(l Lease) (float64, string) {
	p, ok := m.cachedPrices(l)
	if !ok {
		return 0, ""
	}
	now := m.cfg.Clock.Now()
	return l.Spent + serverCost(p, l.ServerCreated, now) + imageCost(p, l.ImageSizeGB, l.ImageCreated, now), p.Currency
}

// cachedPrices returns the prices of l's server type and location, asking
// the provider at most once an hour.
func (m *Manager) cachedPrices(l Lease) (Prices, bool) {
	key := l.ServerType + "/" + l.Location
	now := m.cfg.Clock.Now()
	m.mu.Lock()
	c, ok := m.prices[key]
	m.mu.Unlock()
	if ok && now.Sub(c.fetched) < priceCacheTTL {
		return c.prices, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), priceTimeout)
	defer cancel()
	p, err := m.cfg.Provider.Prices(ctx, l.ServerType, l.Location)
	if err != nil {
		m.log.Warn("prices unknown", "server_type", l.ServerType, "location", l.Location, "err", err)
		return c.prices, ok // an old price beats none
	}
	m.mu.Lock()
	m.prices[key] = cachedPrices{prices: p, fetched: now}
	m.mu.Unlock()
	return p, true
}
