package nix_test

import (
	"os"
	"strings"
	"testing"
)

// TestGatewayModuleEtcd: the module's etcd settings reach the gateway's
// config file as options it accepts, and the TLS files reach the service
// as systemd credentials, each passed to its option from the credentials
// directory, so they may stay readable by root only and stay out of the
// Nix store. (Evaluating the module needs nixpkgs, which is not here: its
// text is what can be checked.)
func TestGatewayModuleEtcd(t *testing.T) {
	text, err := evalConfigFile(t, `{
		listen = "127.0.0.1:2022";
		"etcd-endpoints" = "https://10.0.0.2:2379,https://10.0.0.3:2379,https://10.0.0.4:2379";
		"etcd-prefix" = "/team-a/";
		_module = { args = { }; };
	}`)
	if err != nil {
		t.Fatal(err)
	}
	cfg := loadConfigFile(t, text)
	if !cfg.Etcd() || cfg.EtcdEndpoints != "https://10.0.0.2:2379,https://10.0.0.3:2379,https://10.0.0.4:2379" || cfg.EtcdPrefix != "/team-a/" {
		t.Errorf("the gateway read the module's etcd settings as endpoints %q prefix %q:\n%s", cfg.EtcdEndpoints, cfg.EtcdPrefix, text)
	}

	b, err := os.ReadFile("modules/gateway.nix")
	if err != nil {
		t.Fatal(err)
	}
	module := string(b)
	for _, want := range []string{
		// Each TLS file the module knows: its option, credential and source.
		"option = \"--etcd-ca\";\n      name = \"etcd-ca\";\n      file = cfg.etcd.caFile;",
		"option = \"--etcd-cert\";\n      name = \"etcd-cert\";\n      file = cfg.etcd.certFile;",
		"option = \"--etcd-key\";\n      name = \"etcd-key\";\n      file = cfg.etcd.keyFile;",
		"etcdCredentials = lib.filter (c: c.file != null) [",
		// Passed from the credentials directory, loaded as credentials.
		"c.option\n            \"%d/${c.name}\"\n          ]) etcdCredentials",
		`++ map (c: "${c.name}:${c.file}") etcdCredentials;`,
		// Refused at build time: the files through settings, half a key pair,
		// TLS files without etcd.
		`!(cfg.settings ? "etcd-ca" || cfg.settings ? "etcd-cert" || cfg.settings ? "etcd-key")`,
		"(cfg.etcd.certFile == null) == (cfg.etcd.keyFile == null)",
		`etcdCredentials != [ ] -> cfg.settings."etcd-endpoints" != null`,
	} {
		if !strings.Contains(module, want) {
			t.Errorf("modules/gateway.nix lacks %q", want)
		}
	}
	// Strings only: a Nix path would copy the key into the world-readable store.
	for _, name := range []string{"caFile", "certFile", "keyFile"} {
		decl := module[strings.Index(module, name+" = mkOption {"):]
		decl = decl[:strings.Index(decl, "};")]
		if !strings.Contains(decl, `types.nullOr (types.strMatching "/[^\n\r]*")`) {
			t.Errorf("etcd.%s is not a string path: %s", name, decl)
		}
	}
}
