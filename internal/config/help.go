package config

import (
	"fmt"
	"io"
	"strings"
)

// WriteHelp writes the gateway's usage: every option with its default and
// environment variable, then the precedence rules and config file format.
func WriteHelp(w io.Writer) {
	var b strings.Builder
	b.WriteString(`Usage: gateway [options]
       gateway preflight [options]
       gateway localcloud [--listen ADDR] [--data-dir DIR] (see its --help)
       gateway store export|import [--out FILE | --in FILE [--force]] [options]

cc-gateway is an SSH gateway: each person who connects gets a machine of
their own, created or resumed on demand and proxied to. Without a Hetzner
token it runs in local mode, with machines on a built-in local cloud.

gateway preflight runs, with the same options, the checks the gateway runs
before it serves (the cloud's API and token, locations, server types and
the pairs of them on sale, image and prices) and reads the allow lists; it
prints them as a table, warnings included, and exits 0 when the gateway
can serve, 1 otherwise. With --create-test-machine it then creates one
machine as a person would get it, times create, boot and SSH ready, and
deletes it: the smoke test against the real cloud.

gateway localcloud serves the local cloud alone, so several gateways in
hcloud mode can share it (docs/operations.md).

gateway store export writes everything the lease store of the options keeps
(bbolt in --data-dir, or etcd with --etcd-endpoints) as one JSON document;
gateway store import replaces a store's content with one (docs/ha.md).

Options:
`)
	for _, o := range options {
		fmt.Fprintf(&b, "\n  --%s %s\n", o.name, o.placeholder())
		fmt.Fprintf(&b, "        %s\n", o.usage)
		fmt.Fprintf(&b, "        default: %s\n", o.helpDefault())
		fmt.Fprintf(&b, "        environment: %s\n", o.env())
	}
	fmt.Fprintf(&b, `
Precedence, lowest first: defaults, config file, environment, command line.
Each option NAME is also the environment variable %sNAME (upper case,
dashes as underscores; an empty variable counts as unset).

The Hetzner Cloud API token is read from $%s, or from the file
named by --hcloud-token-file, which wins. It is never taken from the
command line or the config file, and never printed.

Durations are written like 90m, 4h or 1h30m.

Config file (--config): one "name = value" per line, names as the options
above without the dashes. Blank lines and lines starting with # are ignored;
values run to the end of the line, with no quoting. Relative paths are
relative to the working directory. For example:

    # /etc/cc-gateway/gateway.conf
    users        = /etc/cc-gateway/users
    idle-timeout = 45m
`, envPrefix, tokenEnv)
	_, _ = io.WriteString(w, b.String())
}
