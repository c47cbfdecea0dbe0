package testkit

import (
	"bytes"
	"io"
	"log/slog"
	"sync"
)

// Quiet is a logger for tests that do not read logs.
var Quiet = slog.New(slog.DiscardHandler)

// Buffer collects what a logger, a process or a session writes while the
// test reads it: writes and reads may happen at once.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns a text logger at debug level writing into a new Buffer.
func Logger() (*slog.Logger, *Buffer) {
	b := &Buffer{}
	return slog.New(slog.NewTextHandler(io.Writer(b), &slog.HandlerOptions{Level: slog.LevelDebug})), b
}
