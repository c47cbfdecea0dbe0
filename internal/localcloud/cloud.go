// Package localcloud is cc-gateway's local cloud: a fake of the Hetzner
// Cloud API, served on loopback inside the gateway process, whose servers
// boot as local machines (see package machine). The gateway's real Hetzner
// provider talks to it through hcloud-go exactly as it talks to Hetzner, so
// local mode and the tests exercise the production code path.
//
// The fake keeps its project (servers, SSH keys, snapshots, id counters) in
// DataDir/state.json and each machine's folder under DataDir/machines/, so a
// person's machine survives a restart of the gateway.
//
// DataDir/api.env (CredentialsFile) holds the API's endpoint and token, for
// Hetzner's hcloud CLI.
//
// Snapshots (create_image) copy the machine's home folder to
// DataDir/images/<image id>/home; a server created from a snapshot starts
// with a copy of it, so a machine hibernated (snapshot, delete) and resumed
// (create from the snapshot) has its files back.
//
// Volumes are folders, DataDir/volumes/<volume id>, that appear to the
// machine of the server they are attached to as Hetzner's block devices
// appear on a server: at their linux_device path under the machine's root,
// as links. A machine whose document names one as its home device mounts
// it on HOME, so a home outlives the server (see volumes.go and package
// machine).
//
// Metrics (GET /servers/{id}/metrics) report as CPU use the number in the
// machine's file DataDir/machines/<server name>/cpu (see CPUFile), in
// percent of the whole machine, or 0 without it, scaled per vCPU as
// Hetzner reports it: tests write the file to make a machine look busy.
// Disk and network series are all zero. Samples exist only since the
// machine last booted; step and sample counts follow Hetzner's.
//
// Where real Hetzner would disagree with a careless client, the fake does
// too: a shutdown is an ACPI request that the machine acts on only
// Options.ShutdownDelay later; with Options.BootDelay a new or started
// server reports running while its machine's SSH does not answer yet, as a
// guest's operating system boots; the API spends requests from a rate-limit
// bucket (Options.RateLimit) and answers 429 when it is empty; server
// answers carry no datacenter (removed in July 2026).
//
// Options.Faults makes the API misbehave; RandomFaults (or ParseFaults
// with "rate=0.2,seed=7") injects 5xx, 429 with RateLimit-* headers, 423
// locked, 409 conflict, failed and slow actions at a given rate, and
// shutdowns the machine ignores ("ignore-shutdown").
package localcloud

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/machine"
)

// Machine kinds for Options.Kind.
const (
	KindBuiltin = "builtin" // in-process SSH servers
	KindOpenSSH = "openssh" // real sshd processes
)

// DefaultActionDuration is how long an action stays "running" unless
// Options.ActionDuration says otherwise.
const DefaultActionDuration = 500 * time.Millisecond

// Options configures a local cloud.
type Options struct {
	// DataDir holds state.json and machines/<server name>/. Required.
	DataDir string
	// Listen is the API's address, host:port; empty means 127.0.0.1 at a
	// free port. Only a loopback host is accepted: whoever reaches the API
	// drives machines that are shells as this OS user.
	Listen string
	// SSHPort is the port every machine listens on; each machine has its
	// own loopback address. Zero means the port named in the server's
	// bootstrap document.
	SSHPort int
	// Kind is KindBuiltin (the default) or KindOpenSSH.
	Kind string
	// User, when set, is the instance user the gateway names in its
	// bootstrap documents. Start refuses one that OpenSSH machines cannot
	// log in, rather than every machine failing to boot later.
	User string
	// ActionDuration is how long async actions stay "running".
	ActionDuration time.Duration
	// ShutdownDelay is how long a machine takes to act on an ACPI shutdown
	// request: the shutdown action succeeds at once, the server goes off
	// this much later. Zero means 4 × ActionDuration, so local mode (and
	// every test) feels a real guest's delay in proportion.
	ShutdownDelay time.Duration
	// BootDelay is how long a machine takes from the create or power-on
	// request until its SSH port accepts connections (at least as long as
	// the actions), as a real guest's operating system boots. The server
	// reports "running" before, as Hetzner's does: running means the VM
	// started. Zero boots at once. A restart of the cloud brings running
	// servers back at once: their machines had booted already.
	BootDelay time.Duration
	// RateLimit sizes the request bucket; zero means Hetzner's.
	RateLimit RateLimit
	// Now tells the time for the rate-limit bucket, metric samples and the
	// timestamps the API reports; nil means time.Now.
	Now func() time.Time
	// Faults, when set, injects API and action failures.
	Faults Faults
	Logger *slog.Logger
}

// Cloud is a running local cloud.
type Cloud struct {
	opts      Options
	log       *slog.Logger
	token     string
	statePath string
	handler   http.Handler
	ln        net.Listener
	srv       *http.Server
	served    chan struct{}
	now       func() time.Time

	mu       sync.Mutex
	closed   bool
	st       *state
	actions  map[int64]*action
	machines map[int64]machine.Machine
	booted   map[int64]time.Time    // when each running machine booted, whole seconds (metrics start there)
	timers   map[int64]*time.Timer  // running actions' completions, by action id
	halts    map[int64]*time.Timer  // machines acting on an ACPI shutdown, by server id
	boots    map[int64]*pendingBoot // machines whose OS is still booting (BootDelay), by server id
	pending  sync.WaitGroup         // completions scheduled or running
}

// Start loads (or creates) the project in opts.DataDir, boots the servers
// that were running when the cloud last stopped, and serves the API on
// 127.0.0.1 at a free port.
func Start(opts Options) (*Cloud, error) {
	if opts.DataDir == "" {
		return nil, errors.New("local cloud: no data directory given")
	}
	switch opts.Kind {
	case "":
		opts.Kind = KindBuiltin
	case KindBuiltin, KindOpenSSH:
	default:
		return nil, fmt.Errorf("local cloud: machine kind %q is neither %q nor %q", opts.Kind, KindBuiltin, KindOpenSSH)
	}
	if opts.Kind == KindOpenSSH && opts.User != "" {
		if _, err := machine.CheckOpenSSHUser(opts.User); err != nil {
			return nil, fmt.Errorf("local cloud: %w", err)
		}
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if err := loopbackOnly(opts.Listen); err != nil {
		return nil, err
	}
	if opts.SSHPort < 0 || opts.SSHPort > 65535 {
		return nil, fmt.Errorf("local cloud: ssh port %d is out of range", opts.SSHPort)
	}
	if opts.ActionDuration <= 0 {
		opts.ActionDuration = DefaultActionDuration
	}
	if opts.ShutdownDelay <= 0 {
		opts.ShutdownDelay = 4 * opts.ActionDuration
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	for _, sub := range []string{"machines", "images", "volumes"} {
		if err := os.MkdirAll(filepath.Join(opts.DataDir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("local cloud: create data directory: %w", err)
		}
	}
	token, err := randomHex(32)
	if err != nil {
		return nil, fmt.Errorf("local cloud: make api token: %w", err)
	}
	c := &Cloud{
		opts:      opts,
		log:       opts.Logger.With("component", "localcloud"),
		token:     token,
		statePath: filepath.Join(opts.DataDir, "state.json"),
		served:    make(chan struct{}),
		now:       opts.Now,
		actions:   map[int64]*action{},
		machines:  map[int64]machine.Machine{},
		booted:    map[int64]time.Time{},
		timers:    map[int64]*time.Timer{},
		halts:     map[int64]*time.Timer{},
		boots:     map[int64]*pendingBoot{},
	}
	if c.st, err = loadState(c.statePath); err != nil {
		return nil, err
	}
	if err := c.restore(); err != nil {
		c.stopMachines()
		return nil, err
	}
	c.handler = c.routes()

	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		c.stopMachines()
		return nil, fmt.Errorf("local cloud: listen: %w", err)
	}
	c.ln = ln
	if err := c.writeCredentials(); err != nil {
		ln.Close()
		c.stopMachines()
		return nil, err
	}
	c.srv = &http.Server{Handler: c.handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(c.served)
		if err := c.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("api server stopped", "err", err)
		}
	}()
	c.log.Info("local cloud started", "endpoint", c.Endpoint(), "data_dir", opts.DataDir,
		"kind", opts.Kind, "servers", len(c.st.Servers))
	return c, nil
}

// loopbackOnly refuses an API address other hosts could reach.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("local cloud: listen address %q: %w; give host:port, such as 127.0.0.1:8080", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("local cloud: listen address %q is not on loopback: its machines are shells as this OS user, so its API serves this host only; listen on 127.0.0.1", addr)
	}
	return nil
}

// Endpoint is the API's base URL, for hcloud.WithEndpoint.
func (c *Cloud) Endpoint() string { return "http://" + c.ln.Addr().String() + "/v1" }

// Token is the bearer token the API demands; it changes on every Start.
func (c *Cloud) Token() string { return c.token }

// CredentialsFile names the file in DataDir that holds the API's endpoint
// and token as HCLOUD_ENDPOINT and HCLOUD_TOKEN lines.
const CredentialsFile = "api.env"

// writeCredentials writes CredentialsFile for people and tests who look
// inside the local cloud with Hetzner's own tools (hcloud reads these
// variables). The token changes on every Start, so the file is rewritten.
func (c *Cloud) writeCredentials() error {
	credentials := fmt.Sprintf("HCLOUD_ENDPOINT=%s\nHCLOUD_TOKEN=%s\n", c.Endpoint(), c.Token())
	if err := os.WriteFile(filepath.Join(c.opts.DataDir, CredentialsFile), []byte(credentials), 0o600); err != nil {
		return fmt.Errorf("local cloud: write credentials: %w", err)
	}
	return nil
}

// Handler is the API with authentication, for tests that wrap it.
func (c *Cloud) Handler() http.Handler { return c.handler }

// Close stops the API and every machine. State and machine folders stay,
// so a later Start resumes the same project.
func (c *Cloud) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	if err != nil {
		_ = c.srv.Close() // handlers that outlived the grace period
	}
	<-c.served

	c.mu.Lock()
	c.closed = true
	for id, t := range c.timers {
		if t.Stop() {
			c.pending.Done()
		}
		delete(c.timers, id)
	}
	for id := range c.halts {
		c.cancelShutdown(id)
	}
	for id := range c.boots {
		c.cancelBoot(id)
	}
	c.mu.Unlock()
	c.pending.Wait()

	c.stopMachines()
	return err
}

// restore brings the project back after a restart: servers that were up (or
// on their way up) boot again, interrupted stops and deletes finish,
// interrupted snapshots are settled.
func (c *Cloud) restore() error {
	c.restoreImages()
	c.restoreVolumes()
	// Copies of snapshots a crash left half-made.
	if staged, err := filepath.Glob(filepath.Join(c.opts.DataDir, "machines", ".restore-*")); err == nil {
		for _, dir := range staged {
			_ = os.RemoveAll(dir)
		}
	}
	for _, s := range append([]*serverRecord(nil), c.st.Servers...) {
		switch s.Status {
		case "running", "starting", "initializing":
			cfg, err := c.machineConfig(s)
			if err == nil {
				var m machine.Machine
				if m, err = c.startMachine(cfg); err == nil {
					c.setMachine(s.ID, m)
					s.Status = "running"
					continue
				}
			}
			c.log.Error("machine did not boot after restart; it stays off", "server", s.Name, "err", err)
			s.Status = "off"
		case "stopping":
			s.Status = "off"
		case "deleting":
			if err := os.RemoveAll(c.machineDir(s.Name)); err != nil {
				c.log.Error("remove folder of deleted machine", "server", s.Name, "err", err)
			}
			c.st.removeServer(s.ID)
		}
	}
	return c.st.save(c.statePath)
}

func (c *Cloud) stopMachines() {
	c.mu.Lock()
	ms := c.machines
	c.machines = map[int64]machine.Machine{}
	c.booted = map[int64]time.Time{}
	c.mu.Unlock()
	for id, m := range ms {
		if err := m.Close(); err != nil {
			c.log.Warn("stop machine", "server_id", id, "err", err)
		}
	}
}

// setMachine records a server's machine as just booted. Callers hold c.mu.
func (c *Cloud) setMachine(id int64, m machine.Machine) {
	c.machines[id] = m
	c.booted[id] = c.now().Truncate(time.Second)
}

func (c *Cloud) machineDir(name string) string {
	return filepath.Join(c.opts.DataDir, "machines", name)
}

func (c *Cloud) machineConfig(s *serverRecord) (machine.Config, error) {
	doc, err := bootstrap.ParseUserData([]byte(s.UserData))
	if err != nil {
		return machine.Config{}, fmt.Errorf("read user_data of %s: %w", s.Name, err)
	}
	port := c.opts.SSHPort
	if port == 0 {
		port = doc.SSHPort
	}
	// The machine boots with its server's volumes there.
	if err := c.linkVolumes(s); err != nil {
		return machine.Config{}, err
	}
	return machine.Config{
		Addr:   net.JoinHostPort(s.IPv4, strconv.Itoa(port)),
		Doc:    doc,
		Dir:    c.machineDir(s.Name),
		Logger: c.opts.Logger.With("component", "machine", "server", s.Name),
	}, nil
}

func (c *Cloud) startMachine(cfg machine.Config) (machine.Machine, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create machine folder: %w", err)
	}
	start := machine.StartBuiltin
	if c.opts.Kind == KindOpenSSH {
		start = machine.StartOpenSSH
	}
	m, err := start(cfg)
	if err != nil {
		return nil, fmt.Errorf("start machine on %s: %w", cfg.Addr, err)
	}
	return m, nil
}

// persist saves the state; callers hold c.mu.
func (c *Cloud) persist() error {
	if err := c.st.save(c.statePath); err != nil {
		c.log.Error("save state", "err", err)
		return err
	}
	return nil
}

var errClosed = errors.New("the local cloud is shutting down")

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
