// Package gateway is the SSH front door: it authenticates people by their
// public key, answers the gateway's own commands (status, extend, stop,
// destroy, help) and hands every other session to the proxy once the
// person's machine is running.
//
// It builds on wish and charm.land/ssh for the server, but owns the raw
// "session" channel itself: the proxy must see every request exactly as
// the client sent it (see internal/proxy).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"charm.land/ssh"
	"charm.land/wish/v2"
	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
)

// Leases is what the front door needs of the lease manager.
type Leases interface {
	Ensure(ctx context.Context, key gossh.PublicKey, progress func(lease.Step)) (lease.Lease, error)
	Status(fingerprint string) (lease.Lease, error)
	Extend(ctx context.Context, fingerprint string, d time.Duration) (lease.Lease, error)
	Stop(ctx context.Context, fingerprint string) (lease.Lease, error)
	Destroy(ctx context.Context, fingerprint string) (lease.Lease, error)
	// DestroyWithHome deletes the machine, if any, and the home volume.
	DestroyWithHome(ctx context.Context, fingerprint string) (lease.Lease, *lease.Home, error)
	Touch(fingerprint string)

	// For admins, status and the audit log.
	List() ([]lease.Lease, error)
	Hibernate(ctx context.Context, fingerprint string) (lease.Lease, error)
	Cost(l lease.Lease) (amount float64, currency string)
	// The warm pool's machines, and what each has cost, apart from leases.
	Pool() ([]lease.PoolMachine, error)
	PoolCost(p lease.PoolMachine) (amount float64, currency string)
	// People's home volumes, and what each has cost, apart from leases.
	Homes() ([]lease.Person, error)
	HomeCost(h lease.Home) (amount float64, currency string)
	Record(e lease.Event)
	Events(n int) ([]lease.Event, error)

	// Strangers are counted, per source and minute, apart from the audit
	// log (kind lease.RefusedKey or lease.RefusedLimited).
	Refused(kind, source, fingerprint string)
	Refusals(n int) ([]lease.Refusal, error)

	// Revoke deals with the machine of a key that left the allow lists.
	Revoke(ctx context.Context, fingerprint string) error

	// A person's secrets: names and times out, values only in.
	Secrets(fingerprint string) ([]lease.Secret, error)
	SetSecret(ctx context.Context, fingerprint, name string, value []byte) (delivered bool, err error)
	RemoveSecret(ctx context.Context, fingerprint, name string) (delivered bool, err error)
	// A person's notification targets.
	Person(fingerprint string) (lease.Person, error)
	AddNotifyTarget(ctx context.Context, fingerprint, rawURL string) (lease.Person, error)
	RemoveNotifyTarget(ctx context.Context, fingerprint, rawURL string) (lease.Person, error)
}

// Options configure a Gateway.
type Options struct {
	HostKey gossh.Signer
	// Users and Admins are allow lists. When OpenAccess is set (local mode
	// without a users file) any key gets in; config only allows that on
	// loopback.
	Users, Admins *KeyList
	OpenAccess    bool

	Leases Leases
	Clock  lease.Clock

	// Pool holds the connections to machines, with the gateway's client
	// key; the lease manager's Machines share it, so the connection that
	// saw a machine answer carries the session that follows. Shutdown
	// closes it. InstanceUser is the account people land in.
	Pool         *proxy.Pool
	InstanceUser string

	// Guarded says the machines are reachable only through the gateway (a
	// firewall lets nothing else reach their SSH port), so people's status
	// does not show an address they cannot use.
	Guarded bool

	// Invocation is how people reach this gateway, used in help and hints,
	// e.g. "ssh cc.example.com" or "ssh -p 2222 localhost".
	Invocation string

	// PersistentSessions turns a person's interactive shell into the
	// persistent terminal session "main" on their machine, and enables the
	// attach and sessions commands (sessions.go).
	PersistentSessions bool

	HandshakeTimeout time.Duration // default 20s
	MaxAuthTries     int           // default 6
	// MaxStartups bounds the connections that have not authenticated yet;
	// a zero Full or PerSource takes DefaultStartupLimits' values.
	MaxStartups StartupLimits
	// Percent draws the number, 0 to 99, that decides a random early drop;
	// nil draws at random. Tests fix it.
	Percent      func() int
	StartTimeout time.Duration // a session must start a program within this; default 1m
	Limits       Limits        // what one person may hold; zero fields take DefaultLimits
	Logger       *slog.Logger
	// Observer, if not nil, sees connections, sessions, authentications
	// and limits, for the metrics.
	Observer Observer
	// Notify, if not nil, checks and tries people's notification targets;
	// without it the notify command says the gateway sends none.
	Notify Notifications
	// Shared, if not nil, reaches the other gateways on the same store:
	// their session counts, and notices to their sessions (shared.go).
	Shared Shared
}

// Gateway is the SSH front door.
type Gateway struct {
	opts   Options
	log    *slog.Logger
	server *ssh.Server
	pool   *proxy.Pool // connections to machines, shared by a person's connections and the lease manager
	people people      // each person's connections, against Limits.ConnsPerPerson

	startups *startups // connections not yet authenticated
	drops    dropLog
	// serving holds each connection's *connTrace by its remote address
	// while it is served, for ConnectionFailedCallback, which is given
	// only charm.land/ssh's wrapper of the connection.
	serving sync.Map

	mu       sync.Mutex // held to read or change these fields only; lock order in notify.go
	sessions map[*liveSession]struct{}
	conns    map[*clientConn]struct{} // client connections that opened a channel or asked a forward
	listener net.Listener
	// acceptErr is the last accept's error until one succeeds again.
	acceptErr error
	closing   bool
	done      chan struct{} // closed by Shutdown
}

// New builds a Gateway; Serve starts it.
func New(opts Options) (*Gateway, error) {
	if opts.HostKey == nil || opts.Leases == nil || opts.Pool == nil {
		return nil, errors.New("gateway needs a host key, a machine connection pool and a lease manager")
	}
	if opts.Users == nil || opts.Admins == nil {
		return nil, errors.New("gateway needs user and admin lists (they may be empty)")
	}
	if opts.Clock == nil {
		opts.Clock = lease.SystemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Observer == nil {
		opts.Observer = noObserver{}
	}
	if opts.HandshakeTimeout == 0 {
		opts.HandshakeTimeout = 20 * time.Second
	}
	if opts.MaxAuthTries == 0 {
		opts.MaxAuthTries = 6
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = time.Minute
	}
	if opts.Invocation == "" {
		opts.Invocation = "ssh GATEWAY"
	}
	if opts.MaxStartups.Full == 0 {
		d := DefaultStartupLimits
		opts.MaxStartups.Start, opts.MaxStartups.Rate, opts.MaxStartups.Full = d.Start, d.Rate, d.Full
	}
	if opts.MaxStartups.PerSource == 0 {
		opts.MaxStartups.PerSource = DefaultStartupLimits.PerSource
	}
	opts.Limits = opts.Limits.withDefaults()
	g := &Gateway{
		opts:     opts,
		log:      opts.Logger.With("component", "gateway"),
		sessions: map[*liveSession]struct{}{},
		conns:    map[*clientConn]struct{}{},
		pool:     opts.Pool,
		startups: newStartups(opts.MaxStartups, opts.Percent),
		people:   people{conns: map[string]*personConns{}},
		done:     make(chan struct{}),
	}
	opts.Users.OnRemove(g.revokeRemoved)
	opts.Admins.OnRemove(g.revokeRemoved)
	srv, err := wish.NewServer(
		wish.WithPublicKeyAuth(g.authorize),
		func(s *ssh.Server) error {
			s.AddHostKey(opts.HostKey)
			s.HandshakeTimeout = opts.HandshakeTimeout
			s.Version = "cc-gateway"
			// A connection counts as a startup until it authenticates:
			// accept puts its release in the context, the log of a
			// successful authentication calls it. Its trace (id and
			// logger) goes there too, for everything that follows. Every
			// connection comes from accept.
			s.ConnCallback = func(ctx ssh.Context, c net.Conn) net.Conn {
				if sc, ok := c.(*startupConn); ok {
					ctx.SetValue(startupKey{}, sc.release)
					ctx.SetValue(connTraceKey{}, sc.trace)
				}
				return c
			}
			s.ServerConfigCallback = func(ctx ssh.Context) *gossh.ServerConfig {
				return &gossh.ServerConfig{
					MaxAuthTries:              opts.MaxAuthTries,
					PublicKeyAuthAlgorithms:   publicKeyAuthAlgorithms,
					VerifiedPublicKeyCallback: g.admitConnection(ctx),
					AuthLogCallback: func(_ gossh.ConnMetadata, _ string, err error) {
						if err == nil {
							authenticated(ctx)
						}
					},
				}
			}
			// The session and forwarding handlers are ours (see
			// session.go, forward.go); other channel types are refused.
			s.ChannelHandlers = map[string]ssh.ChannelHandler{
				"session":      g.handleSession,
				"direct-tcpip": g.handleDirectTCPIP,
			}
			// Every global request counts against the connection's rate.
			s.RequestHandlers = map[string]ssh.RequestHandler{
				"tcpip-forward":        g.limitGlobalRequests(g.handleTCPIPForward),
				"cancel-tcpip-forward": g.limitGlobalRequests(g.handleCancelTCPIPForward),
				"default":              g.limitGlobalRequests(refuseRequest),
			}
			s.ConnectionFailedCallback = func(c net.Conn, err error) {
				log := g.log
				if trace, ok := g.serving.Load(c.RemoteAddr().String()); ok {
					log = trace.(*connTrace).log
				}
				log.Debug("connection failed", "remote", c.RemoteAddr(), "err", err)
			}
			return nil
		},
	)
	if err != nil {
		return nil, fmt.Errorf("set up ssh server: %w", err)
	}
	g.server = srv
	return g, nil
}

// publicKeyAuthAlgorithms are the signatures a person's key may sign with:
// x/crypto's secure set, which, as OpenSSH 8.8 and later, leaves out SHA-1
// RSA signatures (ssh-rsa); RSA keys sign with rsa-sha2-256 or -512.
var publicKeyAuthAlgorithms = gossh.SupportedAlgorithms().PublicKeyAuths

// authorize admits keys on the users or admins list, or any key in open
// access mode. A refused key is only counted with the other refusals from
// its source that minute, so strangers cannot flush the log;
// admitConnection records a connection once the client has proved it holds
// the key. Only fingerprints are kept: clients send no comments, and keys
// are identities, not secrets. (x/crypto asks once per key and connection,
// so a client offering several keys leaves one refusal per key it tried
// before the one that fit.)
func (g *Gateway) authorize(ctx ssh.Context, key ssh.PublicKey) bool {
	if permit, ok := g.admit(ctx, key); ok {
		setPermit(ctx, permit)
		return true
	}
	g.opts.Observer.Authenticated(AuthRefused)
	fp := gossh.FingerprintSHA256(key)
	traceOf(ctx).log.Info("key refused", "fingerprint", fp, "remote", ctx.RemoteAddr(), "user", ctx.User())
	g.opts.Leases.Refused(lease.RefusedKey, sourceOf(ctx.RemoteAddr()), fp)
	return false
}

// admit decides whether key gets in on ctx's connection and what it may
// do: by the first list whose lines admit it from this address now (users,
// then admins), or with everything permitted on open access. A listed key
// that its lines' from= or expiry-time= keep out is logged with the reason.
func (g *Gateway) admit(ctx ssh.Context, key gossh.PublicKey) (Permit, bool) {
	if g.opts.OpenAccess {
		return permitAll, true
	}
	now := g.opts.Clock.Now()
	permit, err := g.opts.Users.Admit(key, ctx.RemoteAddr(), now)
	if err == nil {
		return permit, true
	}
	permit, adminErr := g.opts.Admins.Admit(key, ctx.RemoteAddr(), now)
	if adminErr == nil {
		return permit, true
	}
	if errors.Is(err, errNotListed) {
		err = adminErr
	}
	if !errors.Is(err, errNotListed) {
		traceOf(ctx).log.Info("listed key kept out", "fingerprint", gossh.FingerprintSHA256(key), "remote", ctx.RemoteAddr(), "reason", err)
	}
	return Permit{}, false
}

// isAdmin reports whether the admin list admits key on a connection from
// remote now; it is asked at each admin command, so an edit of the list
// applies to connections already open.
func (g *Gateway) isAdmin(key gossh.PublicKey, remote net.Addr) bool {
	_, err := g.opts.Admins.Admit(key, remote, g.opts.Clock.Now())
	return err == nil
}

// Serve accepts connections on l until Shutdown.
//
// The accept loop is ours rather than charm.land/ssh's Serve: that one
// registers its listener in a WaitGroup that its Shutdown waits on, and the
// two race when a gateway is stopped right after it starts. And it is where
// the startup limits drop a connection before it costs a handshake.
func (g *Gateway) Serve(l net.Listener) error {
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		return l.Close()
	}
	g.listener = l
	g.mu.Unlock()
	go g.watchLists(g.done)
	defer g.acceptFailed(nil, true)
	var backoff time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			g.acceptFailed(err, false)
			// Out of file descriptors and the like: wait a little, bounded,
			// as net/http does, rather than give up on everyone.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			g.log.Error("accept", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		if backoff > 0 {
			g.acceptFailed(nil, false)
		}
		backoff = 0
		g.accept(conn)
	}
}

// acceptFailed notes the last accept's error, nil once one succeeds again;
// stopped notes that Serve has returned.
func (g *Gateway) acceptFailed(err error, stopped bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.acceptErr = err
	if stopped {
		g.listener = nil
	}
}

// Accepting says whether the SSH listener takes connections: nil while
// Serve runs and its last accept worked, else why not, in the line
// /readyz shows. It reads the accept loop's state rather than dialling the
// gateway: a self-dial would take a startup slot, show up in the
// connection and refusal counts, and be dropped exactly when the startup
// limits are full, which a probe should not turn into "not ready".
func (g *Gateway) Accepting() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closing:
		return errors.New("the SSH listener is shutting down")
	case g.listener == nil:
		return errors.New("the SSH listener is not serving")
	case g.acceptErr != nil:
		return fmt.Errorf("the SSH listener cannot accept connections: %w", g.acceptErr)
	}
	return nil
}

// Shutdown stops accepting connections, tells every live session that the
// gateway is going away, waits up to grace for them to end, then closes
// what is left.
func (g *Gateway) Shutdown(grace time.Duration) {
	g.mu.Lock()
	if !g.closing {
		close(g.done)
	}
	g.closing = true
	if g.listener != nil {
		g.listener.Close()
	}
	sessions := slices.Collect(maps.Keys(g.sessions))
	g.mu.Unlock()
	forEach(sessions, func(s *liveSession) {
		s.notify("the gateway is shutting down; your machine keeps running. Reconnect in a moment.")
	})
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := g.server.Shutdown(ctx); err != nil {
		g.log.Info("closing sessions still open after the grace period", "grace", grace)
	}
	g.server.Close()
	g.pool.Close()
}

// Sessions counts the live proxied sessions of one person, on every
// gateway sharing the store.
func (g *Gateway) Sessions(fingerprint string) int {
	return len(g.sessionsOf(fingerprint)) + g.sessionsElsewhere(fingerprint)
}

func (g *Gateway) track(s *liveSession) (untrack func()) {
	g.mu.Lock()
	g.sessions[s] = struct{}{}
	g.mu.Unlock()
	g.opts.Observer.SessionStarted()
	return func() {
		g.mu.Lock()
		delete(g.sessions, s)
		g.mu.Unlock()
		g.opts.Observer.SessionEnded()
	}
}
