package hcloud

import (
	"context"
	"fmt"
	"maps"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// LabelPool marks a warm pool machine that nobody has claimed yet.
const LabelPool = lease.PoolLabel

// Unpool removes the pool label from a claimed pool machine, so it is the
// person's like any machine created for them. A server without the label
// is left as it is, so a claim retried after a crash succeeds.
func (p *Provider) Unpool(ctx context.Context, id int64) error {
	srv, err := p.owned(ctx, id)
	if err != nil {
		return err
	}
	if _, ok := srv.Labels[LabelPool]; !ok {
		return nil
	}
	labels := maps.Clone(srv.Labels)
	delete(labels, LabelPool)
	if _, _, err := p.client.Server.Update(ctx, srv, hc.ServerUpdateOpts{Labels: labels}); err != nil {
		return explain(fmt.Sprintf("relabel server %s", srv.Name), err)
	}
	p.log.Info("pool machine claimed: pool label removed", "server", srv.Name, "id", id)
	return nil
}
