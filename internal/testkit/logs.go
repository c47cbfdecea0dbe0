package testkit

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Quiet is a logger for tests that do not read logs.
var Quiet = slog.New(slog.DiscardHandler)

// Buffer collects what a logger, a process or a session writes while the
// test reads it: writes and reads may happen at once.
type Buffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed by the next write; made by a waiter
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor waits until the buffer holds want and reports whether it did
// within limit. It wakes on writes, so it neither polls nor sleeps.
func (b *Buffer) WaitFor(want string, limit time.Duration) bool {
	timeout := time.NewTimer(limit)
	defer timeout.Stop()
	for {
		b.mu.Lock()
		if strings.Contains(b.buf.String(), want) {
			b.mu.Unlock()
			return true
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-timeout.C:
			return false
		}
	}
}

// Logger returns a text logger at debug level writing into a new Buffer.
func Logger() (*slog.Logger, *Buffer) {
	b := &Buffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// Log returns a debug logger for the code under test that writes into t's
// output when the tests run with -v, and is Quiet otherwise.
func Log(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return Quiet
	}
	w := &testOutput{out: t.Output()}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testOutput is a test's output that drops what comes once the test's
// cleanups run: goroutines of the code under test may log after the test
// has ended, when writing to its output would panic.
type testOutput struct {
	mu      sync.Mutex
	out     io.Writer
	stopped bool
}

func (w *testOutput) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return len(p), nil
	}
	return w.out.Write(p)
}

func (w *testOutput) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}
