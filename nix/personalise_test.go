package nix_test

import (
	"os"
	"strings"
	"testing"

	"github.com/cc-gateway/cc-gateway/internal/bootstrap"
)

// TestCloudInstancePersonalises: the NixOS module installs
// cc-instance-personalise on PATH and lets the instance user run exactly
// its root half through sudo, which runs the bootstrap script in its
// personalise mode with an environment the caller cannot change. (Evaluating
// the module needs nixpkgs, which is not here: its text is what can be
// checked.)
func TestCloudInstancePersonalises(t *testing.T) {
	b, err := os.ReadFile("modules/cloud-instance.nix")
	if err != nil {
		t.Fatal(err)
	}
	module := string(b)
	for _, want := range []string{
		`pkgs.writeScriptBin "` + bootstrap.PersonaliseProgram + `"`,
		`exec ${config.security.wrapperDir}/sudo -n ${personaliseRoot}` + "\n",
		`exec ${pkgs.dash}/bin/dash ${./cloud-instance/bootstrap.sh} personalise` + "\n",
		"unset CLOUD_INSTANCE_ROOT CLOUD_INSTANCE_DIR TMPDIR",
		"CLOUD_INSTANCE_USER=${lib.escapeShellArg cfg.user}",
		`command = "${personaliseRoot}";`,
		"[ personalise ]",
	} {
		if !strings.Contains(module, want) {
			t.Errorf("modules/cloud-instance.nix lacks %q", want)
		}
	}
}
