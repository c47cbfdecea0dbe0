package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// metricsEndpoint is the HTTP listener of a gateway run with
// --metrics-listen.
type metricsEndpoint struct {
	t    *testing.T
	base string // http://host:port
}

var servingMetricsLine = regexp.MustCompile(`msg="serving metrics" addr=(\S+)`)

// metricsOf finds the listener's address in g's log: it is logged before
// the SSH listener's, which start waits for.
func metricsOf(t *testing.T, g *gatewayProc) metricsEndpoint {
	t.Helper()
	m := servingMetricsLine.FindStringSubmatch(g.logs.String())
	if m == nil {
		t.Fatalf("the gateway logged no metrics address:\n%s", g.logs.String())
	}
	return metricsEndpoint{t: t, base: "http://" + m[1]}
}

// get fetches path and returns the status and body.
func (e metricsEndpoint) get(path string) (int, string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.base+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// sample is the value of series (name and labels as exposed, e.g.
// `cc_gateway_auth_attempts_total{result="accepted"}`) in a scrape.
func sample(scrape, series string) (float64, error) {
	for line := range strings.Lines(scrape) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("no series %s in the scrape", series)
}

// TestMetricsEndpoint: a real gateway with --metrics-listen, reached with
// the real ssh: a session, a refused key, an extend and a session over a
// limit show in /metrics, which promtool accepts; /healthz and /readyz
// answer, and /readyz says why not once the gateway is shutting down; the
// profiler is off.
func TestMetricsEndpoint(t *testing.T) {
	dir := t.TempDir()
	alice := newPerson(t, filepath.Join(dir, "alice"))
	stranger := newPerson(t, filepath.Join(dir, "stranger"))
	users := writeKeyList(t, filepath.Join(dir, "users"), alice)
	lg := newLocalGatewayIn(t, dir, withHomes("--users", users, "--metrics-listen", "127.0.0.1:0", "--max-early-requests", "8",
		"--shutdown-grace", "1m")...)
	g := lg.start(t)
	m := metricsOf(t, g)

	if code, body := m.get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	// Serve starts just after the log line start waits for.
	testkit.Eventually(t, 30*time.Second, func() error {
		if code, body := m.get("/readyz"); code != 200 || body != "ready\n" {
			return fmt.Errorf("/readyz: %d %q", code, body)
		}
		return nil
	})
	if code, _ := m.get("/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without --pprof: %d, want 404", code)
	}

	if r := alice.ssh(g, "hello\n", "cat"); r.code != 0 || r.stdout != "hello\n" {
		t.Fatalf("alice's session: %+v", r)
	}
	if r := stranger.ssh(g, "", "true"); r.code != 255 {
		t.Errorf("a stranger's key got in: %+v", r)
	}
	if r := alice.ssh(g, "", "extend", "1h"); r.code != 0 {
		t.Errorf("extend: %+v", r)
	}
	var vars []string
	for i := range 9 {
		vars = append(vars, fmt.Sprintf("V%d=%d", i, i))
	}
	if r := alice.ssh(g, "", "-oSetEnv="+strings.Join(vars, " "), "echo ran"); r.code != 255 || !strings.Contains(r.stderr, "more than 8 requests") {
		t.Errorf("nine variables, at most eight requests: %+v", r)
	}

	// Connections end on the gateway's side a little after ssh exits.
	var scrape string
	testkit.Eventually(t, 30*time.Second, func() error {
		var code int
		if code, scrape = m.get("/metrics"); code != 200 {
			return fmt.Errorf("/metrics: %d", code)
		}
		for _, series := range []string{"cc_gateway_connections_active", "cc_gateway_sessions_active", `cc_gateway_proxy_channels_active{type="session"}`} {
			if v, err := sample(scrape, series); err != nil || v != 0 {
				return fmt.Errorf("%s = %v (%v), want 0 once every ssh has ended", series, v, err)
			}
		}
		return nil
	})
	for series, want := range map[string]float64{
		// One connection each: the session, the extend, the one over the limit.
		`cc_gateway_auth_attempts_total{result="accepted"}`:    3,
		`cc_gateway_auth_attempts_total{result="refused"}`:     1,
		`cc_gateway_auth_attempts_total{result="limited"}`:     0,
		`cc_gateway_limited_total{limit="max-early-requests"}`: 1,
		`cc_gateway_limited_total{limit="max-startups"}`:       0,
		// What alice typed; the extend is the gateway's own command.
		`cc_gateway_proxy_bytes_total{direction="to_machine"}`: 6,
		// Alice's home volume, made with her machine.
		`cc_gateway_home_volumes{state="ready"}`:    1,
		`cc_gateway_home_volumes{state="creating"}`: 0,
	} {
		if got, err := sample(scrape, series); err != nil || got != want {
			t.Errorf("%s = %v (%v), want %v", series, got, err, want)
		}
	}
	if got, err := sample(scrape, `cc_gateway_proxy_bytes_total{direction="from_machine"}`); err != nil || got < 6 {
		t.Errorf("bytes from the machine: %v (%v), want at least the 6 cat echoed", got, err)
	}
	if !regexp.MustCompile(`(?m)^cc_gateway_build_info\{goversion="go[^"]+",version="[^"]+"\} 1$`).MatchString(scrape) {
		t.Errorf("no build_info in the scrape")
	}
	if !strings.Contains(scrape, "\nprocess_open_fds ") || !strings.Contains(scrape, "\ngo_goroutines ") {
		t.Errorf("the process and Go collectors are missing from the scrape")
	}
	promtoolCheckMetrics(t, scrape)

	// Shutting down with a session open: the grace keeps the process up,
	// alive but no longer ready, and /readyz says why.
	ended := make(chan result, 1)
	go func() { ended <- alice.ssh(g, "", "sleep 120") }()
	testkit.Eventually(t, 30*time.Second, func() error {
		_, scrape := m.get("/metrics")
		if v, err := sample(scrape, "cc_gateway_sessions_active"); err != nil || v != 1 {
			return fmt.Errorf("sessions active: %v (%v), want 1", v, err)
		}
		return nil
	})
	if err := g.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if code, body := m.get("/readyz"); code != 503 || body != "the SSH listener is shutting down\n" {
			return fmt.Errorf("/readyz while shutting down: %d %q", code, body)
		}
		return nil
	})
	if code, _ := m.get("/healthz"); code != 200 {
		t.Errorf("/healthz while shutting down: %d, want 200", code)
	}
	g.Stop(syscall.SIGKILL, time.Minute)
	<-ended
}

// promtoolCheckMetrics lints a scrape with Prometheus's own tool: names,
// units, help texts, counters' _total.
func promtoolCheckMetrics(t *testing.T, scrape string) {
	t.Helper()
	path := testkit.Tool(t, "promtool")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out.String())
	}
}

// TestMetricsPprof: --pprof serves Go's profiler on the metrics listener.
func TestMetricsPprof(t *testing.T) {
	lg := newLocalGateway(t, "--metrics-listen", "127.0.0.1:0", "--pprof")
	m := metricsOf(t, lg.start(t))
	if code, body := m.get("/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ with --pprof: %d, lacks the profiles' list", code)
	}
	if code, body := m.get("/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "main.run") {
		t.Errorf("the goroutine profile: %d, lacks the gateway's main.run", code)
	}
}

// TestMetricsReaperAction: the reaper's work shows in /metrics. An idle
// machine stopped by the reaper is a reaper action and a stop, the lease
// shows as stopped, its create is counted, and its first billed hour is
// in the cost.
func TestMetricsReaperAction(t *testing.T) {
	dir := t.TempDir()
	alice := newPerson(t, filepath.Join(dir, "alice"))
	users := writeKeyList(t, filepath.Join(dir, "users"), alice)
	lg := newLocalGatewayIn(t, dir, "--users", users, "--metrics-listen", "127.0.0.1:0",
		"--idle-timeout", "1s", "--reaper-interval", "1s")
	g := lg.start(t)
	m := metricsOf(t, g)

	if r := alice.ssh(g, "", "true"); r.code != 0 {
		t.Fatalf("alice's command: %+v", r)
	}
	testkit.Eventually(t, time.Minute, func() error {
		_, scrape := m.get("/metrics")
		for series, want := range map[string]float64{
			`cc_gateway_reaper_actions_total{action="stop"}`:               1,
			`cc_gateway_machine_operations_total{op="stop",result="ok"}`:   1,
			`cc_gateway_machine_operations_total{op="create",result="ok"}`: 1,
			`cc_gateway_leases{state="stopped"}`:                           1,
			`cc_gateway_leases{state="running"}`:                           0,
		} {
			if got, err := sample(scrape, series); err != nil || got != want {
				return fmt.Errorf("%s = %v (%v), want %v", series, got, err, want)
			}
		}
		if cost, err := sample(scrape, "cc_gateway_cost_euros_total"); err != nil || cost <= 0 {
			return fmt.Errorf("cost %v (%v), want the machine's first hour", cost, err)
		}
		return nil
	})
}
