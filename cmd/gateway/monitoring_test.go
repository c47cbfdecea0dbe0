package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/localcloud"
	"github.com/cc-gateway/cc-gateway/internal/localcloud/localcloudtest"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// metricName matches the metric names in PromQL and in the text around it:
// the gateway's, the process collector's, and Prometheus' up.
var metricName = regexp.MustCompile(`\b(?:cc_gateway_[a-z0-9_]+|process_[a-z_]+|up)\b`)

// TestMonitoring: a real Prometheus, loading the alert rules operators
// load (docs/monitoring/alerts.yml), scrapes a real gateway. After a
// session by OpenSSH its HTTP API answers PromQL queries with the
// gateway's series, moved by the session (its login, its machine's create
// and first-shell wait, the bytes it read, its lease, the cloud's requests
// and rate limit, the cost), among them every metric the rules and the
// dashboard use, and each dashboard query answers with series; once the cloud refuses the gateway's token, the reaper stops
// succeeding and CCGatewayReaperNotSucceeding fires. The rule is written
// against the reaper interval the gateway exports, so a 2s interval makes
// it fire within seconds, with the file unchanged.
func TestMonitoring(t *testing.T) {
	dir := t.TempDir()
	alice := newPerson(t, filepath.Join(dir, "alice"))
	metricsAddr := "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
	lg := newLocalGatewayIn(t, dir,
		"--users", writeKeyList(t, filepath.Join(dir, "users"), alice),
		"--metrics-listen", metricsAddr,
		// Every pass reconciles, so every pass asks the cloud. Two
		// seconds, not one: the alert's 3 intervals then leave room for
		// a late scrape on a busy machine before the token is refused.
		"--reaper-interval", "2s", "--reconcile-interval", "2s",
	)
	// The gateway runs in Hetzner mode against a local cloud of the
	// test's, which the test can make refuse the token after the start
	// (a token refused at the start stops the gateway starting).
	port, err := strconv.Atoi(lg.args[slices.Index(lg.args, "--machine-ssh-port")+1])
	if err != nil {
		t.Fatal(err)
	}
	faults := &revocable{}
	cloud, err := localcloud.Start(localcloud.Options{
		DataDir: filepath.Join(dir, "cloud"), SSHPort: port, Kind: localcloud.KindBuiltin,
		ActionDuration: localcloudtest.ActionDuration, Faults: faults, Logger: testkit.Quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cloud.Close() })
	g := lg.start(t, "HCLOUD_TOKEN="+cloud.Token(), "CC_GATEWAY_HCLOUD_ENDPOINT="+cloud.Endpoint())
	prom := testkit.StartPrometheus(t, "cc-gateway", []string{metricsAddr}, "../../docs/monitoring/alerts.yml")

	if r := alice.ssh(g, "", "echo", "hello"); r.code != 0 || r.stdout != "hello\n" {
		t.Fatalf("alice's session: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, expr := range []string{
		`up{job="cc-gateway"} == 1`,
		`cc_gateway_build_info{job="cc-gateway", version!=""} == 1`,
		`cc_gateway_auth_attempts_total{job="cc-gateway", result="accepted"} >= 1`,
		`cc_gateway_machine_operations_total{job="cc-gateway", op="create", result="ok"} == 1`,
		`cc_gateway_reaper_interval_seconds{job="cc-gateway"} == 2`,
		`cc_gateway_leader{job="cc-gateway"} == 1`, // alone, it leads
		`cc_gateway_machine_operation_duration_seconds_count{job="cc-gateway", op="first_shell"} >= 1`,
		`cc_gateway_proxy_bytes_total{job="cc-gateway", direction="from_machine"} > 0`,
		`cc_gateway_leases{job="cc-gateway", state="running"} == 1`,
		`cc_gateway_cloud_requests_total{job="cc-gateway", code="200"} > 0`,
		`cc_gateway_cloud_rate_limit_remaining{job="cc-gateway"} < cc_gateway_cloud_rate_limit_limit{job="cc-gateway"}`,
		`cc_gateway_cost_euros_total{job="cc-gateway"} > 0`,
	} {
		testkit.Eventually(t, 2*time.Minute, func() error {
			samples, err := prom.Query(expr)
			if err != nil {
				return err
			}
			if len(samples) == 0 {
				return fmt.Errorf("%s: no series", expr)
			}
			return nil
		})
	}

	// Every metric the monitoring kit uses is one this gateway exports:
	// each of its series shows from the start, so a rename or a typo
	// leaves a name no scrape has.
	scraped, err := prom.Query(`group by (__name__) ({job="cc-gateway"})`)
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, s := range scraped {
		name := s.Metric["__name__"]
		exported[name] = true
		// A histogram's own name, which prose uses, has no series.
		exported[strings.TrimSuffix(name, "_bucket")] = true
	}
	for _, file := range []string{"alerts.yml", "alerts_test.yml", "dashboard.json", "README.md"} {
		text, err := os.ReadFile(filepath.Join("../../docs/monitoring", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range metricName.FindAllString(string(text), -1) {
			if !exported[name] {
				t.Errorf("docs/monitoring/%s uses %s, which the gateway does not export", file, name)
			}
		}
	}

	// Every dashboard query is PromQL this Prometheus runs, and answers
	// with series, with the dashboard's variables as Grafana fills them.
	var dashboard struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	text, err := os.ReadFile("../../docs/monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(text, &dashboard); err != nil {
		t.Fatal(err)
	}
	grafana := strings.NewReplacer("$instance", ".+", "$__rate_interval", "1m")
	for _, p := range dashboard.Panels {
		for _, q := range p.Targets {
			expr := grafana.Replace(q.Expr)
			// A rate has series from its second scrape on.
			testkit.Eventually(t, time.Minute, func() error {
				samples, err := prom.Query(expr)
				if err == nil && len(samples) == 0 {
					err = errors.New("no series")
				}
				if err != nil {
					return fmt.Errorf("panel %q: %w", p.Title, err)
				}
				return nil
			})
		}
	}

	revoked := time.Now()
	faults.revoked.Store(true)
	testkit.Eventually(t, 2*time.Minute, func() error {
		alerts, err := prom.Alerts()
		if err != nil {
			return err
		}
		for _, a := range alerts {
			if a.Labels["alertname"] != "CCGatewayReaperNotSucceeding" {
				continue
			}
			// Active since before the token was refused would be the
			// reaper failing for another reason.
			if a.ActiveAt.Before(revoked) {
				return fmt.Errorf("CCGatewayReaperNotSucceeding active since %s, before the cloud refused the token (%s)", a.ActiveAt, revoked)
			}
			if a.State != "firing" || a.Labels["severity"] != "critical" || a.Labels["instance"] != metricsAddr ||
				!strings.HasPrefix(a.Annotations["summary"], "cc-gateway "+metricsAddr+": the reaper has not succeeded for ") {
				return fmt.Errorf("CCGatewayReaperNotSucceeding: %+v, want it firing, critical, for %s, with its summary", a, metricsAddr)
			}
			return nil
		}
		return fmt.Errorf("CCGatewayReaperNotSucceeding is not among the alerts %+v", alerts)
	})
}
