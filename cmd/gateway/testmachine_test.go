package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestTestMachineInterrupted: Ctrl-C while `gateway preflight
// --create-test-machine` waits for its machine stops the wait, not the
// delete: the machine is gone, and preflight exits 1 saying the phase was
// interrupted. (The cloud's machines listen on a port of their own; the
// gateway looks for them on port 1, so the machine never answers.)
func TestTestMachineInterrupted(t *testing.T) {
	dir := t.TempDir()
	cloud, err := localcloud.Start(localcloud.Options{
		DataDir: filepath.Join(dir, "cloud"), SSHPort: testkit.FreePort(t), Kind: localcloud.KindBuiltin,
		ActionDuration: localcloudtest.ActionDuration, Logger: testkit.Quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	users := writeKeyList(t, filepath.Join(dir, "users"), newPerson(t, filepath.Join(dir, "alice")))
	lg := newLocalGatewayIn(t, dir, "--users", users, "--machine-ssh-port", "1")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatewayBin, append([]string{"preflight", "--create-test-machine"}, lg.args...)...)
	cmd.Env = append(os.Environ(), "HCLOUD_TOKEN="+cloud.Token(), "CC_GATEWAY_HCLOUD_ENDPOINT="+cloud.Endpoint())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &testkit.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		// The server runs; the wait for its SSH port has begun.
		if strings.HasPrefix(sc.Text(), "  create took ") {
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("preflight ended with %v, want exit status 1\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}
	for _, want := range []string{
		`(?m)^test machine create +ok: `,
		`(?m)^test machine boot +PROBLEM +after \S+: interrupted before it finished$`,
		`(?m)^test machine delete +ok: \S+, server \d+ cc-preflight-[0-9a-f]+ deleted +-$`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("stdout lacks %s:\n%s", want, out.String())
		}
	}
	if !strings.Contains(stderr.String(), "gateway preflight: test machine boot failed: interrupted before it finished") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	client := hcloud.NewClient(hcloud.WithEndpoint(cloud.Endpoint()), hcloud.WithToken(cloud.Token()))
	servers, err := client.Server.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 0 {
		t.Errorf("servers left after the interrupted test machine: %v", serverNames(servers))
	}
}
