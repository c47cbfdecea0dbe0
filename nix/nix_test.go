package nix_test

// Checks of the NixOS side that need no nixpkgs (there is no network to
// fetch it): every .nix file parses and names only files that exist, the
// shell scripts pass shellcheck, and the gateway's NixOS module writes a
// config file the gateway accepts, with an option for each of the gateway's.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/config"
)

// toolTimeout bounds each run of an outside tool.
const toolTimeout = 30 * time.Second

// tool returns the path of an outside tool, failing the test with how to
// install it: .ci/run installs them all, and no check here is skipped.
func tool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed; install it (Debian: apt-get install %s), as .ci/run does", name, debianPackage)
	}
	return p
}

func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s did not finish within %s", name, strings.Join(args, " "), toolTimeout)
	}
	if err != nil {
		return stdout.String(), &toolError{err: err, stderr: stderr.String() + stdout.String()}
	}
	return stdout.String(), nil
}

type toolError struct {
	err    error
	stderr string
}

func (e *toolError) Error() string { return e.err.Error() + ":\n" + e.stderr }

// filesNamed lists the files under this folder whose names end in suffix.
func filesNamed(t *testing.T, suffix string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, suffix) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// requireAll fails the test unless got holds every file of want, so that a
// check cannot pass by finding nothing.
func requireAll(t *testing.T, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s is missing; found only %q", w, got)
		}
	}
}

func TestNixFilesParse(t *testing.T) {
	nixInstantiate := tool(t, "nix-instantiate", "nix-bin")
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files := filesNamed(t, ".nix")
	requireAll(t, files,
		"flake.nix", "package.nix",
		"hosts/cloud-instance/default.nix", "hosts/cloud-instance/hardware-configuration.nix",
		"hosts/cloud-instance/networking.nix",
		"modules/cloud-instance.nix", "modules/gateway.nix", "modules/gateway/config-file.nix",
		"modules/hcloud-image.nix")
	// The parser resolves path literals to absolute paths; those in this
	// repository must exist.
	pathLiteral := regexp.MustCompile(`[\s(\[]` + regexp.QuoteMeta(repo) + `(/[^\s;()\[\]"]*)?`)
	for _, f := range files {
		out, err := runTool(t, nixInstantiate, "--parse", f)
		if err != nil {
			t.Errorf("%s does not parse: %v", f, err)
			continue
		}
		for _, m := range pathLiteral.FindAllString(out, -1) {
			p := strings.TrimLeft(m, " \t\n([")
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s names %s, which does not exist", f, p)
			}
		}
	}
}

func TestShellScripts(t *testing.T) {
	shellcheck := tool(t, "shellcheck", "shellcheck")
	scripts := filesNamed(t, ".sh")
	requireAll(t, scripts, "modules/cloud-instance/bootstrap.sh", "modules/cloud-instance/home.sh", "modules/cloud-instance/secrets-env.sh", "infect/user-data.sh")
	for _, s := range scripts {
		// Plain POSIX sh: NixOS runs the bootstrap script with dash, and
		// cloud-init runs the installer with the stock image's /bin/sh.
		if _, err := runTool(t, shellcheck, "--shell=sh", s); err != nil {
			t.Errorf("shellcheck %s: %v", s, err)
		}
	}
}

// evalConfigFile renders settings, given as a Nix expression, with the
// gateway module's config file renderer.
func evalConfigFile(t *testing.T, settings string) (string, error) {
	t.Helper()
	nixInstantiate := tool(t, "nix-instantiate", "nix-bin")
	renderer, err := filepath.Abs("modules/gateway/config-file.nix")
	if err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, nixInstantiate, "--eval", "--strict", "--json", "--expr",
		"import "+renderer+" ("+settings+")")
	if err != nil {
		return "", err
	}
	var text string
	if err := json.Unmarshal([]byte(out), &text); err != nil {
		t.Fatalf("nix-instantiate printed %q: %v", out, err)
	}
	return text, nil
}

// loadConfigFile has the gateway read text as its config file, failing the
// test if it refuses it.
func loadConfigFile(t *testing.T, text string) config.Config {
	t.Helper()
	file := filepath.Join(t.TempDir(), "cc-gateway.conf")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) string { return "" }
	cfg, err := config.Load([]string{"--config", file}, noEnv, io.Discard)
	if err != nil {
		t.Fatalf("the gateway refuses the module's config file:\n%s\n%v", text, err)
	}
	return cfg
}

func TestGatewayModuleConfigFileLoads(t *testing.T) {
	text, err := evalConfigFile(t, `{
		listen = "127.0.0.1:2022";
		"data-dir" = "/var/lib/cc-gateway";
		"idle-timeout" = "45m";
		"machine-ssh-port" = 2222;
		cloud = "local";
		"public-name" = "cc.example.com";
		"log-level" = null;
		"metrics-listen" = "127.0.0.1:9464";
		pprof = true;
		_module = { args = { }; };
	}`)
	if err != nil {
		t.Fatal(err)
	}
	cfg := loadConfigFile(t, text)
	if cfg.Listen != "127.0.0.1:2022" || cfg.DataDir != "/var/lib/cc-gateway" || cfg.IdleTimeout != 45*time.Minute ||
		cfg.MachineSSHPort != 2222 || cfg.Cloud != "local" || cfg.PublicName != "cc.example.com" || cfg.LogLevel != "info" ||
		cfg.MetricsListen != "127.0.0.1:9464" || !cfg.Pprof {
		t.Errorf("the gateway read the module's config file as %+v:\n%s", cfg, text)
	}

	// What the format cannot carry is refused when the system is built, not
	// when the gateway starts.
	for _, bad := range []string{
		`{ listen = "a\nidle-timeout = 1s"; }`,
		`{ listen = " :22"; }`,
		`{ "Listen" = ":22"; }`,
		`{ listen = [ ":22" ]; }`,
	} {
		if text, err := evalConfigFile(t, bad); err == nil {
			t.Errorf("the renderer accepted %s:\n%s", bad, text)
		}
	}
}

// TestGatewayModuleMirrorsOptions keeps services.cc-gateway.settings in step
// with the gateway. Each setting the module declares must be an option of
// the gateway, or the gateway would refuse the config file at start. An
// option the module does not declare yet still passes through as a freeform
// setting, so that one is only logged: adding a gateway option must not
// wait for the module.
func TestGatewayModuleMirrorsOptions(t *testing.T) {
	var help bytes.Buffer
	config.WriteHelp(&help)
	flag := regexp.MustCompile(`(?m)^  --([a-z][a-z0-9-]*)`)
	var options []string
	for _, m := range flag.FindAllStringSubmatch(help.String(), -1) {
		options = append(options, m[1])
	}
	requireAll(t, options, "config", "listen", "users", "hcloud-token-file", "instance-user")

	module, err := os.ReadFile("modules/gateway.nix")
	if err != nil {
		t.Fatal(err)
	}
	// The declarations of the settings submodule follow its freeformType.
	_, settings, found := bytes.Cut(module, []byte("freeformType"))
	if !found {
		t.Fatal("modules/gateway.nix has no freeform settings")
	}
	settings, _, _ = bytes.Cut(settings, []byte("config = mkIf"))
	decl := regexp.MustCompile(`(?m)^\s*"?([a-z][a-z0-9-]*)"? = (mkOption|setting)\b`)
	var declared []string
	for _, m := range decl.FindAllSubmatch(settings, -1) {
		declared = append(declared, string(m[1]))
	}
	requireAll(t, declared, "listen", "users", "instance-user", "machine-ssh-port")
	for _, name := range declared {
		if !slices.Contains(options, name) {
			t.Errorf("services.cc-gateway.settings declares %q, which is not an option of the gateway", name)
		}
	}

	// The module sets these itself.
	set := []string{"config", "hcloud-token-file", "etcd-ca", "etcd-cert", "etcd-key"}
	for _, arg := range []string{`"--config"`, `"--hcloud-token-file"`, `"--etcd-ca"`, `"--etcd-cert"`, `"--etcd-key"`} {
		if !bytes.Contains(module, []byte(arg)) {
			t.Errorf("modules/gateway.nix does not pass %s", arg)
		}
	}
	for _, name := range options {
		if !slices.Contains(set, name) && !slices.Contains(declared, name) {
			t.Logf("--%s has no typed setting in nix/modules/gateway.nix yet; it passes through as a freeform one", name)
		}
	}
}
