package lease

import (
	"context"
	"log/slog"
)

// The connection a request came on (the gateway's short connection id)
// travels in its context, so the audit events it causes and the lease
// manager's log lines about them carry the id that the gateway's log lines
// and the reference a person is told also carry. Work nobody asked for over
// a connection (the reaper, reconcile, an allow list edit) has none.

type connKey struct{}

// WithConn returns ctx carrying the id of the connection it serves.
func WithConn(ctx context.Context, conn string) context.Context {
	return context.WithValue(ctx, connKey{}, conn)
}

// ConnOf returns the connection id ctx carries, or "".
func ConnOf(ctx context.Context) string {
	conn, _ := ctx.Value(connKey{}).(string)
	return conn
}

// logFor returns the manager's logger, with the connection's id when ctx
// carries one.
func (m *Manager) logFor(ctx context.Context) *slog.Logger {
	if conn := ConnOf(ctx); conn != "" {
		return m.log.With("conn", conn)
	}
	return m.log
}
