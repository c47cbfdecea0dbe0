package testkit

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Tool is the path of the program name, for tests that run a real tool
// the machine may lack (Debian's prometheus package, say). Without it the
// test is skipped, except in CI (CI=true), where a missing tool is a
// failure: CI installs every tool the tests run.
func Tool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed, and CI must run every test: %v", name, err)
	}
	t.Skipf("%s is not installed; CI installs it (.ci/run)", name)
	return ""
}

// Prometheus is a real Prometheus server a test runs on loopback,
// scraping and evaluating rules every PrometheusInterval.
type Prometheus struct {
	URL string // http://127.0.0.1:PORT
}

// PrometheusInterval is how often the test's Prometheus scrapes its
// targets and evaluates its rules: short, so a test sees a change within
// seconds.
const PrometheusInterval = time.Second

// promClient bounds every request to the test's Prometheus.
var promClient = &http.Client{Timeout: 10 * time.Second}

// StartPrometheus runs prometheus with a fresh data folder, scraping
// targets (host:port) as the job "job" and loading ruleFiles, and waits
// until it is ready. The test's end stops it.
func StartPrometheus(t testing.TB, job string, targets []string, ruleFiles ...string) *Prometheus {
	t.Helper()
	bin := Tool(t, "prometheus")
	dir := t.TempDir()
	rules := make([]string, len(ruleFiles))
	for i, f := range ruleFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		rules[i] = abs
	}
	interval := PrometheusInterval.String()
	// JSON is YAML, so the config needs no YAML encoder.
	config, err := json.Marshal(map[string]any{
		"global": map[string]any{
			"scrape_interval":     interval,
			"scrape_timeout":      interval,
			"evaluation_interval": interval,
		},
		"rule_files": rules,
		"scrape_configs": []any{map[string]any{
			"job_name":       job,
			"static_configs": []any{map[string]any{"targets": targets}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configPath, config, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	cmd := exec.Command(bin,
		"--config.file="+configPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	p := &Prometheus{URL: "http://" + addr}
	logs := &Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	proc, err := StartProcess(cmd)
	if err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		proc.Stop(syscall.SIGTERM, 30*time.Second)
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
	Eventually(t, time.Minute, func() error {
		select {
		case <-proc.Done():
			return fmt.Errorf("prometheus exited: %v\n%s", proc.Err(), logs.String())
		default:
		}
		_, err := p.get("/-/ready", nil)
		return err
	})
	return p
}

// get fetches path with query from the server and returns its body; an
// answer other than 200 is an error.
func (p *Prometheus) get(path string, query url.Values) ([]byte, error) {
	u := p.URL + path
	if query != nil {
		u += "?" + query.Encode()
	}
	resp, err := promClient.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", path, resp.Status, body)
	}
	return body, nil
}

// api fetches one of the HTTP API's endpoints and decodes its data.
func (p *Prometheus) api(path string, query url.Values, data any) error {
	body, err := p.get(path, query)
	if err != nil {
		return err
	}
	var answer struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return fmt.Errorf("%s answered %q: %w", path, body, err)
	}
	if answer.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, answer.Status, answer.Error)
	}
	return json.Unmarshal(answer.Data, data)
}

// Sample is one series of an instant query's answer.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query evaluates the PromQL expression expr now. It returns errors
// rather than failing the test, so a test can poll it with Eventually.
func (p *Prometheus) Query(expr string) ([]Sample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"` // [unix time, "value"]
		} `json:"result"`
	}
	if err := p.api("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: a %s, want an instant vector", expr, data.ResultType)
	}
	samples := make([]Sample, len(data.Result))
	for i, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %w", expr, r.Value[1], err)
		}
		samples[i] = Sample{Metric: r.Metric, Value: v}
	}
	return samples, nil
}

// Alert is one alert the server's rules have made, pending or firing.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`    // "pending" or "firing"
	ActiveAt    time.Time         `json:"activeAt"` // since when it is pending or firing
}

// Alerts returns the alerts pending or firing now.
func (p *Prometheus) Alerts() ([]Alert, error) {
	var data struct {
		Alerts []Alert `json:"alerts"`
	}
	if err := p.api("/api/v1/alerts", nil, &data); err != nil {
		return nil, err
	}
	return data.Alerts, nil
}
