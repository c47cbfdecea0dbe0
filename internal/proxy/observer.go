package proxy

// Direction is which way proxied bytes flow.
type Direction int

const (
	// ToMachine is from the person's client to their machine.
	ToMachine Direction = iota
	// FromMachine is from the machine to the person's client.
	FromMachine
)

// Observer is told what the proxy carries, for the gateway's metrics
// (internal/metrics implements it). Carried is called on the copy path,
// once per buffer passed on, from many goroutines: it must be cheap and
// must not block. A nil Observer records nothing.
type Observer interface {
	// ChannelOpened and ChannelClosed bracket each proxied channel; kind
	// is its SSH channel type ("session", "direct-tcpip", …).
	ChannelOpened(kind string)
	ChannelClosed(kind string)
	// Carried counts n bytes passed on in direction d.
	Carried(d Direction, n int)
}

// meter is where one stream of a proxied channel reports: the activity
// that keeps a machine from being idle, and the bytes for the Observer.
type meter struct {
	activity func()
	obs      Observer // nil: nothing counted
	d        Direction
}

// count reports n bytes passed on.
func (m meter) count(n int) {
	if m.obs != nil {
		m.obs.Carried(m.d, n)
	}
}

// opened counts a channel of kind as open until the returned func runs.
func opened(obs Observer, kind string) (closed func()) {
	if obs == nil {
		return func() {}
	}
	obs.ChannelOpened(kind)
	return func() { obs.ChannelClosed(kind) }
}
