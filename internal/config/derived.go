package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
)

// Values worked out from the options, so that each rule has one home and
// cmd/gateway only wires.

// Local reports whether machines run on the built-in local cloud.
func (c Config) Local() bool { return c.Cloud == CloudLocal }

// OpenAccess reports whether any key gets in: there is no --users list.
func (c Config) OpenAccess() bool { return c.Users == "" }

// OperationTimeout bounds one machine operation (create, start, stop,
// hibernate, destroy) however many connections wait for it.
func (c Config) OperationTimeout() time.Duration {
	if c.Provisioning == ProvisionInfect {
		return 30 * time.Minute // installing NixOS at first boot takes a while
	}
	return 10 * time.Minute
}

// TestMachineBound bounds gateway preflight's test machine from create to
// SSH ready: the bound on a create, unless --test-machine-timeout is set.
func (c Config) TestMachineBound() time.Duration {
	if c.TestMachineTimeout > 0 {
		return c.TestMachineTimeout
	}
	return c.OperationTimeout()
}

// Infect is what infect provisioning installs; nil with snapshot
// provisioning.
func (c Config) Infect() *bootstrap.InfectOptions {
	if c.Provisioning != ProvisionInfect {
		return nil
	}
	return &bootstrap.InfectOptions{Flake: c.InfectFlake}
}

// SnapshotSelector is the label selector of the NixOS snapshot new
// machines boot: ImageSelector, or empty with infect provisioning, whose
// machines start from the stock Image and get NixOS at first boot.
func (c Config) SnapshotSelector() string {
	if c.Provisioning == ProvisionInfect {
		return ""
	}
	return c.ImageSelector
}

// NoFirewall is the --firewall-sources value that keeps no firewall.
const NoFirewall = "none"

// Firewall says whether the gateway keeps a firewall around the machines
// and whom it lets reach their SSH port: the sources given, or, with none
// given, the gateway's own public addresses, which only Hetzner's metadata
// service knows.
func (c Config) Firewall() (sources []netip.Prefix, keep bool) {
	if c.FirewallSources == NoFirewall {
		return nil, false
	}
	sources, _ = parseFirewallSources(c.FirewallSources) // checked when set
	return sources, true
}

// parseFirewallSources reads "none" or comma-separated address blocks in
// CIDR notation; a lone address is a block of one.
func parseFirewallSources(s string) ([]netip.Prefix, error) {
	if s == NoFirewall || s == "" {
		return nil, nil
	}
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if a, err := netip.ParseAddr(item); err == nil && a.Zone() == "" {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(item)
		switch {
		case item == NoFirewall:
			return nil, errors.New("none keeps no firewall and cannot be combined with address blocks")
		case err != nil:
			return nil, fmt.Errorf("%q is not an address block like 203.0.113.7/32 or 2001:db8::/64", item)
		case p.Masked() != p:
			return nil, fmt.Errorf("%q has host bits set: write the network %s, or the single address %s/%d", item, p.Masked(), p.Addr(), p.Addr().BitLen())
		}
		out = append(out, p)
	}
	return out, nil
}

// HostKeyPath is the gateway's own host key.
func (c Config) HostKeyPath() string { return filepath.Join(c.HostKeyDir, "ssh_host_ed25519_key") }

// UpstreamKeyPath is the key the gateway logs in to machines with.
func (c Config) UpstreamKeyPath() string { return filepath.Join(c.DataDir, "upstream_ed25519_key") }

// Etcd reports whether the lease store is in etcd (--etcd-endpoints).
func (c Config) Etcd() bool { return c.EtcdEndpoints != "" }

// EtcdEndpointList returns the etcd client URLs; Load has validated them.
func (c Config) EtcdEndpointList() []string {
	urls, _ := parseEtcdEndpoints(c.EtcdEndpoints)
	return urls
}

// parseEtcdEndpoints splits a comma-separated list of http or https URLs
// naming a host and port each.
func parseEtcdEndpoints(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var urls []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		u, err := url.Parse(part)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("%q is not an etcd client URL; give http://HOST:PORT or https://HOST:PORT, comma-separated like http://10.0.0.2:2379,http://10.0.0.3:2379", part)
		}
		urls = append(urls, part)
	}
	return urls, nil
}

// StorePath is the lease database.
func (c Config) StorePath() string { return filepath.Join(c.DataDir, "gateway.db") }

// SecretsKeyPath is the key that seals people's secrets at rest.
func (c Config) SecretsKeyPath() string {
	if c.SecretsKeyFile != "" {
		return c.SecretsKeyFile
	}
	return filepath.Join(c.DataDir, "secrets.key")
}

// LocalCloudDir holds the local cloud's state and machines.
func (c Config) LocalCloudDir() string { return filepath.Join(c.DataDir, "localcloud") }

// Level is LogLevel as a slog.Level; info if LogLevel is not valid.
func (c Config) Level() slog.Level {
	switch c.LogLevel {
	case LogDebug:
		return slog.LevelDebug
	case LogWarn:
		return slog.LevelWarn
	case LogError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// ServerTypes returns the server types of new machines in order of
// preference; Load has validated them.
func (c Config) ServerTypes() []string {
	names, _ := parseNames(c.ServerType)
	return names
}

// Locations returns the locations of new machines in order of preference;
// Load has validated them.
func (c Config) Locations() []string {
	names, _ := parseNames(c.Location)
	return names
}

// parseNames reads a comma-separated list of names, each given once.
func parseNames(s string) ([]string, error) {
	var names []string
	for _, part := range strings.Split(s, ",") {
		name := strings.TrimSpace(part)
		switch {
		case name == "":
			return nil, fmt.Errorf("%q has an empty name", s)
		case slices.Contains(names, name):
			return nil, fmt.Errorf("%q names %s twice", s, name)
		}
		names = append(names, name)
	}
	return names, nil
}

// WarnLeads returns the warning lead times; Load has validated them.
func (c Config) WarnLeads() []time.Duration {
	leads, _ := parseLeads(c.WarnBefore)
	return leads
}

// parseLeads reads a comma-separated list of positive durations; an empty
// list means no warnings.
func parseLeads(s string) ([]time.Duration, error) {
	var leads []time.Duration
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		d, err := time.ParseDuration(part)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q is not a positive duration like 15m; give a comma-separated list such as 15m,5m,1m", part)
		}
		leads = append(leads, d)
	}
	return leads, nil
}

// MetricsExposed says whether the metrics listener is on, on an address
// other hosts may reach: it has no authentication, so the gateway warns.
func (c Config) MetricsExposed() bool {
	return c.MetricsListen != "" && !isLoopback(c.MetricsListen)
}
