package metrics_test

// The monitoring kit in docs/monitoring, checked with Prometheus' own
// promtool: the scrape config and the alert rules load, every alert fires
// on a failing series and stays quiet on a healthy one (alerts_test.yml),
// and the dashboard has the panels an operator looks at first. That they
// use only metrics the gateway exports is checked on a real scrape, by
// cmd/gateway's TestMonitoring.

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

const monitoringDir = "../../docs/monitoring"

// promtool runs promtool with args in the monitoring folder and fails the
// test with its output unless it succeeds.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin := testkit.Tool(t, "promtool")
	cmd := exec.CommandContext(testkit.Context(t, time.Minute), bin, args...)
	cmd.Dir = monitoringDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestPrometheusConfig(t *testing.T) {
	// Checks the rule files it names too.
	promtool(t, "check", "config", "prometheus.yml")
}

func TestAlertRules(t *testing.T) {
	promtool(t, "check", "rules", "alerts.yml")
	promtool(t, "test", "rules", "alerts_test.yml")
}

// TestAlertsCovered: every alert in alerts.yml has its test in
// alerts_test.yml, so none can be added unproven.
func TestAlertsCovered(t *testing.T) {
	rules := readMonitoring(t, "alerts.yml")
	tests := readMonitoring(t, "alerts_test.yml")
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\w+)`).FindAllStringSubmatch(rules, -1)
	if len(alerts) == 0 {
		t.Fatal("alerts.yml defines no alert")
	}
	for _, a := range alerts {
		if !strings.Contains(tests, "alertname: "+a[1]+"\n") {
			t.Errorf("alert %s has no test in alerts_test.yml", a[1])
		}
	}
}

// dashboard is the part of Grafana's dashboard model the test reads.
type dashboard struct {
	Title         string
	UID           string
	SchemaVersion int
	Templating    struct {
		List []struct{ Name, Type string }
	}
	Panels []struct {
		Type       string
		Title      string
		Datasource struct{ Type, UID string }
		Targets    []struct{ Expr string }
	}
}

func TestDashboard(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal([]byte(readMonitoring(t, "dashboard.json")), &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("dashboard uid %q, title %q, schemaVersion %d: want a uid, a title and a current Grafana's schema (36 or later)", d.UID, d.Title, d.SchemaVersion)
	}
	var variables []string
	for _, v := range d.Templating.List {
		variables = append(variables, v.Type+" "+v.Name)
	}
	if !slices.Contains(variables, "datasource DS_PROMETHEUS") {
		t.Errorf("dashboard variables %q: want the datasource variable DS_PROMETHEUS, so it works with any Prometheus", variables)
	}
	var queries []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${DS_PROMETHEUS}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %+v and %d queries, want ${DS_PROMETHEUS} and a query", p.Title, p.Datasource, len(p.Targets))
		}
		for _, q := range p.Targets {
			if !strings.Contains(q.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: query %s does not follow the dashboard's instance variable", p.Title, q.Expr)
			}
			queries = append(queries, q.Expr)
		}
	}
	// The panels an operator looks at first (issue 11).
	all := strings.Join(queries, "\n")
	for _, name := range []string{
		"cc_gateway_sessions_active", "cc_gateway_connections_active",
		`cc_gateway_machine_operation_duration_seconds_bucket{instance=~"$instance",op="first_shell"}`,
		"cc_gateway_machine_operations_total", "cc_gateway_cloud_requests_total", "cc_gateway_cloud_retries_total",
		"cc_gateway_cloud_rate_limit_remaining", "cc_gateway_leases", "cc_gateway_cost_euros_total",
		"cc_gateway_reaper_last_success_timestamp_seconds", "cc_gateway_auth_attempts_total",
		"cc_gateway_proxy_bytes_total",
	} {
		if !strings.Contains(all, name) {
			t.Errorf("no panel queries %s", name)
		}
	}
}

func readMonitoring(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
