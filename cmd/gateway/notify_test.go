package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// delivery is one POST a notification receiver got.
type delivery struct {
	path, contentType, body string
}

// notifyReceiver is a real HTTP server on loopback, standing in for ntfy
// or a chat webhook. Posts to /hang are never answered.
type notifyReceiver struct {
	url string
	got chan delivery
}

func newNotifyReceiver(t *testing.T) *notifyReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &notifyReceiver{url: "http://" + ln.Addr().String(), got: make(chan delivery, 64)}
	hang := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		select {
		case rc.got <- delivery{r.URL.Path, r.Header.Get("Content-Type"), string(b)}:
		default:
		}
		if r.URL.Path == "/hang" {
			<-hang
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(hang)
		srv.Close()
	})
	return rc
}

// waitFor returns the first delivery to path whose body holds want.
func (rc *notifyReceiver) waitFor(t *testing.T, path, want string) delivery {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case d := <-rc.got:
			if d.path == path && strings.Contains(d.body, want) {
				return d
			}
		case <-deadline:
			t.Fatalf("no post to %s saying %q within 2m", path, want)
		}
	}
}

// TestNotify: a person registers targets through real ssh, `notify test`
// reaches them at once and says so, and a warning before an idle stop
// reaches them with nobody connected. Another person's target never
// answers, which holds up neither the reaper nor anyone else's machine.
// The targets' paths, which are their secrets, stay out of the log.
func TestNotify(t *testing.T) {
	dir := t.TempDir()
	alice := newPerson(t, filepath.Join(dir, "alice"))
	bob := newPerson(t, filepath.Join(dir, "bob"))
	users := writeKeyList(t, filepath.Join(dir, "users"), alice, bob)
	lg := newLocalGatewayIn(t, dir, "--users", users, "--metrics-listen", "127.0.0.1:0",
		"--idle-timeout", "4s", "--warn-before", "3s", "--reaper-interval", "1s")
	g := lg.start(t)
	rc := newNotifyReceiver(t)
	const topic = "/alice-s3cret-topic"

	if r := alice.ssh(g, "", "notify", "add", rc.url+topic); r.code != 0 || r.stdout != "You have 1 notification targets (at most 5).\n" {
		t.Fatalf("notify add: %+v", r)
	}
	if r := alice.ssh(g, "", "notify", "add", rc.url+"/alice-json#json"); r.code != 0 {
		t.Fatalf("notify add #json: %+v", r)
	}
	// The gateway's own network is out of reach, whoever asks.
	for _, url := range []string{"http://169.254.169.254/latest/meta-data", "https://10.0.0.1/hook", "http://[::ffff:192.168.0.1]/x"} {
		if r := alice.ssh(g, "", "notify", "add", url); r.code != 1 || !strings.Contains(r.stderr, "is not a public address") {
			t.Errorf("notify add %s: %+v", url, r)
		}
	}
	if r := alice.ssh(g, "", "notify", "list"); r.code != 0 || !strings.Contains(r.stdout, rc.url+topic+"\n") ||
		!strings.Contains(r.stdout, rc.url+"/alice-json#json\n") || strings.Count(r.stdout, "\n") != 3 {
		t.Fatalf("notify list: %+v", r)
	}

	r := alice.ssh(g, "", "notify", "test")
	if r.code != 0 || strings.Count(r.stdout, ": delivered (status 200)\n") != 2 || strings.Contains(r.stdout, "s3cret") {
		t.Fatalf("notify test: %+v", r)
	}
	if d := rc.waitFor(t, topic, "a test notification"); d.contentType != "text/plain; charset=utf-8" {
		t.Errorf("test notification: %+v", d)
	}
	d := rc.waitFor(t, "/alice-json", "a test notification")
	var doc struct{ About, Message, Machine, Time string }
	if err := json.Unmarshal([]byte(d.body), &doc); err != nil || doc.About != "test" || doc.Time == "" {
		t.Errorf("JSON test notification %q: %+v, %v", d.body, doc, err)
	}

	if r := bob.ssh(g, "", "notify", "add", rc.url+"/hang"); r.code != 0 {
		t.Fatalf("bob's notify add: %+v", r)
	}
	// Machines for both; then nobody is connected, and both go idle.
	if r := bob.ssh(g, "", "true"); r.code != 0 {
		t.Fatalf("bob's command: %+v", r)
	}
	if r := alice.ssh(g, "", "true"); r.code != 0 {
		t.Fatalf("alice's command: %+v", r)
	}
	rc.waitFor(t, "/hang", "will be stopped in")
	rc.waitFor(t, topic, "will be stopped in")
	d = rc.waitFor(t, "/alice-json", "will be stopped in")
	if err := json.Unmarshal([]byte(d.body), &doc); err != nil || doc.About != "warning" || !strings.HasPrefix(doc.Machine, "cc-") {
		t.Errorf("JSON warning %q: %+v, %v", d.body, doc, err)
	}
	// Bob's target still hangs: his machine is stopped all the same.
	for _, p := range []*person{alice, bob} {
		testkit.Eventually(t, time.Minute, func() error {
			if st := p.status(g); st.State != "stopped" {
				return fmt.Errorf("a machine is %s after its idle timeout", st.State)
			}
			return nil
		})
	}

	if r := alice.ssh(g, "", "notify", "remove", rc.url+topic); r.code != 0 || r.stdout != "You have 1 notification targets (at most 5).\n" {
		t.Fatalf("notify remove: %+v", r)
	}
	if r := alice.ssh(g, "", "notify", "remove", rc.url+topic); r.code != 1 || !strings.Contains(r.stderr, "no notification target with that URL") {
		t.Fatalf("notify remove again: %+v", r)
	}
	// Two test deliveries and two warnings to alice's targets at least.
	_, scrape := metricsOf(t, g).get("/metrics")
	if n, err := sample(scrape, `cc_gateway_notifications_total{result="delivered"}`); err != nil || n < 4 {
		t.Errorf("delivered notifications counted: %v, %v; want 4 or more", n, err)
	}
	if strings.Contains(g.logs.String(), "s3cret") {
		t.Fatalf("the target's path is in the gateway's log:\n%s", g.logs.String())
	}
}
