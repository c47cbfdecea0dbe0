package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// option is one row of the table: the option's name everywhere, its help,
// its default and the Config field it fills with its parser and check.
type option struct {
	name  string
	arg   string // placeholder in help; enumerations bring their own
	usage string
	def   string // default as text; "" for none
	// localDef is the default in local mode when it differs from def, the
	// hcloud one; such defaults are applied once the mode is known.
	localDef string
	defHelp  string // the default in words, when it is worked out from other options
	bind     func(c *Config) value
}

// env is the option's environment variable.
func (o *option) env() string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(o.name, "-", "_"))
}

// placeholder is the option's argument as help shows it.
func (o *option) placeholder() string {
	if o.arg != "" {
		return o.arg
	}
	return o.bind(&Config{}).arg
}

// helpDefault is the option's default as help shows it.
func (o *option) helpDefault() string {
	switch {
	case o.defHelp != "":
		return o.defHelp
	case o.localDef != "":
		return fmt.Sprintf("%s in local mode, %s in hcloud mode", o.localDef, o.def)
	case o.def == "":
		return "none"
	}
	return o.def
}

// value is an option's field in one Config: how text sets it, how it
// prints, and what is wrong with it on its own.
type value struct {
	field  any                // the Config field, a pointer
	set    func(string) error // says why the text does not parse
	format func() string
	check  func() string // the problem with the value alone, or ""
	arg    string        // help placeholder of an enumeration: its values
	bare   bool          // a switch: given bare on the command line, it is on
}

// typed binds a field of type T: parse reads text, its error saying why
// the text does not parse; format prints the field; check, if given, says
// what is wrong with a value on its own, or "".
func typed[T any](p *T, parse func(string) (T, error), format func(T) string, check func(T) string) value {
	v := value{
		field: p,
		set: func(s string) error {
			x, err := parse(s)
			if err != nil {
				return err
			}
			*p = x
			return nil
		},
		format: func() string { return format(*p) },
	}
	if check != nil {
		v.check = func() string { return check(*p) }
	}
	return v
}

// text is a string option, kept as written.
func text(p *string, check func(string) string) value {
	same := func(s string) string { return s }
	return typed(p, func(s string) (string, error) { return s, nil }, same, check)
}

// duration is a positive time.Duration option.
func duration(p *time.Duration) value {
	parse := func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New("is not a duration like 90m or 4h")
		}
		return d, nil
	}
	return typed(p, parse, fmtDuration, func(d time.Duration) string {
		if d <= 0 {
			return fmtDuration(d) + " is not positive; give a duration like 90m or 4h"
		}
		return ""
	})
}

// number is a whole number option from lo to hi; what names such a number
// in the message, e.g. "a port".
func number(p *int, lo, hi int, what string) value {
	parse := func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, errors.New("is not a whole number")
		}
		return n, nil
	}
	return typed(p, parse, strconv.Itoa, func(n int) string {
		if n < lo || n > hi {
			return fmt.Sprintf("%d is not %s from %d to %d", n, what, lo, hi)
		}
		return ""
	})
}

// homeSize is the size of a home volume in GB: 0 (none) or a size
// Hetzner offers.
func homeSize(p *int) value {
	v := number(p, 0, 10240, "a volume size in GB")
	v.check = func() string {
		if *p != 0 && (*p < 10 || *p > 10240) {
			return fmt.Sprintf("%d is not a volume size Hetzner offers: give 10 to 10240 GB, or 0 for no home volumes", *p)
		}
		return ""
	}
	return v
}

// switched is an option that is on or off; --NAME alone turns it on.
func switched(p *bool) value {
	parse := func(s string) (bool, error) {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return false, errors.New("is not true or false")
		}
		return b, nil
	}
	v := typed(p, parse, strconv.FormatBool, nil)
	v.bare = true
	return v
}

// orDefault is a duration option whose zero, its default, stands for a
// value worked out from other options.
func orDefault(p *time.Duration) value {
	v := duration(p)
	v.check = func() string {
		if *p < 0 {
			return fmtDuration(*p) + " is negative; give a duration like 5m"
		}
		return ""
	}
	return v
}

// maxLocalDelay bounds the local cloud's delays: a guest slower than
// Hetzner's slowest boot tests nothing and only runs into timeouts.
const maxLocalDelay = 10 * time.Minute

// localDelay is a duration option of the local cloud, from 0 to
// maxLocalDelay.
func localDelay(p *time.Duration) value {
	v := duration(p)
	v.check = func() string {
		if *p < 0 || *p > maxLocalDelay {
			return fmtDuration(*p) + " is not from 0s to " + fmtDuration(maxLocalDelay)
		}
		return ""
	}
	return v
}

// maxStartups bounds the startup limits: the gateway keeps a little state
// per connection, so no limit should let in an unbounded number.
const maxStartups = 100000

// startups is a Startups option, "START:RATE:FULL" or a single "FULL".
func startups(p *Startups) value {
	const form = "is not START:RATE:FULL, like 10:30:100, nor one number"
	parse := func(s string) (Startups, error) {
		parts := strings.Split(s, ":")
		var n []int
		for _, part := range parts {
			x, err := strconv.Atoi(part)
			if err != nil {
				return Startups{}, errors.New(form)
			}
			n = append(n, x)
		}
		switch len(n) {
		case 1:
			return Startups{Start: n[0], Rate: 100, Full: n[0]}, nil
		case 3:
			return Startups{Start: n[0], Rate: n[1], Full: n[2]}, nil
		}
		return Startups{}, errors.New(form)
	}
	return typed(p, parse, Startups.String, func(s Startups) string {
		switch {
		case s.Start < 1 || s.Full > maxStartups:
			return fmt.Sprintf("%v: START and FULL are numbers of connections from 1 to %d", s, maxStartups)
		case s.Start > s.Full:
			return fmt.Sprintf("%v: START is above FULL; drops start at START and reach all connections at FULL", s)
		case s.Rate < 0 || s.Rate > 100:
			return fmt.Sprintf("%v: RATE is a percentage from 0 to 100", s)
		}
		return ""
	})
}

// enum is an option that takes one of values. Any text parses, so that a
// later layer can still correct it; the check names the values allowed.
func enum[T ~string](p *T, values ...T) value {
	names := make([]string, len(values))
	for i, v := range values {
		names[i] = string(v)
	}
	v := typed(p, func(s string) (T, error) { return T(s), nil }, func(x T) string { return string(x) }, func(x T) string {
		if slices.Contains(values, x) {
			return ""
		}
		return fmt.Sprintf("%q is not %s", x, orList(names))
	})
	v.arg = strings.Join(names, "|")
	return v
}

// orList joins words as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// required refuses an empty value; what says what to give instead.
func required(what string) func(string) string {
	return func(s string) string {
		if s == "" {
			return "is empty; give " + what
		}
		return ""
	}
}

// matching refuses a value that pattern does not match, saying why.
func matching(pattern *regexp.Regexp, why string) func(string) string {
	return func(s string) string {
		if !pattern.MatchString(s) {
			return fmt.Sprintf("%q %s", s, why)
		}
		return ""
	}
}

var (
	// unixUser is the portable user name shape (useradd's default, less
	// upper case), capped at the usual 32 characters.
	unixUser = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	// labelValue is what Hetzner accepts as a label value.
	labelValue = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?$`)
)

// options is every option, in the order help lists them.
var options = []*option{
	{name: "config", arg: "PATH", usage: "config file to read (format below)",
		bind: func(c *Config) value { return text(&c.ConfigFile, nil) }},
	{name: "listen", arg: "ADDR", usage: "host:port the SSH front door listens on",
		def: ":22", localDef: "127.0.0.1:2222",
		bind: func(c *Config) value { return text(&c.Listen, checkListen) }},
	{name: "public-name", arg: "NAME", usage: "how people reach the gateway, shown in hints, e.g. cc.example.com or \"-p 2222 localhost\"",
		defHelp: "derived from --listen",
		bind:    func(c *Config) value { return text(&c.PublicName, nil) }},
	{name: "data-dir", arg: "DIR", usage: "directory of the lease database", def: "./data",
		bind: func(c *Config) value { return text(&c.DataDir, required("a directory for the lease database")) }},
	{name: "etcd-endpoints", arg: "URL[,URL...]", usage: "client URLs of an etcd cluster (http://HOST:PORT or https://…), comma-separated: keeps the lease store there, shared by several gateways, instead of in --data-dir (docs/ha.md)",
		bind: func(c *Config) value { return text(&c.EtcdEndpoints, checkEtcdEndpoints) }},
	{name: "etcd-prefix", arg: "PREFIX", usage: "where the gateway keeps its keys in etcd; gateways sharing one prefix share leases", def: "/cc-gateway/",
		bind: func(c *Config) value { return text(&c.EtcdPrefix, checkEtcdPrefix) }},
	{name: "etcd-ca", arg: "PATH", usage: "PEM file of the CA that signed the etcd members' certificates; empty: the system's",
		bind: func(c *Config) value { return text(&c.EtcdCA, checkFile("a PEM file of CA certificates")) }},
	{name: "etcd-cert", arg: "PATH", usage: "PEM client certificate the gateway shows etcd (with --etcd-key)",
		bind: func(c *Config) value { return text(&c.EtcdCert, checkFile("a PEM client certificate")) }},
	{name: "etcd-key", arg: "PATH", usage: "PEM private key of --etcd-cert",
		bind: func(c *Config) value { return text(&c.EtcdKey, checkFile("the PEM private key of --etcd-cert")) }},
	{name: "secrets-key-file", arg: "PATH", usage: "key that seals people's secrets at rest (created with mode 0600 on first start; keep it apart from database backups)",
		defHelp: "secrets.key in --data-dir",
		bind:    func(c *Config) value { return text(&c.SecretsKeyFile, nil) }},
	{name: "host-key-dir", arg: "DIR", usage: "directory of the gateway's host keys (created on first start)", def: "./hostkeys",
		bind: func(c *Config) value { return text(&c.HostKeyDir, required("a directory for the host keys")) }},
	{name: "users", arg: "PATH", usage: "authorized_keys file of the people allowed in; empty lets any key in (local mode on loopback only)",
		bind: func(c *Config) value { return text(&c.Users, checkKeyFile) }},
	{name: "admins", arg: "PATH", usage: "authorized_keys file of the keys allowed to run admin commands",
		bind: func(c *Config) value { return text(&c.Admins, checkKeyFile) }},
	{name: "revoked-action", usage: "what happens to the machine of a key removed from the allow lists: power off keeping the disk, leave it running, or delete everything", def: "stop",
		bind: func(c *Config) value {
			return enum(&c.RevokedAction, lease.RevokedStop, lease.RevokedKeep, lease.RevokedDestroy)
		}},
	{name: "cloud", usage: "where machines run: the built-in local cloud, or Hetzner Cloud",
		defHelp: "hcloud when a Hetzner token is given, else local",
		bind:    func(c *Config) value { return enum(&c.Cloud, CloudLocal, CloudHCloud) }},
	{name: "hcloud-token-file", arg: "PATH", usage: "file holding the Hetzner Cloud API token (else $" + tokenEnv + " is used)",
		bind: func(c *Config) value { return text(&c.HCloudTokenFile, nil) }},
	{name: "hcloud-endpoint", arg: "URL", usage: "Hetzner Cloud API base URL; empty: Hetzner's own",
		bind: func(c *Config) value { return text(&c.HCloudEndpoint, nil) }},
	{name: "default-ttl", arg: "DURATION", usage: "how long a new lease lasts before it expires", def: "4h",
		bind: func(c *Config) value { return duration(&c.DefaultTTL) }},
	{name: "max-ttl", arg: "DURATION", usage: "the furthest ahead of now an expiry may be extended", def: "24h",
		bind: func(c *Config) value { return duration(&c.MaxTTL) }},
	{name: "max-lifetime", arg: "DURATION", usage: "the longest a machine may live from its creation", def: "168h",
		bind: func(c *Config) value { return duration(&c.MaxLifetime) }},
	{name: "idle-timeout", arg: "DURATION", usage: "a machine without sessions or traffic this long is stopped", def: "30m",
		bind: func(c *Config) value { return duration(&c.IdleTimeout) }},
	{name: "idle-action", usage: "what happens to an idle machine: power off keeping the disk, snapshot then delete the server, or delete everything", def: "stop",
		bind: func(c *Config) value {
			return enum(&c.IdleAction, lease.IdleStop, lease.IdleHibernate, lease.IdleDestroy)
		}},
	{name: "busy-cpu", arg: "PERCENT", usage: "an idle machine using at least this much CPU is left running (0: never checked)", def: "10",
		bind: func(c *Config) value { return number(&c.BusyCPU, 0, 100, "a percentage") }},
	{name: "max-unattended", arg: "DURATION", usage: "how long after a person's last activity a working agent (cc-agent-state working) keeps their machine running (at most the idle timeout: agents keep nothing)", def: "8h",
		bind: func(c *Config) value { return duration(&c.MaxUnattended) }},
	{name: "warn-before", arg: "DURATIONS", usage: "comma-separated lead times at which connected people are warned before an idle stop or an expiry", def: "15m,5m,1m",
		bind: func(c *Config) value { return text(&c.WarnBefore, checkLeads) }},
	{name: "notify-allow-private", usage: "let people's notification targets be on private networks, and plain http (by default only https to public addresses; local mode also allows loopback)", def: "false",
		bind: func(c *Config) value { return switched(&c.NotifyAllowPrivate) }},
	{name: "reaper-interval", arg: "DURATION", usage: "how often the reaper looks at every lease", def: "30s",
		bind: func(c *Config) value { return duration(&c.ReaperInterval) }},
	{name: "reconcile-interval", arg: "DURATION", usage: "how often leases are reconciled with the cloud's servers (also at start-up)", def: "5m",
		bind: func(c *Config) value { return duration(&c.ReconcileInterval) }},
	{name: "orphan-grace", arg: "DURATION", usage: "how old a labelled server or snapshot without a lease must be before reconcile takes it for an orphan, and how long it then stays one before it is deleted", def: "10m",
		bind: func(c *Config) value { return duration(&c.OrphanGrace) }},
	{name: "orphans", usage: "what reconcile does with labelled servers and snapshots no lease claims: power them off and delete them when still unclaimed a grace later, or keep and report them (the way to start on a new lease database while the cloud holds this gateway's machines)", def: "delete",
		bind: func(c *Config) value { return enum(&c.Orphans, lease.OrphansDelete, lease.OrphansKeep) }},
	{name: "orphan-deletes", arg: "N", usage: "the most orphans one reconcile deletes", def: "3",
		bind: func(c *Config) value { return number(&c.OrphanDeletes, 1, 1000, "a count") }},
	{name: "warm-pool", arg: "N", usage: "how many booted, unassigned machines to keep ready for new people, who take one at their first connection (each costs as a running machine; 0: none, and what a larger pool left is deleted). With --server-type/--location lists they are placed with the same fallback as a person's machine, and a new person takes the oldest ready one of the most preferred type, then location", def: "0",
		bind: func(c *Config) value { return number(&c.WarmPool, 0, 50, "a count of machines") }},
	{name: "warm-pool-max-age", arg: "DURATION", usage: "how old a ready pool machine may grow before it is replaced, so none goes stale", def: "6h",
		bind: func(c *Config) value { return duration(&c.WarmPoolMaxAge) }},
	{name: "home-volume", arg: "SIZE_GB", usage: "size of the home volume each person gets, which outlives their machines (0: none; 10 to 10240). It costs per GB and month whether a machine uses it or not: the default 10 GB is about EUR 0.52 a month on Hetzner (EUR 0.044 per GB-month before VAT)", def: "10",
		bind: func(c *Config) value { return homeSize(&c.HomeVolume) }},
	{name: "home-retention", arg: "DURATION", usage: "how long a person's home volume is kept after their last machine is gone (destroyed or expired); they are told 7 days and 1 day before it is deleted", def: "720h",
		bind: func(c *Config) value { return duration(&c.HomeRetention) }},
	{name: "instance-user", arg: "NAME", usage: "Unix user people land as on their machine", def: "claude",
		bind: func(c *Config) value {
			return text(&c.InstanceUser, matching(unixUser, "is not a valid Unix user name: lower case letters, digits, _ and -, starting with a letter or _, at most 32 characters"))
		}},
	{name: "server-type", arg: "TYPES", usage: "Hetzner server types of new machines, in order of preference (cx23,cx33): when a type is sold out in every location, the next is tried; put the cheapest first", def: "cx23",
		bind: func(c *Config) value { return text(&c.ServerType, checkNames("server type", "cx23,cx33")) }},
	{name: "location", arg: "NAMES", usage: "Hetzner locations of new machines, in order of preference (fsn1,nbg1,hel1): a create that finds its server type sold out in one location tries the next", def: "fsn1",
		bind: func(c *Config) value { return text(&c.Location, checkNames("location", "fsn1,nbg1")) }},
	{name: "image", arg: "NAME", usage: "image of new machines when --image-selector is empty, and the stock image infect provisioning starts from", def: "debian-12",
		bind: func(c *Config) value { return text(&c.Image, nil) }},
	{name: "image-selector", arg: "SELECTOR", usage: "label selector of the NixOS snapshot new machines boot (newest match wins; none is an error); empty: --image", def: "cc-gateway=image",
		bind: func(c *Config) value { return text(&c.ImageSelector, nil) }},
	{name: "provisioning", usage: "how machines get NixOS: boot a prebuilt snapshot (see --image-selector), or install it over the stock --image at first boot (slow, no image to build)", def: "snapshot",
		bind: func(c *Config) value { return enum(&c.Provisioning, ProvisionSnapshot, ProvisionInfect) }},
	{name: "infect-flake", arg: "FLAKE", usage: "infect provisioning (required with it): the flake whose cloud-instance configuration is installed, like github:owner/repo?dir=nix, with its flake.lock committed",
		bind: func(c *Config) value { return text(&c.InfectFlake, checkFlake) }},
	{name: "machine-ssh-port", arg: "PORT", usage: "port the machines' sshd listens on",
		def: "22", localDef: "2022",
		bind: func(c *Config) value { return number(&c.MachineSSHPort, 1, 65535, "a port") }},
	{name: "firewall-sources", arg: "CIDR,...", usage: "who may reach the machines' SSH port through the gateway's Hetzner firewall, like 203.0.113.7/32,2001:db8::/64; none keeps no firewall, for operators who guard the machines themselves (docs/security.md)",
		localDef: "127.0.0.0/8", defHelp: "the gateway's own public addresses from Hetzner's metadata service in hcloud mode (required off Hetzner), 127.0.0.0/8 in local mode",
		bind: func(c *Config) value { return text(&c.FirewallSources, checkFirewallSources) }},
	{name: "gateway-name", arg: "NAME", usage: "name in the labels of everything this gateway creates; give each gateway sharing a project its own", def: "default",
		bind: func(c *Config) value {
			return text(&c.GatewayName, matching(labelValue, "cannot be a Hetzner label value: 1 to 63 letters, digits, -, _ or ., starting and ending with a letter or digit"))
		}},
	{name: "local-machines", usage: "local mode only: machines as in-process SSH servers, or as real sshd processes", def: "builtin",
		bind: func(c *Config) value { return enum(&c.LocalMachines, LocalBuiltin, LocalOpenSSH) }},
	{name: "persistent-sessions", usage: "a plain interactive `ssh HOST` attaches to the person's persistent terminal session `main` on their machine (tmux), which outlives the connection; false: a plain login shell, as `ssh -t HOST shell` gives (docs/agents.md)", def: "true",
		bind: func(c *Config) value { return switched(&c.PersistentSessions) }},
	{name: "shutdown-grace", arg: "DURATION", usage: "on SIGINT or SIGTERM, how long open sessions get to end before they are closed", def: "10s",
		bind: func(c *Config) value { return duration(&c.ShutdownGrace) }},
	{name: "max-startups", arg: "START:RATE:FULL", usage: "connections not yet authenticated: from START on, new ones are dropped with a chance of RATE percent, rising to all at FULL, as sshd's MaxStartups (a single N is N:100:N)", def: "10:30:100",
		bind: func(c *Config) value { return startups(&c.MaxStartups) }},
	{name: "max-startups-per-source", arg: "N", usage: "connections not yet authenticated one address (an IPv6 /64) may hold; more are dropped", def: "8",
		bind: func(c *Config) value {
			return number(&c.MaxStartupsPerSource, 1, maxStartups, "a number of connections")
		}},
	{name: "max-sessions", arg: "N", usage: "session channels one client connection may have open at once (sshd's MaxSessions); more are refused", def: "10",
		bind: func(c *Config) value { return number(&c.MaxSessions, 1, 1000, "a number of sessions") }},
	{name: "max-connections", arg: "N", usage: "connections one key may have open at once; more are refused at login", def: "20",
		bind: func(c *Config) value { return number(&c.MaxConnections, 1, 10000, "a number of connections") }},
	{name: "max-early-requests", arg: "N", usage: "requests (env, pty-req, window-change) a session may send before its program starts; more fail the session", def: "64",
		bind: func(c *Config) value { return number(&c.MaxEarlyRequests, 1, 4096, "a number of requests") }},
	{name: "max-early-bytes", arg: "BYTES", usage: "bytes those requests may carry in total; more fail the session", def: "65536",
		bind: func(c *Config) value { return number(&c.MaxEarlyBytes, 1024, 16<<20, "a number of bytes") }},
	{name: "global-request-rate", arg: "N", usage: "global requests (keepalives, remote forwards) a second one connection may send; more are refused", def: "10",
		bind: func(c *Config) value { return number(&c.GlobalRequestRate, 1, 10000, "a number of requests a second") }},
	{name: "global-request-burst", arg: "N", usage: "global requests one connection may send at once beyond the rate; a connection refused this many in a row is closed", def: "100",
		bind: func(c *Config) value { return number(&c.GlobalRequestBurst, 1, 100000, "a number of requests") }},
	{name: "metrics-listen", arg: "ADDR", usage: "host:port of the HTTP listener serving /metrics (Prometheus), /healthz and /readyz, like 127.0.0.1:9464; empty: off. Keep it on loopback or a private network: it is not authenticated (docs/operations.md)",
		bind: func(c *Config) value { return text(&c.MetricsListen, orOff(checkListen)) }},
	{name: "pprof", usage: "also serve Go's profiler on the metrics listener, at /debug/pprof/ (needs --metrics-listen)", def: "false",
		bind: func(c *Config) value { return switched(&c.Pprof) }},
	{name: "local-faults", arg: "SPEC", usage: "local mode only, for testing: the fake Hetzner API injects faults, e.g. rate=0.2,seed=7 (random errors), unavailable=cx23@fsn1 (a sold-out pair; repeatable)",
		bind: func(c *Config) value { return text(&c.LocalFaults, nil) }},
	{name: "local-boot-delay", arg: "DURATION", usage: "local mode only: how long a machine takes from create or power-on until its SSH answers, like Hetzner's 20s or so (the server reports running before); 0: at once", def: "0s",
		bind: func(c *Config) value { return localDelay(&c.LocalBootDelay) }},
	{name: "local-action-delay", arg: "DURATION", usage: "local mode only: how long the fake Hetzner API's actions (create, power, snapshot, delete) stay running",
		defHelp: "0.5s",
		bind:    func(c *Config) value { return localDelay(&c.LocalActionDelay) }},
	{name: "create-test-machine", usage: "gateway preflight only: once the checks pass, create one machine as the gateway would for a person, report how long create, boot and SSH ready take, then delete it (bills one hour of the server type)", def: "false",
		bind: func(c *Config) value { return switched(&c.CreateTestMachine) }},
	{name: "test-machine-timeout", arg: "DURATION", usage: "gateway preflight --create-test-machine: how long the test machine may take from create to SSH ready",
		defHelp: "the bound on a create: 10m, or 30m with --provisioning infect",
		bind:    func(c *Config) value { return orDefault(&c.TestMachineTimeout) }},
	{name: "log-level", usage: "how much the gateway logs", def: "info",
		bind: func(c *Config) value { return enum(&c.LogLevel, LogDebug, LogInfo, LogWarn, LogError) }},
}

func lookup(name string) *option {
	for _, o := range options {
		if o.name == name {
			return o
		}
	}
	return nil
}

// checkListen says why addr is not host:port.
func checkListen(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not host:port, like 127.0.0.1:2222 or :22", addr)
	}
	// 0 is allowed: the system picks a free port, which tests rely on.
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("%q does not end in a port number from 0 to 65535", addr)
	}
	return ""
}

// orOff lets an option be empty, which turns it off, and checks any other
// value with check.
func orOff(check func(string) string) func(string) string {
	return func(s string) string {
		if s == "" {
			return ""
		}
		return check(s)
	}
}

// checkKeyFile says why path is not a readable authorized_keys file. An
// empty path is fine: the option is off.
func checkKeyFile(path string) string {
	if path == "" {
		return ""
	}
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return path + " does not exist; create it with one authorized_keys line per key"
	case err != nil:
		return fmt.Sprintf("cannot use %s: %v", path, err)
	case info.IsDir():
		return path + " is a directory, not an authorized_keys file"
	}
	return ""
}

// checkFile says why path is not a readable file holding what; empty is
// fine: the option is off.
func checkFile(what string) func(string) string {
	return func(path string) string {
		if path == "" {
			return ""
		}
		info, err := os.Stat(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return path + " does not exist; give " + what
		case err != nil:
			return fmt.Sprintf("cannot use %s: %v", path, err)
		case info.IsDir():
			return path + " is a directory; give " + what
		}
		return ""
	}
}

// checkEtcdEndpoints says why s is not a list of etcd client URLs; empty
// is fine: the store stays in --data-dir.
func checkEtcdEndpoints(s string) string {
	if _, err := parseEtcdEndpoints(s); err != nil {
		return err.Error()
	}
	return ""
}

// checkEtcdPrefix: the store keeps its keys as prefix + name, so a prefix
// is a path of its own.
func checkEtcdPrefix(s string) string {
	if !strings.HasPrefix(s, "/") || !strings.HasSuffix(s, "/") {
		return fmt.Sprintf("%q does not begin and end with /; give one like /cc-gateway/", s)
	}
	return ""
}

// checkFlake says why flake cannot be installed by infect provisioning.
// Empty is left to the rule infectNeedsFlake.
func checkFlake(flake string) string {
	if flake == "" {
		return ""
	}
	if err := (bootstrap.InfectOptions{Flake: flake}).Validate(); err != nil {
		return err.Error()
	}
	return ""
}

// checkNames says why s is not a comma-separated list of Hetzner names
// (what names one, like "location"; example shows a good list).
func checkNames(what, example string) func(string) string {
	return func(s string) string {
		problem := "is empty"
		if _, err := parseNames(s); err == nil {
			return ""
		} else if strings.TrimSpace(s) != "" {
			problem = err.Error()
		}
		return fmt.Sprintf("%s; give a Hetzner %s, or a comma-separated list of them in order of preference like %s", problem, what, example)
	}
}

// checkFirewallSources says why s is neither none nor a list of address
// blocks.
func checkFirewallSources(s string) string {
	if _, err := parseFirewallSources(s); err != nil {
		return err.Error()
	}
	return ""
}

// checkLeads says why s is not a list of warning lead times.
func checkLeads(s string) string {
	if _, err := parseLeads(s); err != nil {
		return err.Error()
	}
	return ""
}
