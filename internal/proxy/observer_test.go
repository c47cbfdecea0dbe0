package proxy

import (
	"sync"
	"testing"
)

// countingObserver counts what the proxy tells its Observer; the metrics
// package's implementation is tested against the real gateway in
// cmd/gateway.
type countingObserver struct {
	mu             sync.Mutex
	opened, closed map[string]int
	bytes          [2]int
}

func (o *countingObserver) ChannelOpened(kind string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.opened == nil {
		o.opened = map[string]int{}
	}
	o.opened[kind]++
}

func (o *countingObserver) ChannelClosed(kind string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed == nil {
		o.closed = map[string]int{}
	}
	o.closed[kind]++
}

func (o *countingObserver) Carried(d Direction, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.bytes[d] += n
}

// TestObserverSeesSessionsAndBytes: every byte passed on is counted, in
// its direction, and the session channel is counted open until it ends.
func TestObserverSeesSessionsAndBytes(t *testing.T) {
	_, fd := setup(t.Context(), t)
	data := randomBytes(t, 1<<20)
	stdout, stderr, err := run(t, fd.dial(t), "cat; printf xyz >&2", data)
	if err != nil || len(stdout) != len(data) || string(stderr) != "xyz" {
		t.Fatalf("cat: %v, %d bytes out, stderr %q", err, len(stdout), stderr)
	}
	if err := fd.result(t); err != nil {
		t.Fatalf("bridge: %v", err)
	}
	o := &fd.obs
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.bytes[ToMachine] != len(data) || o.bytes[FromMachine] != len(data)+3 {
		t.Errorf("bytes counted: %d to the machine, %d from it; want %d and %d", o.bytes[ToMachine], o.bytes[FromMachine], len(data), len(data)+3)
	}
	if o.opened["session"] != 1 || o.closed["session"] != 1 || len(o.opened) != 1 {
		t.Errorf("channels opened %v, closed %v; want one session each", o.opened, o.closed)
	}
}
