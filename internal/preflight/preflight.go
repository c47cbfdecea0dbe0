// Package preflight holds the checks the gateway runs before it serves:
// the cloud's (the API and token, locations, server types and the pairs
// of them, image, prices; see hcloud.Provider.Preflight) and the allow
// lists'. The gateway refuses to start on any problem and logs every
// warning; `gateway preflight` prints them all as a table.
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

// Check is one thing the gateway needs, checked. It has one of three
// outcomes: passed (Result), warned (Warning) or failed (Problem).
type Check struct {
	Name string // what was checked: "API", "server type", …
	// Result says what was found when the check passed.
	Result string
	// Warning, when set, is one sentence about something that works now
	// but deserves the operator's attention, and what to do about it; the
	// gateway serves.
	Warning string
	// Problem, when set, is one sentence saying what is wrong and how to
	// fix it; the gateway cannot serve.
	Problem string
}

// OK reports whether the gateway can serve despite the check: it passed
// or only warned.
func (c Check) OK() bool { return c.Problem == "" }

// Passed is a check that found what it needed.
func Passed(name, format string, args ...any) Check {
	return Check{Name: name, Result: fmt.Sprintf(format, args...)}
}

// Warned is a check that found something to fix that does not stop the
// gateway serving; the warning names the fix.
func Warned(name, format string, args ...any) Check {
	return Check{Name: name, Warning: fmt.Sprintf(format, args...)}
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

// Warnings are the checks' warnings, one line each.
func Warnings(checks []Check) []string {
	var lines []string
	for _, c := range checks {
		if c.OK() && c.Warning != "" {
			lines = append(lines, c.Name+": "+c.Warning)
		}
	}
	return lines
}

// Write prints the checks as a table: check, result, what to do.
func Write(w io.Writer, checks []Check) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tWHAT TO DO")
	for _, c := range checks {
		switch {
		case !c.OK():
			fmt.Fprintf(tw, "%s\tPROBLEM\t%s\n", c.Name, c.Problem)
		case c.Warning != "":
			fmt.Fprintf(tw, "%s\tWARNING\t%s\n", c.Name, c.Warning)
		default:
			fmt.Fprintf(tw, "%s\tok: %s\t-\n", c.Name, c.Result)
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
