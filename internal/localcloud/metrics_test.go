package localcloud_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

func TestMetrics(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Second)
	booted := time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)
	clock := testkit.NewClock(booted)
	dir, port := t.TempDir(), testkit.FreePort(t)
	cloud, err := localcloud.Start(localcloud.Options{
		DataDir: dir, SSHPort: port, ActionDuration: 20 * time.Millisecond, Now: clock.Now, Logger: testkit.Log(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close() })
	raw := rawClient(cloud.Endpoint(), cloud.Token())
	srv := createServer(t, ctx, raw, "metrics1", port, &hc.Image{Name: "debian-12"}) // a cx23: 2 vCPUs
	clock.Advance(2 * time.Hour)
	end := clock.Now()

	metrics := func(start time.Time, step int, types ...hc.ServerMetricType) *hc.ServerMetrics {
		t.Helper()
		m, _, err := raw.Server.GetMetrics(ctx, srv, hc.ServerGetMetricsOpts{Types: types, Start: start, End: end, Step: step})
		if err != nil {
			t.Fatal(err)
		}
		if !m.Start.Equal(start) || !m.End.Equal(end) {
			t.Fatalf("metrics period %v–%v, asked for %v–%v", m.Start, m.End, start, end)
		}
		return m
	}
	cpu := func(start time.Time, step int) []hc.ServerMetricsValue {
		t.Helper()
		return metrics(start, step, hc.ServerMetricCPU).TimeSeries["cpu"]
	}

	values := cpu(end.Add(-10*time.Minute), 60)
	if len(values) != 11 || values[0].Timestamp != float64(end.Add(-10*time.Minute).Unix()) || values[10].Timestamp != float64(end.Unix()) {
		t.Fatalf("10 minutes at 60s steps: %+v", values)
	}
	for _, v := range values {
		if v.Value != "0" {
			t.Fatalf("idle machine reports %q", v.Value)
		}
	}

	// Hetzner's sample counts: without a step at most 200 samples, and no
	// step gives more than 500.
	if m := metrics(end.Add(-time.Hour), 0, hc.ServerMetricCPU); m.Step != 19 || len(m.TimeSeries["cpu"]) != 190 {
		t.Errorf("an hour without a step: step %v, %d samples; want 19 and 190", m.Step, len(m.TimeSeries["cpu"]))
	}
	if m := metrics(end.Add(-time.Hour), 1, hc.ServerMetricCPU); m.Step != 8 || len(m.TimeSeries["cpu"]) != 451 {
		t.Errorf("an hour at 1s steps: step %v, %d samples; want 8 and 451", m.Step, len(m.TimeSeries["cpu"]))
	}

	// No figures from before the machine booted: the series starts there.
	values = cpu(booted.Add(-10*time.Minute), 60)
	if len(values) != 121 || values[0].Timestamp != float64(booted.Unix()) {
		t.Fatalf("a window from 10 minutes before boot: %d samples from %v; want 121 from the boot at %v",
			len(values), values[0].Timestamp, booted.Unix())
	}

	// The file says percent of the whole machine; Hetzner's figure is per
	// vCPU, so a 2-vCPU machine at 73.25% reports 146.5.
	if err := os.WriteFile(filepath.Join(dir, "machines", srv.Name, localcloud.CPUFile), []byte(" 73.25\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, v := range cpu(end.Add(-time.Minute), 0) {
		if v.Value != "146.5" {
			t.Fatalf("busy machine reports %q, want 146.5", v.Value)
		}
	}

	m := metrics(end.Add(-time.Minute), 0, hc.ServerMetricDisk, hc.ServerMetricNetwork)
	for _, name := range []string{"disk.0.iops.read", "network.0.bandwidth.out"} {
		if len(m.TimeSeries[name]) == 0 {
			t.Errorf("no %s series in %v", name, m.TimeSeries)
		}
	}

	// A machine that is off has no figures at all.
	a, _, err := raw.Server.Poweroff(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Action.WaitFor(ctx, a); err != nil {
		t.Fatal(err)
	}
	if values := cpu(end.Add(-time.Minute), 0); len(values) != 0 {
		t.Fatalf("a machine that is off reports %d samples", len(values))
	}

	if _, _, err := raw.Server.GetMetrics(ctx, &hc.Server{ID: 99999}, hc.ServerGetMetricsOpts{
		Types: []hc.ServerMetricType{hc.ServerMetricCPU}, Start: end.Add(-time.Minute), End: end,
	}); !hc.IsError(err, hc.ErrorCodeNotFound) {
		t.Fatalf("metrics of a missing server: %v", err)
	}
	if _, _, err := raw.Server.GetMetrics(ctx, srv, hc.ServerGetMetricsOpts{
		Types: []hc.ServerMetricType{"memory"}, Start: end.Add(-time.Minute), End: end,
	}); !hc.IsError(err, hc.ErrorCodeInvalidInput) {
		t.Fatalf("metrics of an unknown type: %v", err)
	}
}
