package bootstrap

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
	"github.com/cc-gateway/cc-gateway/nix"
)

// testFlake is an operator's flake, as the gateway's --infect-flake names it.
const testFlake = "github:me/machines?dir=nix"

func TestRenderInfect(t *testing.T) {
	d := newDoc(t, "3f2a9b1c0d", "cc-3f2a9b1c0d", "claude", time.Now(), 22, testkit.NewKey(t).Public(), testkit.NewKey(t).Public())
	out, err := d.RenderInfect(InfectOptions{Flake: testFlake})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "#!/bin/sh\n") {
		t.Errorf("user_data does not start with a shebang: %.40q", out)
	}
	for _, want := range []string{
		"\nCC_GATEWAY_FLAKE='" + testFlake + "'\n",
		"\nCC_GATEWAY_CONFIGURATION='cloud-instance'\n",
		"\nCC_GATEWAY_NIX_INSTALLER='https://nixos.org/nix/install'\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("user_data lacks %q", want)
		}
	}
	_, body, _ := strings.Cut(nix.InfectScript, "\n")
	if !strings.HasSuffix(out, "\n"+body) {
		t.Error("user_data does not end with the installer script of nix/infect")
	}
	if strings.Count(out, "#!") != 1 {
		t.Error("user_data holds a second shebang")
	}
	back, err := ParseUserData([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, d) {
		t.Errorf("ParseUserData = %+v, want %+v", back, d)
	}

	// The shell must be able to parse what it will run.
	script := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(script, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	if msg, err := exec.CommandContext(ctx, "dash", "-n", script).CombinedOutput(); err != nil {
		t.Errorf("dash -n: %v\n%s", err, msg)
	}
}

func TestRenderInfectWorstCaseFitsUserData(t *testing.T) {
	d := newDoc(t, strings.Repeat("a", 63), strings.Repeat("b", 63), longUser, time.Now(), 65535, bigRSAKey(t), bigRSAKey(t))
	opts := InfectOptions{
		Flake:         "github:" + strings.Repeat("o", maxInfectOption-len("github:")),
		Configuration: strings.Repeat("c", maxInfectOption),
		NixInstaller:  "https://" + strings.Repeat("x", maxInfectOption-len("https://")),
	}
	out, err := d.RenderInfect(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("worst case infect user_data: %d of %d bytes", len(out), MaxSize)
}

func TestRenderInfectRefuses(t *testing.T) {
	d := newDoc(t, "a1", "cc-a1", "claude", time.Now(), 22, testkit.NewKey(t).Public())
	bad := map[string]InfectOptions{
		"flake closing the quote":     {Flake: "github:o/r'; touch /tmp/x; '"},
		"flake with a command":        {Flake: "github:o/r$(id)"},
		"flake with a blank":          {Flake: "github:o/r x"},
		"flake with a newline":        {Flake: "github:o/r\nid"},
		"flake with an attribute":     {Flake: "github:o/r#other"},
		"flake too long":              {Flake: "github:" + strings.Repeat("o", maxInfectOption)},
		"no flake":                    {},
		"configuration with a dot":    {Flake: testFlake, Configuration: "a.b"},
		"configuration with a dash":   {Flake: testFlake, Configuration: "-a"},
		"configuration with a quote":  {Flake: testFlake, Configuration: "a'b"},
		"installer over plain http":   {Flake: testFlake, NixInstaller: "http://nixos.org/nix/install"},
		"installer with backquotes":   {Flake: testFlake, NixInstaller: "https://x/`id`"},
		"installer closing the quote": {Flake: testFlake, NixInstaller: "https://x/'"},
	}
	for name, opts := range bad {
		t.Run(name, func(t *testing.T) {
			if out, err := d.RenderInfect(opts); err == nil {
				t.Errorf("RenderInfect accepted it:\n%.400s", out)
			}
		})
	}

	invalid := d
	invalid.User = "../root"
	if _, err := invalid.RenderInfect(InfectOptions{Flake: testFlake}); err == nil {
		t.Error("RenderInfect accepted an invalid document")
	}

	// A document that fits as it is may not fit with the installer.
	keys := []ssh.PublicKey{}
	for range 12 {
		keys = append(keys, bigRSAKey(t))
		big := newDoc(t, "a1", "cc-a1", "claude", time.Now(), 22, keys...)
		plain, err := big.Render()
		if err != nil {
			t.Fatalf("no document of %d keys both fits as it is and not with the installer", len(keys))
		}
		if len(plain)+len(nix.InfectScript) <= MaxSize {
			continue
		}
		if _, err := big.RenderInfect(InfectOptions{Flake: testFlake}); err == nil || !strings.Contains(err.Error(), "user_data limit") {
			t.Errorf("RenderInfect of a %d byte document: err = %v, want the size limit named", len(plain), err)
		}
		return
	}
	t.Fatal("12 keys never outgrew the limit with the installer")
}

func TestParseUserData(t *testing.T) {
	d := newDoc(t, "p1", "cc-p1", "claude", time.Now(), 22, testkit.NewKey(t).Public())
	plain, err := d.Render()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseUserData([]byte(plain))
	if err != nil || !reflect.DeepEqual(back, d) {
		t.Errorf("ParseUserData of the plain document = %+v, %v", back, err)
	}

	bad := map[string]string{
		"a script without a document":     "#!/bin/sh\necho hello\n",
		"a script with a broken document": "#!/bin/sh\n" + infectMarker + "\n" + strings.Replace(plain, `"version":1`, `"version":2`, 1) + "\n" + infectEnd + "\n",
		"oversized":                       plain + strings.Repeat(" ", MaxSize),
	}
	for name, data := range bad {
		if _, err := ParseUserData([]byte(data)); err == nil {
			t.Errorf("ParseUserData accepted %s", name)
		}
	}
}
