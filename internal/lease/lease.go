// Package lease holds the domain of cc-gateway: a person's lease on a
// machine, the policies that bound it, and the Manager that creates, resumes,
// extends, stops and destroys machines through a Provider while recording
// every change in a Store.
//
// The package knows nothing about SSH wire details or HTTP: the front door
// and the cloud adapters depend on it, never the other way round.
package lease

import (
	"context"
	"errors"
	"time"
)

// State is where a lease's machine is in its life.
type State string

// The states of a lease. Transitional states (creating, starting, stopping,
// destroying) are written before the provider call they name, so a crash
// leaves a record of what was in flight.
const (
	StateCreating    State = "creating"
	StateRunning     State = "running"
	StateStarting    State = "starting"
	StateStopping    State = "stopping"
	StateStopped     State = "stopped"
	StateHibernating State = "hibernating"
	StateHibernated  State = "hibernated" // no server; its disk kept as a snapshot
	StateDestroying  State = "destroying"
)

// States lists every State.
var States = []State{StateCreating, StateRunning, StateStarting, StateStopping, StateStopped, StateHibernating, StateHibernated, StateDestroying}

// Lease is one person's claim on one machine. People are known by the
// SHA256 fingerprint of their public key, so that is the lease's key.
type Lease struct {
	Fingerprint  string    `json:"fingerprint"`   // SHA256:… of PublicKey
	PublicKey    string    `json:"public_key"`    // authorized_keys form, no comment
	ID           string    `json:"id"`            // random, names the server and labels it
	State        State     `json:"state"`         //
	ServerID     int64     `json:"server_id"`     // provider's id; 0 before creation returns
	ServerName   string    `json:"server_name"`   // derived from ID, so retries find it
	Address      string    `json:"address"`       // host:port of the machine's sshd
	HostKey      string    `json:"host_key"`      // pinned machine host key, authorized_keys form
	HostKeyPEM   []byte    `json:"host_key_pem"`  // its private half, sent again on re-create
	ServerType   string    `json:"server_type"`   //
	Location     string    `json:"location"`      //
	Created      time.Time `json:"created"`       //
	Expires      time.Time `json:"expires"`       //
	LastActivity time.Time `json:"last_activity"` //
	// KeyRevoked: the key left the allow list, so the machine must refuse
	// it too. KeyRevokedOn is the server that was seen to refuse it: a
	// server with another id (re-created, restored) must still be told.
	KeyRevoked   bool  `json:"key_revoked,omitempty"`
	KeyRevokedOn int64 `json:"key_revoked_on,omitempty"`

	// Billing: the current server's creation, the hibernation snapshot, and
	// what closed periods (deleted servers and snapshots) cost.
	ServerCreated time.Time `json:"server_created,omitzero"`
	ImageID       int64     `json:"image_id,omitempty"`
	ImageSizeGB   float64   `json:"image_size_gb,omitempty"`
	ImageCreated  time.Time `json:"image_created,omitzero"`
	Spent         float64   `json:"spent,omitempty"`

	// Agent is what the reaper last read of the machine's coding agent.
	Agent Agent `json:"agent,omitzero"`
}

// keyRevocationPending reports whether l's key was revoked and its
// current server has not yet been seen to refuse it.
func (l Lease) keyRevocationPending() bool {
	return l.KeyRevoked && l.ServerID != 0 && l.KeyRevokedOn != l.ServerID
}

// ErrNotFound is returned by a Store for a fingerprint without a lease.
var ErrNotFound = errors.New("no lease")

// ErrStoreFailed is wrapped by a Store's errors when its database fails
// (damaged, or its disk failing) rather than a request being wrong.
var ErrStoreFailed = errors.New("the lease database failed")

// ErrStoreUnavailable is wrapped by a Store's errors when it cannot reach
// its database for now (an etcd cluster without quorum): unlike
// ErrStoreFailed it passes without repair, and the write that failed
// wrote nothing.
var ErrStoreUnavailable = errors.New("the lease store is temporarily unavailable")

// ErrServerNotFound is returned by a Provider for a server that does not exist.
var ErrServerNotFound = errors.New("server not found")

// Store keeps leases, the audit log and the counts of refused connections.
// Implementations must make writes durable before returning.
type Store interface {
	Get(fingerprint string) (Lease, error)
	// Put writes l and appends events to the audit log as one write: both
	// are durable when it returns, or neither is.
	Put(l Lease, events ...Event) error
	// Delete removes the lease (absent is no error) and appends events,
	// as one write.
	Delete(fingerprint string, events ...Event) error
	List() ([]Lease, error)
	// Person returns what the person keeps apart from leases; a person
	// who has kept nothing yet is a Person with only the fingerprint, and
	// no error.
	Person(fingerprint string) (Person, error)
	// PutPerson writes p (replacing what the person kept) and appends
	// events to the audit log, as one write.
	PutPerson(p Person, events ...Event) error
	// People returns every person's record, sorted by fingerprint.
	People() ([]Person, error)
	// AppendEvent adds an event without a lease change to the audit log,
	// which keeps a bounded number of the newest events.
	AppendEvent(e Event) error
	// Events returns the newest n events (all when n <= 0), oldest first.
	Events(n int) ([]Event, error)
	// AppendRefusals adds counts of refused connections as one write. They
	// are kept apart from the audit log, with their own bound on how many
	// of the newest are kept, so refusals never push events out.
	AppendRefusals(rs []Refusal) error
	// Refusals returns the newest n refusal counts (all when n <= 0),
	// oldest first.
	Refusals(n int) ([]Refusal, error)
}

// Event is one entry of the audit log.
type Event struct {
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"` // connect, create, resume, stop, … (refused connections are Refusals)
	Fingerprint string    `json:"fingerprint,omitempty"`
	LeaseID     string    `json:"lease_id,omitempty"`
	// Conn is the id of the connection that caused the event, as the
	// gateway's log and the references people are told carry it; empty
	// for the reaper's, reconcile's and an allow list edit's events.
	Conn   string `json:"conn,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Server is what a provider knows about one machine.
type Server struct {
	ID         int64
	Name       string
	Status     string // provider's word: "running", "off", "initializing", …
	IPv4       string
	ServerType string
	Location   string
	Labels     map[string]string
	Created    time.Time
}

// CreateSpec asks a provider for a new server.
type CreateSpec struct {
	Name     string
	LeaseID  string
	UserData string // rendered bootstrap document
	// PublicKey is the person's key; providers that need SSH keys registered
	// (Hetzner) register it so the server also carries it natively.
	PublicKey string
	// ImageID restores a hibernated machine from its snapshot; zero means
	// the provider's configured image.
	ImageID int64
	// TestMachine marks the machine of `gateway preflight
	// --create-test-machine`, labelled so operators see what it is.
	TestMachine bool
	// Pool marks a warm pool machine (pool.go): nobody's yet, labelled so
	// reconcile and operators tell it from a person's until it is claimed.
	Pool bool
	// HomeVolume, if not zero, is the person's home volume: the server is
	// created in its location, with it attached.
	HomeVolume int64
	// Progress, if not nil, tells the person waiting what the provider
	// does that they would otherwise wonder about (a sold-out server type
	// it moves away from).
	Progress func(format string, args ...any)
}

// Image is a snapshot the gateway took of a hibernated machine.
type Image struct {
	ID      int64
	LeaseID string
	SizeGB  float64 // what the provider bills
	Created time.Time
}

// Prices are what the provider charges, gross, in Currency.
type Prices struct {
	Currency      string
	ServerHourly  float64 // per started hour, on or off
	ServerMonthly float64 // the cap on a month of hourly charges
	// The server's primary IPv4 address, billed apart from the server
	// type for as long as the server exists, with its own monthly cap.
	IPv4Hourly         float64
	IPv4Monthly        float64
	SnapshotPerGBMonth float64
	VolumePerGBMonth   float64
}

// ErrHostKeyMismatch is returned by Machines.Wait when the machine answers
// with a key other than the pinned one.
var ErrHostKeyMismatch = errors.New("ssh host key does not match the pinned key")

// ErrNoRoom is wrapped by Provider.Create's error when the cloud has no
// room for a new server on any pair it may use (all sold out).
var ErrNoRoom = errors.New("no room for a new server")

// ErrImageNotFound is returned by a Provider for an image that does not exist.
var ErrImageNotFound = errors.New("image not found")

// Provider creates and drives servers. Each call waits until the provider
// reports its action finished, bounded by ctx, retrying transient faults a
// bounded number of times. Nothing without this gateway's labels is touched.
type Provider interface {
	Create(ctx context.Context, spec CreateSpec) (Server, error)
	Get(ctx context.Context, id int64) (Server, error)
	// List returns every server labelled as this gateway's.
	List(ctx context.Context) ([]Server, error)
	PowerOn(ctx context.Context, id int64) error
	PowerOff(ctx context.Context, id int64) error
	Delete(ctx context.Context, id int64) error
	// Unpool removes the pool label from a claimed warm pool machine's
	// server (pool.go); a server without it is no error, so a claim
	// finished again succeeds.
	Unpool(ctx context.Context, id int64) error

	// Snapshot images the server's disk, labelled with leaseID. Taking a
	// second snapshot for the same lease returns the existing one.
	Snapshot(ctx context.Context, serverID int64, leaseID string) (Image, error)
	// Images returns this gateway's snapshots.
	Images(ctx context.Context) ([]Image, error)
	DeleteImage(ctx context.Context, id int64) error

	// CPUUsage is the server's average CPU use over the last window, in
	// percent of one core times cores (Hetzner's "cpu" metric).
	CPUUsage(ctx context.Context, id int64, window time.Duration) (float64, error)
	// Prices of a server type in a location, and of snapshots and volumes.
	Prices(ctx context.Context, serverType, location string) (Prices, error)

	// CreateVolume makes the volume spec describes, or returns the one
	// spec.Owner has already (so a retry after a crash makes no second).
	CreateVolume(ctx context.Context, spec VolumeSpec) (Volume, error)
	// AttachVolume attaches the volume to the server; attached there
	// already is no error.
	AttachVolume(ctx context.Context, volumeID, serverID int64) error
	// DetachVolume detaches the volume from its server, if it has one.
	DetachVolume(ctx context.Context, volumeID int64) error
	// DeleteVolume deletes a detached volume; one gone is ErrVolumeNotFound.
	DeleteVolume(ctx context.Context, volumeID int64) error
	// Volumes lists this gateway's volumes of owner, all when owner is "".
	Volumes(ctx context.Context, owner string) ([]Volume, error)

	// GuardMachines makes sure the machines can be reached only through the
	// gateway (on Hetzner: the gateway's firewall exists, has its rules and
	// guards every labelled server), repairs what someone changed, and
	// returns one sentence per repair. A provider told to keep no guard
	// does nothing.
	GuardMachines(ctx context.Context) ([]string, error)
}

// Machines reaches machines over SSH, always checking the pinned host key.
type Machines interface {
	// Wait returns once the machine at addr answers SSH proving it holds hostKey
	// (authorized_keys form), polling until ctx ends; another key: an error wrapping
	// ErrHostKeyMismatch at once. With ctx already ended it makes no new
	// connection: nil then means a live one already proves the machine.
	Wait(ctx context.Context, addr, hostKey string) error
	// SetExpiry tells the running machine its lease's expiry.
	SetExpiry(ctx context.Context, addr, hostKey string, expires time.Time) error
	// RevokeKey makes the running machine's sshd refuse key (authorized_keys
	// form) from now on, for every user; revoking it again is no error.
	RevokeKey(ctx context.Context, addr, hostKey, key string) error
	// SetSecrets replaces the secrets the running machine gives every new
	// session as environment variables with secrets (none: it gives none).
	SetSecrets(ctx context.Context, addr, hostKey string, secrets []SecretValue) error
	// Personalise gives the warm pool machine at addr its person: doc is
	// a bootstrap document (bootstrap.PersonaliseCommand) with the pool
	// document's instance id and host key, and the person's key and
	// expiry. Personalising again with the same document is no error.
	Personalise(ctx context.Context, addr, hostKey string, doc string) error
	// AgentState reads what the running machine's coding agent last said it
	// is doing and when, by the machine's clock; "" and the zero time when
	// it has said nothing.
	AgentState(ctx context.Context, addr, hostKey string) (AgentState, time.Time, error)
}

// Clock is injected so policies and tests never depend on wall time.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }
