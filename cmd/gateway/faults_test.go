package main

import (
	"strings"
	"testing"
)

// TestCloudFaults runs a machine's whole life while the local cloud's API
// answers a fifth of requests with 5xx, 429, locked or conflict, and fails
// actions. Every command succeeds, or fails with one clean line (no stack
// trace, no secret), and nothing is left behind.
func TestCloudFaults(t *testing.T) {
	t.Parallel()
	lg := newLocalGateway(t, "--local-faults", "rate=0.2,seed=11,reset=200ms")
	g := lg.start(t)
	liam := newPerson(t, lg.dir+"/liam")

	// run retries a command the way a person would, a few times.
	run := func(args ...string) result {
		t.Helper()
		var r result
		for range 4 {
			r = liam.ssh(g, "", args...)
			if r.code == 0 {
				return r
			}
			for _, bad := range []string{"panic", "goroutine ", ".go:", "Bearer"} {
				if strings.Contains(r.stderr, bad) {
					t.Fatalf("%q failed with %q in its message:\n%s", args, bad, r.stderr)
				}
			}
		}
		t.Fatalf("%q failed four times; last: %+v", args, r)
		return r
	}

	run("echo one > f")
	run("stop")
	if r := run("cat f"); r.stdout != "one\n" {
		t.Errorf("after resume: %q", r.stdout)
	}
	run("destroy", "--yes")
	if n := countServers(t, lg); n != 0 {
		t.Errorf("%d servers left after destroy", n)
	}
}
