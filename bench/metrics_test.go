package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkMetrics measures what --metrics-listen costs the proxy: two
// gateways, each with its own machine, one without metrics and one with
// them (and Prometheus's scrape every second while it runs), move 1 GiB
// each way four times (the first warms up), alternately, and type 1000
// keystrokes twice through each.
// It reports the throughput and gateway CPU of the one with metrics against
// the one without, and what metrics add to the keystroke round trip
// (expected: ratios about 1, added latency within the noise).
func BenchmarkMetrics(b *testing.B) {
	off, on := &harness{}, &harness{}
	b.Cleanup(off.close)
	b.Cleanup(on.close)
	off.start(b)
	on.start(b, "--metrics-listen", "127.0.0.1:0")
	scrapeURL := "http://" + metricsAddr(b, on) + "/metrics"
	ctx, stop := context.WithCancel(b.Context())
	scraped := make(chan error, 1)
	go func() { scraped <- scrapeEverySecond(ctx, scrapeURL) }()
	defer func() {
		stop()
		if err := <-scraped; err != nil {
			b.Errorf("scraping while measuring: %v", err)
		}
	}()

	gateways := map[string]*harness{"off": off, "on": on}
	for _, dir := range []string{"download", "upload"} {
		took := map[string][]time.Duration{}
		cpu := map[string]time.Duration{}
		for i := range 4 { // the first round warms up
			for _, name := range []string{"off", "on"} {
				h := gateways[name]
				cpu0, err := cpuTime(h.gw.Cmd.Process.Pid)
				if err != nil {
					b.Fatal(err)
				}
				d, err := timed(h.transfer(dir, "gw"))
				if err != nil {
					b.Fatal(err)
				}
				cpu1, err := cpuTime(h.gw.Cmd.Process.Pid)
				if err != nil {
					b.Fatal(err)
				}
				if i > 0 {
					took[name] = append(took[name], d)
					cpu[name] += cpu1 - cpu0
				}
			}
		}
		tOff, tOn := mibps(median(took["off"])), mibps(median(took["on"]))
		cOff, cOn := cpu["off"].Seconds()/3, cpu["on"].Seconds()/3
		b.Logf("1 GiB %-8s without metrics %4.0f MiB/s, %.2fs gateway CPU; with metrics %4.0f MiB/s, %.2fs: throughput ratio %.2f, CPU ratio %.2f",
			dir, tOff, cOff, tOn, cOn, tOn/tOff, cOn/cOff)
		b.ReportMetric(tOn/tOff, dir+"-ratio")
		b.ReportMetric(cOn/cOff, dir+"-cpu-ratio")
	}

	lat, err := keystrokes([]string{"off", "on"}, func(name string, n int) ([]time.Duration, error) {
		return gateways[name].echo("gw", n)
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range []float64{50, 99} {
		dOff, dOn := percentile(lat["off"], p), percentile(lat["on"], p)
		b.Logf("keystroke echo p%.0f: without metrics %s, with metrics %s: added %s", p, dOff.Round(time.Microsecond), dOn.Round(time.Microsecond), (dOn - dOff).Round(time.Microsecond))
		b.ReportMetric(float64(dOn-dOff)/float64(time.Millisecond), fmt.Sprintf("added-p%.0f-ms", p))
	}

	// The metrics counted what went through: 4 GiB each way and the
	// keystrokes, plus the harness's own sessions.
	body, err := scrape(b.Context(), scrapeURL)
	if err != nil {
		b.Fatal(err)
	}
	for _, direction := range []string{"to_machine", "from_machine"} {
		m := regexp.MustCompile(`(?m)^cc_gateway_proxy_bytes_total\{direction="` + direction + `"\} (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			b.Fatalf("no %s bytes in the scrape", direction)
		}
		if n, err := strconv.ParseFloat(m[1], 64); err != nil || n < 4*gib {
			b.Errorf("%s bytes counted: %s, want at least 4 GiB", direction, m[1])
		}
	}
}

// metricsAddr reads the metrics listener's address from h's log.
func metricsAddr(b *testing.B, h *harness) string {
	b.Helper()
	log, err := os.ReadFile(filepath.Join(h.dir, "gateway.log"))
	if err != nil {
		b.Fatal(err)
	}
	m := regexp.MustCompile(`msg="serving metrics" addr=(\S+)`).FindSubmatch(log)
	if m == nil {
		b.Fatal("the gateway's log has no metrics address")
	}
	return string(m[1])
}

// scrapeEverySecond scrapes url as a busy Prometheus would, until ctx ends.
func scrapeEverySecond(ctx context.Context, url string) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if _, err := scrape(ctx, url); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
}

func scrape(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}
