package preflight

import (
	"errors"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// TestMachine is the phases of `gateway preflight --create-test-machine`
// as rows of the table: how long each took and what it found, or what to
// do about it.
func TestMachine(phases []lease.Phase) []Check {
	checks := make([]Check, 0, len(phases))
	for _, p := range phases {
		name := "test machine " + p.Name
		var failed *lease.TestMachineError
		switch {
		case errors.As(p.Err, &failed):
			checks = append(checks, Failed(name, "after %s: %s", p.Rounded(), failed.Fix))
		case p.Err != nil:
			checks = append(checks, Failed(name, "after %s: %v", p.Rounded(), p.Err))
		default:
			checks = append(checks, Passed(name, "%s, %s", p.Rounded(), p.Result))
		}
	}
	return checks
}
