package hcloud

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
	"strconv"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Retries happen at two levels, both bounded:
//
//   - Requests (retryTransport, under hcloud-go): an answer that proves the
//     request was not carried out (429, 423 locked, 409 conflict, 503) is
//     retried for any method; a 500/502/504, a timeout or a broken
//     connection only for methods that are safe to repeat (GET, PUT,
//     DELETE), since a POST may have taken effect. A 429 waits until
//     RateLimit-Reset. hcloud-go's own retry handler is turned off: its
//     pause depends on the attempt count alone (it cannot honour
//     RateLimit-Reset), it does not retry 423 or 503, and it resends POSTs
//     after timeouts, which would take a second snapshot.
//   - Pacing (budget): Hetzner's rate limit is a bucket of 3600 requests
//     that refills by one a second. Every answer's RateLimit-* headers say
//     what is left; once less than a tenth is, requests are spaced by the
//     time the bucket takes to refill one, so the gateway slows down
//     before Hetzner answers 429 instead of after.
//   - Operations (retryOp): create, power on/off, delete and snapshot check
//     the server's state before acting, so when an action fails or the API
//     stays unavailable the whole operation is run again.

// Retry bounds the provider's retries. Zero fields take the defaults.
type Retry struct {
	// Attempts is how often one API request is sent at most.
	Attempts int
	// Budget bounds the time one request may take, waits included.
	Budget time.Duration
	// Timeout bounds one attempt of a request.
	Timeout time.Duration
	// RateLimitWait bounds one wait for RateLimit-Reset. Hetzner refills
	// its request bucket steadily, so a request retried before the full
	// reset usually passes.
	RateLimitWait time.Duration
	// Operations is how often an operation is tried when its action fails
	// or its requests keep failing.
	Operations int
}

// Defaults for Retry.
const (
	DefaultRequestAttempts   = 5
	DefaultRequestBudget     = 2 * time.Minute
	DefaultRequestTimeout    = 30 * time.Second
	DefaultRateLimitWait     = time.Minute
	DefaultOperationAttempts = 3
)

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = DefaultRequestAttempts
	}
	if r.Budget <= 0 {
		r.Budget = DefaultRequestBudget
	}
	if r.Timeout <= 0 {
		r.Timeout = DefaultRequestTimeout
	}
	if r.RateLimitWait <= 0 {
		r.RateLimitWait = DefaultRateLimitWait
	}
	if r.Operations <= 0 {
		r.Operations = DefaultOperationAttempts
	}
	return r
}

// retryTransport sends each request up to Retry.Attempts times.
type retryTransport struct {
	next    http.RoundTripper
	retry   Retry
	backoff hc.BackoffFunc
	clock   lease.Clock // reads RateLimit-Reset, a wall-clock time
	budget  budget
	observe Observer
	log     *slog.Logger
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	hasBody := req.Body != nil && req.Body != http.NoBody
	replayable := !hasBody || req.GetBody != nil
	start := time.Now()
	for attempt := 1; ; attempt++ {
		if err := t.pace(ctx); err != nil {
			return nil, err
		}
		resp, err := t.attempt(req, attempt, hasBody)
		t.observeAnswer(req.Method, resp)
		wait, reason := t.verdict(req, resp, err, attempt)
		if reason == "" || !replayable || ctx.Err() != nil {
			return resp, err
		}
		if attempt >= t.retry.Attempts || time.Since(start)+wait > t.retry.Budget {
			t.log.Warn("Hetzner API request failed; giving up", "method", req.Method, "path", req.URL.Path,
				"reason", reason, answerAttr(resp, err), "attempts", attempt, "elapsed", time.Since(start).Round(time.Millisecond))
			return resp, err
		}
		t.observe.Retry(reason)
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close()
		}
		t.log.Info("Hetzner API request failed; retrying", "method", req.Method, "path", req.URL.Path,
			"reason", reason, answerAttr(resp, err), "attempt", attempt, "wait", wait.Round(time.Millisecond))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// observeAnswer reports one attempt's answer (nil for none) and reads
// its rate-limit headers.
func (t *retryTransport) observeAnswer(method string, resp *http.Response) {
	if resp == nil {
		t.observe.Request(method, 0)
		return
	}
	t.observe.Request(method, resp.StatusCode)
	if remaining, limit, ok := t.budget.note(resp.Header, t.clock.Now()); ok {
		t.observe.RateLimit(remaining, limit)
	}
}

// answerAttr is what a log line says of an attempt's answer: its status,
// or the error for none.
func answerAttr(resp *http.Response, err error) slog.Attr {
	if resp != nil {
		return slog.Int("status", resp.StatusCode)
	}
	return slog.Any("err", err)
}

// errAttemptTimeout marks an attempt that got no answer within
// Retry.Timeout.
var errAttemptTimeout = errors.New("no answer")

// attempt sends req once, bounded by Retry.Timeout.
func (t *retryTransport) attempt(req *http.Request, n int, hasBody bool) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), t.retry.Timeout)
	r := req.Clone(ctx)
	if hasBody && n > 1 {
		body, err := req.GetBody()
		if err != nil {
			cancel()
			return nil, err
		}
		r.Body = body
	}
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		// Read before cancel, which would make every failure look like
		// this attempt's timeout.
		timedOut := ctx.Err() != nil && req.Context().Err() == nil
		cancel()
		if timedOut {
			return nil, fmt.Errorf("%w within %s: %w", errAttemptTimeout, t.retry.Timeout, err)
		}
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// verdict says whether to retry and after how long, and why (one of
// RetryReasons); an empty reason means the answer stands.
func (t *retryTransport) verdict(req *http.Request, resp *http.Response, err error, attempt int) (time.Duration, string) {
	backoff := t.backoff(attempt - 1)
	if err != nil {
		if req.Context().Err() != nil {
			return 0, ""
		}
		if !safeToRepeat(req.Method) && !notSent(err) {
			return 0, ""
		}
		if errors.Is(err, errAttemptTimeout) {
			return backoff, RetryTimeout
		}
		return backoff, RetryConnection
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests:
		return t.untilReset(resp.Header, backoff), RetryRateLimited
	case http.StatusLocked:
		return backoff, RetryLocked
	case http.StatusServiceUnavailable:
		return backoff, RetryUnavailable
	case http.StatusConflict:
		if errorCode(resp) == string(hc.ErrorCodeConflict) {
			return backoff, RetryConflict
		}
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout:
		if safeToRepeat(req.Method) {
			return backoff, RetryServerError
		}
	}
	return 0, ""
}

// untilReset is how long to wait for the rate limit's reset, bounded by
// Retry.RateLimitWait; without a usable header, the backoff.
func (t *retryTransport) untilReset(h http.Header, backoff time.Duration) time.Duration {
	sec, err := strconv.ParseInt(h.Get("RateLimit-Reset"), 10, 64)
	if err != nil {
		return backoff
	}
	wait := time.Unix(sec, 0).Sub(t.clock.Now())
	if wait <= 0 {
		return backoff
	}
	return min(wait, t.retry.RateLimitWait)
}

func safeToRepeat(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// notSent reports an error that happened before the request left, so any
// method may be sent again.
func notSent(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// errorCode reads the API's error code from resp, leaving the body
// readable for hcloud-go.
func errorCode(resp *http.Response) string {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	closer := resp.Body
	resp.Body = struct {
		io.Reader
		io.Closer
	}{bytes.NewReader(body), closer}
	if err != nil {
		return ""
	}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}

// retryOp runs an operation that is safe to repeat, again while it fails
// for a reason that may pass, at most Retry.Operations times.
func retryOp[T any](ctx context.Context, p *Provider, op string, fn func() (T, error)) (T, error) {
	n := p.cfg.Retry.Operations
	for attempt := 1; ; attempt++ {
		v, err := fn()
		if err == nil || !transient(ctx, err) {
			return v, err
		}
		if attempt >= n {
			return v, &providerError{msg: fmt.Sprintf("%s (tried %d times)", err.Error(), attempt), err: err}
		}
		wait := p.backoff(attempt - 1)
		p.log.Warn("operation failed; trying again", "op", op, "attempt", attempt, "wait", wait.Round(time.Millisecond), "err", err)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return v, err
		case <-timer.C:
		}
	}
}

// retryOpErr is retryOp for operations without a result.
func retryOpErr(ctx context.Context, p *Provider, op string, fn func() error) error {
	_, err := retryOp(ctx, p, op, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

// transient reports an error worth running the operation again for: a
// failed action, the API in trouble, or no answer, while ctx still lives.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var actErr hc.ActionError
	if errors.As(err, &actErr) {
		return true
	}
	var apiErr hc.Error
	if errors.As(err, &apiErr) {
		switch apiErr.Code {
		case hc.ErrorCodeLocked, hc.ErrorCodeConflict, hc.ErrorCodeServiceError, hc.ErrorCodeMaintenance,
			hc.ErrorCodeServerError, hc.ErrorCodeBadGateway, hc.ErrorCodeTimeout, hc.ErrorCodeUnknownError, "unavailable":
			return true
		}
		return false
	}
	if errors.Is(err, hc.ErrStatusCode) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}
