package metrics

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// serve starts a Server on a loopback port and returns its base URL.
func serve(t *testing.T, opts ServerOptions) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New().NewServer(opts)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Shutdown(t.Context())
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + l.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestHealthzAndMetrics(t *testing.T) {
	base := serve(t, ServerOptions{})
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 \"ok\\n\"", code, body)
	}
	code, body := get(t, base+"/metrics")
	for _, want := range []string{"cc_gateway_build_info{", "go_goroutines ", "process_start_time_seconds "} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics: status %d, lacks %q", code, want)
		}
	}
}

func TestReadyz(t *testing.T) {
	pass := func() error { return nil }
	storeDown := func() error { return errors.New("the lease database failed: /data/leases.db: input/output error") }
	listenerDown := func() error { return errors.New("the SSH listener is not serving") }
	for _, tc := range []struct {
		name   string
		checks []ReadyCheck
		code   int
		body   string
	}{
		{"no checks", nil, 200, "ready\n"},
		{"all pass", []ReadyCheck{pass, pass}, 200, "ready\n"},
		{"one fails", []ReadyCheck{pass, storeDown}, 503, "the lease database failed: /data/leases.db: input/output error\n"},
		{"two fail, in order", []ReadyCheck{listenerDown, pass, storeDown}, 503,
			"the SSH listener is not serving\nthe lease database failed: /data/leases.db: input/output error\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := serve(t, ServerOptions{Ready: tc.checks})
			if code, body := get(t, base+"/readyz"); code != tc.code || body != tc.body {
				t.Errorf("/readyz: %d %q, want %d %q", code, body, tc.code, tc.body)
			}
		})
	}
}

// TestPprofOnlyWhenAsked: the profiler is off by default, although
// importing net/http/pprof fills http.DefaultServeMux.
func TestPprofOnlyWhenAsked(t *testing.T) {
	off := serve(t, ServerOptions{})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline"} {
		if code, _ := get(t, off+path); code != http.StatusNotFound {
			t.Errorf("without Pprof, %s: %d, want 404", path, code)
		}
	}
	on := serve(t, ServerOptions{Pprof: true})
	if code, body := get(t, on+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("with Pprof, /debug/pprof/: %d, body lacks the profiles' list", code)
	}
	if code, _ := get(t, on+"/debug/pprof/goroutine?debug=1"); code != 200 {
		t.Errorf("with Pprof, a named profile: %d, want 200", code)
	}
}
