package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
)

// maxLocalDelay bounds the local cloud's delays, as the gateway's own
// --local-boot-delay is bounded: no real boot or action takes longer.
const maxLocalDelay = 10 * time.Minute

// runLocalCloud is `gateway localcloud`: the local cloud alone (the fake
// Hetzner API and its machines), so several gateways in hcloud mode can
// share it. It serves until ctx ends, then stops the machines and keeps
// the state, and returns the exit status.
func runLocalCloud(ctx context.Context, args []string, out, logOut io.Writer) int {
	fs := flag.NewFlagSet("gateway localcloud", flag.ContinueOnError)
	fs.SetOutput(out)
	listen := fs.String("listen", "127.0.0.1:0", "the API's address, on loopback; port 0: a free one")
	dataDir := fs.String("data-dir", filepath.Join("data", "localcloud"), "the cloud's project: state.json, the machines' folders, and api.env (endpoint and token)")
	kind := fs.String("local-machines", localcloud.KindBuiltin, "machines as in-process SSH servers (builtin) or as real sshd processes (openssh)")
	bootDelay := fs.Duration("local-boot-delay", 0, "how long a machine takes from create or power-on until its SSH answers; 0: at once")
	actionDelay := fs.Duration("local-action-delay", 0, "how long the API's actions stay running; 0: the fake's default, 0.5s")
	faults := fs.String("local-faults", "", "faults the API injects, e.g. rate=0.2,seed=7 (as the gateway's --local-faults)")
	fs.Usage = func() {
		fmt.Fprintln(out, "Usage: gateway localcloud [options]\n\nServes the local cloud alone: the fake Hetzner API and its machines, for gateways in\nhcloud mode (--cloud hcloud --hcloud-endpoint URL, HCLOUD_TOKEN from DIR/api.env).\n\nOptions:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2 // the flag package said what is wrong
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(logOut, "gateway localcloud: "+format+"\n", args...)
		return 2
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q: it takes only options; run gateway localcloud --help to see them", fs.Arg(0))
	}
	for name, d := range map[string]time.Duration{"--local-boot-delay": *bootDelay, "--local-action-delay": *actionDelay} {
		if d < 0 || d > maxLocalDelay {
			return fail("%s: %s is not from 0s to %s", name, d, maxLocalDelay)
		}
	}
	injected, err := localcloud.ParseFaults(*faults)
	if err != nil {
		return fail("--local-faults: %v", err)
	}

	log := slog.New(slog.NewTextHandler(logOut, nil))
	cloud, err := localcloud.Start(localcloud.Options{
		DataDir: *dataDir, Listen: *listen, Kind: *kind, Faults: injected, Logger: log,
		BootDelay: *bootDelay, ActionDuration: *actionDelay,
	})
	if err != nil {
		fmt.Fprintf(logOut, "gateway localcloud: %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "local cloud API at %s; its token is HCLOUD_TOKEN in %s\n",
		cloud.Endpoint(), filepath.Join(*dataDir, localcloud.CredentialsFile))
	<-ctx.Done()
	log.Info("stopping the local cloud: its machines stop, its state stays", "data_dir", *dataDir)
	if err := cloud.Close(); err != nil {
		fmt.Fprintf(logOut, "gateway localcloud: stop: %v\n", err)
		return 1
	}
	return 0
}
