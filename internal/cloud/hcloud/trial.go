package hcloud

import "github.com/cc-gateway/cc-gateway/internal/lease"

// LabelTrial marks a test machine of `gateway preflight
// --create-test-machine`, so an operator who finds one in the console
// knows what it is.
const LabelTrial = "cc-gateway-trial"

// serverLabels are a new server's labels.
func (p *Provider) serverLabels(spec lease.CreateSpec) map[string]string {
	labels := p.labels(spec.LeaseID)
	if spec.Trial {
		labels[LabelTrial] = "true"
	}
	return labels
}
