package localcloud

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Faults makes the fake misbehave the way the real API sometimes does:
// server errors, rate limiting, locked resources, slow or failed actions.
// Options.Faults is nil for a well-behaved cloud.
type Faults interface {
	// Request may answer an authenticated request itself (a 503, a 429 with
	// rate-limit headers, a 423 locked) and return true; false lets the API
	// answer it.
	Request(w http.ResponseWriter, r *http.Request) bool
	// Action is asked once when an action starts (command is the API's
	// word: "create_server", "start_server", "stop_server", …). It is
	// called with the cloud's lock held, so it must not call the cloud.
	Action(command string) ActionFault
}

// ActionFault changes one action's course.
type ActionFault struct {
	Delay time.Duration // added to Options.ActionDuration
	// Code, when set, makes the action end in status "error" with this code
	// and Message instead of taking effect.
	Code    string
	Message string
	// Ignored makes the action succeed without effect: a guest that does
	// not act on an ACPI shutdown request.
	Ignored bool
}

// Kinds of faults RandomFaults injects, as its Counts names them.
const (
	FaultUnavailable  = "503"           // 503 service_error
	FaultServerError  = "500"           // 500 server_error
	FaultRateLimited  = "429"           // 429 rate_limit_exceeded with RateLimit-* headers
	FaultLocked       = "423"           // 423 locked, on server actions only
	FaultConflict     = "409"           // 409 conflict, on server actions only
	FaultActionFailed = "action_failed" // the action ends in status "error"
	FaultSlowAction   = "slow_action"   // the action runs SlowAction longer
	FaultIgnored      = "ignored"       // the server ignores an ACPI shutdown
)

// Defaults for RandomFaults fields left zero.
const (
	DefaultSlowAction     = time.Second
	DefaultRateLimitReset = time.Second
)

// RandomFaults injects faults at random: each request is answered by a
// fault with probability Rate (503, 500 or 429, and on server actions also
// 423 locked or 409 conflict), and each action goes wrong with probability
// Rate (it fails, or runs SlowAction longer). An injected error answer is
// given before the request takes effect. Requests and actions draw from
// separate streams, so for one Seed the n-th action meets the same fault
// however often clients polled meanwhile, and the n-th request the same
// fault however many actions ran.
type RandomFaults struct {
	Rate float64 // 0 (never) to 1 (always)
	Seed int64
	// SlowAction is how much longer a slowed action runs.
	SlowAction time.Duration
	// RateLimitReset is how far ahead a 429's RateLimit-Reset lies
	// (rounded up to whole seconds, as the header counts seconds).
	RateLimitReset time.Duration
	// IgnoreShutdown is the probability (0 to 1) that a server ignores an
	// ACPI shutdown request, as a hung or busy guest does; it has its own
	// stream, so it shifts no other fault.
	IgnoreShutdown float64
	// Unavailable are server types sold out in locations, each written
	// TYPE@LOCATION ("cx23@fsn1"): every create of one is answered with
	// Hetzner's resource_unavailable, whatever Rate says.
	Unavailable []string

	mu       sync.Mutex
	requests *rand.Rand // nil until first used
	actions  *rand.Rand
	guests   *rand.Rand
	counts   map[string]int
}

var _ Faults = (*RandomFaults)(nil)

// draw decides whether to inject and which of kinds, from the request or
// the action stream; callers hold f.mu.
func (f *RandomFaults) draw(action bool, kinds []string) string {
	if f.counts == nil {
		f.requests = rand.New(rand.NewPCG(uint64(f.Seed), 1))
		f.actions = rand.New(rand.NewPCG(uint64(f.Seed), 2))
		f.guests = rand.New(rand.NewPCG(uint64(f.Seed), 3))
		f.counts = map[string]int{}
	}
	rng := f.requests
	if action {
		rng = f.actions
	}
	// Two draws every time, so the stream does not shift with the outcome.
	hit, pick := rng.Float64(), rng.IntN(len(kinds))
	if hit >= f.Rate {
		return ""
	}
	kind := kinds[pick]
	f.counts[kind]++
	return kind
}

// Request answers r with a fault, or returns false to let the API answer.
func (f *RandomFaults) Request(w http.ResponseWriter, r *http.Request) bool {
	kinds := []string{FaultUnavailable, FaultServerError, FaultRateLimited}
	if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/actions/") {
		kinds = append(kinds, FaultLocked, FaultConflict)
	}
	f.mu.Lock()
	kind := f.draw(false, kinds)
	reset := cmp.Or(f.RateLimitReset, DefaultRateLimitReset)
	f.mu.Unlock()

	switch kind {
	case FaultUnavailable:
		writeError(w, http.StatusServiceUnavailable, "service_error", "injected fault: service temporarily unavailable", nil)
	case FaultServerError:
		writeError(w, http.StatusInternalServerError, "server_error", "injected fault: internal server error", nil)
	case FaultRateLimited:
		h := w.Header()
		h.Set("RateLimit-Limit", "3600")
		h.Set("RateLimit-Remaining", "0")
		at := time.Now().Add(reset)
		h.Set("RateLimit-Reset", strconv.FormatInt(at.Add(time.Second-1).Unix(), 10))
		writeError(w, http.StatusTooManyRequests, "rate_limit_exceeded", "injected fault: rate limit exceeded", nil)
	case FaultLocked:
		writeError(w, http.StatusLocked, "locked", "injected fault: server is locked", nil)
	case FaultConflict:
		writeError(w, http.StatusConflict, "conflict", "injected fault: the resource has changed during the request, please retry", nil)
	default:
		return false
	}
	return true
}

// Action fails or slows an action at random, and makes a server ignore a
// shutdown with probability IgnoreShutdown.
func (f *RandomFaults) Action(command string) ActionFault {
	f.mu.Lock()
	defer f.mu.Unlock()
	kind := f.draw(true, []string{FaultActionFailed, FaultSlowAction})
	if kind == "" && command == "shutdown_server" && f.guests.Float64() < f.IgnoreShutdown {
		f.counts[FaultIgnored]++
		return ActionFault{Ignored: true}
	}
	switch kind {
	case FaultActionFailed:
		return ActionFault{Code: "action_failed", Message: "injected fault: " + command + " failed"}
	case FaultSlowAction:
		return ActionFault{Delay: cmp.Or(f.SlowAction, DefaultSlowAction)}
	}
	return ActionFault{}
}

// Counts says how many faults of each kind were injected so far.
func (f *RandomFaults) Counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.counts {
		out[k] = v
	}
	return out
}

// SoldOut reports whether serverType is sold out in location.
func (f *RandomFaults) SoldOut(serverType, location string) bool {
	return slices.Contains(f.Unavailable, serverType+"@"+location)
}

// ParseFaults reads a fault setting such as "rate=0.2,seed=7" (also
// "slow=2s", "reset=1s", "ignore-shutdown" or "ignore-shutdown=0.5", and
// "unavailable=cx23@fsn1", repeatable; see
// RandomFaults) for Options.Faults. An empty setting or "off" means no
// faults (nil).
func ParseFaults(spec string) (Faults, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == "off" {
		return nil, nil
	}
	f := &RandomFaults{}
	var hasRate bool
	for _, part := range strings.Split(spec, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if key == "ignore-shutdown" && !ok {
			value, ok = "1", true // every shutdown is ignored
		}
		if !ok {
			return nil, fmt.Errorf("fault setting %q: %q is not key=value; write e.g. rate=0.2,seed=7", spec, part)
		}
		var err error
		switch key {
		case "rate":
			f.Rate, err = parseProbability(value)
			hasRate = true
		case "seed":
			f.Seed, err = strconv.ParseInt(value, 10, 64)
		case "slow":
			f.SlowAction, err = parsePositiveDuration(value)
		case "reset":
			f.RateLimitReset, err = parsePositiveDuration(value)
		case "ignore-shutdown":
			f.IgnoreShutdown, err = parseProbability(value)
		case "unavailable":
			err = checkPair(value)
			f.Unavailable = append(f.Unavailable, value)
		default:
			return nil, fmt.Errorf("fault setting %q: unknown key %q; use rate, seed, slow, reset, ignore-shutdown or unavailable", spec, key)
		}
		if err != nil {
			return nil, fmt.Errorf("fault setting %q: %s=%s: %v", spec, key, value, err)
		}
	}
	if !hasRate && f.IgnoreShutdown == 0 && len(f.Unavailable) == 0 {
		return nil, fmt.Errorf("fault setting %q names no rate, ignore-shutdown nor unavailable pair; write e.g. rate=0.2,seed=7 or unavailable=cx23@fsn1", spec)
	}
	return f, nil
}

// checkPair says why s is not TYPE@LOCATION of the catalogue.
func checkPair(s string) error {
	serverType, location, ok := strings.Cut(s, "@")
	if _, found := findServerType(serverType); !ok || !found {
		return fmt.Errorf("is not TYPE@LOCATION with a server type of the local cloud (%s)", strings.Join(serverTypeNames(), ", "))
	}
	if _, found := findLocation(location); !found {
		return fmt.Errorf("names no location of the local cloud (%s)", strings.Join(locationNames(), ", "))
	}
	return nil
}

func parsePositiveDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err == nil && d <= 0 {
		err = errors.New("must be positive")
	}
	return d, err
}

func parseProbability(s string) (float64, error) {
	p, err := strconv.ParseFloat(s, 64)
	if err == nil && (p < 0 || p > 1 || math.IsNaN(p)) {
		err = errors.New("must be between 0 and 1")
	}
	return p, err
}
