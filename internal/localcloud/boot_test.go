package localcloud_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

func startSlowCloud(t *testing.T, port int, bootDelay time.Duration) *localcloud.Cloud {
	t.Helper()
	c, err := localcloud.Start(localcloud.Options{
		DataDir: t.TempDir(), SSHPort: port, ActionDuration: 20 * time.Millisecond,
		BootDelay: bootDelay, Logger: testkit.Log(t),
	})
	if err != nil {
		t.Fatalf("start local cloud: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// createRunning creates a server and waits for its actions: the server
// then reports running.
func createRunning(ctx context.Context, t *testing.T, raw *hc.Client, name string, port int) *hc.Server {
	t.Helper()
	spec, _ := newSpec(t, name, port)
	res, _, err := raw.Server.Create(ctx, hc.ServerCreateOpts{
		Name: spec.Name, ServerType: &hc.ServerType{Name: "cx23"}, Image: &hc.Image{Name: "debian-12"},
		Location: &hc.Location{Name: "nbg1"}, UserData: spec.UserData,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Action.WaitFor(ctx, append(res.NextActions, res.Action)...); err != nil {
		t.Fatal(err)
	}
	s, _, err := raw.Server.GetByID(ctx, res.Server.ID)
	if err != nil || s == nil || s.Status != hc.ServerStatusRunning {
		t.Fatalf("server after its actions: %+v, %v; want running", s, err)
	}
	return s
}

// sshAnswers reports whether the machine's SSH port answers with an SSH
// banner.
func sshAnswers(s *hc.Server, port int) error {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(s.PublicNet.IPv4.IP.String(), strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	banner, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(banner, "SSH-2.0-") {
		return errors.New("no SSH banner: " + banner)
	}
	return nil
}

// TestBootDelayHoldsSSHBack: with a boot delay the server reports running
// as soon as its actions end (on Hetzner running means the VM started), but
// its SSH port does not answer until the operating system has booted; a
// power-off meanwhile cancels the boot.
func TestBootDelayHoldsSSHBack(t *testing.T) {
	ctx := testkit.Context(t, 30*time.Second)
	port := testkit.FreePort(t)
	// Far longer than the test: SSH must stay shut all along.
	cloud := startSlowCloud(t, port, time.Hour)
	raw := rawClient(cloud.Endpoint(), cloud.Token())
	s := createRunning(ctx, t, raw, "slow1", port)
	if err := sshAnswers(s, port); err == nil {
		t.Fatal("the machine's SSH answers while its operating system still boots")
	}

	a, _, err := raw.Server.Poweroff(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Action.WaitFor(ctx, a); err != nil {
		t.Fatal(err)
	}
	off, _, err := raw.Server.GetByID(ctx, s.ID)
	if err != nil || off.Status != hc.ServerStatusOff {
		t.Fatalf("server after power-off: %+v, %v; want off", off, err)
	}
}

// TestBootDelayThenSSHAnswers: once the boot delay has passed, after a
// create and again after a power-on, the machine's SSH answers.
func TestBootDelayThenSSHAnswers(t *testing.T) {
	ctx := testkit.Context(t, 60*time.Second)
	port := testkit.FreePort(t)
	const delay = 300 * time.Millisecond
	cloud := startSlowCloud(t, port, delay)
	raw := rawClient(cloud.Endpoint(), cloud.Token())

	start := time.Now()
	s := createRunning(ctx, t, raw, "slow2", port)
	testkit.Eventually(t, 20*time.Second, func() error { return sshAnswers(s, port) })
	if took := time.Since(start); took < delay {
		t.Fatalf("SSH answered %v after the create request, before the boot delay of %v", took, delay)
	}

	for _, step := range []func(context.Context, *hc.Server) (*hc.Action, *hc.Response, error){raw.Server.Poweroff, raw.Server.Poweron} {
		start = time.Now()
		a, _, err := step(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := raw.Action.WaitFor(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 20*time.Second, func() error { return sshAnswers(s, port) })
	if took := time.Since(start); took < delay {
		t.Fatalf("SSH answered %v after the power-on request, before the boot delay of %v", took, delay)
	}
}
