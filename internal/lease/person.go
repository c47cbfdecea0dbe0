package lease

import "time"

// Person is what a person keeps with the gateway apart from any one lease,
// so it outlives their machines: where they want to be told things, and
// the secrets their machines get. It is keyed, like a lease, by the
// fingerprint of their key.
type Person struct {
	Fingerprint string         `json:"fingerprint"`
	Notify      []NotifyTarget `json:"notify,omitempty"`
	Secrets     []Secret       `json:"secrets,omitempty"`
}

// NotifyTarget is a URL the person asked to be told things at.
type NotifyTarget struct {
	URL   string    `json:"url"`
	Added time.Time `json:"added"`
}

// Secret is one named secret of a person. Its value is kept sealed (see
// internal/secrets): the store never holds it in the clear.
type Secret struct {
	Name   string    `json:"name"`
	Sealed []byte    `json:"sealed"`
	Set    time.Time `json:"set"`
}
