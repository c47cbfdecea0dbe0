package metrics

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cc-gateway/cc-gateway/internal/cloud/hcloud"
)

// Cloud holds the cloud API's metrics and knows when it last answered.
// It implements hcloud.Observer.
type Cloud struct {
	requests  *prometheus.CounterVec
	retries   *prometheus.CounterVec
	remaining *prometheus.GaugeVec // no labels: no series until an answer tells
	limit     *prometheus.GaugeVec

	now        func() time.Time
	mu         sync.Mutex // a leaf
	lastAnswer time.Time
}

var _ hcloud.Observer = (*Cloud)(nil)

// Cloud registers the cloud API's metrics.
func (r *Registry) Cloud() *Cloud {
	c := &Cloud{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "cloud_requests_total",
			Help: "Requests sent to the cloud API (every attempt), by method and the answer's HTTP status code, or \"error\" for no answer.",
		}, []string{"method", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "cloud_retries_total",
			Help: "Cloud API requests sent again, by reason.",
		}, []string{"reason"}),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "cloud_rate_limit_remaining",
			Help: "Requests left in the cloud API's rate limit, as its last answer said (RateLimit-Remaining).",
		}, nil),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "cloud_rate_limit_limit",
			Help: "The size of the cloud API's rate limit, as its last answer said (RateLimit-Limit).",
		}, nil),
		now: time.Now,
	}
	for _, reason := range hcloud.RetryReasons {
		c.retries.WithLabelValues(reason)
	}
	r.register(c.requests, c.retries, c.remaining, c.limit)
	return c
}

// Request counts one attempt of a request; status 0 means no answer.
func (c *Cloud) Request(method string, status int) {
	code := "error"
	if status != 0 {
		code = strconv.Itoa(status)
		c.mu.Lock()
		c.lastAnswer = c.now()
		c.mu.Unlock()
	}
	c.requests.WithLabelValues(methodLabel(method), code).Inc()
}

// methodLabel keeps the method label to a few values.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete:
		return method
	}
	return "other"
}

// RateLimit records what an answer said of the rate limit.
func (c *Cloud) RateLimit(remaining, limit int) {
	c.remaining.WithLabelValues().Set(float64(remaining))
	c.limit.WithLabelValues().Set(float64(limit))
}

// Retry counts a request sent again.
func (c *Cloud) Retry(reason string) { c.retries.WithLabelValues(reason).Inc() }

// Ready is the check that the cloud answered (any HTTP answer, an error
// status too: the API is reachable) within the last within. Before the
// first answer it fails: the start-up preflight's requests are the first.
func (c *Cloud) Ready(within time.Duration) ReadyCheck {
	return func() error {
		c.mu.Lock()
		last := c.lastAnswer
		c.mu.Unlock()
		if last.IsZero() {
			return fmt.Errorf("the cloud API has not answered yet")
		}
		if ago := c.now().Sub(last); ago > within {
			return fmt.Errorf("the cloud API last answered %s ago (more than %s)", ago.Round(time.Second), within)
		}
		return nil
	}
}
