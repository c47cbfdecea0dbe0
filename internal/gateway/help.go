package gateway

import (
	"context"
	"fmt"
	"slices"
	"text/tabwriter"
)

var helpCommand = command{
	name:    "help",
	usage:   "help",
	summary: "show the commands, with examples",
	run:     (*Gateway).help,
}

func (g *Gateway) help(_ context.Context, c call) int {
	inv := g.opts.Invocation
	shell := "a shell on your machine (created or started as needed)"
	if g.opts.PersistentSessions {
		shell = "your terminal session on your machine, kept when you disconnect"
	}
	listed := slices.DeleteFunc(slices.Concat(commandOrder, machineCommands), func(cmd command) bool {
		return cmd.admin && !g.isAdmin(c.key, c.remote) || !g.offered(cmd)
	})
	fmt.Fprintf(c.stdout, "cc-gateway gives you your own cloud machine.\n\n")
	fmt.Fprintf(c.stdout, "  %s                 %s\n", inv, shell)
	fmt.Fprintf(c.stdout, "  %s COMMAND         runs COMMAND on your machine\n\n", inv)
	fmt.Fprintf(c.stdout, "Gateway commands:\n")
	w := tabwriter.NewWriter(c.stdout, 0, 0, 3, ' ', 0)
	for _, cmd := range listed {
		fmt.Fprintf(w, "  %s\t%s\n", cmd.usage, cmd.summary)
	}
	w.Flush()
	fmt.Fprintf(c.stdout, "\nExamples:\n")
	for _, cmd := range listed {
		if ex := cmd.example; ex != "" {
			fmt.Fprintf(c.stdout, "  %s %s\n", inv, ex)
		}
	}
	fmt.Fprintf(c.stdout, "\nOn your machine, `cc-agent-state working|waiting|idle` says what your agent is doing:\n"+
		"a working agent keeps the machine running while you are away (Claude Code's hooks run it for you).\n")
	return 0
}
