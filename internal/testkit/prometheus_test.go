package testkit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrometheus: the real server scrapes a loopback target, answers a
// query with its series and fires an alert from a rules file.
func TestPrometheus(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# TYPE demo_value gauge\ndemo_value 3\n")
	}))
	defer target.Close()
	rules := filepath.Join(t.TempDir(), "rules.yml")
	err := os.WriteFile(rules, []byte(`groups:
  - name: demo
    rules:
      - alert: DemoHigh
        expr: demo_value > 2
        labels: {severity: test}
        annotations: {summary: "value {{ $value }}"}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p := StartPrometheus(t, "demo", []string{strings.TrimPrefix(target.URL, "http://")}, rules)

	Eventually(t, time.Minute, func() error {
		samples, err := p.Query(`demo_value{job="demo"}`)
		if err != nil {
			return err
		}
		if len(samples) != 1 || samples[0].Value != 3 {
			return fmt.Errorf("demo_value: %+v, want one sample of 3", samples)
		}
		return nil
	})
	Eventually(t, time.Minute, func() error {
		alerts, err := p.Alerts()
		if err != nil {
			return err
		}
		for _, a := range alerts {
			if a.Labels["alertname"] == "DemoHigh" && a.State == "firing" && a.Annotations["summary"] == "value 3" && !a.ActiveAt.IsZero() {
				return nil
			}
		}
		return fmt.Errorf("no DemoHigh firing with summary \"value 3\" among %+v", alerts)
	})
	if _, err := p.Query("demo_value{"); err == nil || !strings.Contains(err.Error(), "bad_data") {
		t.Errorf("a malformed query returned %v, want the server's bad_data error", err)
	}
}
