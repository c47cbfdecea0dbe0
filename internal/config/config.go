// Package config assembles the gateway's configuration from four layers, each
// overriding the one before: built-in defaults, an optional config file, the
// environment, and command-line flags.
//
// Every option has one name, used as the flag (--idle-timeout), as the config
// file name (idle-timeout) and, upper case with dashes as underscores behind
// a CC_GATEWAY_ prefix, as the environment variable (CC_GATEWAY_IDLE_TIMEOUT).
// An empty environment variable counts as unset.
//
// The config file, named by --config or CC_GATEWAY_CONFIG, holds one
// "name = value" per line. Blank lines and lines whose first non-blank
// character is # are ignored. The value runs to the end of the line with
// surrounding blanks trimmed; there is no quoting. Unknown names, malformed
// lines and names given twice are errors that carry file:line.
//
//	# /etc/cc-gateway/gateway.conf
//	users        = /etc/cc-gateway/users
//	idle-timeout = 45m
//
// The Hetzner Cloud API token comes only from HCLOUD_TOKEN or from the file
// named by hcloud-token-file, never from a flag or the config file, so it
// does not show up in process listings or in configuration kept in git.
package config

import (
	"github.com/cc-gateway/cc-gateway/internal/bootstrap"

	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Config is the gateway's configuration. Build it with Load.
type Config struct {
	Listen            string        // address of the SSH front door
	PublicName        string        // how people reach the gateway, for hints
	DataDir           string        // holds the lease database
	HostKeyDir        string        // holds the gateway's host keys
	Users             string        // authorized_keys allow list; empty: anyone (local mode, loopback only)
	Admins            string        // authorized_keys file of admin keys
	Cloud             string        // "local" or "hcloud"
	HCloudTokenFile   string        // file holding the Hetzner token
	HCloudToken       string        // the Hetzner token itself; never printed
	HCloudEndpoint    string        // Hetzner Cloud API base URL; empty for Hetzner's own
	DefaultTTL        time.Duration // lifetime a new lease starts with
	MaxTTL            time.Duration // the furthest ahead of now an expiry may be
	MaxLifetime       time.Duration // the longest a machine may live in total
	IdleTimeout       time.Duration // a machine without activity this long is stopped
	IdleAction        string        // stop, hibernate or destroy
	BusyCPU           int           // percent of CPU that exempts an idle machine; 0 never checks
	WarnBefore        string        // comma-separated warning lead times
	ReaperInterval    time.Duration // between reaper passes
	ReconcileInterval time.Duration // between reconciles
	OrphanGrace       time.Duration // age before an unclaimed server is deleted
	LocalFaults       string        // fault injection spec for the local cloud
	InstanceUser      string        // Unix user people land as on their machine
	ServerType        string        // Hetzner server type of new machines
	Location          string        // Hetzner location of new machines
	Image             string        // image name used when no image matches ImageSelector
	ImageSelector     string        // label selector of the preferred image
	Provisioning      string        // "snapshot" or "infect"
	InfectFlake       string        // flake installed by infect provisioning
	MachineSSHPort    int           // port of the machines' sshd
	GatewayName       string        // value of the label that marks this gateway's resources
	LocalMachines     string        // "builtin" or "openssh": how local mode boots machines
	ShutdownGrace     time.Duration // how long sessions get to end on shutdown
	LogLevel          string        // debug, info, warn or error
	ConfigFile        string        // the config file read, if any

	// origin names where each option's value came from, for error messages.
	// It is nil for a Config built by hand.
	origin map[string]string
}

// ErrHelp is returned by Load when help was asked for and printed.
var ErrHelp = flag.ErrHelp

// envPrefix starts the environment variable of every option.
const envPrefix = "CC_GATEWAY_"

// tokenEnv holds the Hetzner token; it is the name hcloud-go's own tools use.
const tokenEnv = "HCLOUD_TOKEN"

// sourceFlags is how the command line is named as a source in messages.
const sourceFlags = "the command line"

// option describes one setting: its name everywhere, its help, its default
// and the Config field it fills.
type option struct {
	name  string
	arg   string // placeholder shown in help
	usage string
	def   string // default in command-line form; "" with modeDef or for "none"
	// modeDef gives a default that differs between local and hcloud mode.
	modeDef func(local bool) string
	defHelp string // help text for a default that cannot be a plain value
	field   func(c *Config) any
}

func (o *option) env() string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(o.name, "-", "_"))
}

var options = []*option{
	{name: "config", arg: "PATH", usage: "config file to read (format below)",
		field: func(c *Config) any { return &c.ConfigFile }},
	{name: "listen", arg: "ADDR", usage: "host:port the SSH front door listens on",
		modeDef: func(local bool) string { return pick(local, "127.0.0.1:2222", ":22") },
		defHelp: "127.0.0.1:2222 in local mode, :22 in hcloud mode",
		field:   func(c *Config) any { return &c.Listen }},
	{name: "public-name", arg: "NAME", usage: "how people reach the gateway, shown in hints, e.g. cc.example.com or \"-p 2222 localhost\"",
		defHelp: "derived from --listen",
		field:   func(c *Config) any { return &c.PublicName }},
	{name: "data-dir", arg: "DIR", usage: "directory of the lease database", def: "./data",
		field: func(c *Config) any { return &c.DataDir }},
	{name: "host-key-dir", arg: "DIR", usage: "directory of the gateway's host keys (created on first start)", def: "./hostkeys",
		field: func(c *Config) any { return &c.HostKeyDir }},
	{name: "users", arg: "PATH", usage: "authorized_keys file of the people allowed in; empty lets any key in (local mode on loopback only)",
		field: func(c *Config) any { return &c.Users }},
	{name: "admins", arg: "PATH", usage: "authorized_keys file of the keys allowed to run admin commands",
		field: func(c *Config) any { return &c.Admins }},
	{name: "cloud", arg: "local|hcloud", usage: "where machines run: the built-in local cloud, or Hetzner Cloud",
		defHelp: "hcloud when a Hetzner token is given, else local",
		field:   func(c *Config) any { return &c.Cloud }},
	{name: "hcloud-token-file", arg: "PATH", usage: "file holding the Hetzner Cloud API token (else $" + tokenEnv + " is used)",
		field: func(c *Config) any { return &c.HCloudTokenFile }},
	{name: "hcloud-endpoint", arg: "URL", usage: "Hetzner Cloud API base URL; empty: Hetzner's own",
		field: func(c *Config) any { return &c.HCloudEndpoint }},
	{name: "default-ttl", arg: "DURATION", usage: "how long a new lease lasts before it expires", def: "4h",
		field: func(c *Config) any { return &c.DefaultTTL }},
	{name: "max-ttl", arg: "DURATION", usage: "the furthest ahead of now an expiry may be extended", def: "24h",
		field: func(c *Config) any { return &c.MaxTTL }},
	{name: "max-lifetime", arg: "DURATION", usage: "the longest a machine may live from its creation", def: "168h",
		field: func(c *Config) any { return &c.MaxLifetime }},
	{name: "idle-timeout", arg: "DURATION", usage: "a machine without sessions or traffic this long is stopped", def: "30m",
		field: func(c *Config) any { return &c.IdleTimeout }},
	{name: "idle-action", arg: "stop|hibernate|destroy", usage: "what happens to an idle machine: power off keeping the disk, snapshot then delete the server, or delete everything", def: "stop",
		field: func(c *Config) any { return &c.IdleAction }},
	{name: "busy-cpu", arg: "PERCENT", usage: "an idle machine using at least this much CPU is left running (0: never checked)", def: "10",
		field: func(c *Config) any { return &c.BusyCPU }},
	{name: "warn-before", arg: "DURATIONS", usage: "comma-separated lead times at which connected people are warned before an idle stop or an expiry", def: "15m,5m,1m",
		field: func(c *Config) any { return &c.WarnBefore }},
	{name: "reaper-interval", arg: "DURATION", usage: "how often the reaper looks at every lease", def: "30s",
		field: func(c *Config) any { return &c.ReaperInterval }},
	{name: "reconcile-interval", arg: "DURATION", usage: "how often leases are reconciled with the cloud's servers (also at start-up)", def: "5m",
		field: func(c *Config) any { return &c.ReconcileInterval }},
	{name: "orphan-grace", arg: "DURATION", usage: "how old a labelled server without a lease must be before reconcile deletes it", def: "10m",
		field: func(c *Config) any { return &c.OrphanGrace }},
	{name: "instance-user", arg: "NAME", usage: "Unix user people land as on their machine", def: "claude",
		field: func(c *Config) any { return &c.InstanceUser }},
	{name: "server-type", arg: "TYPE", usage: "Hetzner server type of new machines", def: "cx23",
		field: func(c *Config) any { return &c.ServerType }},
	{name: "location", arg: "NAME", usage: "Hetzner location of new machines", def: "fsn1",
		field: func(c *Config) any { return &c.Location }},
	{name: "image", arg: "NAME", usage: "image of new machines when no image matches --image-selector", def: "debian-12",
		field: func(c *Config) any { return &c.Image }},
	{name: "image-selector", arg: "SELECTOR", usage: "label selector of the preferred image (newest match wins); empty: always --image", def: "cc-gateway=image",
		field: func(c *Config) any { return &c.ImageSelector }},
	{name: "provisioning", arg: "snapshot|infect", usage: "how machines get NixOS: boot a prebuilt snapshot (see --image-selector), or install it over the stock --image at first boot (slow, no image to build)", def: "snapshot",
		field: func(c *Config) any { return &c.Provisioning }},
	{name: "infect-flake", arg: "FLAKE", usage: "infect provisioning: the flake whose cloud-instance configuration is installed", def: "github:cc-gateway/cc-gateway?dir=nix",
		field: func(c *Config) any { return &c.InfectFlake }},
	{name: "machine-ssh-port", arg: "PORT", usage: "port the machines' sshd listens on",
		modeDef: func(local bool) string { return pick(local, "2022", "22") },
		defHelp: "2022 in local mode, 22 in hcloud mode",
		field:   func(c *Config) any { return &c.MachineSSHPort }},
	{name: "gateway-name", arg: "NAME", usage: "name in the labels of everything this gateway creates; give each gateway sharing a project its own", def: "default",
		field: func(c *Config) any { return &c.GatewayName }},
	{name: "local-machines", arg: "builtin|openssh", usage: "local mode only: machines as in-process SSH servers, or as real sshd processes", def: "builtin",
		field: func(c *Config) any { return &c.LocalMachines }},
	{name: "shutdown-grace", arg: "DURATION", usage: "on SIGINT or SIGTERM, how long open sessions get to end before they are closed", def: "10s",
		field: func(c *Config) any { return &c.ShutdownGrace }},
	{name: "local-faults", arg: "SPEC", usage: "local mode only, for testing: the fake Hetzner API injects faults, e.g. rate=0.2,seed=7",
		field: func(c *Config) any { return &c.LocalFaults }},
	{name: "log-level", arg: "LEVEL", usage: "debug, info, warn or error", def: "info",
		field: func(c *Config) any { return &c.LogLevel }},
}

func pick(local bool, ifLocal, ifHCloud string) string {
	if local {
		return ifLocal
	}
	return ifHCloud
}

func lookup(name string) *option {
	for _, o := range options {
		if o.name == name {
			return o
		}
	}
	return nil
}

// Problems is every problem found in a configuration, one sentence each.
type Problems []string

func (p Problems) Error() string {
	if len(p) == 1 {
		return p[0]
	}
	return fmt.Sprintf("%d configuration problems:\n  %s", len(p), strings.Join(p, "\n  "))
}

// loader builds a Config layer by layer, remembering where each value came
// from and which options had values it could not parse.
type loader struct {
	c        Config
	failed   map[string]bool
	problems Problems
}

func (l *loader) set(o *option, value, source string) {
	if err := assign(o.field(&l.c), value); err != nil {
		l.failed[o.name] = true
		l.problems = append(l.problems, fmt.Sprintf("--%s (from %s): %q %v", o.name, source, value, err))
		return
	}
	l.c.origin[o.name] = source
}

func assign(field any, value string) error {
	switch p := field.(type) {
	case *string:
		*p = value
	case *time.Duration:
		d, err := time.ParseDuration(value)
		if err != nil {
			return errors.New("is not a duration like 90m or 4h")
		}
		*p = d
	case *int:
		n, err := strconv.Atoi(value)
		if err != nil {
			return errors.New("is not a whole number")
		}
		*p = n
	default:
		panic(fmt.Sprintf("config: option field of unhandled type %T", field))
	}
	return nil
}

// Load builds the configuration from args (without the program name) and
// env (os.Getenv in production), then validates it. If args ask for help,
// Load writes it to help and returns ErrHelp. Other errors are either a
// misuse of the command line or Problems; both deserve exit status 2.
func Load(args []string, env func(string) string, help io.Writer) (Config, error) {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	flagValues := make(map[string]*string, len(options))
	for _, o := range options {
		flagValues[o.name] = fs.String(o.name, "", o.usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			WriteHelp(help)
			return Config{}, ErrHelp
		}
		return Config{}, fmt.Errorf("%w; run gateway --help to see the options", err)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q: gateway takes only options; run gateway --help to see them", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	l := &loader{c: Config{origin: map[string]string{}}, failed: map[string]bool{}}

	// Layer 1: defaults. Mode-dependent ones wait until the mode is known.
	for _, o := range options {
		if o.modeDef == nil && o.def != "" {
			l.set(o, o.def, "default")
		}
	}

	// Layer 2: the config file, which is named by the layers above it.
	cfgOpt := lookup("config")
	if v := env(cfgOpt.env()); v != "" {
		l.set(cfgOpt, v, cfgOpt.env())
	}
	if given[cfgOpt.name] {
		l.set(cfgOpt, *flagValues[cfgOpt.name], sourceFlags)
	}
	if l.c.ConfigFile != "" {
		l.readFile(l.c.ConfigFile)
	}

	// Layers 3 and 4: environment, then flags.
	for _, o := range options {
		if v := env(o.env()); v != "" && o != cfgOpt {
			l.set(o, v, o.env())
		}
	}
	for _, o := range options {
		if given[o.name] && o != cfgOpt {
			l.set(o, *flagValues[o.name], sourceFlags)
		}
	}

	l.resolveToken(env)
	l.resolveModeDefaults()

	problems := append(l.problems, l.c.validate(l.failed)...)
	if len(problems) > 0 {
		return Config{}, problems
	}
	return l.c, nil
}

// readFile applies the config file at path.
func (l *loader) readFile(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		l.failed["config"] = true
		l.problems = append(l.problems, fmt.Sprintf("%s: cannot read the config file: %v", l.c.ref("config"), err))
		return
	}
	seen := map[string]int{}
	for i, line := range strings.Split(string(data), "\n") {
		where := fmt.Sprintf("%s:%d", path, i+1)
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// Lines are not quoted back: a malformed one might be a pasted secret.
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			l.problems = append(l.problems, where+`: not a "name = value" line`)
			continue
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		o := lookup(name)
		switch {
		case name == "config":
			l.problems = append(l.problems, where+": config cannot be set inside a config file")
		case name == "hcloud-token":
			l.problems = append(l.problems, where+": the Hetzner token does not belong in the config file; put it in a file of its own and set hcloud-token-file to that file")
		case o == nil:
			l.problems = append(l.problems, fmt.Sprintf("%s: unknown option %q; run gateway --help to see the options", where, name))
		case seen[name] != 0:
			l.problems = append(l.problems, fmt.Sprintf("%s: %s is already set on line %d", where, name, seen[name]))
		default:
			seen[name] = i + 1
			l.set(o, value, where)
		}
	}
}

// resolveToken reads the Hetzner token: from --hcloud-token-file if given,
// else from HCLOUD_TOKEN. Messages name the source, never the token.
func (l *loader) resolveToken(env func(string) string) {
	if l.c.HCloudTokenFile == "" {
		if tok := strings.TrimSpace(env(tokenEnv)); tok != "" {
			l.c.HCloudToken = tok
			l.c.origin["hcloud-token"] = tokenEnv
		}
		return
	}
	if l.failed["hcloud-token-file"] {
		return
	}
	ref := l.c.ref("hcloud-token-file")
	data, err := os.ReadFile(l.c.HCloudTokenFile)
	if err != nil {
		l.failed["hcloud-token-file"] = true
		l.problems = append(l.problems, fmt.Sprintf("%s: cannot read the token: %v", ref, err))
		return
	}
	tok := strings.TrimSpace(string(data))
	switch {
	case tok == "":
		l.failed["hcloud-token-file"] = true
		l.problems = append(l.problems, fmt.Sprintf("%s: %s is empty; it should hold the Hetzner Cloud API token", ref, l.c.HCloudTokenFile))
	case strings.ContainsAny(tok, " \t\r\n"):
		l.failed["hcloud-token-file"] = true
		l.problems = append(l.problems, fmt.Sprintf("%s: %s holds more than one word; it should hold only the Hetzner Cloud API token", ref, l.c.HCloudTokenFile))
	default:
		l.c.HCloudToken = tok
		l.c.origin["hcloud-token"] = "hcloud-token-file"
	}
}

// resolveModeDefaults picks the cloud, if no layer did, and then the
// defaults that depend on it.
func (l *loader) resolveModeDefaults() {
	if _, set := l.c.origin["cloud"]; !set && !l.failed["cloud"] {
		switch {
		case l.c.HCloudTokenFile != "":
			l.c.Cloud = "hcloud"
			l.c.origin["cloud"] = "default, as --hcloud-token-file is set"
		case l.c.HCloudToken != "":
			l.c.Cloud = "hcloud"
			l.c.origin["cloud"] = "default, as " + tokenEnv + " is set"
		default:
			l.c.Cloud = "local"
			l.c.origin["cloud"] = "default, as no Hetzner token is given"
		}
	}
	for _, o := range options {
		if o.modeDef == nil {
			continue
		}
		if _, set := l.c.origin[o.name]; set || l.failed[o.name] {
			continue
		}
		l.set(o, o.modeDef(l.c.Local()), "default")
	}
}

// Local reports whether machines run on the built-in local cloud.
func (c Config) Local() bool { return c.Cloud == "local" }

// ref names an option in a message, with where its value came from.
func (c Config) ref(name string) string {
	src, ok := c.origin[name]
	switch {
	case !ok:
		return "--" + name
	case strings.HasPrefix(src, "default"):
		return fmt.Sprintf("--%s (%s)", name, src)
	default:
		return fmt.Sprintf("--%s (from %s)", name, src)
	}
}

// Validate reports every problem with c as Problems, or nil.
func (c Config) Validate() error {
	if p := c.validate(nil); len(p) > 0 {
		return p
	}
	return nil
}

var (
	// unixUser is the portable user name shape (useradd's default, less
	// upper case), capped at the usual 32 characters.
	unixUser = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	// labelValue is what Hetzner accepts as a label value.
	labelValue = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?$`)
)

// validate lists the problems of c, skipping rules that involve an option in
// failed: its value never parsed, and that is already reported.
func (c Config) validate(failed map[string]bool) Problems {
	var p Problems
	ok := func(names ...string) bool {
		for _, n := range names {
			if failed[n] {
				return false
			}
		}
		return true
	}
	add := func(name, format string, args ...any) {
		p = append(p, c.ref(name)+": "+fmt.Sprintf(format, args...))
	}
	required := func(name, value, what string) {
		if ok(name) && value == "" {
			add(name, "is empty; give %s", what)
		}
	}

	// Durations.
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"default-ttl", c.DefaultTTL}, {"max-ttl", c.MaxTTL},
		{"max-lifetime", c.MaxLifetime}, {"idle-timeout", c.IdleTimeout},
		{"shutdown-grace", c.ShutdownGrace},
		{"reaper-interval", c.ReaperInterval}, {"reconcile-interval", c.ReconcileInterval},
		{"orphan-grace", c.OrphanGrace},
	}
	positive := map[string]bool{}
	for _, d := range durations {
		if !ok(d.name) {
			continue
		}
		if d.d <= 0 {
			add(d.name, "%s is not positive; give a duration like 90m or 4h", fmtDuration(d.d))
			continue
		}
		positive[d.name] = true
	}
	if positive["default-ttl"] && positive["max-ttl"] && c.DefaultTTL > c.MaxTTL {
		add("default-ttl", "%s is longer than %s, %s", fmtDuration(c.DefaultTTL), c.ref("max-ttl"), fmtDuration(c.MaxTTL))
	}
	if positive["max-ttl"] && positive["max-lifetime"] && c.MaxTTL > c.MaxLifetime {
		add("max-ttl", "%s is longer than %s, %s", fmtDuration(c.MaxTTL), c.ref("max-lifetime"), fmtDuration(c.MaxLifetime))
	}
	// Without a usable max-ttl, the default still must fit the lifetime.
	if !positive["max-ttl"] && positive["default-ttl"] && positive["max-lifetime"] && c.DefaultTTL > c.MaxLifetime {
		add("default-ttl", "%s is longer than %s, %s", fmtDuration(c.DefaultTTL), c.ref("max-lifetime"), fmtDuration(c.MaxLifetime))
	}

	// Mode and the front door.
	cloudOK := ok("cloud") && (c.Cloud == "local" || c.Cloud == "hcloud")
	if ok("cloud") && !cloudOK {
		add("cloud", "%q is not local or hcloud", c.Cloud)
	}
	listenOK := false
	if ok("listen") {
		if msg := checkListen(c.Listen); msg != "" {
			add("listen", "%q %s", c.Listen, msg)
		} else {
			listenOK = true
		}
	}
	usersOK := ok("users") && checkFile(add, "users", c.Users)
	if ok("admins") {
		checkFile(add, "admins", c.Admins)
	}
	if cloudOK && c.Cloud == "hcloud" {
		if c.HCloudToken == "" && ok("hcloud-token-file") {
			add("cloud", "hcloud mode needs a Hetzner Cloud API token: set %s or --hcloud-token-file", tokenEnv)
		}
		if c.Users == "" && ok("users") {
			add("cloud", "hcloud mode needs an allow list: set --users to an authorized_keys file")
		}
	}
	if cloudOK && c.Local() && listenOK && usersOK && c.Users == "" && !isLoopback(c.Listen) {
		add("listen", "%q is not a loopback address: local mode without --users accepts any key, so it only listens on loopback; listen on 127.0.0.1 or set --users", c.Listen)
	}

	// Machines.
	if ok("instance-user") && !unixUser.MatchString(c.InstanceUser) {
		add("instance-user", "%q is not a valid Unix user name: lower case letters, digits, _ and -, starting with a letter or _, at most 32 characters", c.InstanceUser)
	}
	if ok("machine-ssh-port") && (c.MachineSSHPort < 1 || c.MachineSSHPort > 65535) {
		add("machine-ssh-port", "%d is not a port from 1 to 65535", c.MachineSSHPort)
	}
	if ok("provisioning") && c.Provisioning != "snapshot" && c.Provisioning != "infect" {
		add("provisioning", "%q is not snapshot or infect", c.Provisioning)
	}
	if ok("infect-flake") {
		if err := (bootstrap.InfectOptions{Flake: c.InfectFlake}).Validate(); err != nil {
			add("infect-flake", "%v", err)
		}
	}
	if ok("idle-action") && c.IdleAction != "stop" && c.IdleAction != "hibernate" && c.IdleAction != "destroy" {
		add("idle-action", "%q is not stop, hibernate or destroy", c.IdleAction)
	}
	if ok("busy-cpu") && (c.BusyCPU < 0 || c.BusyCPU > 100) {
		add("busy-cpu", "%d is not a percentage from 0 to 100", c.BusyCPU)
	}
	if ok("warn-before") {
		if _, err := parseLeads(c.WarnBefore); err != nil {
			add("warn-before", "%v", err)
		}
	}
	if ok("local-faults") && c.LocalFaults != "" && !c.Local() {
		add("local-faults", "fault injection is for the local cloud only")
	}
	if ok("local-machines") && c.LocalMachines != "builtin" && c.LocalMachines != "openssh" {
		add("local-machines", "%q is not builtin or openssh", c.LocalMachines)
	}
	if ok("gateway-name") && !labelValue.MatchString(c.GatewayName) {
		add("gateway-name", "%q cannot be a Hetzner label value: 1 to 63 letters, digits, -, _ or ., starting and ending with a letter or digit", c.GatewayName)
	}
	required("server-type", c.ServerType, "a Hetzner server type like cx23")
	required("location", c.Location, "a Hetzner location like fsn1")
	if ok("image", "image-selector") && c.Image == "" && c.ImageSelector == "" {
		add("image", "and --image-selector are both empty; give at least one so new machines have an image")
	}

	// Gateway.
	required("data-dir", c.DataDir, "a directory for the lease database")
	required("host-key-dir", c.HostKeyDir, "a directory for the host keys")
	if ok("log-level") {
		if _, err := parseLevel(c.LogLevel); err != nil {
			add("log-level", "%q is not debug, info, warn or error", c.LogLevel)
		}
	}
	return p
}

// checkListen returns why addr is not host:port, or "".
func checkListen(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "is not host:port, like 127.0.0.1:2222 or :22"
	}
	// 0 is allowed: the system picks a free port, which tests rely on.
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "does not end in a port number from 0 to 65535"
	}
	return ""
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkFile reports a named file that is not a readable regular file.
// An empty path is fine: the option is off.
func checkFile(add func(name, format string, args ...any), name, path string) bool {
	if path == "" {
		return true
	}
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		add(name, "%s does not exist; create it with one authorized_keys line per key", path)
	case err != nil:
		add(name, "cannot use %s: %v", path, err)
	case info.IsDir():
		add(name, "%s is a directory, not an authorized_keys file", path)
	default:
		return true
	}
	return false
}

func parseLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q", s)
}

// Level is LogLevel as a slog.Level; info if LogLevel is not valid.
func (c Config) Level() slog.Level {
	l, err := parseLevel(c.LogLevel)
	if err != nil {
		return slog.LevelInfo
	}
	return l
}

// fmtDuration prints 4h rather than 4h0m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// pairs is every option as name and printable value, token redacted.
func (c Config) pairs() [][2]string {
	out := make([][2]string, 0, len(options)+1)
	for _, o := range options {
		var v string
		switch p := o.field(&c).(type) {
		case *string:
			v = *p
		case *time.Duration:
			v = fmtDuration(*p)
		case *int:
			v = strconv.Itoa(*p)
		}
		out = append(out, [2]string{o.name, v})
	}
	tok := "none"
	if c.HCloudToken != "" {
		tok = "redacted"
	}
	return append(out, [2]string{"hcloud-token", tok})
}

// String lists every option as name=value, with the token redacted.
func (c Config) String() string {
	var b strings.Builder
	for i, kv := range c.pairs() {
		if i > 0 {
			b.WriteByte(' ')
		}
		v := kv[1]
		if v == "" || strings.ContainsAny(v, " \t\"=") {
			v = strconv.Quote(v)
		}
		b.WriteString(kv[0] + "=" + v)
	}
	return b.String()
}

// GoString keeps %#v from printing the token.
func (c Config) GoString() string { return "config.Config{" + c.String() + "}" }

// LogValue logs every option, with the token redacted.
func (c Config) LogValue() slog.Value {
	pairs := c.pairs()
	attrs := make([]slog.Attr, len(pairs))
	for i, kv := range pairs {
		attrs[i] = slog.String(kv[0], kv[1])
	}
	return slog.GroupValue(attrs...)
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
