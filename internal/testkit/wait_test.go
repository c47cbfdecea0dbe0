package testkit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEventually(t *testing.T) {
	calls := 0
	Eventually(t, time.Minute, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Errorf("f was called %d times, want 3 (until it returned nil)", calls)
	}
}

func TestGoroutinesAtMost(t *testing.T) {
	if err := GoroutinesAtMost(1 << 20); err != nil {
		t.Error(err)
	}
	if err := GoroutinesAtMost(0); err == nil || !strings.Contains(err.Error(), "TestGoroutinesAtMost") {
		t.Errorf("GoroutinesAtMost(0) = %v, want an error with this test's stack", err)
	}
}

func TestReceive(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	if got := Receive(t, time.Minute, ch, "number"); got != 7 {
		t.Errorf("Receive = %d, want the 7 sent", got)
	}
}
