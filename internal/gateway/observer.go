package gateway

// Observer is told what the front door does, for the gateway's metrics
// (internal/metrics implements it). Its methods are called from many
// goroutines and must not block. Options.Observer nil records nothing.
type Observer interface {
	// ConnectionOpened and ConnectionClosed bracket every connection the
	// gateway serves, from its accept (past the startup limits) to its end.
	ConnectionOpened()
	ConnectionClosed()
	// SessionStarted and SessionEnded bracket every session headed for a
	// machine, from the wait for the machine to the session's end.
	SessionStarted()
	SessionEnded()
	// Authenticated counts one decision on a key (see AuthResult).
	Authenticated(result AuthResult)
	// Limited counts one refusal or drop by a limit.
	Limited(limit Limit)
}

// AuthResult is what became of an authentication attempt.
type AuthResult string

const (
	// AuthAccepted: the key is allowed and the client proved it holds it.
	AuthAccepted AuthResult = "accepted"
	// AuthRefused: the key is not on the allow lists, or its lines keep it
	// out. A client offering several keys counts one per key it tried.
	AuthRefused AuthResult = "refused"
	// AuthLimited: an allowed key refused because it holds
	// --max-connections already.
	AuthLimited AuthResult = "limited"
)

// EveryAuthResult lists the results, so the metrics show each from zero.
var EveryAuthResult = []AuthResult{AuthAccepted, AuthRefused, AuthLimited}

// Limit names a limit by the option that sets it, which is what an
// operator raises when it bites.
type Limit string

const (
	LimitStartups          Limit = "max-startups"            // a connection dropped before its handshake
	LimitStartupsPerSource Limit = "max-startups-per-source" // the same, for one source's share
	LimitSessions          Limit = "max-sessions"            // a session channel refused
	LimitConnections       Limit = "max-connections"         // a login refused
	LimitEarlyRequests     Limit = "max-early-requests"      // a session ended before its program
	LimitEarlyBytes        Limit = "max-early-bytes"         // the same, by bytes
	LimitGlobalRequests    Limit = "global-request-rate"     // a global request refused
)

// EveryLimit lists the limits, so the metrics show each from zero.
var EveryLimit = []Limit{
	LimitStartups, LimitStartupsPerSource, LimitSessions, LimitConnections,
	LimitEarlyRequests, LimitEarlyBytes, LimitGlobalRequests,
}

// noObserver records nothing: the Observer of a gateway without metrics.
type noObserver struct{}

func (noObserver) ConnectionOpened()        {}
func (noObserver) ConnectionClosed()        {}
func (noObserver) SessionStarted()          {}
func (noObserver) SessionEnded()            {}
func (noObserver) Authenticated(AuthResult) {}
func (noObserver) Limited(Limit)            {}
