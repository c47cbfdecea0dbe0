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
	Home        *Home          `json:"home,omitempty"` // home.go
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

// Teller tells a person something out of band, at the notification
// targets they registered, whether or not they are connected. about is a
// short fixed word saying what ("agent", "warning", "created", "test"), for
// logs and for targets that want JSON. Tell must not block its caller (the
// reaper, an operation): an implementation queues, bounded, and drops when
// full.
type Teller interface {
	Tell(fingerprint, about, message string)
}

// nopTeller tells nobody: a Manager without a Teller uses it.
type nopTeller struct{}

func (nopTeller) Tell(string, string, string) {}
