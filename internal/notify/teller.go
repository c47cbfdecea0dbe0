package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// People is where the Teller finds a person's targets and machine; the
// lease store is one.
type People interface {
	Person(fingerprint string) (lease.Person, error)
	Get(fingerprint string) (lease.Lease, error)
}

// Observer is told how each delivery to a target ended, for the metrics:
// Delivered or Failed (after its last try), or Dropped for a message the
// full queue turned away.
type Observer interface {
	Notified(result Result)
}

// Result is how a delivery ended.
type Result string

const (
	Delivered Result = "delivered"
	Failed    Result = "failed"
	Dropped   Result = "dropped"
)

type nopObserver struct{}

func (nopObserver) Notified(Result) {}

// Options configure a Teller. Zero fields take the defaults in New.
type Options struct {
	People   People
	Rules    Rules
	Resolver Resolver // default net.DefaultResolver
	Clock    lease.Clock
	Logger   *slog.Logger
	Observer Observer // default none

	Queue    int           // messages waiting to be delivered; more are dropped (default 256)
	Workers  int           // deliveries at once (default 4)
	Timeout  time.Duration // one request, response included (default 10s)
	Attempts int           // tries per target (default 3)
	Backoff  time.Duration // before the second try, doubled before each next (default 2s)
}

// Teller delivers messages to people's notification targets. Tell queues
// and returns at once; Run's workers deliver.
type Teller struct {
	opts  Options
	log   *slog.Logger
	queue chan message

	mu      sync.Mutex // guards dropped only; a leaf
	dropped int
}

// message is one Tell, waiting in the queue.
type message struct {
	fingerprint, about, text string
	at                       time.Time
}

// New returns a Teller; nothing is delivered until Run.
func New(o Options) *Teller {
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Clock == nil {
		o.Clock = lease.SystemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Queue <= 0 {
		o.Queue = 256
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.Backoff <= 0 {
		o.Backoff = 2 * time.Second
	}
	return &Teller{opts: o, log: o.Logger.With("component", "notify"), queue: make(chan message, o.Queue)}
}

// Tell queues message for the person's targets and never blocks: when the
// queue is full the message is dropped and the drop logged.
func (t *Teller) Tell(fingerprint, about, text string) {
	select {
	case t.queue <- message{fingerprint, about, text, t.opts.Clock.Now()}:
	default:
		t.mu.Lock()
		t.dropped++
		n := t.dropped
		t.mu.Unlock()
		t.opts.Observer.Notified(Dropped)
		t.log.Warn("notification dropped: the queue is full", "fingerprint", fingerprint, "about", about, "dropped", n)
	}
}

// Run delivers queued messages until ctx ends; what is still queued then
// is not delivered.
func (t *Teller) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range t.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-t.queue:
					t.deliverAll(ctx, m)
				}
			}
		}()
	}
	wg.Wait()
}

// deliverAll sends m to each of the person's targets, retrying each a few
// times; failures are logged without the targets' secrets.
func (t *Teller) deliverAll(ctx context.Context, m message) {
	p, err := t.opts.People.Person(m.fingerprint)
	if err != nil {
		t.log.Error("notification not delivered: cannot read the person's targets", "fingerprint", m.fingerprint, "about", m.about, "err", err)
		return
	}
	for _, target := range p.Notify {
		name := lease.RedactURL(target.URL)
		backoff := t.opts.Backoff
		for attempt := 1; ; attempt++ {
			status, err := t.deliver(ctx, target.URL, m)
			if err == nil {
				t.opts.Observer.Notified(Delivered)
				t.log.Info("notification delivered", "fingerprint", m.fingerprint, "about", m.about, "target", name, "status", status)
				break
			}
			if attempt >= t.opts.Attempts || !retryable(status) {
				t.opts.Observer.Notified(Failed)
				t.log.Warn("notification not delivered", "fingerprint", m.fingerprint, "about", m.about, "target", name,
					"attempts", attempt, "err", err)
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff *= 2
		}
	}
}

// retryable says whether a failed delivery may succeed when tried again:
// a network failure (status 0), a server error or a request to slow down.
func retryable(status int) bool {
	return status == 0 || status >= 500 || status == http.StatusTooManyRequests
}

// Check says why the gateway would not deliver to raw, or nil: the URL's
// form, and the rules on the addresses its host has now. Delivery checks
// again on the address it dials.
func (t *Teller) Check(ctx context.Context, raw string) error {
	target, err := ParseTarget(raw)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
	defer cancel()
	_, err = t.opts.Rules.resolve(ctx, t.opts.Resolver, target.URL.Scheme, target.URL.Hostname())
	return err
}

// Test sends a test message to each of the person's targets at once, one
// try each, and reports each outcome: the target without its secrets, the
// HTTP status (0 if there was no answer) and the error, if it failed.
func (t *Teller) Test(ctx context.Context, fingerprint string, report func(target string, status int, err error)) error {
	p, err := t.opts.People.Person(fingerprint)
	if err != nil {
		return err
	}
	m := message{fingerprint, "test", "a test notification from cc-gateway: this target works", t.opts.Clock.Now()}
	for _, target := range p.Notify {
		status, err := t.deliver(ctx, target.URL, m)
		result := Delivered
		if err != nil {
			result = Failed
		}
		t.opts.Observer.Notified(result)
		report(lease.RedactURL(target.URL), status, err)
	}
	return nil
}

// maxResponse and maxResponseHeader bound how much of an answer is read:
// only its status counts, but chat services send many headers.
const (
	maxResponse       = 4 << 10
	maxResponseHeader = 64 << 10
)

// deliver posts m to raw once and returns the answer's status.
func (t *Teller) deliver(ctx context.Context, raw string, m message) (int, error) {
	target, err := ParseTarget(raw)
	if err != nil {
		return 0, err
	}
	body, contentType, err := t.body(target, m)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.URL.String(), bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("make request: %w", err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "cc-gateway")
	client := &http.Client{
		// A transport per delivery, dialing only what the rules allow
		// for this target's scheme; no proxy from the environment, which
		// would dial on the gateway's behalf, unchecked.
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            t.opts.Rules.dialer(t.opts.Resolver, target.URL.Scheme),
			DisableKeepAlives:      true,
			TLSHandshakeTimeout:    t.opts.Timeout,
			ResponseHeaderTimeout:  t.opts.Timeout,
			MaxResponseHeaderBytes: maxResponseHeader,
		},
		// A redirect could lead anywhere, so none is followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, scrub(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return resp.StatusCode, fmt.Errorf("the target answered %s, a redirect, which is not followed", resp.Status)
	case resp.StatusCode >= 300 || resp.StatusCode < 200:
		return resp.StatusCode, fmt.Errorf("the target answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}

// scrub takes the URL out of a client error (url.Error names it, secrets
// and all), so the error can be logged and shown.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("post: %w", ue.Err)
	}
	return err
}

// body is m as the target wants it: one line of text, or JSON.
func (t *Teller) body(target Target, m message) ([]byte, string, error) {
	line := strings.Join(strings.Fields(m.text), " ")
	if !target.JSON {
		return []byte(line), "text/plain; charset=utf-8", nil
	}
	machine := ""
	if l, err := t.opts.People.Get(m.fingerprint); err == nil {
		machine = l.ServerName
	}
	b, err := json.Marshal(struct {
		About   string    `json:"about"`
		Message string    `json:"message"`
		Machine string    `json:"machine,omitempty"`
		Time    time.Time `json:"time"`
	}{m.about, line, machine, m.at.UTC()})
	if err != nil {
		return nil, "", fmt.Errorf("encode notification: %w", err)
	}
	return b, "application/json", nil
}
