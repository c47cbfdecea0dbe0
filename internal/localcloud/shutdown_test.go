package localcloud_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// startShutdownCloud starts a cloud whose machines take delay to act on a
// shutdown, with one running server.
func startShutdownCloud(t *testing.T, ctx context.Context, delay time.Duration, faults localcloud.Faults) (*hc.Client, *hc.Server) {
	t.Helper()
	port := testkit.FreePort(t)
	cloud, err := localcloud.Start(localcloud.Options{
		DataDir: t.TempDir(), SSHPort: port, ActionDuration: 20 * time.Millisecond, ShutdownDelay: delay,
		Faults: faults, Logger: testkit.Log(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close() })
	raw := rawClient(cloud.Endpoint(), cloud.Token())
	return raw, createServer(t, ctx, raw, "acpi1", port, &hc.Image{Name: "debian-12"})
}

func shutdownNow(t *testing.T, ctx context.Context, raw *hc.Client, srv *hc.Server) {
	t.Helper()
	a, _, err := raw.Server.Shutdown(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Action.WaitFor(ctx, a); err != nil {
		t.Fatalf("shutdown action: %v", err)
	}
}

func status(t *testing.T, ctx context.Context, raw *hc.Client, srv *hc.Server) hc.ServerStatus {
	t.Helper()
	s, _, err := raw.Server.GetByID(ctx, srv.ID)
	if err != nil || s == nil {
		t.Fatalf("get server: %+v, %v", s, err)
	}
	return s.Status
}

// TestShutdownIsARequest: the shutdown action succeeds at once, but the
// server stays running until its guest has shut down.
func TestShutdownIsARequest(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)

	// A guest slower than the test: running after the action succeeded.
	raw, srv := startShutdownCloud(t, ctx, time.Hour, nil)
	shutdownNow(t, ctx, raw, srv)
	if got := status(t, ctx, raw, srv); got != hc.ServerStatusRunning {
		t.Fatalf("right after the shutdown request: %s, want running", got)
	}
	// Power off overtakes it, and the pending shutdown does not hold up
	// Close (the cleanup would wait an hour).
	a, _, err := raw.Server.Poweroff(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Action.WaitFor(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got := status(t, ctx, raw, srv); got != hc.ServerStatusOff {
		t.Fatalf("after power off: %s", got)
	}

	// A guest that acts on it goes off by itself.
	raw, srv = startShutdownCloud(t, ctx, 50*time.Millisecond, nil)
	shutdownNow(t, ctx, raw, srv)
	testkit.Eventually(t, 10*time.Second, func() error {
		if got := status(t, ctx, raw, srv); got != hc.ServerStatusOff {
			return fmt.Errorf("server is %s after the shutdown, want off", got)
		}
		return nil
	})
}

// TestIgnoredShutdown: with the fault, the action succeeds and the server
// keeps running.
func TestIgnoredShutdown(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	faults, err := localcloud.ParseFaults("ignore-shutdown")
	if err != nil {
		t.Fatal(err)
	}
	raw, srv := startShutdownCloud(t, ctx, time.Millisecond, faults)
	shutdownNow(t, ctx, raw, srv)
	// A snapshot takes 20 times the guest's delay: had the guest acted on
	// the request, it would be off once the snapshot is done.
	res, _, err := raw.Server.CreateImage(ctx, srv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Action.WaitFor(ctx, res.Action); err != nil {
		t.Fatal(err)
	}
	if got := status(t, ctx, raw, srv); got != hc.ServerStatusRunning {
		t.Fatalf("after an ignored shutdown: %s, want running", got)
	}
	if n := faults.(*localcloud.RandomFaults).Counts()[localcloud.FaultIgnored]; n != 1 {
		t.Fatalf("%d shutdowns ignored, want 1", n)
	}
}
