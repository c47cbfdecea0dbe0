package testkit

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// pollInterval is how long Eventually waits between two calls.
const pollInterval = 10 * time.Millisecond

// Eventually calls f until it returns nil, and fails the test with f's
// last error once limit has passed. It is for state nothing signals a
// change of (a pool's counts, the number of goroutines); its pause
// between calls is a poll interval, not synchronisation.
func Eventually(t testing.TB, limit time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", limit, err)
		}
		time.Sleep(pollInterval)
	}
}

// GoroutinesAtMost returns an error with every goroutine's stack if more
// than n goroutines run, for checking that nothing was left behind.
func GoroutinesAtMost(n int) error {
	if got := runtime.NumGoroutine(); got > n {
		buf := make([]byte, 1<<20)
		return fmt.Errorf("%d goroutines, want at most %d:\n%s", got, n, buf[:runtime.Stack(buf, true)])
	}
	return nil
}

// Receive waits for a value from ch and returns it, failing the test
// once limit has passed without one; what names the value in the
// failure.
func Receive[T any](t testing.TB, limit time.Duration, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("no %s within %s", what, limit)
		panic("unreachable: Fatalf ends the test")
	}
}
