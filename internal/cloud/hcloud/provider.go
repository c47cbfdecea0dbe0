// Package hcloud is cc-gateway's Hetzner Cloud provider: it creates, powers
// and deletes people's machines through hcloud-go, and makes no other
// calls (the machines' SSH is internal/proxy's). It implements
// lease.Provider.
//
// Everything it creates (servers, SSH keys, snapshots) carries the labels
// cc-gateway=<gateway> and cc-gateway-lease=<lease id>, and it never touches
// a server or image without its gateway's label. Its firewall carries the
// gateway label alone (see firewall.go).
//
// Hetzner's transient faults (429, 423 locked, 5xx, failed actions, no
// answer) are retried within bounds; see retry.go for which and how.
package hcloud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"
	"golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// The labels the gateway puts on servers and SSH keys it creates.
const (
	LabelGateway = "cc-gateway"
	LabelLease   = "cc-gateway-lease"
)

// Defaults for Config fields left empty.
const (
	DefaultServerType      = "cx23"
	DefaultLocation        = "fsn1"
	DefaultPollInterval    = 500 * time.Millisecond
	DefaultShutdownTimeout = 30 * time.Second
	// maxActionWait bounds the wait for one action (a snapshot of a large
	// disk is the slowest) when the caller's context has no deadline.
	maxActionWait = time.Hour
)

// Config configures the provider.
type Config struct {
	Token    string // Hetzner API token; never logged
	Endpoint string // API base URL; empty means Hetzner's
	Gateway  string // value of the cc-gateway label; default "default"

	// ServerTypes and Locations are where new servers may go, in order
	// of preference (see pairs); empty means DefaultServerType and
	// DefaultLocation.
	ServerTypes []string
	Locations   []string
	// ImageSelector is a label selector ("cc-gateway=image") naming
	// snapshots; the newest available one is used, and none is an error.
	// Image is an image name or id ("debian-12"), used when ImageSelector
	// is empty. At least one must be set.
	Image         string
	ImageSelector string

	// PollInterval paces the polling of actions and of a server shutting
	// down (growing up to ten times it) and the first retry of a failed
	// request.
	PollInterval time.Duration
	// ShutdownTimeout bounds how long PowerOff waits for a graceful
	// shutdown before it cuts the power.
	ShutdownTimeout time.Duration
	// Retry bounds retries of requests and operations.
	Retry Retry
	// Firewall says who may reach the machines' SSH port.
	Firewall Firewall
	// Clock tells the time for metric windows and rate-limit resets;
	// nil means the system clock.
	Clock  lease.Clock
	Logger *slog.Logger
	// Observer, if set, is told of every request and answer.
	Observer Observer
}

// Provider drives servers on Hetzner Cloud (or on the local cloud's fake
// of its API).
type Provider struct {
	cfg     Config
	client  *hc.Client
	backoff hc.BackoffFunc // pauses between retries
	log     *slog.Logger
	fw      firewallState
	// vcpus caches each server's vCPU count (server id → int), which
	// CPUUsage divides by: a server's type never changes under the
	// gateway. Delete forgets a server's entry.
	vcpus sync.Map
}

var _ lease.Provider = (*Provider)(nil)

// labelValuePattern is Hetzner's rule for label values.
var labelValuePattern = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?)?$`)

// New checks cfg and builds a provider. It makes no API call.
func New(cfg Config) (*Provider, error) {
	if cfg.Token == "" {
		return nil, errors.New("no Hetzner API token: set HCLOUD_TOKEN")
	}
	for _, b := range []byte(cfg.Token) {
		if b <= ' ' || b >= 0x7f {
			return nil, errors.New("the Hetzner API token contains spaces or control characters: copy HCLOUD_TOKEN again")
		}
	}
	if cfg.Gateway == "" {
		cfg.Gateway = "default"
	}
	if !labelValuePattern.MatchString(cfg.Gateway) {
		return nil, fmt.Errorf("gateway name %q cannot be a Hetzner label value: use up to 63 letters, digits, '-', '_' or '.'", cfg.Gateway)
	}
	if len(cfg.ServerTypes) == 0 {
		cfg.ServerTypes = []string{DefaultServerType}
	}
	if len(cfg.Locations) == 0 {
		cfg.Locations = []string{DefaultLocation}
	}
	if cfg.Image == "" && cfg.ImageSelector == "" {
		return nil, errors.New("no machine image: set an image name or id, or a label selector for the gateway's snapshots")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Firewall.SSHPort == 0 {
		cfg.Firewall.SSHPort = 22
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = lease.SystemClock{}
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	cfg.Retry = cfg.Retry.withDefaults()
	log := cfg.Logger.With("component", "hcloud")
	backoff := hc.ExponentialBackoffWithOpts(hc.ExponentialBackoffOpts{
		Base: 2 * cfg.PollInterval, Multiplier: 2, Cap: 30 * time.Second, Jitter: true,
	})
	transport := &retryTransport{next: http.DefaultTransport, retry: cfg.Retry, backoff: backoff, clock: cfg.Clock, observe: cfg.Observer, log: log}
	opts := []hc.ClientOption{
		hc.WithToken(cfg.Token),
		hc.WithApplication("cc-gateway", ""),
		// No client timeout: it would cover all retries of a request;
		// the transport bounds each attempt and the whole instead.
		hc.WithHTTPClient(&http.Client{Transport: transport}),
		hc.WithPollOpts(hc.PollOpts{BackoffFunc: hc.ExponentialBackoffWithOpts(hc.ExponentialBackoffOpts{
			Base: cfg.PollInterval, Multiplier: 1.5, Cap: 10 * cfg.PollInterval,
		})}),
		// The transport retries; see retry.go for why not hcloud-go.
		hc.WithRetryOpts(hc.RetryOpts{MaxRetries: 0}),
	}
	if cfg.Endpoint != "" {
		opts = append(opts, hc.WithEndpoint(strings.TrimSuffix(cfg.Endpoint, "/")))
	}
	return &Provider{
		cfg:     cfg,
		client:  hc.NewClient(opts...),
		backoff: backoff,
		log:     log,
	}, nil
}

// Create makes the server spec describes and waits until it runs; with
// spec.ImageID it boots from that snapshot of the lease. It is safe to
// repeat after a crash: a server that already carries spec's name (or lease
// label) is resumed and returned instead of a second one.
func (p *Provider) Create(ctx context.Context, spec lease.CreateSpec) (lease.Server, error) {
	if spec.Name == "" || !labelValuePattern.MatchString(spec.LeaseID) || spec.LeaseID == "" {
		return lease.Server{}, fmt.Errorf("create server: name %q or lease id %q is not usable", spec.Name, spec.LeaseID)
	}
	return retryOp(ctx, p, "create server", func() (lease.Server, error) { return p.create(ctx, spec) })
}

func (p *Provider) create(ctx context.Context, spec lease.CreateSpec) (lease.Server, error) {
	existing, err := p.findExisting(ctx, spec)
	if err != nil {
		return lease.Server{}, err
	}
	if existing != nil {
		return p.adopt(ctx, existing, spec)
	}

	key, err := p.ensureSSHKey(ctx, spec)
	if err != nil {
		return lease.Server{}, err
	}
	image, err := p.bootImage(ctx, spec)
	if err != nil {
		return lease.Server{}, err
	}
	firewalls, err := p.createFirewalls(ctx)
	if err != nil {
		return lease.Server{}, err
	}
	start := true
	opts := hc.ServerCreateOpts{
		Name:             spec.Name,
		Image:            image,
		SSHKeys:          []*hc.SSHKey{key},
		UserData:         spec.UserData,
		StartAfterCreate: &start,
		Labels:           p.serverLabels(spec),
		Firewalls:        firewalls,
	}
	// A home volume goes in the create request, so the machine boots with
	// it, and binds the server to its location.
	location := ""
	if spec.HomeVolume != 0 {
		home, err := p.ownedIdleVolume(ctx, spec.HomeVolume)
		if err != nil {
			return lease.Server{}, err
		}
		opts.Volumes, opts.Automount = []*hc.Volume{home}, hc.Ptr(false)
		location = locationName(home.Location)
	}
	// createOnPairs sets the server type and location.
	res, err := p.createOnPairs(ctx, spec, location, opts)
	if hc.IsError(err, hc.ErrorCodeUniquenessError) {
		// Someone (a previous attempt whose answer we lost) made it already.
		if existing, ferr := p.findExisting(ctx, spec); ferr == nil && existing != nil {
			return p.adopt(ctx, existing, spec)
		}
	}
	if err != nil {
		return lease.Server{}, err
	}
	p.log.Info("server created", "server", spec.Name, "id", res.Server.ID, "lease", spec.LeaseID)
	if err := p.wait(ctx, "create server", append([]*hc.Action{res.Action}, res.NextActions...)...); err != nil {
		return lease.Server{}, err
	}
	return p.Get(ctx, res.Server.ID)
}

// findExisting looks for a server from an earlier attempt at spec.
func (p *Provider) findExisting(ctx context.Context, spec lease.CreateSpec) (*hc.Server, error) {
	srv, _, err := p.client.Server.GetByName(ctx, spec.Name)
	if err != nil {
		return nil, explain("look for an existing server", err)
	}
	if srv != nil {
		return srv, nil
	}
	list, err := p.client.Server.AllWithOpts(ctx, hc.ServerListOpts{ListOpts: hc.ListOpts{
		LabelSelector: p.selector(spec.LeaseID),
	}})
	if err != nil {
		return nil, explain("look for an existing server", err)
	}
	if len(list) > 0 {
		return list[0], nil
	}
	return nil, nil
}

// adopt resumes a server found by findExisting, refusing one that is not
// this gateway's or belongs to another lease.
func (p *Provider) adopt(ctx context.Context, srv *hc.Server, spec lease.CreateSpec) (lease.Server, error) {
	if srv.Labels[LabelGateway] != p.cfg.Gateway {
		return lease.Server{}, fmt.Errorf("create server: a server named %s already exists but is not labelled %s=%s; rename or delete it, the gateway will not take it over",
			srv.Name, LabelGateway, p.cfg.Gateway)
	}
	if owner := srv.Labels[LabelLease]; owner != spec.LeaseID {
		return lease.Server{}, fmt.Errorf("create server: server %s belongs to lease %q, not %q; delete it with the admin commands", srv.Name, owner, spec.LeaseID)
	}
	p.log.Info("server exists already, resuming it", "server", srv.Name, "id", srv.ID, "status", srv.Status)
	if err := p.powerOn(ctx, srv.ID); err != nil {
		return lease.Server{}, err
	}
	return p.Get(ctx, srv.ID)
}

// ensureSSHKey registers the person's key, so Hetzner does not mail a root
// password, or finds it if the project has it already.
func (p *Provider) ensureSSHKey(ctx context.Context, spec lease.CreateSpec) (*hc.SSHKey, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(spec.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("register ssh key: the person's public key is not valid: %w", err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	name := "cc-" + spec.LeaseID
	for attempt := 0; attempt < 2; attempt++ {
		key, _, err := p.client.SSHKey.Create(ctx, hc.SSHKeyCreateOpts{Name: name, PublicKey: line, Labels: p.labels(spec.LeaseID)})
		if err == nil {
			p.log.Info("ssh key registered", "key", name, "id", key.ID)
			return key, nil
		}
		if !hc.IsError(err, hc.ErrorCodeUniquenessError) {
			return nil, explain("register ssh key", err)
		}
		// Hetzner holds each key once per project; use the one it has.
		key, _, err = p.client.SSHKey.GetByFingerprint(ctx, ssh.FingerprintLegacyMD5(pub))
		if err != nil {
			return nil, explain("look up ssh key", err)
		}
		if key != nil {
			return key, nil
		}
		// The name is taken by a different key. If it is this lease's own
		// leftover, replace it; anything else is not ours to touch.
		key, _, err = p.client.SSHKey.GetByName(ctx, name)
		if err != nil {
			return nil, explain("look up ssh key", err)
		}
		if key == nil || key.Labels[LabelGateway] != p.cfg.Gateway || key.Labels[LabelLease] != spec.LeaseID {
			return nil, fmt.Errorf("register ssh key: the project has an SSH key named %s that the gateway did not make; rename or delete it", name)
		}
		if _, err := p.client.SSHKey.Delete(ctx, key); err != nil {
			return nil, explain("replace stale ssh key", err)
		}
	}
	return nil, fmt.Errorf("register ssh key: %s keeps clashing with another key in the project", name)
}

// bootImage picks what a new server boots from: the lease's snapshot when
// spec names one, else the configured image.
func (p *Provider) bootImage(ctx context.Context, spec lease.CreateSpec) (*hc.Image, error) {
	if spec.ImageID == 0 {
		return p.image(ctx)
	}
	im, _, err := p.client.Image.GetByID(ctx, spec.ImageID)
	if err != nil {
		return nil, explain(fmt.Sprintf("find snapshot %d", spec.ImageID), err)
	}
	if im == nil {
		return nil, fmt.Errorf("create server from snapshot %d: %w", spec.ImageID, lease.ErrImageNotFound)
	}
	// A snapshot holds a person's files: boot it only for its own lease.
	if im.Labels[LabelGateway] != p.cfg.Gateway || im.Labels[LabelLease] != spec.LeaseID {
		return nil, fmt.Errorf("create server: image %d is not a snapshot of lease %s (labels %v); the gateway will not boot it",
			spec.ImageID, spec.LeaseID, im.Labels)
	}
	if im.Status != hc.ImageStatusAvailable {
		return nil, fmt.Errorf("create server: snapshot %d is %s, not available yet; try again once it is", spec.ImageID, im.Status)
	}
	return im, nil // its disk size rules out smaller server types
}

// image picks what servers boot from: the newest available snapshot
// matching ImageSelector, or Image by name or id when there is no selector.
func (p *Provider) image(ctx context.Context) (*hc.Image, error) {
	if p.cfg.ImageSelector != "" {
		list, err := p.snapshots(ctx, nil)
		if err != nil {
			return nil, explain("find machine image", err)
		}
		if len(list) == 0 {
			// No fallback to Image: a stock image ignores the bootstrap
			// document, so the machine would bill and never present the
			// pinned host key.
			return nil, errors.New("find machine image: " + noSnapshot(p.cfg.ImageSelector))
		}
		return newestImage(list), nil
	}
	if id, err := strconv.ParseInt(p.cfg.Image, 10, 64); err == nil {
		return &hc.Image{ID: id}, nil
	}
	return &hc.Image{Name: p.cfg.Image}, nil
}

// Get returns the server, or an error wrapping lease.ErrServerNotFound.
func (p *Provider) Get(ctx context.Context, id int64) (lease.Server, error) {
	srv, err := p.get(ctx, id)
	if err != nil {
		return lease.Server{}, err
	}
	return toServer(srv), nil
}

func (p *Provider) get(ctx context.Context, id int64) (*hc.Server, error) {
	srv, _, err := p.client.Server.GetByID(ctx, id)
	if err != nil {
		return nil, explain(fmt.Sprintf("get server %d", id), err)
	}
	if srv == nil {
		return nil, fmt.Errorf("get server %d: %w", id, lease.ErrServerNotFound)
	}
	return srv, nil
}

// List returns the servers carrying this gateway's label.
func (p *Provider) List(ctx context.Context) ([]lease.Server, error) {
	list, err := p.client.Server.AllWithOpts(ctx, hc.ServerListOpts{ListOpts: hc.ListOpts{
		LabelSelector: LabelGateway + "=" + p.cfg.Gateway,
	}})
	if err != nil {
		return nil, explain("list servers", err)
	}
	out := make([]lease.Server, 0, len(list))
	for _, s := range list {
		out = append(out, toServer(s))
	}
	return out, nil
}

// PowerOn starts the server and waits until Hetzner reports it running.
func (p *Provider) PowerOn(ctx context.Context, id int64) error {
	return retryOpErr(ctx, p, "power on", func() error { return p.powerOn(ctx, id) })
}

func (p *Provider) powerOn(ctx context.Context, id int64) error {
	srv, err := p.ownedIdle(ctx, id)
	if err != nil {
		return err
	}
	if srv.Status == hc.ServerStatusRunning {
		return nil
	}
	a, _, err := p.client.Server.Poweron(ctx, srv)
	if err != nil {
		return serverErr(fmt.Sprintf("power on server %s", srv.Name), err)
	}
	return p.wait(ctx, "power on server "+srv.Name, a)
}

// PowerOff asks the server to shut down, waits up to ShutdownTimeout for
// it, then cuts the power if it is still on.
func (p *Provider) PowerOff(ctx context.Context, id int64) error {
	return retryOpErr(ctx, p, "power off", func() error { return p.powerOff(ctx, id) })
}

func (p *Provider) powerOff(ctx context.Context, id int64) error {
	srv, err := p.ownedIdle(ctx, id)
	if err != nil {
		return err
	}
	if srv.Status == hc.ServerStatusOff {
		return nil
	}
	off, err := p.shutdown(ctx, srv)
	switch {
	case off:
		return nil
	case ctx.Err() != nil:
		return err
	case err != nil:
		p.log.Warn("graceful shutdown failed, cutting power", "server", srv.Name, "err", err)
	default:
		p.log.Warn("server did not shut down in time, cutting power", "server", srv.Name, "timeout", p.cfg.ShutdownTimeout)
	}
	a, _, err := p.client.Server.Poweroff(ctx, srv)
	if err != nil {
		return serverErr(fmt.Sprintf("power off server %s", srv.Name), err)
	}
	return p.wait(ctx, "power off server "+srv.Name, a)
}

// Delete deletes the server, then the SSH key registered for its lease. A
// server that is already gone is lease.ErrServerNotFound.
func (p *Provider) Delete(ctx context.Context, id int64) error {
	srv, err := retryOp(ctx, p, "delete server", func() (*hc.Server, error) {
		srv, err := p.owned(ctx, id)
		if err != nil {
			return nil, err
		}
		res, _, err := p.client.Server.DeleteWithResult(ctx, srv)
		if err != nil {
			return nil, serverErr(fmt.Sprintf("delete server %s", srv.Name), err)
		}
		return srv, p.wait(ctx, "delete server "+srv.Name, res.Action)
	})
	if err != nil {
		return err
	}
	p.log.Info("server deleted", "server", srv.Name, "id", id)
	p.vcpus.Delete(id)
	// The key costs nothing and a later create of the lease replaces it,
	// so failing to delete it does not fail the delete.
	if leaseID := srv.Labels[LabelLease]; leaseID != "" {
		keys, err := p.client.SSHKey.AllWithOpts(ctx, hc.SSHKeyListOpts{ListOpts: hc.ListOpts{LabelSelector: p.selector(leaseID)}})
		if err != nil {
			p.log.Warn("could not list the deleted server's ssh keys; they stay", "server", srv.Name, "err", explain("list ssh keys", err))
		}
		for _, k := range keys {
			if _, err := p.client.SSHKey.Delete(ctx, k); err != nil && !hc.IsError(err, hc.ErrorCodeNotFound) {
				p.log.Warn("could not delete the deleted server's ssh key; it stays", "key", k.Name, "err", explain("delete ssh key", err))
			}
		}
	}
	return nil
}

// owned fetches a server and refuses to act on one without this gateway's
// label: nothing unlabelled is ever touched.
func (p *Provider) owned(ctx context.Context, id int64) (*hc.Server, error) {
	srv, err := p.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if srv.Labels[LabelGateway] != p.cfg.Gateway {
		return nil, fmt.Errorf("server %s (%d) is not labelled %s=%s; the gateway leaves it alone", srv.Name, id, LabelGateway, p.cfg.Gateway)
	}
	return srv, nil
}

// ownedIdle is owned for a server about to get an action: it waits until
// no action runs on the server, then fetches it again, as those actions
// may have changed its status.
func (p *Provider) ownedIdle(ctx context.Context, id int64) (*hc.Server, error) {
	if _, err := p.owned(ctx, id); err != nil {
		return nil, err
	}
	if err := p.waitIdle(ctx, id); err != nil {
		return nil, err
	}
	return p.get(ctx, id)
}

// wait waits for actions to finish; a failed action is an error naming it.
func (p *Provider) wait(ctx context.Context, op string, actions ...*hc.Action) error {
	wctx, cancel := context.WithTimeout(ctx, maxActionWait)
	defer cancel()
	err := p.client.Action.WaitForFunc(wctx, func(a *hc.Action) error {
		if a.Status == hc.ActionStatusError {
			return a.Error()
		}
		return nil
	}, actions...)
	if err != nil && wctx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("%s: Hetzner did not finish the action within %s; look at the server in the Hetzner console", op, maxActionWait)
	}
	return explain(op, err)
}

// waitIdle waits until no action runs on the server, whatever their
// outcome, so the next action is not refused as "locked".
func (p *Provider) waitIdle(ctx context.Context, id int64) error {
	return p.waitRunning(ctx, fmt.Sprintf("server %d", id), func(opts hc.ActionListOpts) ([]*hc.Action, error) {
		return p.client.Server.Action.AllFor(ctx, &hc.Server{ID: id}, opts)
	})
}

// waitRunning waits for the running actions that list returns (those of
// resource, "server 7"), whatever their outcome.
func (p *Provider) waitRunning(ctx context.Context, resource string, list func(hc.ActionListOpts) ([]*hc.Action, error)) error {
	running, err := list(hc.ActionListOpts{Status: []hc.ActionStatus{hc.ActionStatusRunning}})
	if err != nil {
		return explain("list actions of "+resource, err)
	}
	wctx, cancel := context.WithTimeout(ctx, maxActionWait)
	defer cancel()
	return explain("wait for running actions of "+resource, p.client.Action.WaitForFunc(wctx, nil, running...))
}

func (p *Provider) labels(leaseID string) map[string]string {
	return map[string]string{LabelGateway: p.cfg.Gateway, LabelLease: leaseID}
}

func (p *Provider) selector(leaseID string) string {
	return LabelGateway + "=" + p.cfg.Gateway + "," + LabelLease + "=" + leaseID
}

func toServer(s *hc.Server) lease.Server {
	out := lease.Server{
		ID:      s.ID,
		Name:    s.Name,
		Status:  string(s.Status),
		Created: s.Created,
		Labels:  s.Labels,
	}
	if ip := s.PublicNet.IPv4.IP; ip != nil && !ip.IsUnspecified() {
		out.IPv4 = ip.String()
	}
	if s.ServerType != nil {
		out.ServerType = s.ServerType.Name
	}
	if s.Location != nil {
		out.Location = s.Location.Name
	}
	return out
}
