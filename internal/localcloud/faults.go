package localcloud

import (
	"net/http"
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
}
