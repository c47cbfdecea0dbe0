// Package config assembles the gateway's configuration from four layers, each
// overriding the one before: built-in defaults, an optional config file, the
// environment, and command-line flags.
//
// Every option has one name, used as the flag (--idle-timeout), as the config
// file name (idle-timeout) and, upper case with dashes as underscores behind
// a CC_GATEWAY_ prefix, as the environment variable (CC_GATEWAY_IDLE_TIMEOUT).
// An empty environment variable counts as unset.
//
// Each option is one row of the table in options.go: its name, help,
// default, and the Config field it fills with the field's parser and the
// check of a value on its own. The few rules that involve more than one
// option are listed in validate.go; values worked out from the options
// (the operation timeout, the image of an infected machine, file paths)
// are methods in derived.go. Every problem is reported, each naming the
// option and the layer its value came from.
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
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Config is the gateway's configuration. Build it with Load.
type Config struct {
	Listen               string              // address of the SSH front door
	PublicName           string              // how people reach the gateway, for hints
	DataDir              string              // holds the lease database
	SecretsKeyFile       string              // seals people's secrets; empty: in DataDir
	EtcdEndpoints        string              // etcd client URLs, comma-separated; empty: the store is in DataDir
	EtcdPrefix           string              // where the store keeps its keys in etcd
	EtcdCA               string              // PEM CA certificates of the etcd members; empty: the system's
	EtcdCert             string              // PEM client certificate for etcd
	EtcdKey              string              // its private key
	HostKeyDir           string              // holds the gateway's host keys
	Users                string              // authorized_keys allow list; empty: anyone (local mode, loopback only)
	Admins               string              // authorized_keys file of admin keys
	Cloud                Cloud               // where machines run
	HCloudTokenFile      string              // file holding the Hetzner token
	HCloudToken          string              // the Hetzner token itself; never printed
	HCloudEndpoint       string              // Hetzner Cloud API base URL; empty for Hetzner's own
	DefaultTTL           time.Duration       // lifetime a new lease starts with
	MaxTTL               time.Duration       // the furthest ahead of now an expiry may be
	MaxLifetime          time.Duration       // the longest a machine may live in total
	IdleTimeout          time.Duration       // a machine without activity this long is stopped
	IdleAction           lease.IdleAction    // what happens to an idle machine
	RevokedAction        lease.RevokedAction // what happens to the machine of a revoked key
	BusyCPU              int                 // percent of CPU that exempts an idle machine; 0 never checks
	MaxUnattended        time.Duration       // how long after the last activity a working agent keeps a machine
	WarnBefore           string              // comma-separated warning lead times
	NotifyAllowPrivate   bool                // notification targets may be private addresses, over http too
	ReaperInterval       time.Duration       // between reaper passes
	ReconcileInterval    time.Duration       // between reconciles
	OrphanGrace          time.Duration       // age before an unclaimed server is an orphan
	Orphans              lease.Orphans       // what reconcile does with orphans
	OrphanDeletes        int                 // the most orphans one reconcile deletes
	WarmPool             int                 // booted machines kept ready for new people; 0: none
	WarmPoolMaxAge       time.Duration       // age at which a ready pool machine is replaced
	HomeVolume           int                 // GB of each person's home volume; 0: none
	HomeRetention        time.Duration       // how long a home is kept after its last machine
	LocalFaults          string              // fault injection spec for the local cloud
	LocalBootDelay       time.Duration       // local cloud: create or power-on to SSH answering
	LocalActionDelay     time.Duration       // local cloud: how long actions run; 0: its default
	InstanceUser         string              // Unix user people land as on their machine
	ServerType           string              // Hetzner server types of new machines, comma-separated (ServerTypes)
	Location             string              // Hetzner locations of new machines, comma-separated (Locations)
	Image                string              // image name used when no image matches ImageSelector
	ImageSelector        string              // label selector of the preferred image
	Provisioning         Provisioning        // how machines get NixOS
	InfectFlake          string              // flake installed by infect provisioning
	MachineSSHPort       int                 // port of the machines' sshd
	FirewallSources      string              // who may reach the machines' sshd: CIDRs, "none", or empty for the gateway's own addresses
	GatewayName          string              // value of the label that marks this gateway's resources
	LocalMachines        LocalMachines       // how local mode boots machines
	ShutdownGrace        time.Duration       // how long sessions get to end on shutdown
	PersistentSessions   bool                // an interactive shell attaches to the persistent session on the machine
	MaxStartups          Startups            // bounds the connections not yet authenticated
	MaxStartupsPerSource int                 // unauthenticated connections one source may hold
	LogLevel             LogLevel            // how much is logged
	MetricsListen        string              // host:port of the metrics and health listener; empty: off
	Pprof                bool                // serve the profiler on the metrics listener
	CreateTestMachine    bool                // gateway preflight makes a test machine
	TestMachineTimeout   time.Duration       // its bound from create to SSH ready; 0: OperationTimeout
	ConfigFile           string              // the config file read, if any

	// What one person may make the gateway hold (docs/security.md).
	MaxSessions        int // session channels per client connection
	MaxConnections     int // connections per key at once
	MaxEarlyRequests   int // requests a session may send before its program starts
	MaxEarlyBytes      int // their payload bytes in total
	GlobalRequestRate  int // global requests a second per connection
	GlobalRequestBurst int // global requests at once beyond the rate

	// origin names where each option's value came from, for error messages.
	// It is nil for a Config built by hand.
	origin map[string]string
}

// Cloud is where machines run.
type Cloud string

// The clouds.
const (
	CloudLocal  Cloud = "local"  // the built-in local cloud, on loopback
	CloudHCloud Cloud = "hcloud" // Hetzner Cloud
)

// Provisioning is how machines get NixOS.
type Provisioning string

// The provisioning methods.
const (
	ProvisionSnapshot Provisioning = "snapshot" // boot a prebuilt NixOS snapshot
	ProvisionInfect   Provisioning = "infect"   // install NixOS over a stock image at first boot
)

// LocalMachines is how the local cloud runs machines; the values are
// localcloud's machine kinds.
type LocalMachines string

// The local machine kinds.
const (
	LocalBuiltin LocalMachines = "builtin" // in-process SSH servers
	LocalOpenSSH LocalMachines = "openssh" // real sshd processes
)

// LogLevel is how much the gateway logs.
type LogLevel string

// The log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// Startups is sshd's MaxStartups start:rate:full: from Start connections
// not yet authenticated, new ones are dropped with a chance of Rate percent,
// rising to all of them at Full.
type Startups struct{ Start, Rate, Full int }

func (s Startups) String() string { return fmt.Sprintf("%d:%d:%d", s.Start, s.Rate, s.Full) }

// ErrHelp is returned by Load when help was asked for and printed.
var ErrHelp = flag.ErrHelp

// envPrefix starts the environment variable of every option.
const envPrefix = "CC_GATEWAY_"

// tokenEnv holds the Hetzner token; it is the name hcloud-go's own tools use.
const tokenEnv = "HCLOUD_TOKEN"

// sourceFlags is how the command line is named as a source in messages.
const sourceFlags = "the command line"

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

func newLoader() *loader {
	return &loader{c: Config{origin: map[string]string{}}, failed: map[string]bool{}}
}

func (l *loader) set(o *option, text, source string) {
	if err := o.bind(&l.c).set(text); err != nil {
		l.failed[o.name] = true
		l.problems = append(l.problems, fmt.Sprintf("--%s (from %s): %q %v", o.name, source, text, err))
		return
	}
	l.c.origin[o.name] = source
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
		f := &flagText{bare: o.bind(&Config{}).bare}
		fs.Var(f, o.name, o.usage)
		flagValues[o.name] = &f.text
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

	l := newLoader()

	// Layer 1: defaults. Those that differ by mode wait until it is known.
	for _, o := range options {
		if o.localDef == "" && o.def != "" {
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

// flagText is an option's text on the command line. A switch may stand
// bare, as the flag package lets a boolean flag: --NAME is --NAME=true.
type flagText struct {
	text string
	bare bool
}

func (f *flagText) String() string { return f.text }

func (f *flagText) Set(s string) error {
	f.text = s
	return nil
}

func (f *flagText) IsBoolFlag() bool { return f.bare }

// readFile applies the config file at path.
func (l *loader) readFile(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		l.failed["config"] = true
		l.problems = append(l.problems, fmt.Sprintf("%s: cannot read the config file: %v", l.c.ref("config"), err))
		return
	}
	l.applyFile(path, data)
}

// applyFile applies the lines of a config file; path names it in messages.
func (l *loader) applyFile(path string, data []byte) {
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
			l.c.Cloud = CloudHCloud
			l.c.origin["cloud"] = "default, as --hcloud-token-file is set"
		case l.c.HCloudToken != "":
			l.c.Cloud = CloudHCloud
			l.c.origin["cloud"] = "default, as " + tokenEnv + " is set"
		default:
			l.c.Cloud = CloudLocal
			l.c.origin["cloud"] = "default, as no Hetzner token is given"
		}
	}
	for _, o := range options {
		if o.localDef == "" {
			continue
		}
		if _, set := l.c.origin[o.name]; set || l.failed[o.name] {
			continue
		}
		def := o.def
		if l.c.Local() {
			def = o.localDef
		}
		l.set(o, def, "default")
	}
}

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
		out = append(out, [2]string{o.name, o.bind(&c).format()})
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
