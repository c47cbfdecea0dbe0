package nix_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestCloudInstanceMountsHome: the NixOS module runs home.sh as a unit
// that waits for the bootstrap unit, comes before sshd and logins without
// being required by them (a volume that never appears must not keep the
// person out), runs only where the bootstrap script recorded a device,
// and is what personalise mode starts. (Evaluating the module needs
// nixpkgs, which is not here: its text is what can be checked.)
func TestCloudInstanceMountsHome(t *testing.T) {
	b, err := os.ReadFile("modules/cloud-instance.nix")
	if err != nil {
		t.Fatal(err)
	}
	module := string(b)
	script, err := os.ReadFile("modules/cloud-instance/bootstrap.sh")
	if err != nil {
		t.Fatal(err)
	}
	// Where the bootstrap script records the device, under its root.
	if !strings.Contains(string(script), "\nstate_dir=$root/var/lib/cloud-instance\n") ||
		!strings.Contains(string(script), "\nhome_record=$state_dir/home-device\n") {
		t.Fatal("bootstrap.sh no longer records the home device in var/lib/cloud-instance/home-device; update this test and the module")
	}

	start := strings.Index(module, "systemd.services.cloud-instance-home = {")
	if start < 0 {
		t.Fatal("modules/cloud-instance.nix has no cloud-instance-home unit")
	}
	unit := module[start:]
	unit = unit[:strings.Index(unit, "\n    };\n")]
	for _, want := range []string{
		`after = [ "cloud-instance-bootstrap.service" ];`,
		"before = [\n        \"sshd.service\"\n        \"systemd-user-sessions.service\"\n      ];",
		"unitConfig.ConditionPathExists = homeRecord;",
		`ExecStart = "${pkgs.dash}/bin/dash ${./cloud-instance/home.sh}";`,
		"CLOUD_INSTANCE_USER = cfg.user;",
		"CLOUD_INSTANCE_AGENT_STATE = agentStateFile;",
		`Type = "oneshot";`,
		"e2fsprogs", "util-linux", "coreutils",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("the cloud-instance-home unit lacks %q", want)
		}
	}
	// Ordering only: sshd must start when this unit fails.
	if regexp.MustCompile(`\b(requires|requiredBy|bindsTo|requisite)\b`).MatchString(unit) {
		t.Error("the cloud-instance-home unit makes something require it; a missing volume would keep sshd down")
	}
	if strings.Contains(unit, "RemainAfterExit") {
		t.Error("the cloud-instance-home unit remains after exit; starting it again after a claim would then do nothing")
	}
	for _, want := range []string{
		`homeUnit = "cloud-instance-home.service";`,
		`homeRecord = "/var/lib/cloud-instance/home-device";`,
		"CLOUD_INSTANCE_HOME_UNIT=${homeUnit}\n",
		"export CLOUD_INSTANCE_USER CLOUD_INSTANCE_SSH_PORT CLOUD_INSTANCE_HOME_UNIT\n",
		"PATH=${lib.makeBinPath (bootstrapPath ++ [ config.systemd.package ])}",
		"systemctl is-failed --quiet ${homeUnit}",
	} {
		if !strings.Contains(module, want) {
			t.Errorf("modules/cloud-instance.nix lacks %q", want)
		}
	}
}
