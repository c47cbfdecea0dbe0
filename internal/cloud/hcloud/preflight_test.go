package hcloud_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/preflight"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestPreflight runs the start-up checks against the local cloud: each
// wrong setting is one problem naming the fix, the others still pass.
func TestPreflight(t *testing.T) {
	t.Parallel()
	e, ctx := newEnv(t, 30*time.Second)
	run := func(tweak func(*hcloud.Config)) map[string]preflight.Check {
		t.Helper()
		checks := newProvider(t, e.cloud.Endpoint(), e.cloud.Token(), tweak).Preflight(ctx)
		out := map[string]preflight.Check{}
		for _, c := range checks {
			out[c.Name] = c
		}
		return out
	}
	later := func(c *hcloud.Config) { c.Clock = testkit.NewClock(time.Now().AddDate(1, 0, 0)) }
	for _, tc := range []struct {
		name  string
		tweak func(*hcloud.Config)
		bad   string // the one failing check; "" for none
		says  string
		warn  string // the one warning check; "" for none
		warns string
	}{
		{name: "good", tweak: func(*hcloud.Config) {}},
		{name: "lists", tweak: func(c *hcloud.Config) {
			c.ServerTypes, c.Locations = []string{"cx23", "cx33"}, []string{"fsn1", "nbg1", "hel1"}
		}},
		{name: "infect image", tweak: func(c *hcloud.Config) { c.ImageSelector, c.Image = "", "debian-12" }},
		{name: "image by id", tweak: func(c *hcloud.Config) { c.ImageSelector, c.Image = "", "1" }},
		{name: "wrong token", tweak: func(c *hcloud.Config) { c.Token = "revoked" }, bad: "API", says: "refused the token (401): check HCLOUD_TOKEN"},
		{name: "unknown location", tweak: func(c *hcloud.Config) { c.Locations = []string{"fsn1", "mars1"} },
			bad: "location", says: `no location "mars1": set --location to names from fsn1, nbg1, hel1`},
		{name: "unknown server type", tweak: func(c *hcloud.Config) { c.ServerTypes = []string{"cx23", "cx9999"} },
			bad: "server type", says: `no server type "cx9999": set --server-type`},
		{name: "types of two architectures", tweak: func(c *hcloud.Config) { c.ServerTypes = []string{"cx23", "cax11"} },
			bad: "server type", says: "cx23 is x86 but cax11 is arm, and one image cannot boot both"},
		{name: "deprecated type on sale", tweak: func(c *hcloud.Config) { c.ServerTypes = []string{"cx22"} },
			warn: "deprecation", warns: "cx22 in fsn1 is deprecated: Hetzner stops selling it after 20"},
		{name: "deprecated type gone, another serves", tweak: func(c *hcloud.Config) { later(c); c.ServerTypes = []string{"cx22", "cx23"} },
			warn: "pairs", warns: "cx22 in fsn1 is no longer available since 20"},
		{name: "deprecated type gone, nothing serves", tweak: func(c *hcloud.Config) { later(c); c.ServerTypes = []string{"cx22"} },
			bad: "pairs", says: "no configured server type can be created in a configured location (cx22 in fsn1 is no longer available since 20"},
		{name: "no snapshot", tweak: func(c *hcloud.Config) { c.ImageSelector = "cc-gateway=nothing" }, bad: "image", says: "docs/nixos.md), or use --provisioning infect"},
		{name: "arm type, x86 snapshot", tweak: func(c *hcloud.Config) { c.ServerTypes = []string{"cax11"} }, bad: "image", says: "no available snapshot matches"},
		{name: "unknown image", tweak: func(c *hcloud.Config) { c.ImageSelector, c.Image = "", "debian-99" }, bad: "image", says: `no image named "debian-99"`},
		{name: "unknown image id", tweak: func(c *hcloud.Config) { c.ImageSelector, c.Image = "", "4242" }, bad: "image", says: "no image 4242"},
	} {
		checks := run(tc.tweak)
		for name, c := range checks {
			switch {
			case name == tc.bad:
				if c.OK() || !strings.Contains(c.Problem, tc.says) {
					t.Errorf("%s: %s check: %+v, want a problem saying %q", tc.name, name, c, tc.says)
				}
			case name == tc.warn:
				if !c.OK() || !strings.Contains(c.Warning, tc.warns) {
					t.Errorf("%s: %s check: %+v, want a warning saying %q", tc.name, name, c, tc.warns)
				}
			case !c.OK():
				t.Errorf("%s: %s check failed: %s", tc.name, name, c.Problem)
			case c.Warning != "":
				t.Errorf("%s: %s check warned: %s", tc.name, name, c.Warning)
			}
		}
		for _, want := range []string{tc.bad, tc.warn} {
			if _, ok := checks[want]; want != "" && !ok {
				t.Errorf("%s: no %s check among %v", tc.name, want, checks)
			}
		}
		if tc.bad == "" && tc.warn == "" && len(checks) != 6 {
			t.Errorf("%s: %d checks, want API, location, server type, image, prices and firewall: %v", tc.name, len(checks), checks)
		}
		if tc.bad == "API" && len(checks) != 1 {
			t.Errorf("a refused token is one problem, got %v", checks)
		}
	}
}

// TestPreflightUnreachable: a cloud that does not answer is one problem,
// and the check ends within its context.
func TestPreflightUnreachable(t *testing.T) {
	t.Parallel()
	e, _ := newEnv(t, 30*time.Second)
	p := newProvider(t, "http://127.0.0.1:1/v1", e.cloud.Token(), func(c *hcloud.Config) {
		c.Retry = hcloud.Retry{Attempts: 1}
	})
	checks := p.Preflight(t.Context())
	if len(checks) != 1 || checks[0].OK() || !strings.Contains(checks[0].Problem, "cannot reach the Hetzner API") {
		t.Fatalf("unreachable cloud: %+v", checks)
	}
}
