package nix_test

import (
	"os"
	"strings"
	"testing"
)

// TestCloudInstanceGivesSessionsTheSecrets: the NixOS module lets sshd read
// the instance user's ~/.ssh/environment, where the gateway writes the
// person's secrets (bootstrap.SecretsFile), into every session. (Evaluating
// the module needs nixpkgs, which is not here: its text is what can be
// checked.)
func TestCloudInstanceGivesSessionsTheSecrets(t *testing.T) {
	b, err := os.ReadFile("modules/cloud-instance.nix")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\n        PermitUserEnvironment yes\n") {
		t.Error("modules/cloud-instance.nix does not set PermitUserEnvironment yes in sshd's extraConfig")
	}
}
