package hcloud

import "github.com/cc-gateway/cc-gateway/internal/lease"

// LabelTestMachine marks a test machine of `gateway preflight
// --create-test-machine`, so an operator who finds one in the console
// knows what it is.
const LabelTestMachine = "cc-gateway-test-machine"

// serverLabels are a new server's labels.
func (p *Provider) serverLabels(spec lease.CreateSpec) map[string]string {
	labels := p.labels(spec.LeaseID)
	if spec.TestMachine {
		labels[LabelTestMachine] = "true"
	}
	if spec.Pool {
		labels[LabelPool] = "true"
	}
	return labels
}
