package hcloud_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/preflight"
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
	for _, tc := range []struct {
		name  string
		tweak func(*hcloud.Config)
		bad   string // the one failing check; "" for none
		says  string
	}{
		{"good", func(*hcloud.Config) {}, "", ""},
		{"infect image", func(c *hcloud.Config) { c.ImageSelector, c.Image = "", "debian-12" }, "", ""},
		{"image by id", func(c *hcloud.Config) { c.ImageSelector, c.Image = "", "1" }, "", ""},
		{"wrong token", func(c *hcloud.Config) { c.Token = "revoked" }, "token", "refused the token (401): check HCLOUD_TOKEN"},
		{"unknown location", func(c *hcloud.Config) { c.Location = "mars1" }, "location", `no location "mars1": set --location to one of fsn1, nbg1, hel1`},
		{"unknown server type", func(c *hcloud.Config) { c.ServerType = "cx9999" }, "server type", `no server type "cx9999": set --server-type`},
		{"no snapshot", func(c *hcloud.Config) { c.ImageSelector = "cc-gateway=nothing" }, "image", "docs/nixos.md), or use --provisioning infect"},
		{"arm type, x86 snapshot", func(c *hcloud.Config) { c.ServerType = "cax11" }, "image", "no available snapshot matches"},
		{"unknown image", func(c *hcloud.Config) { c.ImageSelector, c.Image = "", "debian-99" }, "image", `no image named "debian-99"`},
		{"unknown image id", func(c *hcloud.Config) { c.ImageSelector, c.Image = "", "4242" }, "image", "no image 4242"},
	} {
		checks := run(tc.tweak)
		for name, c := range checks {
			if name == tc.bad {
				if c.OK() || !strings.Contains(c.Problem, tc.says) {
					t.Errorf("%s: %s check: %+v, want a problem saying %q", tc.name, name, c, tc.says)
				}
			} else if !c.OK() {
				t.Errorf("%s: %s check failed: %s", tc.name, name, c.Problem)
			}
		}
		if _, ok := checks[tc.bad]; tc.bad != "" && !ok {
			t.Errorf("%s: no %s check among %v", tc.name, tc.bad, checks)
		}
		if tc.bad == "" && len(checks) != 6 {
			t.Errorf("%s: %d checks, want token, location, server type, image, prices and firewall: %v", tc.name, len(checks), checks)
		}
		if tc.bad == "token" && len(checks) != 1 {
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
