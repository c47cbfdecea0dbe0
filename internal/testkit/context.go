package testkit

import (
	"context"
	"testing"
	"time"
)

// Context bounds a test's calls: it ends after d, or when the test ends.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
