package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

var secretCommand = command{
	name:    "secret",
	usage:   "secret set NAME | list | rm NAME",
	summary: "keep a secret (value on stdin) that your machine's sessions get as $NAME",
	example: "secret set GH_TOKEN < token.txt",
	run:     (*Gateway).secret,
}

const secretUsage = "usage: secret set NAME (the value on standard input), secret list, or secret rm NAME"

func (g *Gateway) secret(ctx context.Context, c call) int {
	switch {
	case len(c.args) == 2 && c.args[1] == "list":
		return g.secretList(c)
	case len(c.args) == 3 && c.args[1] == "set":
		return g.secretSet(ctx, c, c.args[2])
	case len(c.args) == 3 && c.args[1] == "rm":
		delivered, err := g.opts.Leases.RemoveSecret(ctx, c.fingerprint, c.args[2])
		if err != nil {
			return g.secretError(c, err, "could not remove your secret")
		}
		fmt.Fprintf(c.stdout, "Removed %s; %s.\n", c.args[2], secretWhen(delivered))
		return 0
	}
	return refuse(c, secretUsage)
}

func (g *Gateway) secretSet(ctx context.Context, c call, name string) int {
	// Checked before reading, so a mistyped name is refused at once.
	if err := lease.CheckSecretName(name); err != nil {
		return refuse(c, "%v", err)
	}
	// Read one byte over what may be kept with a line break, so a value
	// that is too long is seen as such; the rest is not read.
	value, err := io.ReadAll(io.LimitReader(c.stdin, lease.MaxSecretSize+3))
	if err != nil {
		return refuse(c, "could not read the value from standard input; nothing was changed")
	}
	delivered, err := g.opts.Leases.SetSecret(ctx, c.fingerprint, name, value)
	clear(value)
	if err != nil {
		return g.secretError(c, err, "could not keep your secret")
	}
	fmt.Fprintf(c.stdout, "Set %s; %s.\n", name, secretWhen(delivered))
	return 0
}

// secretWhen says when a change of secrets reaches the person's machine.
func secretWhen(delivered bool) string {
	if delivered {
		return "new sessions on your machine see it now"
	}
	return "your machine gets it when you next connect"
}

func (g *Gateway) secretList(c call) int {
	secrets, err := g.opts.Leases.Secrets(c.fingerprint)
	if err != nil {
		return g.secretError(c, err, "could not list your secrets")
	}
	if len(secrets) == 0 {
		fmt.Fprintf(c.stdout, "You have no secrets; `%s secret set NAME` keeps one, its value on standard input.\n", g.opts.Invocation)
		return 0
	}
	w := tabwriter.NewWriter(c.stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintf(w, "NAME\tSET\n")
	for _, s := range secrets {
		fmt.Fprintf(w, "%s\t%s\n", s.Name, s.Set.UTC().Format(timeLayout))
	}
	w.Flush()
	return 0
}

// secretError refuses a secret command: a refusal by the rules as it is
// worded, anything else as sentence with a reference.
func (g *Gateway) secretError(c call, err error, sentence string) int {
	var refused *lease.SecretError
	if errors.As(err, &refused) {
		return refuse(c, "%s", refused.Sentence)
	}
	return refuse(c, "%s", c.trace.tell(forPerson(err, "%s", sentence), "command", "secret", "fingerprint", c.fingerprint))
}
