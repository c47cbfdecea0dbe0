package hcloud

// Observer is told of every request the provider sends to the API, for
// the gateway's metrics (internal/metrics implements it). It is called
// from the requests' goroutines and must return at once.
type Observer interface {
	// Request reports one attempt of a request: its method and the HTTP
	// status of the answer, 0 when none came.
	Request(method string, status int)
	// RateLimit reports what an answer said is left of the API's rate
	// limit, and its size.
	RateLimit(remaining, limit int)
	// Retry reports a request sent again, and why: one of RetryReasons.
	Retry(reason string)
}

// Why a request is sent again (see retryTransport.verdict).
const (
	RetryRateLimited = "rate_limited" // 429
	RetryLocked      = "locked"       // 423: the resource is busy with an action
	RetryConflict    = "conflict"     // 409 conflict: changed by another request
	RetryUnavailable = "unavailable"  // 503
	RetryServerError = "server_error" // 500, 502, 504 to a request safe to repeat
	RetryTimeout     = "timeout"      // no answer within Retry.Timeout
	RetryConnection  = "connection"   // the connection failed
)

// RetryReasons lists every reason for a retry.
var RetryReasons = []string{RetryRateLimited, RetryLocked, RetryConflict, RetryUnavailable, RetryServerError, RetryTimeout, RetryConnection}

// nopObserver records nothing: a Provider without an Observer uses it.
type nopObserver struct{}

func (nopObserver) Request(string, int) {}
func (nopObserver) RateLimit(int, int)  {}
func (nopObserver) Retry(string)        {}
