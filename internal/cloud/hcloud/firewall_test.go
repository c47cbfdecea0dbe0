package hcloud_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/preflight"
	"github.com/cc-gateway/cc-gateway/internal/store/bolt"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

var gatewayAddr = netip.MustParsePrefix("203.0.113.7/32")

// guarded makes the provider keep a firewall letting only gatewayAddr in.
func guarded(e *testEnv) func(*hcloud.Config) {
	return func(c *hcloud.Config) {
		c.Firewall = hcloud.Firewall{Sources: []netip.Prefix{gatewayAddr}, SSHPort: e.port}
	}
}

// theFirewall is the one firewall labelled as the test gateway's.
func (e *testEnv) theFirewall(t *testing.T, ctx context.Context) *hc.Firewall {
	t.Helper()
	list, err := e.raw.Firewall.AllWithOpts(ctx, hc.FirewallListOpts{ListOpts: hc.ListOpts{LabelSelector: hcloud.LabelGateway + "=test"}})
	if err != nil || len(list) != 1 {
		t.Fatalf("the gateway's firewalls: %v %+v, want one", err, list)
	}
	return list[0]
}

// guardedBy lists the firewalls the server's answer says are applied.
func (e *testEnv) guardedBy(t *testing.T, ctx context.Context, id int64) []int64 {
	t.Helper()
	s, _, err := e.raw.Server.GetByID(ctx, id)
	if err != nil || s == nil {
		t.Fatalf("get server %d: %v", id, err)
	}
	var ids []int64
	for _, f := range s.PublicNet.Firewalls {
		ids = append(ids, f.Firewall.ID)
	}
	return ids
}

// wantRules fails t unless fw lets SSH in on port only from gatewayAddr,
// ICMP from anywhere, and has no outbound rule (all outbound allowed).
func wantRules(t *testing.T, fw *hc.Firewall, port int) {
	t.Helper()
	var got []string
	for _, r := range fw.Rules {
		p := ""
		if r.Port != nil {
			p = *r.Port
		}
		var ips []string
		for _, n := range append(r.SourceIPs, r.DestinationIPs...) {
			ips = append(ips, n.String())
		}
		got = append(got, string(r.Direction)+" "+string(r.Protocol)+" "+p+" "+strings.Join(ips, ","))
	}
	slices.Sort(got)
	want := []string{"in icmp  0.0.0.0/0,::/0", "in tcp " + strconv.Itoa(port) + " 203.0.113.7/32"}
	if !slices.Equal(got, want) {
		t.Errorf("firewall rules %q, want %q", got, want)
	}
}

// firewallCheck is preflight's firewall check among checks.
func firewallCheck(t *testing.T, checks []preflight.Check) preflight.Check {
	t.Helper()
	for _, c := range checks {
		if c.Name == "firewall" {
			return c
		}
	}
	t.Fatalf("no firewall check among %+v", checks)
	return preflight.Check{}
}

// TestCreateAppliesTheFirewall: the first create makes the gateway's
// firewall, and every server is created behind it.
func TestCreateAppliesTheFirewall(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 60*time.Second)
	p := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), guarded(e))
	a, err := p.Create(ctx, newPerson(t, "fwa", e.port).spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Create(ctx, newPerson(t, "fwb", e.port).spec)
	if err != nil {
		t.Fatal(err)
	}
	fw := e.theFirewall(t, ctx)
	if fw.Name != "cc-gateway-test" {
		t.Errorf("firewall named %q", fw.Name)
	}
	wantRules(t, fw, e.port)
	for _, srv := range []int64{a.ID, b.ID} {
		if got := e.guardedBy(t, ctx, srv); !slices.Equal(got, []int64{fw.ID}) {
			t.Errorf("server %d is guarded by %v, want the gateway's firewall %d", srv, got, fw.ID)
		}
	}
}

// TestGuardMachinesRestoresTheFirewall: rules edited by hand, a server
// taken out, the firewall deleted: GuardMachines puts each back and says
// so, and leaves another gateway's firewall alone.
func TestGuardMachinesRestoresTheFirewall(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 60*time.Second)
	p := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), guarded(e))
	srv, err := p.Create(ctx, newPerson(t, "fw1", e.port).spec)
	if err != nil {
		t.Fatal(err)
	}
	anyone := "0.0.0.0/0"
	_, world, _ := net.ParseCIDR(anyone)
	port := "22"
	open := []hc.FirewallRule{{Direction: hc.FirewallRuleDirectionIn, Protocol: hc.FirewallRuleProtocolTCP, Port: &port, SourceIPs: []net.IPNet{*world}}}
	theirs, _, err := e.raw.Firewall.Create(ctx, hc.FirewallCreateOpts{Name: "cc-gateway-other", Labels: map[string]string{hcloud.LabelGateway: "other"}, Rules: open})
	if err != nil {
		t.Fatal(err)
	}

	if fixed, err := p.GuardMachines(ctx); err != nil || len(fixed) != 0 {
		t.Fatalf("guard with nothing to fix: %q %v", fixed, err)
	}

	// Rules edited.
	fw := e.theFirewall(t, ctx)
	acts, _, err := e.raw.Firewall.SetRules(ctx, fw, hc.FirewallSetRulesOpts{Rules: open})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.raw.Action.WaitFor(ctx, acts...); err != nil {
		t.Fatal(err)
	}
	fixed, err := p.GuardMachines(ctx)
	if err != nil || len(fixed) != 1 || !strings.Contains(fixed[0], "corrected the rules") {
		t.Errorf("guard after a rules edit: %q %v", fixed, err)
	}
	wantRules(t, e.theFirewall(t, ctx), e.port)

	// Detached from the server.
	acts, _, err = e.raw.Firewall.RemoveResources(ctx, fw, []hc.FirewallResource{{Type: hc.FirewallResourceTypeServer, Server: &hc.FirewallResourceServer{ID: srv.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.raw.Action.WaitFor(ctx, acts...); err != nil {
		t.Fatal(err)
	}
	fixed, err = p.GuardMachines(ctx)
	if err != nil || len(fixed) != 1 || !strings.Contains(fixed[0], "applied firewall cc-gateway-test to server") {
		t.Errorf("guard after a detach: %q %v", fixed, err)
	}
	if got := e.guardedBy(t, ctx, srv.ID); !slices.Equal(got, []int64{fw.ID}) {
		t.Errorf("after the guard the server is guarded by %v, want %d", got, fw.ID)
	}

	// Detached and deleted.
	acts, _, err = e.raw.Firewall.RemoveResources(ctx, fw, []hc.FirewallResource{{Type: hc.FirewallResourceTypeServer, Server: &hc.FirewallResourceServer{ID: srv.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.raw.Action.WaitFor(ctx, acts...); err != nil {
		t.Fatal(err)
	}
	if _, err := e.raw.Firewall.Delete(ctx, fw); err != nil {
		t.Fatal(err)
	}
	fixed, err = p.GuardMachines(ctx)
	if err != nil || len(fixed) != 2 || !strings.Contains(fixed[0], "created firewall") {
		t.Errorf("guard after a delete: %q %v", fixed, err)
	}
	again := e.theFirewall(t, ctx)
	wantRules(t, again, e.port)
	if got := e.guardedBy(t, ctx, srv.ID); !slices.Equal(got, []int64{again.ID}) {
		t.Errorf("after the guard the server is guarded by %v, want %d", got, again.ID)
	}

	// The other gateway's firewall kept its rules and guards nothing.
	other, _, err := e.raw.Firewall.GetByID(ctx, theirs.Firewall.ID)
	if err != nil || other == nil || len(other.Rules) != 1 || other.Rules[0].SourceIPs[0].String() != anyone || len(other.AppliedTo) != 0 {
		t.Errorf("another gateway's firewall was touched: %+v %v", other, err)
	}
}

// TestFirewallNameTakenByAStranger: a firewall with the gateway's name but
// not its label is not taken over: create and preflight say what to do.
func TestFirewallNameTakenByAStranger(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 60*time.Second)
	if _, _, err := e.raw.Firewall.Create(ctx, hc.FirewallCreateOpts{Name: "cc-gateway-test"}); err != nil {
		t.Fatal(err)
	}
	p := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), guarded(e))
	_, err := p.Create(ctx, newPerson(t, "fws", e.port).spec)
	if err == nil || !strings.Contains(err.Error(), "firewall named cc-gateway-test without the label cc-gateway=test; rename or delete it") {
		t.Errorf("create with the firewall's name taken: %v", err)
	}
	if c := firewallCheck(t, p.Preflight(ctx)); c.OK() || !strings.Contains(c.Problem, "rename or delete it") {
		t.Errorf("preflight with the firewall's name taken: %+v", c)
	}
}

// metadataServer is Hetzner's metadata service on loopback, answering
// the values given (path → body) and 404 to the rest.
func metadataServer(t *testing.T, values map[string]string) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := values[strings.TrimPrefix(r.URL.Path, "/hetzner/v1/metadata")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(v))
	}))
	t.Cleanup(ts.Close)
	return ts.URL + "/hetzner/v1/metadata"
}

// networkConfig is the shape of the cloud-init network configuration
// Hetzner's metadata service serves.
const networkConfig = `config:
- mac_address: 96:00:00:aa:bb:cc
  name: eth0
  subnets:
  - ipv4: true
    type: dhcp
  - address: 2a01:4f8:c012:abcd::1/64
    gateway: fe80::1
    ipv6: true
    type: static
  type: physical
version: 1
`

func TestOwnAddresses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	both := metadataServer(t, map[string]string{"/public-ipv4": "198.51.100.4", "/network-config": networkConfig})
	got, err := hcloud.OwnAddresses(ctx, both)
	want := []netip.Prefix{netip.MustParsePrefix("198.51.100.4/32"), netip.MustParsePrefix("2a01:4f8:c012:abcd::/64")}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("OwnAddresses = %v, %v; want %v", got, err, want)
	}
	v4only := metadataServer(t, map[string]string{"/public-ipv4": "198.51.100.4\n"})
	if got, err := hcloud.OwnAddresses(ctx, v4only); err != nil || !slices.Equal(got, want[:1]) {
		t.Errorf("OwnAddresses without IPv6 = %v, %v", got, err)
	}
	if _, err := hcloud.OwnAddresses(ctx, metadataServer(t, nil)); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("OwnAddresses from a server without the value: %v", err)
	}
	if _, err := hcloud.OwnAddresses(ctx, metadataServer(t, map[string]string{"/public-ipv4": "<html>"})); err == nil || !strings.Contains(err.Error(), "not an IPv4 address") {
		t.Errorf("OwnAddresses from something else: %v", err)
	}
}

// TestFirewallSourcesFromMetadata: without --firewall-sources the
// firewall lets in the addresses the metadata service reports; without a
// metadata service the gateway cannot serve and preflight says what to set.
func TestFirewallSourcesFromMetadata(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 60*time.Second)
	md := metadataServer(t, map[string]string{"/public-ipv4": "203.0.113.7"})
	p := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), func(c *hcloud.Config) {
		c.Firewall = hcloud.Firewall{Metadata: md, SSHPort: e.port}
	})
	if c := firewallCheck(t, p.Preflight(ctx)); !c.OK() || !strings.Contains(c.Result, "will be created") || !strings.Contains(c.Result, "203.0.113.7/32") {
		t.Errorf("preflight before the firewall exists: %+v", c)
	}
	if _, err := p.Create(ctx, newPerson(t, "fwm", e.port).spec); err != nil {
		t.Fatal(err)
	}
	wantRules(t, e.theFirewall(t, ctx), e.port)
	if c := firewallCheck(t, p.Preflight(ctx)); !c.OK() || !strings.Contains(c.Result, "cc-gateway-test (") {
		t.Errorf("preflight with the firewall made: %+v", c)
	}

	// Nothing answers on this loopback port.
	nowhere := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), func(c *hcloud.Config) {
		c.Firewall = hcloud.Firewall{Metadata: "http://127.0.0.1:1/hetzner/v1/metadata"}
	})
	if c := firewallCheck(t, nowhere.Preflight(ctx)); c.OK() || !strings.Contains(c.Problem, "set --firewall-sources") {
		t.Errorf("preflight off Hetzner without sources: %+v", c)
	}
	if _, err := nowhere.Create(ctx, newPerson(t, "fwn", e.port).spec); err == nil || !strings.Contains(err.Error(), "set --firewall-sources") {
		t.Errorf("create off Hetzner without sources: %v", err)
	}

	off := newProvider(t, e.cloud.Endpoint(), e.cloud.Token())
	if c := firewallCheck(t, off.Preflight(ctx)); !c.OK() || !strings.Contains(c.Result, "off") {
		t.Errorf("preflight with the firewall off: %+v", c)
	}
}

// TestFirewallMadeMeanwhile: when another create made the firewall between
// the provider's look and its own create, the provider uses that one.
func TestFirewallMadeMeanwhile(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 60*time.Second)
	var made atomic.Bool
	e.faults.onRequest(func(w http.ResponseWriter, r *http.Request) bool {
		// The first create of a firewall makes one first (its own request
		// passes here too, and goes on).
		if r.Method == http.MethodPost && r.URL.Path == "/v1/firewalls" && made.CompareAndSwap(false, true) {
			if _, _, err := e.raw.Firewall.Create(ctx, hc.FirewallCreateOpts{Name: "cc-gateway-test", Labels: map[string]string{hcloud.LabelGateway: "test"}}); err != nil {
				t.Error(err)
			}
		}
		return false
	})
	p := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), guarded(e))
	srv, err := p.Create(ctx, newPerson(t, "fwr", e.port).spec)
	if err != nil {
		t.Fatalf("create while another made the firewall: %v", err)
	}
	fw := e.theFirewall(t, ctx)
	if got := e.guardedBy(t, ctx, srv.ID); !slices.Equal(got, []int64{fw.ID}) {
		t.Errorf("server guarded by %v, want %d", got, fw.ID)
	}
}

// nobody is a Notifier with no one connected.
type nobody struct{}

func (nobody) Warn(string, string) int { return 0 }
func (nobody) End(string, string)      {}

// TestReconcileRestoresTheFirewall: the gateway's periodic reconcile, with
// this provider, puts the firewall back on a server it was taken off, and
// records the repair as an audit event.
func TestReconcileRestoresTheFirewall(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 60*time.Second)
	p := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), guarded(e))
	srv, err := p.Create(ctx, newPerson(t, "fwrec", e.port).spec)
	if err != nil {
		t.Fatal(err)
	}
	fw := e.theFirewall(t, ctx)
	acts, _, err := e.raw.Firewall.RemoveResources(ctx, fw, []hc.FirewallResource{{Type: hc.FirewallResourceTypeServer, Server: &hc.FirewallResourceServer{ID: srv.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.raw.Action.WaitFor(ctx, acts...); err != nil {
		t.Fatal(err)
	}

	store, err := bolt.Open(filepath.Join(t.TempDir(), "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m := lease.NewManager(lease.Config{Store: store, Provider: p, Logger: testkit.Quiet, OperationTimeout: 30 * time.Second})
	// The store is new and the server has no lease: reconcile keeps it
	// (an orphan is reported, not touched) but guards it all the same.
	err = lease.NewReaper(m, nobody{}, lease.ReaperConfig{}).Reconcile(ctx)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if got := e.guardedBy(t, ctx, srv.ID); !slices.Equal(got, []int64{fw.ID}) {
		t.Errorf("after reconcile the server is guarded by %v, want %d", got, fw.ID)
	}
	events, err := store.Events(0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events, func(ev lease.Event) bool {
		return ev.Kind == "reconcile" && strings.Contains(ev.Detail, "applied firewall cc-gateway-test to server")
	}) {
		t.Errorf("events %+v, want the repair recorded", events)
	}
}
