package testkit

import (
	"testing"
	"time"
)

// Eventually calls f until it returns nil, for at most d, and otherwise
// fails the test with what and f's last error. It is for conditions outside
// the test's reach (another process, a port, a file); code the test drives
// itself gets a clock or a signal instead.
func Eventually(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, d, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not synchronisation
	}
}
