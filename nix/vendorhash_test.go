package nix_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestVendorHash recomputes the package's vendorHash the way buildGoModule
// does (the NAR hash of `go mod vendor` run on the package's source set)
// and fails when nix/package.nix carries a stale one, so the flake builds
// without a round of hash-mismatch errors.
func TestVendorHash(t *testing.T) {
	nixBin := tool(t, "nix", "nix-bin")
	goBin := tool(t, "go", "golang")
	pkg, err := os.ReadFile("package.nix")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`vendorHash = "([^"]+)";`).FindSubmatch(pkg)
	if want == nil {
		t.Fatal("package.nix has no vendorHash string")
	}
	block := regexp.MustCompile(`(?s)fileset\.unions \[(.*?)\];`).FindSubmatch(pkg)
	if block == nil {
		t.Fatal("package.nix has no fileset.unions list")
	}

	// Copy the source set the package builds from.
	src := t.TempDir()
	for _, entry := range strings.Fields(string(block[1])) {
		// Entries are relative to nix/, where the test runs.
		dst := filepath.Join(src, filepath.Join("nix", entry))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-r", entry, dst).CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v: %s", entry, err, out)
		}
	}
	vendor := filepath.Join(t.TempDir(), "vendor")
	cmd := exec.Command(goBin, "mod", "vendor", "-o", vendor)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod vendor: %v: %s", err, out)
	}
	got, err := runTool(t, nixBin, "--extra-experimental-features", "nix-command", "hash", "path", vendor)
	if err != nil {
		t.Fatal(err)
	}
	if got = strings.TrimSpace(got); got != string(want[1]) {
		t.Errorf("nix/package.nix has vendorHash %s, but the dependencies hash to %s: put that in package.nix", want[1], got)
	}
}
