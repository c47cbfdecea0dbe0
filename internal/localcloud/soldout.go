package localcloud

import "net/http"

// capacity is what Faults may implement to sell out server types in
// locations (RandomFaults does). It may be called with the cloud's lock
// held, so it must not call the cloud.
type capacity interface {
	SoldOut(serverType, location string) bool
}

// refuseSoldOut answers a create of a sold-out pair as Hetzner does, with
// 412 resource_unavailable, and reports whether it did.
func (c *Cloud) refuseSoldOut(w http.ResponseWriter, plan serverPlan) bool {
	sold, ok := c.opts.Faults.(capacity)
	if !ok || !sold.SoldOut(plan.serverType.name, plan.location.loc.Name) {
		return false
	}
	writeError(w, http.StatusPreconditionFailed, "resource_unavailable", "error during placement", struct{}{})
	return true
}
