package hcloud

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/preflight"
)

// The gateway keeps one Hetzner Cloud Firewall, labelled cc-gateway=<gateway>
// and named cc-gateway-<gateway>, applied to every machine it makes: SSH in
// only from the firewall's sources (the gateway itself), ICMP in from
// anywhere, and no outbound rules, which on Hetzner means all outbound
// traffic is allowed. A person's key on the machine is then of no use
// without the gateway, which tracks activity, audits and revokes.
//
// The provider makes the firewall when it first needs it, corrects its
// rules when they differ, applies it to each server at create, and
// GuardMachines (run by reconcile) puts back what someone removed. It never
// touches a firewall without its gateway label.

// MetadataEndpoint is Hetzner's metadata service, which tells a server its
// own public addresses.
const MetadataEndpoint = "http://169.254.169.254/hetzner/v1/metadata"

// metadataTimeout bounds each question to the metadata service: off
// Hetzner, nothing answers at its link-local address.
const metadataTimeout = 3 * time.Second

// maxMetadataBody bounds what is read of one metadata answer.
const maxMetadataBody = 64 << 10

// Firewall configures the gateway's firewall. The zero value keeps none.
type Firewall struct {
	// Sources may reach the machines' SSH port.
	Sources []netip.Prefix
	// Metadata, used when Sources is empty, is the metadata service
	// (MetadataEndpoint; tests give a loopback server) to ask for the
	// gateway's own public addresses, which then are the sources.
	Metadata string
	// SSHPort is the port the machines' sshd listens on; default 22.
	SSHPort int
}

// off reports whether the gateway keeps no firewall: the operator guards
// the machines' SSH port.
func (f Firewall) off() bool { return len(f.Sources) == 0 && f.Metadata == "" }

// firewallState holds the sources once known; the metadata service is
// asked again until it answers.
type firewallState struct {
	mu      sync.Mutex // guards sources; never held over a request
	sources []netip.Prefix
}

func (p *Provider) firewallName() string { return "cc-gateway-" + p.cfg.Gateway }

// firewallSources returns the addresses allowed to reach the machines'
// SSH port: the configured ones, or the gateway's own from the metadata
// service.
func (p *Provider) firewallSources(ctx context.Context) ([]netip.Prefix, error) {
	if len(p.cfg.Firewall.Sources) > 0 {
		return p.cfg.Firewall.Sources, nil
	}
	p.fw.mu.Lock()
	known := p.fw.sources
	p.fw.mu.Unlock()
	if known != nil {
		return known, nil
	}
	// Asked outside the lock; two first asks at once both just ask.
	sources, err := OwnAddresses(ctx, p.cfg.Firewall.Metadata)
	if err != nil {
		return nil, fmt.Errorf("the gateway does not seem to run on Hetzner (%v): set --firewall-sources to the addresses it reaches machines from, or to none if you guard the machines' SSH port yourself", err)
	}
	p.fw.mu.Lock()
	p.fw.sources = sources
	p.fw.mu.Unlock()
	p.log.Info("firewall sources from the metadata service", "sources", sources)
	return sources, nil
}

// OwnAddresses asks Hetzner's metadata service at endpoint for the
// server's public IPv4 address and, when it has one, its IPv6 network.
func OwnAddresses(ctx context.Context, endpoint string) ([]netip.Prefix, error) {
	endpoint = strings.TrimSuffix(endpoint, "/")
	v4, err := metadata(ctx, endpoint+"/public-ipv4")
	if err != nil {
		return nil, err
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(v4))
	if err != nil || !ip.Is4() {
		return nil, fmt.Errorf("the metadata service's public-ipv4 %q is not an IPv4 address", v4)
	}
	sources := []netip.Prefix{netip.PrefixFrom(ip, 32)}
	// The IPv6 network is only in the cloud-init network configuration:
	// a static subnet "address: 2a01:…::1/64". No IPv6 is no error.
	if cfg, err := metadata(ctx, endpoint+"/network-config"); err == nil {
		for _, line := range strings.Split(cfg, "\n") {
			value, ok := strings.CutPrefix(strings.TrimLeft(strings.TrimSpace(line), "- "), "address:")
			if !ok {
				continue
			}
			if pf, err := netip.ParsePrefix(strings.Trim(strings.TrimSpace(value), `"'`)); err == nil && pf.Addr().Is6() {
				sources = append(sources, pf.Masked())
			}
		}
	}
	return sources, nil
}

// metadata reads one value of the metadata service.
func metadata(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("ask the metadata service: %w", err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("no metadata service at %s", req.URL.Host)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxMetadataBody))
	if err != nil {
		return "", fmt.Errorf("read the metadata service's answer: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("the metadata service answered %s for %s", res.Status, req.URL.Path)
	}
	return string(body), nil
}

// firewallRules are the rules the firewall must have.
func firewallRules(sources []netip.Prefix, sshPort int) []hc.FirewallRule {
	port := fmt.Sprint(sshPort)
	ssh, icmp := "SSH only from the gateway", "ping"
	return []hc.FirewallRule{
		{Direction: hc.FirewallRuleDirectionIn, Protocol: hc.FirewallRuleProtocolTCP, Port: &port, SourceIPs: ipNets(sources), Description: &ssh},
		{Direction: hc.FirewallRuleDirectionIn, Protocol: hc.FirewallRuleProtocolICMP, Description: &icmp,
			SourceIPs: ipNets([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")})},
	}
}

func ipNets(prefixes []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, 0, len(prefixes))
	for _, p := range prefixes {
		out = append(out, net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	return out
}

// ruleSet is rules in a form that compares equal when they allow the
// same traffic, whatever their order and descriptions.
func ruleSet(rules []hc.FirewallRule) []string {
	var out []string
	for _, r := range rules {
		var ips []string
		for _, n := range append(slices.Clone(r.SourceIPs), r.DestinationIPs...) {
			ips = append(ips, n.String())
		}
		slices.Sort(ips)
		port := ""
		if r.Port != nil {
			port = *r.Port
		}
		out = append(out, fmt.Sprintf("%s %s %s %s", r.Direction, r.Protocol, port, strings.Join(ips, ",")))
	}
	slices.Sort(out)
	return out
}

// findFirewall returns the gateway's firewall, or nil when there is none.
func (p *Provider) findFirewall(ctx context.Context) (*hc.Firewall, error) {
	list, err := p.client.Firewall.AllWithOpts(ctx, hc.FirewallListOpts{ListOpts: hc.ListOpts{
		LabelSelector: LabelGateway + "=" + p.cfg.Gateway,
	}})
	if err != nil {
		return nil, explain("find the gateway's firewall", err)
	}
	if len(list) == 0 {
		return nil, nil
	}
	// Two would be a bug or a hand's work; the oldest stays the one.
	slices.SortFunc(list, func(a, b *hc.Firewall) int { return cmp.Compare(a.ID, b.ID) })
	return list[0], nil
}

// ensureFirewall makes the gateway's firewall, or corrects its rules, and
// returns it with what it fixed. With the firewall off it returns nil.
func (p *Provider) ensureFirewall(ctx context.Context) (*hc.Firewall, []string, error) {
	if p.cfg.Firewall.off() {
		return nil, nil, nil
	}
	sources, err := p.firewallSources(ctx)
	if err != nil {
		return nil, nil, err
	}
	want := firewallRules(sources, p.cfg.Firewall.SSHPort)
	fw, err := p.findFirewall(ctx)
	if err != nil {
		return nil, nil, err
	}
	if fw == nil {
		res, _, err := p.client.Firewall.Create(ctx, hc.FirewallCreateOpts{
			Name: p.firewallName(), Labels: map[string]string{LabelGateway: p.cfg.Gateway}, Rules: want,
		})
		if hc.IsError(err, hc.ErrorCodeUniquenessError) {
			// A create at the same moment made it first, or a stranger has the name.
			if fw, ferr := p.findFirewall(ctx); ferr == nil && fw != nil {
				return fw, nil, nil
			}
			return nil, nil, fmt.Errorf("create the gateway's firewall: the project has a firewall named %s without the label %s=%s; rename or delete it, the gateway will not take it over",
				p.firewallName(), LabelGateway, p.cfg.Gateway)
		}
		if err != nil {
			return nil, nil, explain("create the gateway's firewall", err)
		}
		p.log.Info("firewall created", "firewall", res.Firewall.Name, "id", res.Firewall.ID, "sources", sources)
		return res.Firewall, []string{fmt.Sprintf("created firewall %s (%d)", res.Firewall.Name, res.Firewall.ID)}, nil
	}
	if slices.Equal(ruleSet(fw.Rules), ruleSet(want)) {
		return fw, nil, nil
	}
	actions, _, err := p.client.Firewall.SetRules(ctx, fw, hc.FirewallSetRulesOpts{Rules: want})
	if err != nil {
		return nil, nil, explain("correct the rules of the gateway's firewall", err)
	}
	if err := p.wait(ctx, "correct the rules of the gateway's firewall", actions...); err != nil {
		return nil, nil, err
	}
	p.log.Warn("firewall rules corrected", "firewall", fw.Name, "id", fw.ID, "had", ruleSet(fw.Rules))
	return fw, []string{fmt.Sprintf("corrected the rules of firewall %s (%d)", fw.Name, fw.ID)}, nil
}

// createFirewalls is what a new server is created with: the gateway's
// firewall, made or corrected first, or nothing with the firewall off.
func (p *Provider) createFirewalls(ctx context.Context) ([]*hc.ServerCreateFirewall, error) {
	fw, _, err := p.ensureFirewall(ctx)
	if err != nil || fw == nil {
		return nil, err
	}
	return []*hc.ServerCreateFirewall{{Firewall: hc.Firewall{ID: fw.ID}}}, nil
}

// GuardMachines makes sure the gateway's firewall exists, has its rules and
// is applied to every server labelled as this gateway's, and says what it
// fixed. With the firewall off it does nothing.
func (p *Provider) GuardMachines(ctx context.Context) ([]string, error) {
	fw, fixed, err := p.ensureFirewall(ctx)
	if err != nil || fw == nil {
		return fixed, err
	}
	servers, err := p.client.Server.AllWithOpts(ctx, hc.ServerListOpts{ListOpts: hc.ListOpts{
		LabelSelector: LabelGateway + "=" + p.cfg.Gateway,
	}})
	if err != nil {
		return fixed, explain("list servers", err)
	}
	var errs []error
	for _, s := range servers {
		if s.Status == hc.ServerStatusDeleting || slices.ContainsFunc(s.PublicNet.Firewalls, func(f *hc.ServerFirewallStatus) bool { return f.Firewall.ID == fw.ID }) {
			continue
		}
		actions, _, err := p.client.Firewall.ApplyResources(ctx, fw, []hc.FirewallResource{
			{Type: hc.FirewallResourceTypeServer, Server: &hc.FirewallResourceServer{ID: s.ID}},
		})
		switch {
		case hc.IsError(err, hc.ErrorCodeFirewallAlreadyApplied), hc.IsError(err, hc.ErrorCodeFirewallResourceNotFound):
			continue // applied or deleted since the listing
		case err == nil:
			err = p.wait(ctx, "apply the gateway's firewall", actions...)
		}
		if err != nil {
			errs = append(errs, explain(fmt.Sprintf("apply the gateway's firewall to server %s", s.Name), err))
			continue
		}
		p.log.Warn("firewall applied to a server that lacked it", "server", s.Name, "id", s.ID, "firewall", fw.ID)
		fixed = append(fixed, fmt.Sprintf("applied firewall %s to server %s (%d)", fw.Name, s.Name, s.ID))
	}
	return fixed, errors.Join(errs...)
}

// checkFirewall is preflight's look at the firewall, read-only: its
// sources are known, and it exists with its rules or can be made.
func (p *Provider) checkFirewall(ctx context.Context) preflight.Check {
	const name = "firewall"
	if p.cfg.Firewall.off() {
		return preflight.Passed(name, "off (--firewall-sources none): the machines' SSH port is as open as you leave it")
	}
	sources, err := p.firewallSources(ctx)
	if err != nil {
		return preflight.Failed(name, "%s", err)
	}
	fw, err := p.findFirewall(ctx)
	if err != nil {
		return preflight.Failed(name, "%s", sentence(err))
	}
	if fw == nil {
		other, _, err := p.client.Firewall.GetByName(ctx, p.firewallName())
		switch {
		case err != nil:
			return preflight.Failed(name, "%s", sentence(err))
		case other != nil:
			return preflight.Failed(name, "the project has a firewall named %s without the label %s=%s: rename or delete it",
				p.firewallName(), LabelGateway, p.cfg.Gateway)
		}
		return preflight.Passed(name, "%s will be created: SSH (port %d) only from %s", p.firewallName(), p.cfg.Firewall.SSHPort, prefixList(sources))
	}
	if !slices.Equal(ruleSet(fw.Rules), ruleSet(firewallRules(sources, p.cfg.Firewall.SSHPort))) {
		return preflight.Passed(name, "%s (%d) has other rules; the gateway corrects them: SSH (port %d) only from %s", fw.Name, fw.ID, p.cfg.Firewall.SSHPort, prefixList(sources))
	}
	return preflight.Passed(name, "%s (%d): SSH (port %d) only from %s", fw.Name, fw.ID, p.cfg.Firewall.SSHPort, prefixList(sources))
}

func prefixList(prefixes []netip.Prefix) string {
	s := make([]string, len(prefixes))
	for i, p := range prefixes {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
