package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// post is one request a receiver got.
type post struct {
	path, contentType, body string
}

// receiver is a real HTTP server on loopback that records what it is
// sent; answer, if set, writes the response.
type receiver struct {
	url string // http://127.0.0.1:PORT
	got chan post
	srv *http.Server
}

func newReceiver(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{url: "http://" + ln.Addr().String(), got: make(chan post, 64)}
	rc.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		select {
		case rc.got <- post{r.URL.Path, r.Header.Get("Content-Type"), string(b)}:
		default:
		}
		if answer != nil {
			answer(w, r)
		}
	})}
	go rc.srv.Serve(ln)
	t.Cleanup(func() { rc.srv.Close() })
	return rc
}

// next waits for the receiver's next post.
func (rc *receiver) next(t *testing.T) post {
	t.Helper()
	select {
	case p := <-rc.got:
		return p
	case <-time.After(30 * time.Second):
		t.Fatal("the receiver got nothing within 30s")
		return post{}
	}
}

// people is a People in memory.
type people struct {
	mu     sync.Mutex
	person map[string]lease.Person
}

func (p *people) Person(fp string) (lease.Person, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if x, ok := p.person[fp]; ok {
		return x, nil
	}
	return lease.Person{Fingerprint: fp}, nil
}

func (p *people) Get(fp string) (lease.Lease, error) {
	return lease.Lease{Fingerprint: fp, ServerName: "cc-0123456789"}, nil
}

func peopleWith(fp string, urls ...string) *people {
	p := lease.Person{Fingerprint: fp}
	for _, u := range urls {
		p.Notify = append(p.Notify, lease.NotifyTarget{URL: u})
	}
	return &people{person: map[string]lease.Person{fp: p}}
}

// running starts t's workers until the test ends.
func running(tb testing.TB, t *Teller) *Teller {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		t.Run(ctx)
		close(done)
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
	return t
}

var loopback = Rules{AllowLoopback: true}

// results counts the deliveries' ends an Observer is told of.
type results struct {
	mu sync.Mutex
	n  map[Result]int
}

func (r *results) Notified(result Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[Result]int{}
	}
	r.n[result]++
}

func (r *results) count(result Result) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[result]
}

func TestTellPostsTextAndJSON(t *testing.T) {
	rc := newReceiver(t, nil)
	at := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	teller := running(t, New(Options{
		People: peopleWith("SHA256:alice", rc.url+"/alice-topic", rc.url+"/alice-json#json"),
		Rules:  loopback, Clock: testkit.NewClock(at), Logger: testkit.Log(t),
	}))
	teller.Tell("SHA256:alice", "warning", "your machine cc-0123456789 will be stopped in 5m:\nit has had no activity")

	p := rc.next(t)
	if p.path != "/alice-topic" || p.contentType != "text/plain; charset=utf-8" ||
		p.body != "your machine cc-0123456789 will be stopped in 5m: it has had no activity" {
		t.Fatalf("text target got %+v, want one line of text", p)
	}
	p = rc.next(t)
	if p.path != "/alice-json" || p.contentType != "application/json" {
		t.Fatalf("JSON target got %+v", p)
	}
	var doc map[string]string
	if err := json.Unmarshal([]byte(p.body), &doc); err != nil {
		t.Fatalf("JSON target got %q: %v", p.body, err)
	}
	want := map[string]string{
		"about": "warning", "machine": "cc-0123456789", "time": "2026-12-02T04:00:00Z",
		"message": "your machine cc-0123456789 will be stopped in 5m: it has had no activity",
	}
	if fmt.Sprint(doc) != fmt.Sprint(want) {
		t.Fatalf("JSON target got %v, want %v", doc, want)
	}
}

func TestRetriesThenDelivers(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if calls++; calls < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	log, logs := testkit.Logger()
	obs := &results{}
	teller := running(t, New(Options{
		People: peopleWith("fp", rc.url+"/flaky"), Rules: loopback, Logger: log, Observer: obs,
		Attempts: 3, Backoff: time.Millisecond,
	}))
	teller.Tell("fp", "agent", "your agent is waiting for you")
	for range 3 {
		rc.next(t)
	}
	if !logs.WaitFor("notification delivered", 30*time.Second) {
		t.Fatalf("no delivery logged after the third try:\n%s", logs)
	}
	if obs.count(Delivered) != 1 || obs.count(Failed) != 0 {
		t.Errorf("counted %d deliveries and %d failures, want one delivery", obs.count(Delivered), obs.count(Failed))
	}
}

func TestClientErrorsAreNotRetried(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotFound) })
	log, logs := testkit.Logger()
	teller := running(t, New(Options{
		People: peopleWith("fp", rc.url+"/gone"), Rules: loopback, Logger: log, Attempts: 3, Backoff: time.Millisecond,
	}))
	teller.Tell("fp", "agent", "hello")
	rc.next(t)
	if !logs.WaitFor("attempts=1", 30*time.Second) {
		t.Fatalf("a 404 was not given up at once:\n%s", logs)
	}
}

// A target's path and query (an ntfy topic, a webhook's token) never reach
// the log, whatever happens to the delivery.
func TestSecretsStayOutOfTheLog(t *testing.T) {
	ok := newReceiver(t, nil)
	failing := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	closed := newReceiver(t, nil)
	closed.srv.Close()
	const secret = "s3cret-topic-4f9a"
	log, logs := testkit.Logger()
	teller := running(t, New(Options{
		People: peopleWith("fp",
			ok.url+"/"+secret+"?token="+secret,
			failing.url+"/"+secret+"#json",
			closed.url+"/"+secret,
			"https://refused.test/"+secret),
		Rules: loopback, Logger: log, Attempts: 2, Backoff: time.Millisecond,
		Resolver: fakeResolver{"refused.test": {addrs("10.0.0.1")}},
	}))
	teller.Tell("fp", "warning", "your machine stops soon")
	// Targets are tried in order: the last one logged, all were.
	if !logs.WaitFor("refused.test", 30*time.Second) {
		t.Fatalf("the last target was not tried:\n%s", logs)
	}
	var report strings.Builder
	if err := teller.Test(context.Background(), "fp", func(target string, status int, err error) {
		fmt.Fprintf(&report, "%s %d %v\n", target, status, err)
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), secret) || strings.Contains(report.String(), secret) {
		t.Fatalf("a target's secret path was shown:\nlog:\n%s\nreport:\n%s", logs, report.String())
	}
	if !strings.Contains(report.String(), "(42 chars of path) 200 <nil>") || !strings.Contains(report.String(), " 500 the target answered 500") {
		t.Fatalf("the test's report does not say what happened:\n%s", report.String())
	}
}

// Tell never blocks: with every worker stuck on a receiver that never
// answers and the queue full, more messages are dropped, and logged.
func TestTellNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(http.ResponseWriter, *http.Request) { <-release })
	defer close(release) // before the receiver's Close, which waits for the handler
	log, logs := testkit.Logger()
	obs := &results{}
	teller := running(t, New(Options{
		People: peopleWith("fp", rc.url+"/hang"), Rules: loopback, Logger: log, Observer: obs,
		Queue: 2, Workers: 1, Timeout: time.Hour,
	}))
	teller.Tell("fp", "warning", "first")
	rc.next(t) // the worker is stuck on it
	for i := range 10 {
		teller.Tell("fp", "warning", fmt.Sprint("more ", i))
	}
	if got := strings.Count(logs.String(), "notification dropped"); got != 8 || obs.count(Dropped) != 8 {
		t.Fatalf("%d drops logged, %d counted, want 8 (10 told, 2 queued):\n%s", got, obs.count(Dropped), logs)
	}
}

// A redirect is not followed: it could lead anywhere, the gateway's own
// network included.
func TestRedirectsAreRefused(t *testing.T) {
	inside := newReceiver(t, nil)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, inside.url+"/inside", http.StatusTemporaryRedirect)
	})
	teller := New(Options{People: peopleWith("fp", rc.url+"/hook"), Rules: loopback, Logger: testkit.Log(t)})
	refusedUnreached(t, teller, "a redirect, which is not followed", inside)
}

// refusedUnreached runs teller's Test on its one target and fails unless
// the delivery failed saying refusal and rc got nothing.
func refusedUnreached(t *testing.T, teller *Teller, refusal string, rc *receiver) {
	t.Helper()
	var got error
	if err := teller.Test(context.Background(), "fp", func(_ string, _ int, err error) { got = err }); err != nil {
		t.Fatal(err)
	}
	if got == nil || !strings.Contains(got.Error(), refusal) {
		t.Fatalf("delivery gave %v, want a refusal saying %q", got, refusal)
	}
	select {
	case p := <-rc.got:
		t.Fatalf("the receiver was reached: %+v", p)
	default:
	}
}

// A name that answered with a public address when it was added, and with
// a private one when it is delivered to (DNS rebinding), is not reached:
// the dial checks the address it connects to.
func TestRebindingIsCaught(t *testing.T) {
	rc := newReceiver(t, nil)
	port := rc.url[strings.LastIndex(rc.url, ":"):]
	res := fakeResolver{"rebind.test": {addrs("93.184.216.34"), addrs("127.0.0.1")}}
	teller := New(Options{
		People: peopleWith("fp", "https://rebind.test"+port+"/hook"), Resolver: res, Logger: testkit.Log(t),
	})
	if err := teller.Check(context.Background(), "https://rebind.test"+port+"/hook"); err != nil {
		t.Fatalf("check while the name is public: %v", err)
	}
	refusedUnreached(t, teller, "127.0.0.1 is not a public address", rc)
}

// An answer that never ends is read only so far.
func TestResponseReadIsBounded(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 1<<10))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	teller := New(Options{People: peopleWith("fp", rc.url+"/endless"), Rules: loopback, Logger: testkit.Log(t), Timeout: time.Hour})
	var status int
	if err := teller.Test(context.Background(), "fp", func(_ string, s int, err error) { status = s }); err != nil {
		t.Fatal(err)
	}
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
}

func TestCheck(t *testing.T) {
	teller := New(Options{Resolver: fakeResolver{
		"ntfy.test": {addrs("93.184.216.34")}, "intranet.test": {addrs("192.168.1.10")},
	}})
	for raw, refuse := range map[string]string{
		"https://ntfy.test/topic":                  "",
		"https://ntfy.test/topic#json":             "",
		"http://ntfy.test/topic":                   "must use https",
		"https://intranet.test/hook":               "192.168.1.10 is not a public address",
		"https://169.254.169.254/latest/meta-data": "169.254.169.254 is not a public address",
		"http://127.0.0.1:8080/x":                  "127.0.0.1 is not a public address",
		"https://[fe80::1]/x":                      "fe80::1 is not a public address",
		"gopher://ntfy.test/x":                     "must start with https://",
	} {
		err := teller.Check(context.Background(), raw)
		switch {
		case refuse == "" && err != nil:
			t.Errorf("%s: refused: %v", raw, err)
		case refuse != "" && (err == nil || !strings.Contains(err.Error(), refuse)):
			t.Errorf("%s: got %v, want a refusal saying %q", raw, err, refuse)
		}
	}
}
