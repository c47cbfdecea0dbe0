package config

import (
	"fmt"
	"net"
	"time"
)

// Validate reports every problem with c as Problems, or nil.
func (c Config) Validate() error {
	if p := c.validate(nil); len(p) > 0 {
		return p
	}
	return nil
}

// validate lists the problems of c: each option's own check (see options),
// then the rules across options. Options in failed are skipped: their
// values never parsed, and that is already reported.
func (c Config) validate(failed map[string]bool) Problems {
	var p Problems
	report := func(name, format string, args ...any) {
		p = append(p, c.ref(name)+": "+fmt.Sprintf(format, args...))
	}
	valid := map[string]bool{}
	for _, o := range options {
		if failed[o.name] {
			continue
		}
		if check := o.bind(&c).check; check != nil {
			if msg := check(); msg != "" {
				report(o.name, "%s", msg)
				continue
			}
		}
		valid[o.name] = true
	}
	for _, r := range rules {
		r(c, func(name string) bool { return valid[name] }, report)
	}
	return p
}

// report adds a problem about the option name.
type report func(name, format string, args ...any)

// rule is a check across options. valid tells whether an option passed its
// own check: a rule leaves alone what is already reported.
type rule func(c Config, valid func(name string) bool, report report)

// rules are every check across options.
var rules = []rule{
	leaseBoundsInOrder,
	hcloudNeedsToken,
	hcloudNeedsAllowList,
	localOnLoopback,
	localOnly,
	someImage,
	infectNeedsFlake,
	pprofNeedsMetrics,
	etcdTLS,
}

// leaseBoundsInOrder: a new lease fits the extension cap, which fits the
// machine's lifetime. An invalid bound drops out, so the ones around it are
// still compared.
func leaseBoundsInOrder(c Config, valid func(string) bool, report report) {
	bounds := []struct {
		name string
		d    time.Duration
	}{{"default-ttl", c.DefaultTTL}, {"max-ttl", c.MaxTTL}, {"max-lifetime", c.MaxLifetime}}
	shorter := -1 // the last valid bound
	for i, b := range bounds {
		if !valid(b.name) {
			continue
		}
		if shorter >= 0 && bounds[shorter].d > b.d {
			s := bounds[shorter]
			report(s.name, "%s is longer than %s, %s", fmtDuration(s.d), c.ref(b.name), fmtDuration(b.d))
		}
		shorter = i
	}
}

func hcloudNeedsToken(c Config, valid func(string) bool, report report) {
	if valid("cloud") && valid("hcloud-token-file") && c.Cloud == CloudHCloud && c.HCloudToken == "" {
		report("cloud", "hcloud mode needs a Hetzner Cloud API token: set %s or --hcloud-token-file", tokenEnv)
	}
}

func hcloudNeedsAllowList(c Config, valid func(string) bool, report report) {
	if valid("cloud") && valid("users") && c.Cloud == CloudHCloud && c.OpenAccess() {
		report("cloud", "hcloud mode needs an allow list: set --users to an authorized_keys file")
	}
}

// localOnLoopback: local machines are shells as the gateway's own OS
// user, which can read the upstream key and every machine's folder, so
// whoever reaches the front door must already be on this host; without an
// allow list, any key gets in besides.
func localOnLoopback(c Config, valid func(string) bool, report report) {
	if !valid("cloud") || !valid("listen") || !c.Local() || isLoopback(c.Listen) {
		return
	}
	why := "local mode's machines are shells as the gateway's own OS user, which can read every other machine"
	if valid("users") && c.OpenAccess() {
		why = "local mode without --users accepts any key, and its machines are shells as the gateway's own OS user"
	}
	report("listen", "%q is not a loopback address: %s, so local mode only listens on loopback; listen on 127.0.0.1, or use Hetzner mode to serve other hosts", c.Listen, why)
}

// localOnly refuses the local cloud's options in Hetzner mode, where they
// would silently do nothing.
func localOnly(c Config, valid func(string) bool, report report) {
	if !valid("cloud") || c.Local() {
		return
	}
	if valid("local-faults") && c.LocalFaults != "" {
		report("local-faults", "fault injection is for the local cloud only")
	}
	if valid("local-boot-delay") && c.LocalBootDelay != 0 {
		report("local-boot-delay", "a boot delay is for the local cloud only; Hetzner's machines take their own time")
	}
	if valid("local-action-delay") && c.LocalActionDelay != 0 {
		report("local-action-delay", "an action delay is for the local cloud only; Hetzner's actions take their own time")
	}
}

// someImage: new machines boot a snapshot found by the selector, or else
// the named image; infect provisioning always starts from the named image.
func someImage(c Config, valid func(string) bool, report report) {
	if !valid("image") || !valid("image-selector") || !valid("provisioning") || c.Image != "" {
		return
	}
	switch {
	case c.Provisioning == ProvisionInfect:
		report("image", "is empty; infect provisioning installs NixOS over this stock image, so give one like debian-12")
	case c.ImageSelector == "":
		report("image", "and --image-selector are both empty; give at least one so new machines have an image")
	}
}

// infectNeedsFlake: there is no flake to install that fits every
// deployment; the operator's own holds their machine's configuration.
func infectNeedsFlake(c Config, valid func(string) bool, report report) {
	if valid("provisioning") && valid("infect-flake") && c.Provisioning == ProvisionInfect && c.InfectFlake == "" {
		report("infect-flake", "is empty; infect provisioning installs NixOS from a flake, so name one with a cloud-instance configuration and a committed flake.lock, like github:owner/repo?dir=nix (see docs/nixos.md)")
	}
}

// pprofNeedsMetrics: the profiler has no listener of its own.
func pprofNeedsMetrics(c Config, valid func(string) bool, report report) {
	if valid("pprof") && valid("metrics-listen") && c.Pprof && c.MetricsListen == "" {
		report("pprof", "the profiler is served on the metrics listener, which is off; set --metrics-listen too, like 127.0.0.1:9464")
	}
}

// etcdTLS: a client certificate needs its key and the key its
// certificate; TLS options without etcd would silently do nothing.
func etcdTLS(c Config, valid func(string) bool, report report) {
	if valid("etcd-cert") && valid("etcd-key") && (c.EtcdCert == "") != (c.EtcdKey == "") {
		if c.EtcdCert == "" {
			report("etcd-key", "is set without --etcd-cert; give both, or neither")
		} else {
			report("etcd-cert", "is set without --etcd-key; give both, or neither")
		}
	}
	if !valid("etcd-endpoints") || c.Etcd() {
		return
	}
	for _, o := range []struct{ name, value string }{{"etcd-ca", c.EtcdCA}, {"etcd-cert", c.EtcdCert}, {"etcd-key", c.EtcdKey}} {
		if valid(o.name) && o.value != "" {
			report(o.name, "is for the etcd store, which is off; set --etcd-endpoints too")
		}
	}
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
