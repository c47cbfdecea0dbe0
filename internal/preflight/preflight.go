// Package preflight holds the checks the gateway runs before it serves:
// the cloud's (the token, server type, location, image, prices; see
// hcloud.Provider.Preflight) and the allow lists'. The gateway refuses to
// start on any problem; `gateway preflight` prints them all as a table.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Check is one thing the gateway needs, checked.
type Check struct {
	Name string // what was checked: "token", "server type", …
	// Result says what was found when the check passed.
	Result string
	// Problem, when set, is one sentence saying what is wrong and how to
	// fix it; the gateway cannot serve.
	Problem string
}

// OK reports whether the check passed.
func (c Check) OK() bool { return c.Problem == "" }

// Passed is a check that found what it needed.
func Passed(name, format string, args ...any) Check {
	return Check{Name: name, Result: fmt.Sprintf(format, args...)}
}

// Failed is a check that did not; the problem names the fix.
func Failed(name, format string, args ...any) Check {
	return Check{Name: name, Problem: fmt.Sprintf(format, args...)}
}

// Problems is nil when every check passed, else an error with one line
// per problem.
func Problems(checks []Check) error {
	var lines []string
	for _, c := range checks {
		if !c.OK() {
			lines = append(lines, c.Name+": "+c.Problem)
		}
	}
	if len(lines) == 0 {
		return nil
	}
	return errors.New("cannot serve; run gateway preflight to see every check:\n  " + strings.Join(lines, "\n  "))
}

// Write prints the checks as a table: check, result, what to do.
func Write(w io.Writer, checks []Check) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tWHAT TO DO")
	for _, c := range checks {
		if c.OK() {
			fmt.Fprintf(tw, "%s\tok: %s\t-\n", c.Name, c.Result)
		} else {
			fmt.Fprintf(tw, "%s\tPROBLEM\t%s\n", c.Name, c.Problem)
		}
	}
	return tw.Flush()
}

// Timeout bounds the cloud's checks, so a cloud that does not answer is
// one problem within it rather than a hang.
const Timeout = 30 * time.Second

// Cloud is what has checks of its own to run: the Hetzner provider.
type Cloud interface {
	Preflight(ctx context.Context) []Check
}

// CloudChecks runs the cloud's checks within Timeout.
func CloudChecks(ctx context.Context, c Cloud) []Check {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	return c.Preflight(ctx)
}
