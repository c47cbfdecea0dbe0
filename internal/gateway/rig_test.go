package gateway

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/proxy"
	"github.com/cc-gateway/cc-gateway/internal/store/bolt"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// rigSpec says how the scenario tests' gateway differs: the cloud it makes
// machines on and what the test wants to steer or read.
type rigSpec struct {
	provider lease.Provider
	sshPort  int    // the machines' SSH port
	user     string // the instance user; "claude" if empty
	policy   lease.Policy
	clock    lease.Clock    // nil for the system clock
	idle     time.Duration  // the pool's idle timeout; 0 for the default
	logger   *slog.Logger   // the log of the gateway, its pool and lease manager; nil for quiet
	observer Observer       // the gateway's; nil for none
	proxyObs proxy.Observer // the pool's; nil for none
}

// plainPolicy caps leases and nothing more: no idle stops, no warnings.
var plainPolicy = lease.Policy{DefaultTTL: 4 * time.Hour, MaxTTL: 24 * time.Hour, MaxLifetime: 168 * time.Hour}

// rig is a gateway with open access serving on loopback until the test
// ends, its leases on a fresh bbolt file.
type rig struct {
	g       *Gateway
	leases  *lease.Manager
	store   *bolt.Store
	hostKey gossh.PublicKey
	addr    string
}

func startRig(t *testing.T, s rigSpec) *rig {
	t.Helper()
	if s.user == "" {
		s.user = "claude"
	}
	if s.logger == nil {
		s.logger = testkit.Quiet
	}
	r := &rig{}
	var err error
	if r.store, err = bolt.Open(filepath.Join(t.TempDir(), "gateway.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.store.Close() })
	upstream := testkit.NewKey(t).Signer
	pool := proxy.NewPool(proxy.PoolOptions{Key: upstream, IdleTimeout: s.idle, Logger: s.logger, Observer: s.proxyObs})
	r.leases = lease.NewManager(lease.Config{
		Store: r.store, Provider: s.provider, Machines: proxy.NewMachines(pool, s.user),
		Clock: s.clock, Policy: s.policy, Logger: s.logger,
		Machine: lease.MachineSpec{User: s.user, SSHPort: s.sshPort, GatewayKey: upstream.PublicKey(), ServerTypes: []string{"cx23"}, Locations: []string{"fsn1"}},
	})
	users, _ := LoadKeyList("", testkit.Quiet)
	hostKey := testkit.NewKey(t).Signer
	r.hostKey = hostKey.PublicKey()
	r.g, err = New(Options{
		HostKey: hostKey, Pool: pool, InstanceUser: s.user, Users: users, Admins: users,
		OpenAccess: true, Leases: r.leases, Clock: s.clock, Logger: s.logger, Invocation: "ssh gw",
		Observer: s.observer,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.addr = serve(t, r.g)
	return r
}

// dial connects person to the gateway, pinning its host key; the
// connection closes when the test ends.
func (r *rig) dial(t *testing.T, person gossh.Signer) *gossh.Client {
	t.Helper()
	c, err := gossh.Dial("tcp", r.addr, &gossh.ClientConfig{
		User: "person", Auth: []gossh.AuthMethod{gossh.PublicKeys(person)},
		HostKeyCallback: gossh.FixedHostKey(r.hostKey), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial gateway: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
