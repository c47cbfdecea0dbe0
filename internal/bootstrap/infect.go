package bootstrap

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/cc-gateway/cc-gateway/nix"
)

// Defaults of InfectOptions.
const (
	DefaultInfectConfiguration = "cloud-instance"
	DefaultNixInstaller        = "https://nixos.org/nix/install"
)

// InfectOptions says which NixOS the infect path installs, and how.
type InfectOptions struct {
	// Flake is the flake reference holding the configuration; required,
	// since only the operator knows the flake of their machines.
	Flake string
	// Configuration names the nixosConfiguration in Flake to install; empty
	// means DefaultInfectConfiguration. Its instance user must be the
	// document's user.
	Configuration string
	// NixInstaller is the https URL of the Nix installer script; empty means
	// DefaultNixInstaller.
	NixInstaller string
}

// The document of an infect user_data stands alone on the line after
// infectMarker, inside a here-document that the shell skips. The nix-side
// bootstrap script (nix/modules/cloud-instance/bootstrap.sh) looks for the
// same line.
const (
	infectMarker = ": <<'CC_GATEWAY_BOOTSTRAP_DOCUMENT'"
	infectEnd    = "CC_GATEWAY_BOOTSTRAP_DOCUMENT"
)

// maxInfectOption bounds each option, so that the worst case stays
// computable under the user_data limit.
const maxInfectOption = 256

var (
	// Flake references as Nix writes them, minus anything a shell or the
	// flake's own "#attribute" syntax could read differently.
	flakePattern         = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9._~/?&=%@:+-]+$`)
	configurationPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]*$`)
	installerPattern     = regexp.MustCompile(`^https://[A-Za-z0-9._~/?&=%:+-]+$`)
)

func (o InfectOptions) withDefaults() InfectOptions {
	if o.Configuration == "" {
		o.Configuration = DefaultInfectConfiguration
	}
	if o.NixInstaller == "" {
		o.NixInstaller = DefaultNixInstaller
	}
	return o
}

// Validate checks the options against what RenderInfect puts in a script.
func (o InfectOptions) Validate() error {
	o = o.withDefaults()
	var errs []error
	check := func(name, value string, p *regexp.Regexp, want string) {
		if len(value) > maxInfectOption || !p.MatchString(value) {
			errs = append(errs, fmt.Errorf("infect %s %q must be %s, at most %d characters", name, value, want, maxInfectOption))
		}
	}
	check("flake", o.Flake, flakePattern, "a flake reference like github:owner/repo?dir=nix, without quotes, blanks or #")
	check("configuration", o.Configuration, configurationPattern, "a nixosConfiguration name of letters, digits, _ and -")
	check("Nix installer", o.NixInstaller, installerPattern, "an https URL")
	return errors.Join(errs...)
}

// RenderInfect returns the document as user_data for a stock Hetzner image:
// a shell script that installs NixOS (nix/infect/user-data.sh) and carries
// the document for the NixOS bootstrap unit, which reads it after the
// reboot. Like Render, it refuses anything invalid or over the user_data
// limit.
func (d Document) RenderInfect(opts InfectOptions) (string, error) {
	doc, err := d.Render()
	if err != nil {
		return "", err
	}
	if err := opts.Validate(); err != nil {
		return "", err
	}
	opts = opts.withDefaults()
	body := nix.InfectScript
	if strings.HasPrefix(body, "#!") {
		// The script's own shebang would be a mere comment in the middle.
		_, body, _ = strings.Cut(body, "\n")
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&b, "# cc-gateway user_data for instance %s (infect path): installs NixOS over\n", d.InstanceID)
	b.WriteString("# this stock image and reboots into it; NixOS's bootstrap unit then reads\n")
	b.WriteString("# the bootstrap document below from the metadata service.\n")
	b.WriteString(infectMarker + "\n")
	b.WriteString(doc + "\n")
	b.WriteString(infectEnd + "\n")
	// Validate allows no single quote in any of these.
	fmt.Fprintf(&b, "CC_GATEWAY_FLAKE='%s'\n", opts.Flake)
	fmt.Fprintf(&b, "CC_GATEWAY_CONFIGURATION='%s'\n", opts.Configuration)
	fmt.Fprintf(&b, "CC_GATEWAY_NIX_INSTALLER='%s'\n", opts.NixInstaller)
	b.WriteString(body)
	if b.Len() > MaxSize {
		return "", fmt.Errorf("infect user_data is %d bytes, over the %d byte user_data limit", b.Len(), MaxSize)
	}
	return b.String(), nil
}

// ParseUserData reads a server's user_data in either form the gateway
// writes: the document itself (Render), or the infect path's script with the
// document inside (RenderInfect).
func ParseUserData(data []byte) (Document, error) {
	if len(data) > MaxSize {
		return Document{}, fmt.Errorf("user_data is %d bytes, over the %d byte limit", len(data), MaxSize)
	}
	if !bytes.HasPrefix(data, []byte("#!")) {
		return Parse(data)
	}
	_, after, found := bytes.Cut(data, []byte("\n"+infectMarker+"\n"))
	if !found {
		return Document{}, errors.New("user_data is a script without a bootstrap document")
	}
	line, _, _ := bytes.Cut(after, []byte("\n"))
	return Parse(line)
}
