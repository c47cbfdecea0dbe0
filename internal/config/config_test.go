package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/gateway"
	"github.com/cc-gateway/cc-gateway/internal/lease"
)

func envOf(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func usersFile(t *testing.T) string {
	return writeFile(t, "users", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample alice\n")
}

func mustLoad(t *testing.T, args []string, env map[string]string) Config {
	t.Helper()
	c, err := Load(args, envOf(env), io.Discard)
	if err != nil {
		t.Fatalf("Load(%q): %v", args, err)
	}
	return c
}

func loadErr(t *testing.T, args []string, env map[string]string) error {
	t.Helper()
	_, err := Load(args, envOf(env), io.Discard)
	if err == nil {
		t.Fatalf("Load(%q, %v) succeeded, want an error", args, env)
	}
	return err
}

func TestDefaultsLocalMode(t *testing.T) {
	got := mustLoad(t, nil, nil)
	got.origin = nil
	want := Config{
		Listen:               "127.0.0.1:2222",
		DataDir:              "./data",
		EtcdPrefix:           "/cc-gateway/",
		HostKeyDir:           "./hostkeys",
		Cloud:                "local",
		DefaultTTL:           4 * time.Hour,
		MaxTTL:               24 * time.Hour,
		MaxLifetime:          168 * time.Hour,
		IdleTimeout:          30 * time.Minute,
		InstanceUser:         "claude",
		ServerType:           "cx23",
		Location:             "fsn1",
		Image:                "debian-12",
		ImageSelector:        "cc-gateway=image",
		MachineSSHPort:       2022,
		FirewallSources:      "127.0.0.0/8",
		GatewayName:          "default",
		LocalMachines:        "builtin",
		PersistentSessions:   true,
		ShutdownGrace:        10 * time.Second,
		MaxStartups:          Startups{Start: 10, Rate: 30, Full: 100},
		MaxStartupsPerSource: 8,
		Provisioning:         "snapshot",
		IdleAction:           "stop",
		RevokedAction:        "stop",
		BusyCPU:              10,
		MaxUnattended:        8 * time.Hour,
		WarnBefore:           "15m,5m,1m",
		ReaperInterval:       30 * time.Second,
		ReconcileInterval:    5 * time.Minute,
		OrphanGrace:          10 * time.Minute,
		Orphans:              "delete",
		OrphanDeletes:        3,
		WarmPoolMaxAge:       6 * time.Hour,
		HomeVolume:           10,
		HomeRetention:        720 * time.Hour,
		LogLevel:             "info",

		MaxSessions:        gateway.DefaultLimits.SessionsPerConn,
		MaxConnections:     gateway.DefaultLimits.ConnsPerPerson,
		MaxEarlyRequests:   gateway.DefaultLimits.EarlyRequests,
		MaxEarlyBytes:      gateway.DefaultLimits.EarlyBytes,
		GlobalRequestRate:  gateway.DefaultLimits.GlobalRate,
		GlobalRequestBurst: gateway.DefaultLimits.GlobalBurst,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults\n got %#v\nwant %#v", got, want)
	}
	if !got.Local() {
		t.Fatal("Local() = false without a token")
	}
}

func TestHCloudModeFromToken(t *testing.T) {
	users := usersFile(t)
	got := mustLoad(t, []string{"--users", users}, map[string]string{"HCLOUD_TOKEN": "  tok123\n"})
	if got.Cloud != "hcloud" || got.Local() {
		t.Fatalf("Cloud = %q with HCLOUD_TOKEN set, want hcloud", got.Cloud)
	}
	if got.HCloudToken != "tok123" {
		t.Fatalf("HCloudToken = %q, want it trimmed to tok123", got.HCloudToken)
	}
	if got.Listen != ":22" || got.MachineSSHPort != 22 {
		t.Fatalf("hcloud defaults: Listen %q, MachineSSHPort %d; want :22 and 22", got.Listen, got.MachineSSHPort)
	}
}

func TestTokenFile(t *testing.T) {
	users := usersFile(t)
	tokFile := writeFile(t, "token", "from-file\n")
	got := mustLoad(t, []string{"--users", users, "--hcloud-token-file", tokFile},
		map[string]string{"HCLOUD_TOKEN": "from-env"})
	if got.HCloudToken != "from-file" {
		t.Fatalf("HCloudToken = %q, want the file's token to win over HCLOUD_TOKEN", got.HCloudToken)
	}
	if got.Cloud != "hcloud" {
		t.Fatalf("Cloud = %q with a token file, want hcloud", got.Cloud)
	}

	// An explicit local mode keeps the token but does not use the hcloud defaults.
	got = mustLoad(t, []string{"--cloud", "local"}, map[string]string{"HCLOUD_TOKEN": "t"})
	if !got.Local() || got.Listen != "127.0.0.1:2222" {
		t.Fatalf("--cloud local with a token: Cloud %q Listen %q", got.Cloud, got.Listen)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "gw.conf", "idle-timeout = 11m\ninstance-user = fromfile\nlisten = 127.0.0.1:1111\n")
	fileEnv := map[string]string{"CC_GATEWAY_CONFIG": file}
	envLayer := map[string]string{
		"CC_GATEWAY_IDLE_TIMEOUT":  "12m",
		"CC_GATEWAY_INSTANCE_USER": "fromenv",
		"CC_GATEWAY_LISTEN":        "127.0.0.1:1212",
	}
	flagLayer := []string{"--idle-timeout", "13m", "--instance-user=fromflag", "--listen=127.0.0.1:1313"}

	type want struct {
		idle   time.Duration
		user   string
		listen string
	}
	cases := []struct {
		name             string
		file, env, flags bool
		want             want
	}{
		{"defaults only", false, false, false, want{30 * time.Minute, "claude", "127.0.0.1:2222"}},
		{"file over defaults", true, false, false, want{11 * time.Minute, "fromfile", "127.0.0.1:1111"}},
		{"env over file", true, true, false, want{12 * time.Minute, "fromenv", "127.0.0.1:1212"}},
		{"env over defaults", false, true, false, want{12 * time.Minute, "fromenv", "127.0.0.1:1212"}},
		{"flags over everything", true, true, true, want{13 * time.Minute, "fromflag", "127.0.0.1:1313"}},
		{"flags over file", true, false, true, want{13 * time.Minute, "fromflag", "127.0.0.1:1313"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			if tc.file {
				for k, v := range fileEnv {
					env[k] = v
				}
			}
			if tc.env {
				for k, v := range envLayer {
					env[k] = v
				}
			}
			var args []string
			if tc.flags {
				args = flagLayer
			}
			c := mustLoad(t, args, env)
			got := want{c.IdleTimeout, c.InstanceUser, c.Listen}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestConfigFlagWinsOverConfigEnv(t *testing.T) {
	envFile := writeFile(t, "env.conf", "location = hel1\n")
	flagFile := writeFile(t, "flag.conf", "location = nbg1\n")
	c := mustLoad(t, []string{"--config", flagFile}, map[string]string{"CC_GATEWAY_CONFIG": envFile})
	if c.Location != "nbg1" || c.ConfigFile != flagFile {
		t.Fatalf("Location %q from %q, want nbg1 from the --config file", c.Location, c.ConfigFile)
	}
}

func TestEmptyFlagOverridesLowerLayer(t *testing.T) {
	c := mustLoad(t, []string{"--image-selector="}, map[string]string{"CC_GATEWAY_IMAGE_SELECTOR": "x=y"})
	if c.ImageSelector != "" {
		t.Fatalf("ImageSelector = %q, want an explicitly empty flag to clear it", c.ImageSelector)
	}
}

func TestEnvNames(t *testing.T) {
	users := usersFile(t)
	tokFile := writeFile(t, "token", "tok\n")
	emptyConf := writeFile(t, "empty.conf", "# nothing\n")
	cases := []struct {
		env   string
		value string
		extra map[string]string
		get   func(Config) any
		want  any
	}{
		{"CC_GATEWAY_CONFIG", emptyConf, nil, func(c Config) any { return c.ConfigFile }, emptyConf},
		{"CC_GATEWAY_LISTEN", "127.0.0.2:2200", nil, func(c Config) any { return c.Listen }, "127.0.0.2:2200"},
		{"CC_GATEWAY_PUBLIC_NAME", "cc.example.com", nil, func(c Config) any { return c.PublicName }, "cc.example.com"},
		{"CC_GATEWAY_DATA_DIR", "/var/lib/gw", nil, func(c Config) any { return c.DataDir }, "/var/lib/gw"},
		{"CC_GATEWAY_ETCD_ENDPOINTS", "http://127.0.0.1:2379, https://127.0.0.2:2379", nil, func(c Config) any { return fmt.Sprint(c.EtcdEndpointList()) }, "[http://127.0.0.1:2379 https://127.0.0.2:2379]"},
		{"CC_GATEWAY_ETCD_PREFIX", "/team-a/", nil, func(c Config) any { return c.EtcdPrefix }, "/team-a/"},
		{"CC_GATEWAY_ETCD_CA", users, map[string]string{"CC_GATEWAY_ETCD_ENDPOINTS": "https://127.0.0.1:2379"}, func(c Config) any { return c.EtcdCA }, users},
		{"CC_GATEWAY_ETCD_CERT", users, map[string]string{"CC_GATEWAY_ETCD_ENDPOINTS": "https://127.0.0.1:2379", "CC_GATEWAY_ETCD_KEY": users}, func(c Config) any { return c.EtcdCert }, users},
		{"CC_GATEWAY_ETCD_KEY", users, map[string]string{"CC_GATEWAY_ETCD_ENDPOINTS": "https://127.0.0.1:2379", "CC_GATEWAY_ETCD_CERT": users}, func(c Config) any { return c.EtcdKey }, users},
		{"CC_GATEWAY_HOST_KEY_DIR", "/etc/gw/keys", nil, func(c Config) any { return c.HostKeyDir }, "/etc/gw/keys"},
		{"CC_GATEWAY_USERS", users, nil, func(c Config) any { return c.Users }, users},
		{"CC_GATEWAY_ADMINS", users, nil, func(c Config) any { return c.Admins }, users},
		{"CC_GATEWAY_CLOUD", "local", map[string]string{"HCLOUD_TOKEN": "t"}, func(c Config) any { return c.Cloud }, CloudLocal},
		{"CC_GATEWAY_HCLOUD_TOKEN_FILE", tokFile, map[string]string{"CC_GATEWAY_USERS": users}, func(c Config) any { return c.HCloudToken }, "tok"},
		{"CC_GATEWAY_HCLOUD_ENDPOINT", "http://127.0.0.1:8080/v1", nil, func(c Config) any { return c.HCloudEndpoint }, "http://127.0.0.1:8080/v1"},
		{"CC_GATEWAY_DEFAULT_TTL", "1h", nil, func(c Config) any { return c.DefaultTTL }, time.Hour},
		{"CC_GATEWAY_MAX_TTL", "48h", nil, func(c Config) any { return c.MaxTTL }, 48 * time.Hour},
		{"CC_GATEWAY_MAX_LIFETIME", "200h", nil, func(c Config) any { return c.MaxLifetime }, 200 * time.Hour},
		{"CC_GATEWAY_IDLE_TIMEOUT", "5m", nil, func(c Config) any { return c.IdleTimeout }, 5 * time.Minute},
		{"CC_GATEWAY_INSTANCE_USER", "dev", nil, func(c Config) any { return c.InstanceUser }, "dev"},
		{"CC_GATEWAY_SERVER_TYPE", "cx33", nil, func(c Config) any { return c.ServerType }, "cx33"},
		{"CC_GATEWAY_LOCATION", "nbg1", nil, func(c Config) any { return c.Location }, "nbg1"},
		{"CC_GATEWAY_IMAGE", "debian-13", nil, func(c Config) any { return c.Image }, "debian-13"},
		{"CC_GATEWAY_IMAGE_SELECTOR", "role=img", nil, func(c Config) any { return c.ImageSelector }, "role=img"},
		{"CC_GATEWAY_MACHINE_SSH_PORT", "2200", nil, func(c Config) any { return c.MachineSSHPort }, 2200},
		{"CC_GATEWAY_FIREWALL_SOURCES", "203.0.113.7/32", nil, func(c Config) any { return c.FirewallSources }, "203.0.113.7/32"},
		{"CC_GATEWAY_GATEWAY_NAME", "prod", nil, func(c Config) any { return c.GatewayName }, "prod"},
		{"CC_GATEWAY_LOCAL_MACHINES", "openssh", nil, func(c Config) any { return c.LocalMachines }, LocalOpenSSH},
		{"CC_GATEWAY_SHUTDOWN_GRACE", "3s", nil, func(c Config) any { return c.ShutdownGrace }, 3 * time.Second},
		{"CC_GATEWAY_PERSISTENT_SESSIONS", "false", nil, func(c Config) any { return c.PersistentSessions }, false},
		{"CC_GATEWAY_IDLE_ACTION", "hibernate", nil, func(c Config) any { return c.IdleAction }, lease.IdleHibernate},
		{"CC_GATEWAY_REVOKED_ACTION", "keep", nil, func(c Config) any { return c.RevokedAction }, lease.RevokedKeep},
		{"CC_GATEWAY_BUSY_CPU", "40", nil, func(c Config) any { return c.BusyCPU }, 40},
		{"CC_GATEWAY_MAX_UNATTENDED", "2h", nil, func(c Config) any { return c.MaxUnattended }, 2 * time.Hour},
		{"CC_GATEWAY_NOTIFY_ALLOW_PRIVATE", "true", nil, func(c Config) any { return c.NotifyAllowPrivate }, true},
		{"CC_GATEWAY_WARN_BEFORE", "10m,2m", nil, func(c Config) any { return c.WarnBefore }, "10m,2m"},
		{"CC_GATEWAY_REAPER_INTERVAL", "10s", nil, func(c Config) any { return c.ReaperInterval }, 10 * time.Second},
		{"CC_GATEWAY_RECONCILE_INTERVAL", "1m", nil, func(c Config) any { return c.ReconcileInterval }, time.Minute},
		{"CC_GATEWAY_ORPHAN_GRACE", "20m", nil, func(c Config) any { return c.OrphanGrace }, 20 * time.Minute},
		{"CC_GATEWAY_ORPHANS", "keep", nil, func(c Config) any { return c.Orphans }, lease.OrphansKeep},
		{"CC_GATEWAY_ORPHAN_DELETES", "5", nil, func(c Config) any { return c.OrphanDeletes }, 5},
		{"CC_GATEWAY_WARM_POOL", "2", nil, func(c Config) any { return c.WarmPool }, 2},
		{"CC_GATEWAY_WARM_POOL_MAX_AGE", "2h", nil, func(c Config) any { return c.WarmPoolMaxAge }, 2 * time.Hour},
		{"CC_GATEWAY_HOME_VOLUME", "0", nil, func(c Config) any { return c.HomeVolume }, 0},
		{"CC_GATEWAY_HOME_RETENTION", "48h", nil, func(c Config) any { return c.HomeRetention }, 48 * time.Hour},
		{"CC_GATEWAY_LOCAL_FAULTS", "rate=0.1", nil, func(c Config) any { return c.LocalFaults }, "rate=0.1"},
		{"CC_GATEWAY_LOCAL_BOOT_DELAY", "20s", nil, func(c Config) any { return c.LocalBootDelay }, 20 * time.Second},
		{"CC_GATEWAY_LOCAL_ACTION_DELAY", "2s", nil, func(c Config) any { return c.LocalActionDelay }, 2 * time.Second},
		{"CC_GATEWAY_PROVISIONING", "infect", map[string]string{"CC_GATEWAY_INFECT_FLAKE": "github:me/fork?dir=nix"},
			func(c Config) any { return c.Provisioning }, ProvisionInfect},
		{"CC_GATEWAY_INFECT_FLAKE", "github:me/fork?dir=nix", nil, func(c Config) any { return c.InfectFlake }, "github:me/fork?dir=nix"},
		{"CC_GATEWAY_LOG_LEVEL", "debug", nil, func(c Config) any { return c.LogLevel }, LogDebug},
		{"CC_GATEWAY_MAX_STARTUPS", "5:50:20", nil, func(c Config) any { return c.MaxStartups }, Startups{Start: 5, Rate: 50, Full: 20}},
		{"CC_GATEWAY_MAX_STARTUPS", "50", nil, func(c Config) any { return c.MaxStartups }, Startups{Start: 50, Rate: 100, Full: 50}},
		{"CC_GATEWAY_MAX_STARTUPS_PER_SOURCE", "3", nil, func(c Config) any { return c.MaxStartupsPerSource }, 3},
		{"CC_GATEWAY_MAX_SESSIONS", "4", nil, func(c Config) any { return c.MaxSessions }, 4},
		{"CC_GATEWAY_MAX_CONNECTIONS", "5", nil, func(c Config) any { return c.MaxConnections }, 5},
		{"CC_GATEWAY_MAX_EARLY_REQUESTS", "16", nil, func(c Config) any { return c.MaxEarlyRequests }, 16},
		{"CC_GATEWAY_MAX_EARLY_BYTES", "4096", nil, func(c Config) any { return c.MaxEarlyBytes }, 4096},
		{"CC_GATEWAY_GLOBAL_REQUEST_RATE", "2", nil, func(c Config) any { return c.GlobalRequestRate }, 2},
		{"CC_GATEWAY_GLOBAL_REQUEST_BURST", "20", nil, func(c Config) any { return c.GlobalRequestBurst }, 20},
		{"CC_GATEWAY_CREATE_TEST_MACHINE", "true", nil, func(c Config) any { return c.CreateTestMachine }, true},
		{"CC_GATEWAY_METRICS_LISTEN", "127.0.0.1:9464", nil, func(c Config) any { return c.MetricsListen }, "127.0.0.1:9464"},
		{"CC_GATEWAY_PPROF", "true", map[string]string{"CC_GATEWAY_METRICS_LISTEN": "127.0.0.1:0"}, func(c Config) any { return c.Pprof }, true},
		{"CC_GATEWAY_SECRETS_KEY_FILE", "/keys/secrets", nil, func(c Config) any { return c.SecretsKeyPath() }, "/keys/secrets"},
		{"CC_GATEWAY_TEST_MACHINE_TIMEOUT", "3m", nil, func(c Config) any { return c.TestMachineTimeout }, 3 * time.Minute},
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.env] = true
		t.Run(tc.env, func(t *testing.T) {
			env := map[string]string{tc.env: tc.value}
			for k, v := range tc.extra {
				env[k] = v
			}
			c := mustLoad(t, nil, env)
			if got := tc.get(c); got != tc.want {
				t.Fatalf("with %s=%s: got %v, want %v", tc.env, tc.value, got, tc.want)
			}
		})
	}
	for _, o := range options {
		if !covered[o.env()] {
			t.Errorf("option --%s (env %s) has no case here", o.name, o.env())
		}
	}
}

func TestConfigFileFormat(t *testing.T) {
	file := writeFile(t, "gw.conf", "# comment\r\n\r\n   idle-timeout=45m   \r\n\t# indented comment\nimage-selector = a=b\nusers =\n")
	c := mustLoad(t, []string{"--config", file}, nil)
	if c.IdleTimeout != 45*time.Minute || c.ImageSelector != "a=b" || c.Users != "" {
		t.Fatalf("parsed IdleTimeout %v ImageSelector %q Users %q", c.IdleTimeout, c.ImageSelector, c.Users)
	}
}

func TestConfigFileErrors(t *testing.T) {
	file := writeFile(t, "gw.conf", strings.Join([]string{
		"# comment",
		"",
		"idle-timeout = 45m",
		"this line is wrong",
		"colour = blue",
		"idle-timeout = 50m",
		"max-ttl = 2x",
		"config = other.conf",
		"hcloud-token = very-secret",
		"--location = nbg1",
	}, "\n"))
	err := loadErr(t, []string{"--config", file}, nil)
	var p Problems
	if !errors.As(err, &p) {
		t.Fatalf("err is %T, want Problems", err)
	}
	want := []string{
		file + `:4: not a "name = value" line`,
		file + `:5: unknown option "colour"`,
		file + `:6: idle-timeout is already set on line 3`,
		`--max-ttl (from ` + file + `:7): "2x" is not a duration like 90m or 4h`,
		file + `:8: config cannot be set inside a config file`,
		file + `:9: the Hetzner token does not belong in the config file`,
		file + `:10: unknown option "--location"`,
	}
	if len(p) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(p), len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "very-secret") {
		t.Errorf("error repeats a value from the file that looks like a token:\n%v", err)
	}
}

func TestMissingConfigFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.conf")
	err := loadErr(t, nil, map[string]string{"CC_GATEWAY_CONFIG": missing})
	if !strings.Contains(err.Error(), "--config (from CC_GATEWAY_CONFIG): cannot read the config file") ||
		!strings.Contains(err.Error(), missing) {
		t.Fatalf("err = %v", err)
	}
}

func TestValidationRules(t *testing.T) {
	users := usersFile(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	emptyTok := writeFile(t, "empty-token", "\n\n")
	twoWordTok := writeFile(t, "two-word-token", "abc def\n")
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"zero duration", []string{"--default-ttl=0"}, nil,
			"--default-ttl (from the command line): 0s is not positive"},
		{"negative duration", nil, map[string]string{"CC_GATEWAY_IDLE_TIMEOUT": "-5m"},
			"--idle-timeout (from CC_GATEWAY_IDLE_TIMEOUT): -5m is not positive"},
		{"firewall source not a block", []string{"--firewall-sources=10.0.0.0/8,example.com"}, nil,
			`--firewall-sources (from the command line): "example.com" is not an address block like 203.0.113.7/32 or 2001:db8::/64`},
		{"firewall source with host bits", []string{"--firewall-sources=10.1.2.3/8"}, nil,
			`"10.1.2.3/8" has host bits set: write the network 10.0.0.0/8, or the single address 10.1.2.3/32`},
		{"firewall none among blocks", []string{"--firewall-sources=10.0.0.0/8,none"}, nil,
			"none keeps no firewall and cannot be combined with address blocks"},
		{"bad duration", nil, map[string]string{"CC_GATEWAY_MAX_TTL": "2x"},
			`--max-ttl (from CC_GATEWAY_MAX_TTL): "2x" is not a duration like 90m or 4h`},
		{"default over max ttl", []string{"--default-ttl=30h"}, nil,
			"--default-ttl (from the command line): 30h is longer than --max-ttl (default), 24h"},
		{"max ttl over lifetime", []string{"--max-ttl=200h"}, nil,
			"--max-ttl (from the command line): 200h is longer than --max-lifetime (default), 168h"},
		{"default over lifetime when max ttl is bad", []string{"--max-ttl=x", "--default-ttl=200h"}, nil,
			"--default-ttl (from the command line): 200h is longer than --max-lifetime (default), 168h"},
		{"listen without port", []string{"--listen=localhost"}, nil,
			`--listen (from the command line): "localhost" is not host:port`},
		{"listen port out of range", []string{"--listen=127.0.0.1:70000"}, nil,
			`"127.0.0.1:70000" does not end in a port number from 0 to 65535`},
		{"unknown cloud", []string{"--cloud=aws"}, nil,
			`--cloud (from the command line): "aws" is not local or hcloud`},
		{"hcloud without token", []string{"--cloud=hcloud", "--users", users}, nil,
			"--cloud (from the command line): hcloud mode needs a Hetzner Cloud API token: set HCLOUD_TOKEN or --hcloud-token-file"},
		{"hcloud without users", nil, map[string]string{"HCLOUD_TOKEN": "t"},
			"--cloud (default, as HCLOUD_TOKEN is set): hcloud mode needs an allow list: set --users to an authorized_keys file"},
		{"hcloud with missing users file", []string{"--users", missing}, map[string]string{"HCLOUD_TOKEN": "t"},
			"--users (from the command line): " + missing + " does not exist"},
		{"users is a directory", []string{"--users", dir}, nil,
			dir + " is a directory, not an authorized_keys file"},
		{"etcd endpoint without a port", []string{"--etcd-endpoints=http://127.0.0.1:2379,http://127.0.0.2"}, nil,
			`--etcd-endpoints (from the command line): "http://127.0.0.2" is not an etcd client URL; give http://HOST:PORT`},
		{"etcd endpoint without a scheme", []string{"--etcd-endpoints=127.0.0.1:2379"}, nil,
			`"127.0.0.1:2379" is not an etcd client URL`},
		{"etcd prefix without slashes", []string{"--etcd-endpoints=http://127.0.0.1:2379", "--etcd-prefix=gw"}, nil,
			`--etcd-prefix (from the command line): "gw" does not begin and end with /`},
		{"missing etcd CA", []string{"--etcd-endpoints=https://127.0.0.1:2379", "--etcd-ca", missing}, nil,
			"--etcd-ca (from the command line): " + missing + " does not exist; give a PEM file of CA certificates"},
		{"etcd cert without key", []string{"--etcd-endpoints=https://127.0.0.1:2379", "--etcd-cert", users}, nil,
			"--etcd-cert (from the command line): is set without --etcd-key; give both, or neither"},
		{"etcd TLS without etcd", []string{"--etcd-ca", users}, nil,
			"--etcd-ca (from the command line): is for the etcd store, which is off; set --etcd-endpoints too"},
		{"missing admins file", nil, map[string]string{"CC_GATEWAY_ADMINS": missing},
			"--admins (from CC_GATEWAY_ADMINS): " + missing + " does not exist"},
		{"empty token file", []string{"--hcloud-token-file", emptyTok, "--users", users}, nil,
			"--hcloud-token-file (from the command line): " + emptyTok + " is empty"},
		{"token file with two words", []string{"--hcloud-token-file", twoWordTok, "--users", users}, nil,
			twoWordTok + " holds more than one word"},
		{"missing token file", []string{"--hcloud-token-file", missing, "--users", users}, nil,
			"--hcloud-token-file (from the command line): cannot read the token"},
		{"local open to all interfaces", []string{"--listen=:2222"}, nil,
			`":2222" is not a loopback address: local mode without --users accepts any key`},
		{"local on a public address", []string{"--listen=192.0.2.1:2222"}, nil,
			"local mode without --users accepts any key"},
		{"local with an allow list on all interfaces", []string{"--listen=0.0.0.0:2222", "--users", users}, nil,
			`--listen (from the command line): "0.0.0.0:2222" is not a loopback address: local mode's machines are shells as the gateway's own OS user`},
		{"local with an allow list on a public address", []string{"--listen=192.0.2.1:2222", "--users", users}, nil,
			"so local mode only listens on loopback; listen on 127.0.0.1, or use Hetzner mode"},
		{"upper case user", []string{"--instance-user=Bob"}, nil,
			`--instance-user (from the command line): "Bob" is not a valid Unix user name`},
		{"user starting with digit", []string{"--instance-user=1dev"}, nil, `"1dev" is not a valid Unix user name`},
		{"user with space", []string{"--instance-user=a b"}, nil, `"a b" is not a valid Unix user name`},
		{"user too long", []string{"--instance-user=" + strings.Repeat("a", 33)}, nil, "is not a valid Unix user name"},
		{"empty user", []string{"--instance-user="}, nil, `"" is not a valid Unix user name`},
		{"port zero", []string{"--machine-ssh-port=0"}, nil,
			"--machine-ssh-port (from the command line): 0 is not a port from 1 to 65535"},
		{"port too high", nil, map[string]string{"CC_GATEWAY_MACHINE_SSH_PORT": "65536"},
			"--machine-ssh-port (from CC_GATEWAY_MACHINE_SSH_PORT): 65536 is not a port from 1 to 65535"},
		{"port not a number", []string{"--machine-ssh-port=ssh"}, nil, `"ssh" is not a whole number`},
		{"unknown provisioning", []string{"--provisioning=pxe"}, nil,
			`--provisioning (from the command line): "pxe" is not snapshot or infect`},
		{"infect flake with a quote", []string{"--infect-flake=github:x/y?dir='nix'"}, nil,
			`--infect-flake (from the command line): `},
		{"unknown idle action", []string{"--idle-action=sleep"}, nil,
			`--idle-action (from the command line): "sleep" is not stop, hibernate or destroy`},
		{"unknown revoked action", []string{"--revoked-action=hibernate"}, nil,
			`--revoked-action (from the command line): "hibernate" is not stop, keep or destroy`},
		{"busy cpu over 100", []string{"--busy-cpu=150"}, nil,
			`--busy-cpu (from the command line): 150 is not a percentage from 0 to 100`},
		{"warning lead that is not a duration", []string{"--warn-before=15m,soon"}, nil,
			`--warn-before (from the command line): "soon" is not a positive duration like 15m`},
		{"faults outside local mode", []string{"--local-faults=rate=0.5", "--cloud=hcloud", "--users", users}, map[string]string{"HCLOUD_TOKEN": "t"},
			`--local-faults (from the command line): fault injection is for the local cloud only`},
		{"boot delay outside local mode", []string{"--local-boot-delay=20s", "--cloud=hcloud", "--users", users}, map[string]string{"HCLOUD_TOKEN": "t"},
			`--local-boot-delay (from the command line): a boot delay is for the local cloud only; Hetzner's machines take their own time`},
		{"action delay outside local mode", []string{"--local-action-delay=2s", "--cloud=hcloud", "--users", users}, map[string]string{"HCLOUD_TOKEN": "t"},
			`--local-action-delay (from the command line): an action delay is for the local cloud only; Hetzner's actions take their own time`},
		{"negative boot delay", []string{"--local-boot-delay=-1s"}, nil,
			`--local-boot-delay (from the command line): -1s is not from 0s to 10m`},
		{"boot delay beyond any real boot", []string{"--local-boot-delay=1h"}, nil,
			`--local-boot-delay (from the command line): 1h is not from 0s to 10m`},
		{"metrics listen not host:port", []string{"--metrics-listen=9464"}, nil,
			`--metrics-listen (from the command line): "9464" is not host:port, like 127.0.0.1:2222 or :22`},
		{"pprof without a metrics listener", []string{"--pprof"}, nil,
			`--pprof (from the command line): the profiler is served on the metrics listener, which is off; set --metrics-listen too, like 127.0.0.1:9464`},
		{"unknown local machines", []string{"--local-machines=docker"}, nil,
			`--local-machines (from the command line): "docker" is not builtin or openssh`},
		{"unknown orphan policy", []string{"--orphans=adopt"}, nil,
			`--orphans (from the command line): "adopt" is not delete or keep`},
		{"no orphan deletes", []string{"--orphan-deletes=0"}, nil,
			`--orphan-deletes (from the command line): 0 is not a count from 1 to 1000`},
		{"a pool too large", []string{"--warm-pool=51"}, nil,
			`--warm-pool (from the command line): 51 is not a count of machines from 0 to 50`},
		{"a home volume Hetzner does not offer", []string{"--home-volume=5"}, nil,
			`--home-volume (from the command line): 5 is not a volume size Hetzner offers: give 10 to 10240 GB, or 0 for no home volumes`},
		{"unknown log level", []string{"--log-level=verbose"}, nil, `"verbose" is not debug, info, warn or error`},
		{"bad gateway name", []string{"--gateway-name=-prod"}, nil, `"-prod" cannot be a Hetzner label value`},
		{"empty server type", []string{"--server-type="}, nil, "--server-type (from the command line): is empty"},
		{"empty location", []string{"--location="}, nil, "--location (from the command line): is empty"},
		{"location list with a hole", []string{"--location=fsn1,,hel1"}, nil,
			`--location (from the command line): "fsn1,,hel1" has an empty name; give a Hetzner location, or a comma-separated list of them in order of preference like fsn1,nbg1`},
		{"server type given twice", nil, map[string]string{"CC_GATEWAY_SERVER_TYPE": "cx23, cx33,cx23"},
			`--server-type (from CC_GATEWAY_SERVER_TYPE): "cx23, cx33,cx23" names cx23 twice; give a Hetzner server type`},
		{"no image at all", []string{"--image=", "--image-selector="}, nil, "--image-selector are both empty"},
		{"infect without a flake", []string{"--provisioning=infect"}, nil,
			"--infect-flake: is empty; infect provisioning installs NixOS from a flake, so name one"},
		{"infect with an empty flake", []string{"--provisioning=infect", "--infect-flake="}, nil,
			"--infect-flake (from the command line): is empty; infect provisioning installs NixOS from a flake"},
		{"infect without a stock image", []string{"--provisioning=infect", "--image=", "--infect-flake=github:me/fork?dir=nix"}, nil,
			"--image (from the command line): is empty; infect provisioning installs NixOS over this stock image"},
		{"empty data dir", []string{"--data-dir="}, nil, "--data-dir (from the command line): is empty"},
		{"empty host key dir", []string{"--host-key-dir="}, nil, "--host-key-dir (from the command line): is empty"},
		{"startups not three numbers", []string{"--max-startups=10:30"}, nil,
			`--max-startups (from the command line): "10:30" is not START:RATE:FULL, like 10:30:100, nor one number`},
		{"startups in the wrong order", []string{"--max-startups=100:30:10"}, nil,
			"--max-startups (from the command line): 100:30:10: START is above FULL"},
		{"startups rate over 100", []string{"--max-startups=10:130:100"}, nil, "10:130:100: RATE is a percentage from 0 to 100"},
		{"startups zero", []string{"--max-startups=0"}, nil, "0:100:0: START and FULL are numbers of connections from 1 to 100000"},
		{"no startups per source", []string{"--max-startups-per-source=0"}, nil,
			"--max-startups-per-source (from the command line): 0 is not a number of connections from 1 to 100000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := loadErr(t, tc.args, tc.env)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error lacks %q:\n%v", tc.want, err)
			}
		})
	}
}

func TestValidConfigsPass(t *testing.T) {
	users := usersFile(t)
	cases := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"ipv6 loopback", []string{"--listen=[::1]:2222"}, nil},
		{"localhost", []string{"--listen=localhost:2222"}, nil},
		{"any port on loopback", []string{"--listen=127.0.0.1:0"}, nil},
		{"local with an allow list on loopback", []string{"--listen=127.0.0.1:2222", "--users", users}, nil},
		{"hcloud on all interfaces", []string{"--listen=:22", "--users", users}, map[string]string{"HCLOUD_TOKEN": "t"}},
		{"hcloud complete", []string{"--users", users, "--admins", users}, map[string]string{"HCLOUD_TOKEN": "t"}},
		{"user with underscore and dash", []string{"--instance-user=_dev-1"}, nil},
		{"image selector only", []string{"--image="}, nil},
		{"ttl equal to caps", []string{"--default-ttl=24h", "--max-ttl=24h", "--max-lifetime=24h"}, nil},
		{"durations with minutes", []string{"--default-ttl=1h30m", "--idle-timeout=90s"}, nil},
		{"startups as one number", []string{"--max-startups=50"}, nil},
		{"startups without early drops", []string{"--max-startups=20:100:20", "--max-startups-per-source=20"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mustLoad(t, tc.args, tc.env)
		})
	}
}

func TestEveryProblemListed(t *testing.T) {
	err := loadErr(t, []string{"--cloud=hcloud", "--max-ttl=2x", "--instance-user=Root", "--log-level=loud"},
		map[string]string{"CC_GATEWAY_IDLE_TIMEOUT": "0"})
	var p Problems
	if !errors.As(err, &p) {
		t.Fatalf("err is %T, want Problems", err)
	}
	want := []string{
		`--max-ttl (from the command line): "2x"`,
		"--idle-timeout (from CC_GATEWAY_IDLE_TIMEOUT): 0s is not positive",
		"needs a Hetzner Cloud API token",
		"needs an allow list",
		`"Root" is not a valid Unix user name`,
		`"loud" is not debug`,
	}
	if len(p) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(p), len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if !strings.HasPrefix(err.Error(), fmt.Sprintf("%d configuration problems:\n", len(p))) {
		t.Errorf("error does not start with a count:\n%v", err)
	}
}

func TestValidateHandBuilt(t *testing.T) {
	c := mustLoad(t, nil, nil)
	c.origin = nil
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate of loaded config: %v", err)
	}
	c.IdleTimeout = 0
	err := c.Validate()
	if err == nil || err.Error() != "--idle-timeout: 0s is not positive; give a duration like 90m or 4h" {
		t.Fatalf("Validate = %v", err)
	}
	if err := (Config{}).Validate(); err == nil {
		t.Fatal("Validate of the zero Config passed")
	}
}

// TestRulesSkipInvalidOptions: a rule across options says nothing when
// one of its options is already reported, so each mistake is listed once.
func TestRulesSkipInvalidOptions(t *testing.T) {
	err := loadErr(t, []string{"--cloud=aws", "--local-faults=rate=1"}, nil)
	var p Problems
	if !errors.As(err, &p) || len(p) != 1 || !strings.Contains(p[0], `"aws" is not local or hcloud`) {
		t.Fatalf("want only the bad cloud reported, got %v", err)
	}
}

func TestDerivedValues(t *testing.T) {
	snapshot := mustLoad(t, []string{"--image-selector=role=nixos"}, nil)
	if snapshot.Infect() != nil || snapshot.SnapshotSelector() != "role=nixos" || snapshot.OperationTimeout() != 10*time.Minute {
		t.Errorf("snapshot provisioning: Infect %v, SnapshotSelector %q, OperationTimeout %v",
			snapshot.Infect(), snapshot.SnapshotSelector(), snapshot.OperationTimeout())
	}
	infect := mustLoad(t, []string{"--provisioning=infect", "--image-selector=role=nixos", "--infect-flake=github:me/fork?dir=nix"}, nil)
	if inf := infect.Infect(); inf == nil || inf.Flake != "github:me/fork?dir=nix" {
		t.Errorf("infect provisioning installs %+v, want the --infect-flake", inf)
	}
	// The machine starts from the stock image, whatever the selector says.
	if infect.SnapshotSelector() != "" {
		t.Errorf("infect provisioning boots snapshots matching %q", infect.SnapshotSelector())
	}
	if infect.OperationTimeout() <= snapshot.OperationTimeout() {
		t.Errorf("installing NixOS gets %v, no more than booting a snapshot (%v)", infect.OperationTimeout(), snapshot.OperationTimeout())
	}
	if !snapshot.OpenAccess() || mustLoad(t, []string{"--users", usersFile(t)}, nil).OpenAccess() {
		t.Error("OpenAccess is not the absence of --users")
	}
	c := mustLoad(t, []string{"--data-dir=/d", "--host-key-dir=/h"}, nil)
	for got, want := range map[string]string{
		c.StorePath(): "/d/gateway.db", c.UpstreamKeyPath(): "/d/upstream_ed25519_key",
		c.LocalCloudDir(): "/d/localcloud", c.HostKeyPath(): "/h/ssh_host_ed25519_key",
		c.SecretsKeyPath(): "/d/secrets.key",
	} {
		if got != want {
			t.Errorf("path %s, want %s", got, want)
		}
	}
}

// A switch stands bare on the command line; other options still need
// their value.
func TestSwitches(t *testing.T) {
	if c := mustLoad(t, []string{"--create-test-machine"}, nil); !c.CreateTestMachine {
		t.Error("bare --create-test-machine is off")
	}
	if c := mustLoad(t, []string{"--create-test-machine=false"}, map[string]string{"CC_GATEWAY_CREATE_TEST_MACHINE": "true"}); c.CreateTestMachine {
		t.Error("--create-test-machine=false did not win over the environment")
	}
	if c := mustLoad(t, nil, nil); c.CreateTestMachine {
		t.Error("--create-test-machine is on by default")
	}
	err := loadErr(t, nil, map[string]string{"CC_GATEWAY_CREATE_TEST_MACHINE": "maybe"})
	if !strings.Contains(err.Error(), `"maybe" is not true or false`) {
		t.Errorf("error %q", err)
	}
	if err := loadErr(t, []string{"--test-machine-timeout"}, nil); !strings.Contains(err.Error(), "needs an argument") {
		t.Errorf("error %q", err)
	}
	if err := loadErr(t, []string{"--test-machine-timeout", "-1m"}, nil); !strings.Contains(err.Error(), "is negative") {
		t.Errorf("error %q", err)
	}
}

func TestTestMachineBound(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{nil, 10 * time.Minute},
		{[]string{"--provisioning", "infect", "--infect-flake", "github:me/fork?dir=nix"}, 30 * time.Minute},
		{[]string{"--test-machine-timeout", "90s"}, 90 * time.Second},
	} {
		if got := mustLoad(t, tc.args, nil).TestMachineBound(); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.args, got, tc.want)
		}
	}
}

// TestFirewallSources: the firewall's sources by mode and flag.
func TestFirewallSources(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		keep bool
		want string // the sources, comma-separated
	}{
		{"local default", nil, nil, true, "127.0.0.0/8"},
		{"hcloud default: the metadata service's", nil, map[string]string{"HCLOUD_TOKEN": "t"}, true, ""},
		{"given, lone addresses as blocks of one", []string{"--firewall-sources= 203.0.113.7 ,2001:db8::/64,2001:db8::5"}, nil, true,
			"203.0.113.7/32,2001:db8::/64,2001:db8::5/128"},
		{"none", []string{"--firewall-sources=none"}, map[string]string{"HCLOUD_TOKEN": "t"}, false, ""},
	} {
		c := mustLoad(t, append([]string{"--users", usersFile(t)}, tc.args...), tc.env)
		sources, keep := c.Firewall()
		var got []string
		for _, p := range sources {
			got = append(got, p.String())
		}
		if keep != tc.keep || strings.Join(got, ",") != tc.want {
			t.Errorf("%s: Firewall() = %v, %v; want %q, %v", tc.name, got, keep, tc.want, tc.keep)
		}
	}
}

func TestCommandLineMisuse(t *testing.T) {
	err := loadErr(t, []string{"--no-such-flag"}, nil)
	if !strings.Contains(err.Error(), "no-such-flag") || !strings.Contains(err.Error(), "gateway --help") {
		t.Fatalf("unknown flag error = %v", err)
	}
	err = loadErr(t, []string{"--listen=127.0.0.1:2222", "serve"}, nil)
	if !strings.Contains(err.Error(), `unexpected argument "serve"`) {
		t.Fatalf("positional argument error = %v", err)
	}
	if errors.Is(err, ErrHelp) {
		t.Fatal("misuse reported as a help request")
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "-help"} {
		var out bytes.Buffer
		_, err := Load([]string{"--listen=:1", arg}, envOf(nil), &out)
		if !errors.Is(err, ErrHelp) {
			t.Fatalf("Load(%s) err = %v, want ErrHelp", arg, err)
		}
		help := out.String()
		for _, o := range options {
			for _, w := range []string{"--" + o.name + " ", "default: " + o.helpDefault() + "\n", "environment: " + o.env() + "\n"} {
				if !strings.Contains(help, w) {
					t.Errorf("help for %s lacks %q", arg, w)
				}
			}
		}
		for _, w := range []string{
			"HCLOUD_TOKEN", `"name = value"`, "Precedence",
			"--listen ADDR\n", "default: 127.0.0.1:2222 in local mode, :22 in hcloud mode\n",
			"--machine-ssh-port PORT\n", "default: 2022 in local mode, 22 in hcloud mode\n",
			"--cloud local|hcloud\n", "--idle-action stop|hibernate|destroy\n", "default: none\n",
		} {
			if !strings.Contains(help, w) {
				t.Errorf("help lacks %q", w)
			}
		}
	}
}

// TestEveryFieldHasAnOption guards the help text: a Config field added
// without an option would be neither settable nor documented.
func TestEveryFieldHasAnOption(t *testing.T) {
	var c Config
	filled := map[uintptr]string{}
	for _, o := range options {
		addr := reflect.ValueOf(o.bind(&c).field).Pointer()
		if prev, dup := filled[addr]; dup {
			t.Errorf("--%s and --%s fill the same field", prev, o.name)
		}
		filled[addr] = o.name
	}
	v := reflect.ValueOf(&c).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if !f.IsExported() || f.Name == "HCloudToken" {
			continue
		}
		if _, ok := filled[v.Field(i).Addr().Pointer()]; !ok {
			t.Errorf("Config.%s has no option", f.Name)
		}
	}
}

func TestTokenNeverPrinted(t *testing.T) {
	const secret = "hcloud-S3CRET-5f3a9e"
	users := usersFile(t)

	var printed []string
	c := mustLoad(t, []string{"--users", users}, map[string]string{"HCLOUD_TOKEN": secret})
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "config", c)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "config", c)
	printed = append(printed, c.String(), fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), logs.String())
	if !strings.Contains(c.String(), "hcloud-token=redacted") {
		t.Errorf("String() does not say a token is set: %s", c)
	}
	if !strings.Contains(logs.String(), "config.listen=:22") {
		t.Errorf("LogValue does not log the options: %s", logs.String())
	}

	errCases := []struct {
		args []string
		env  map[string]string
	}{
		// Many problems at once, with the token in the environment.
		{[]string{"--cloud=hcloud", "--max-ttl=x", "--listen=nope", "--users", filepath.Join(t.TempDir(), "missing")},
			map[string]string{"HCLOUD_TOKEN": secret}},
		// Token file with extra words around the token.
		{[]string{"--hcloud-token-file", writeFile(t, "tok", secret+"\n"+secret+"\n"), "--users", users}, nil},
		// The token pasted into the config file, on its own and by name.
		{[]string{"--config", writeFile(t, "gw.conf", secret+"\nhcloud-token = "+secret+"\nHCLOUD_TOKEN = "+secret+"\n")}, nil},
		// The token on the command line, which is not accepted.
		{[]string{"--hcloud-token=" + secret}, nil},
		{[]string{"--hcloud-token", secret}, nil},
	}
	for _, tc := range errCases {
		printed = append(printed, loadErr(t, tc.args, tc.env).Error())
	}
	for _, s := range printed {
		if strings.Contains(s, secret) {
			t.Errorf("token printed in:\n%s", s)
		}
	}
}

func TestLevel(t *testing.T) {
	for name, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
	} {
		c := mustLoad(t, []string{"--log-level", name}, nil)
		if c.Level() != want {
			t.Errorf("Level() for %s = %v, want %v", name, c.Level(), want)
		}
	}
}

func TestPairLists(t *testing.T) {
	c := mustLoad(t, []string{"--server-type", "cx23, cx33", "--location", "fsn1,nbg1,hel1"}, nil)
	if got, want := c.ServerTypes(), []string{"cx23", "cx33"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ServerTypes = %v, want %v", got, want)
	}
	if got, want := c.Locations(), []string{"fsn1", "nbg1", "hel1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Locations = %v, want %v", got, want)
	}
	// One name is a list of one, as before lists existed.
	c = mustLoad(t, nil, nil)
	if got := c.ServerTypes(); !reflect.DeepEqual(got, []string{"cx23"}) {
		t.Errorf("default ServerTypes = %v, want [cx23]", got)
	}
	if got := c.Locations(); !reflect.DeepEqual(got, []string{"fsn1"}) {
		t.Errorf("default Locations = %v, want [fsn1]", got)
	}
}

func TestWarnLeads(t *testing.T) {
	c := mustLoad(t, []string{"--warn-before", " 15m, 5m,,1m30s "}, nil)
	if got, want := c.WarnLeads(), []time.Duration{15 * time.Minute, 5 * time.Minute, 90 * time.Second}; !reflect.DeepEqual(got, want) {
		t.Errorf("WarnLeads = %v, want %v", got, want)
	}
	if got := mustLoad(t, []string{"--warn-before="}, nil).WarnLeads(); len(got) != 0 {
		t.Errorf("an empty list warns at %v", got)
	}
}

// TestMetricsExposed: the listener without authentication is flagged when
// it is on and other hosts may reach it.
func TestMetricsExposed(t *testing.T) {
	for _, tc := range []struct {
		listen  string
		exposed bool
	}{{"", false}, {"127.0.0.1:9464", false}, {"localhost:9464", false}, {"[::1]:9464", false}, {":9464", true}, {"10.0.0.5:9464", true}} {
		c := mustLoad(t, []string{"--metrics-listen=" + tc.listen}, nil)
		if got := c.MetricsExposed(); got != tc.exposed {
			t.Errorf("--metrics-listen=%q: MetricsExposed() = %v, want %v", tc.listen, got, tc.exposed)
		}
	}
}
