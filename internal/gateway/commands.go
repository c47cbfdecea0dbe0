package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// call is one gateway command as a person ran it.
type call struct {
	args        []string // args[0] is the command's name
	key         gossh.PublicKey
	remote      net.Addr // where the connection comes from
	fingerprint string
	trace       *connTrace // the connection it came on
	stdin       io.Reader
	stdout      io.Writer
	stderr      io.Writer
}

// command is one of the gateway's own commands, each in a file of its own.
type command struct {
	name    string
	usage   string
	summary string
	example string
	admin   bool // listed in help for admins only
	run     func(g *Gateway, ctx context.Context, c call) int
}

// The gateway's commands, each defined in its own file; commandOrder is the
// order help lists them in.
var (
	commandOrder []command
	commands     = map[string]command{}
)

// Filled in init, not in the declaration: help reads the list, which would
// make the declaration refer to itself.
func init() {
	commandOrder = []command{statusCommand, extendCommand, stopCommand, destroyCommand, secretCommand, notifyCommand, helpCommand, adminCommand}
	for _, cmd := range commandOrder {
		commands[cmd.name] = cmd
	}
}

// runCommand runs a gateway command and returns its exit code: 0 on
// success, 1 on a refusal or failure, which it explains on stderr.
func (g *Gateway) runCommand(ctx context.Context, c call) int {
	cmd := commands[c.args[0]]
	return cmd.run(g, ctx, c)
}

// refuse prints one line on stderr and returns the refusal's exit code.
func refuse(c call, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "%s: %s\n", c.args[0], fmt.Sprintf(format, args...))
	return 1
}

// leaseError refuses a command the lease manager failed, telling the
// person what they can act on (see tell).
func (g *Gateway) leaseError(c call, err error) int {
	if errors.Is(err, lease.ErrNotFound) {
		return refuse(c, "you have no machine; `%s` creates one", g.opts.Invocation)
	}
	return refuse(c, "%s", c.trace.tell(err, "command", c.args[0], "fingerprint", c.fingerprint))
}
