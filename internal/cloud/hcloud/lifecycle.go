package hcloud

import (
	"context"
	"errors"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// The lifecycle calls below are placeholders until the provider learns
// snapshots, metrics and pricing.
var errNotYet = errors.New("not supported by this provider yet")

// Snapshot is not implemented yet.
func (p *Provider) Snapshot(ctx context.Context, serverID int64, leaseID string) (lease.Image, error) {
	return lease.Image{}, errNotYet
}

// Images is not implemented yet.
func (p *Provider) Images(ctx context.Context) ([]lease.Image, error) { return nil, errNotYet }

// DeleteImage is not implemented yet.
func (p *Provider) DeleteImage(ctx context.Context, id int64) error { return errNotYet }

// CPUUsage is not implemented yet.
func (p *Provider) CPUUsage(ctx context.Context, id int64, window time.Duration) (float64, error) {
	return 0, errNotYet
}

// Prices is not implemented yet.
func (p *Provider) Prices(ctx context.Context, serverType, location string) (lease.Prices, error) {
	return lease.Prices{}, errNotYet
}
