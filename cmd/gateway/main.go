// Command gateway runs cc-gateway: an SSH front door that gives every person
// their own cloud machine. See README.md and `gateway --help`.
//
// main only wires packages together; each decision lives in internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/config"
	"github.com/cc-gateway/cc-gateway/internal/gateway"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/metrics"
	"github.com/cc-gateway/cc-gateway/internal/notify"
	"github.com/cc-gateway/cc-gateway/internal/preflight"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
	"github.com/cc-gateway/cc-gateway/internal/secrets"
)

// gcPercent trades memory for CPU: the proxy's copying allocates a packet
// buffer per SSH packet (inside x/crypto), and collecting less often cuts
// the gateway's CPU per proxied GiB by a fifth (docs/benchmarks.md). GOGC
// in the environment still wins.
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	args, check := os.Args[1:], false
	if len(args) > 0 && args[0] == "localcloud" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := runLocalCloud(ctx, args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	if len(args) > 0 && args[0] == "store" {
		os.Exit(runStore(args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
	}
	if len(args) > 0 && args[0] == "preflight" {
		args, check = args[1:], true
	}
	cfg, err := config.Load(args, os.Getenv, os.Stdout)
	if errors.Is(err, config.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
		os.Exit(2)
	}
	if cfg.CreateTestMachine && !check {
		fmt.Fprintln(os.Stderr, "gateway: --create-test-machine is for gateway preflight; run gateway preflight --create-test-machine")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if check {
		if !runPreflight(ctx, cfg, os.Stdout, os.Stderr) {
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, cfg, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
		os.Exit(1)
	}
}

// run starts every part, serves until ctx ends, then shuts down in order.
func run(ctx context.Context, cfg config.Config, logOut io.Writer) error {
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: cfg.Level()}))
	slog.SetDefault(log) // the store logs through the default logger
	log.Info("starting", "config", cfg)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data folder: %w", err)
	}
	hostKey, err := gateway.LoadOrCreateKey(cfg.HostKeyPath())
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	upstreamKey, err := gateway.LoadOrCreateKey(cfg.UpstreamKeyPath())
	if err != nil {
		return fmt.Errorf("upstream key: %w", err)
	}
	users, err := gateway.LoadKeyList(cfg.Users, log)
	if err != nil {
		return err
	}
	admins, err := gateway.LoadKeyList(cfg.Admins, log)
	if err != nil {
		return err
	}

	store, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	obs := newObservers(cfg, store)

	provider, closeCloud, err := newProvider(cfg, log, obs.cloud)
	if err != nil {
		return err
	}
	defer closeCloud()
	checks := preflight.CloudChecks(ctx, provider)
	if err := preflight.Problems(checks); err != nil {
		return err
	}
	for _, w := range preflight.Warnings(checks) {
		log.Warn("preflight: " + w)
	}

	sealer, err := secrets.LoadKeyFile(cfg.SecretsKeyPath())
	if err != nil {
		return err
	}

	// One pool of machine connections: the lease manager checks machines
	// through it, and sessions then use the connection it leaves.
	pool := proxy.NewPool(proxy.PoolOptions{Key: upstreamKey, Logger: log, Observer: obs.proxy})
	// People's notification targets; local mode allows loopback, so a
	// receiver on this computer can be tried.
	teller := notify.New(notify.Options{
		People: store, Logger: log, Observer: obs.notify,
		Rules: notify.Rules{AllowPrivate: cfg.NotifyAllowPrivate, AllowLoopback: cfg.Local()},
	})
	defer inBackground(ctx, teller.Run)()
	manager := lease.NewManager(lease.Config{
		Store:    store,
		Pool:     store,
		WarmPool: lease.PoolConfig{Size: cfg.WarmPool, MaxAge: cfg.WarmPoolMaxAge},
		Home:     lease.HomeConfig{SizeGB: cfg.HomeVolume, Retention: cfg.HomeRetention},
		Provider: provider,
		Machines: proxy.NewMachines(pool, cfg.InstanceUser),
		Policy: lease.Policy{
			DefaultTTL: cfg.DefaultTTL, MaxTTL: cfg.MaxTTL,
			MaxLifetime: cfg.MaxLifetime, IdleTimeout: cfg.IdleTimeout,
			IdleAction: cfg.IdleAction, BusyCPU: float64(cfg.BusyCPU),
			MaxUnattended: cfg.MaxUnattended,
			WarnBefore:    cfg.WarnLeads(), RevokedAction: cfg.RevokedAction,
		},
		Machine:          machineSpec(cfg, upstreamKey),
		OperationTimeout: cfg.OperationTimeout(),
		Logger:           log,
		Fault:            crashAt(os.Getenv(crashEnv), log),
		Observer:         obs.lease,
		Sealer:           sealer,
		Teller:           teller,
		Coordinator:      coordinator(cfg, store, gatewayName(cfg)),
	})

	if err := manager.CheckStore(ctx, cfg.Orphans); err != nil {
		return fmt.Errorf("lease database %s: %w", storeName(cfg), err)
	}

	_, guarded := cfg.Firewall()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	invocation := gateway.Invocation(cfg.PublicName, ln.Addr().String())
	shared, presence := sharedWith(store, log)
	gw, err := gateway.New(gateway.Options{
		HostKey: hostKey, Users: users, Admins: admins, OpenAccess: cfg.OpenAccess(),
		Leases: manager, Pool: pool, InstanceUser: cfg.InstanceUser,
		Invocation: invocation, Logger: log, Guarded: guarded, Observer: obs.gateway,
		Notify:             teller,
		Shared:             shared,
		PersistentSessions: cfg.PersistentSessions,
		MaxStartups: gateway.StartupLimits{
			Start: cfg.MaxStartups.Start, Rate: cfg.MaxStartups.Rate, Full: cfg.MaxStartups.Full,
			PerSource: cfg.MaxStartupsPerSource,
		},
		Limits: gateway.Limits{
			SessionsPerConn: cfg.MaxSessions, ConnsPerPerson: cfg.MaxConnections,
			EarlyRequests: cfg.MaxEarlyRequests, EarlyBytes: cfg.MaxEarlyBytes,
			GlobalRate: cfg.GlobalRequestRate, GlobalBurst: cfg.GlobalRequestBurst,
		},
	})
	if err != nil {
		ln.Close()
		return err
	}
	if obs.reg != nil {
		stopMetrics, err := serveMetrics(cfg, obs.reg, log, []metrics.ReadyCheck{
			store.Healthy,
			gw.Accepting,
			// Every reconcile asks the cloud: three of them without an
			// answer and the gateway is not ready.
			obs.cloudMetrics.Ready(3 * max(cfg.ReaperInterval, cfg.ReconcileInterval)),
		})
		if err != nil {
			ln.Close()
			return err
		}
		defer stopMetrics()
	}
	if cfg.OpenAccess() {
		log.Warn("no --users allow list: any SSH key gets in; listening on loopback only", "listen", ln.Addr().String())
	}
	log.Info("listening", "addr", ln.Addr().String(), "host_key", gossh.FingerprintSHA256(hostKey.PublicKey()), "cloud", cfg.Cloud)

	go reloadOnHangup(ctx, log, users, admins)
	reaper := lease.NewReaper(manager, gw, lease.ReaperConfig{
		Interval: cfg.ReaperInterval, ReconcileEvery: cfg.ReconcileInterval,
		OrphanGrace: cfg.OrphanGrace, Orphans: cfg.Orphans, OrphanDeletes: cfg.OrphanDeletes,
		Invocation: invocation,
	})
	defer inBackground(ctx, reaper.Run)()
	if presence != nil {
		defer inBackground(ctx, func(ctx context.Context) { presence.Run(ctx, gw.Counts, gw.Deliver) })()
	}
	if cfg.Etcd() {
		// Whichever gateway's reaper decides, it reads this one's activity
		// from the store: write it every fraction of the reaper's interval.
		// (One gateway alone has it in memory.)
		defer inBackground(ctx, func(ctx context.Context) {
			manager.RunActivityFlush(ctx, lease.ActivityFlushEvery(cfg.ReaperInterval))
		})()
	}
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", cfg.ShutdownGrace)
	gw.Shutdown(cfg.ShutdownGrace)
	return nil
}

// metricsShutdownGrace bounds how long a scrape in flight may finish once
// the gateway has stopped.
const metricsShutdownGrace = 5 * time.Second

// serveMetrics starts the listener of --metrics-listen; the returned func
// stops it.
func serveMetrics(cfg config.Config, reg *metrics.Registry, log *slog.Logger, ready []metrics.ReadyCheck) (stop func(), err error) {
	ln, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s for metrics: %w", cfg.MetricsListen, err)
	}
	if cfg.MetricsExposed() {
		log.Warn("the metrics listener is not on loopback: /metrics, /readyz and pprof have no authentication; let only your Prometheus reach it (docs/operations.md)", "metrics_listen", ln.Addr().String())
	}
	srv := reg.NewServer(metrics.ServerOptions{Ready: ready, Pprof: cfg.Pprof, Logger: log})
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil {
			log.Error("the metrics listener stopped; the gateway serves on without it", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String(), "pprof", cfg.Pprof)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownGrace)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
	}, nil
}

// observers are what measures the gateway. They exist only with a metrics
// listener to serve them: without, every one stays nil and nothing is
// recorded. Each is held as its interface, so that "none" is a nil
// interface rather than a typed nil.
type observers struct {
	reg          *metrics.Registry
	cloudMetrics *metrics.Cloud // also the cloud's readiness check
	cloud        hcloud.Observer
	lease        lease.Observer
	proxy        proxy.Observer
	gateway      gateway.Observer
	notify       notify.Observer
}

func newObservers(cfg config.Config, store leaseStore) observers {
	if cfg.MetricsListen == "" {
		return observers{}
	}
	reg := metrics.New()
	cloud := reg.Cloud()
	return observers{
		reg: reg, cloudMetrics: cloud, cloud: cloud,
		lease: reg.Lease(store, cfg.ReaperInterval), proxy: reg.Proxy(),
		gateway: reg.Gateway(), notify: reg.Notify(),
	}
}

// inBackground runs run until ctx ends or the returned stop is called;
// stop returns once run has.
func inBackground(ctx context.Context, run func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		run(ctx)
		close(done)
	}()
	return func() {
		cancel()
		<-done
	}
}

// runPreflight prints the checks `gateway preflight` runs (the cloud's,
// as at start, and the allow lists') and reports whether the gateway can
// serve; with --create-test-machine, and every check passed, whether a
// test machine came up too. In local mode it starts the local cloud to
// check against it.
func runPreflight(ctx context.Context, cfg config.Config, out, logOut io.Writer) bool {
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var checks []preflight.Check
	provider, closeCloud, err := newProvider(cfg, log, nil)
	if err != nil {
		checks = append(checks, preflight.Failed("cloud", "%v", err))
	} else {
		defer closeCloud()
		checks = append(checks, preflight.CloudChecks(ctx, provider)...)
	}
	checks = append(checks, gateway.CheckAllowList("users", cfg.Users, log), gateway.CheckAllowList("admins", cfg.Admins, log))
	if err := preflight.Write(out, checks); err != nil {
		fmt.Fprintf(logOut, "gateway preflight: %v\n", err)
		return false
	}
	ok := preflight.Problems(checks) == nil
	if !cfg.CreateTestMachine {
		return ok
	}
	if !ok {
		fmt.Fprintln(out, "\nNo test machine: fix the problems above first.")
		return false
	}
	return runTestMachine(ctx, cfg, provider, out, logOut, log)
}

// runTestMachine makes one machine as the gateway would (its provider, its
// upstream key, its way of waiting), prints each phase as it goes and all
// of them as a table, and reports whether the machine came up.
func runTestMachine(ctx context.Context, cfg config.Config, provider lease.Provider, out, logOut io.Writer, log *slog.Logger) bool {
	upstreamKey, err := gateway.LoadOrCreateKey(cfg.UpstreamKeyPath())
	if err != nil {
		fmt.Fprintf(logOut, "gateway preflight: upstream key: %v\n", err)
		return false
	}
	pool := proxy.NewPool(proxy.PoolOptions{Key: upstreamKey, Logger: log})
	defer pool.Close()
	fmt.Fprintf(out, "\nTest machine (up to %s, then deleted):\n", cfg.TestMachineBound())
	phases, err := lease.TestMachine{
		Provider: provider,
		Machines: proxy.NewMachines(pool, cfg.InstanceUser),
		Machine:  machineSpec(cfg, upstreamKey),
		Timeout:  cfg.TestMachineBound(),
		Progress: func(line string) { fmt.Fprintf(out, "  %s\n", line) },
	}.Run(ctx)
	fmt.Fprintln(out)
	if werr := preflight.Write(out, preflight.TestMachine(phases)); werr != nil {
		fmt.Fprintf(logOut, "gateway preflight: %v\n", werr)
		return false
	}
	if err != nil {
		fmt.Fprintf(logOut, "gateway preflight: %v\n", err)
		return false
	}
	return true
}

// machineSpec is what every machine gets, from the options.
func machineSpec(cfg config.Config, upstreamKey gossh.Signer) lease.MachineSpec {
	return lease.MachineSpec{
		User: cfg.InstanceUser, SSHPort: cfg.MachineSSHPort, GatewayKey: upstreamKey.PublicKey(),
		ServerTypes: cfg.ServerTypes(), Locations: cfg.Locations(), Infect: cfg.Infect(),
	}
}

// newProvider returns the Hetzner provider, pointed at Hetzner itself or at
// the local cloud it starts, telling observer (if not nil) of its
// requests; the returned func stops what it started.
func newProvider(cfg config.Config, log *slog.Logger, observer hcloud.Observer) (*hcloud.Provider, func(), error) {
	pc := hcloud.Config{
		Token: cfg.HCloudToken, Endpoint: cfg.HCloudEndpoint, Gateway: cfg.GatewayName,
		ServerTypes: cfg.ServerTypes(), Locations: cfg.Locations(),
		Image: cfg.Image, ImageSelector: cfg.SnapshotSelector(),
		Logger: log, Observer: observer,
	}
	if sources, keep := cfg.Firewall(); keep {
		pc.Firewall = hcloud.Firewall{Sources: sources, SSHPort: cfg.MachineSSHPort}
		if len(sources) == 0 {
			pc.Firewall.Metadata = hcloud.MetadataEndpoint
		}
	}
	closeCloud := func() {}
	if cfg.Local() {
		faults, err := localcloud.ParseFaults(cfg.LocalFaults)
		if err != nil {
			return nil, nil, fmt.Errorf("--local-faults: %w", err)
		}
		cloud, err := localcloud.Start(localcloud.Options{
			DataDir: cfg.LocalCloudDir(),
			SSHPort: cfg.MachineSSHPort,
			Kind:    string(cfg.LocalMachines),
			User:    cfg.InstanceUser,
			Faults:  faults,
			Logger:  log,
			// Zero means no boot delay and the fake's default action time.
			BootDelay:      cfg.LocalBootDelay,
			ActionDuration: cfg.LocalActionDelay,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("start local cloud: %w", err)
		}
		pc.Token, pc.Endpoint = cloud.Token(), cloud.Endpoint()
		closeCloud = func() { cloud.Close() }
	}
	p, err := hcloud.New(pc)
	if err != nil {
		closeCloud()
		return nil, nil, fmt.Errorf("hetzner provider: %w", err)
	}
	return p, closeCloud, nil
}

// crashEnv names a fault point (lease.FaultPoints) at which the gateway
// kills itself with SIGKILL. It exists for the crash-safety tests, which
// prove that every step of every operation can be interrupted and finished
// after a restart; never set it in production.
const crashEnv = "CC_GATEWAY_CRASH_AT"

func crashAt(point string, log *slog.Logger) func(string) {
	if point == "" {
		return nil
	}
	log.Warn("crash test hook armed: the gateway will kill itself", "at", point)
	return func(p string) {
		if p == point {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
}

// reloadOnHangup re-reads the allow lists on SIGHUP (they also reload
// themselves when their files change).
func reloadOnHangup(ctx context.Context, log *slog.Logger, lists ...*gateway.KeyList) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			for _, l := range lists {
				if err := l.Reload(); err != nil {
					log.Error("reload allow list", "err", err)
				}
			}
		}
	}
}
