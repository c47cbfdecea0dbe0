package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	provider "github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

var localCloudLine = regexp.MustCompile(`local cloud API at (\S+);`)

// startLocalCloud runs `gateway localcloud` on dir and returns it with
// the endpoint it printed; the test's end kills it if it still runs.
func startLocalCloud(t *testing.T, dir string) (*testkit.Process, *testkit.Buffer, string) {
	t.Helper()
	cmd := exec.Command(gatewayBin, "localcloud", "--listen", "127.0.0.1:0", "--data-dir", dir)
	cmd.Env = append(os.Environ(), "TMPDIR="+gatewayTempDir(t))
	out := &testkit.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	proc, err := testkit.StartProcess(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Stop(os.Kill, time.Minute) })
	if !out.WaitFor("local cloud API at", time.Minute) {
		t.Fatalf("gateway localcloud printed no endpoint:\n%s", out)
	}
	return proc, out, localCloudLine.FindStringSubmatch(out.String())[1]
}

// TestSharedLocalCloud: `gateway localcloud` serves one local cloud to two
// gateways in hcloud mode, each with its own gateway name; a person
// connects through each with the real ssh, and both machines live in the
// one cloud. Stopped with SIGTERM, the cloud exits cleanly and keeps them.
func TestSharedLocalCloud(t *testing.T) {
	dir := t.TempDir()
	cloudDir := filepath.Join(dir, "cloud")
	cloud, logs, printed := startLocalCloud(t, cloudDir)
	endpoint, token := localcloudtest.Credentials(t, cloudDir)
	if endpoint != printed || token == "" {
		t.Fatalf("api.env names %q and a token of %d characters; the command printed %q", endpoint, len(token), printed)
	}
	if info, err := os.Stat(filepath.Join(cloudDir, localcloud.CredentialsFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("api.env: %v, %v; want mode 0600", info, err)
	}

	people := []*person{newPerson(t, filepath.Join(dir, "alice")), newPerson(t, filepath.Join(dir, "bob"))}
	users := writeKeyList(t, filepath.Join(dir, "users"), people...)
	names := []string{"gw-a", "gw-b"}
	for i, name := range names {
		lg := newLocalGatewayIn(t, filepath.Join(dir, name),
			"--cloud", "hcloud", "--hcloud-endpoint", endpoint, "--users", users, "--gateway-name", name)
		g := lg.start(t, "HCLOUD_TOKEN="+token)
		if r := people[i].ssh(g, "", "echo ready"); r.code != 0 || r.stdout != "ready\n" {
			t.Fatalf("person %d through %s: code %d stdout %q stderr %q", i, name, r.code, r.stdout, r.stderr)
		}
	}

	client := hcloud.NewClient(hcloud.WithEndpoint(endpoint), hcloud.WithToken(token))
	ctx := testkit.Context(t, time.Minute)
	gateways := func(want hcloud.ServerStatus) []string {
		t.Helper()
		servers, err := client.Server.All(ctx)
		if err != nil {
			t.Fatalf("list the shared cloud's servers: %v", err)
		}
		var got []string
		for _, s := range servers {
			if s.Status != want {
				t.Errorf("server %s is %s, want %s", s.Name, s.Status, want)
			}
			got = append(got, s.Labels[provider.LabelGateway])
		}
		slices.Sort(got)
		return got
	}
	if got := gateways(hcloud.ServerStatusRunning); !slices.Equal(got, names) {
		t.Fatalf("the shared cloud's servers belong to %q, want one of each of %q", got, names)
	}

	if !cloud.Stop(syscall.SIGTERM, 30*time.Second) {
		t.Fatalf("gateway localcloud did not exit within 30s of SIGTERM:\n%s", logs)
	}
	if err := cloud.Err(); err != nil {
		t.Fatalf("gateway localcloud exited with %v after SIGTERM:\n%s", err, logs)
	}
	// Started again, it serves the same project, with a new token.
	_, _, endpoint = startLocalCloud(t, cloudDir)
	_, token = localcloudtest.Credentials(t, cloudDir)
	client = hcloud.NewClient(hcloud.WithEndpoint(endpoint), hcloud.WithToken(token))
	if got := gateways(hcloud.ServerStatusRunning); !slices.Equal(got, names) {
		t.Errorf("after a restart the shared cloud's servers belong to %q, want %q", got, names)
	}
}

// TestLocalCloudRefusesBadInput: each mistake gets one line that says what
// to do, and the command exits without serving.
func TestLocalCloudRefusesBadInput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cloud")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "0.0.0.0:8080"}, `listen address "0.0.0.0:8080" is not on loopback`},
		{[]string{"--listen", "127.0.0.1"}, `listen address "127.0.0.1": address 127.0.0.1: missing port in address; give host:port`},
		{[]string{"--local-boot-delay", "1h"}, "--local-boot-delay: 1h0m0s is not from 0s to 10m0s"},
		{[]string{"--local-machines", "docker"}, `machine kind "docker" is neither "builtin" nor "openssh"`},
		{[]string{"--local-faults", "rate=2"}, "--local-faults:"},
		{[]string{"serve"}, `unexpected argument "serve"`},
	} {
		out, err := runGateway(nil, append([]string{"localcloud", "--data-dir", dir}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("gateway localcloud %q: %v, output %q; want one line with %q", tc.args, err, out, tc.want)
		}
	}
}
