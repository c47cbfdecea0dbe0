package testkit

import (
	"fmt"
	"testing"
	"time"
)

func TestBufferWaitFor(t *testing.T) {
	var b Buffer
	done := make(chan bool)
	go func() { done <- b.WaitFor("line 3", time.Minute) }()
	for i := range 5 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if !<-done {
		t.Fatalf("WaitFor missed a write; the buffer holds %q", b.String())
	}
	if b.WaitFor("line 9", 10*time.Millisecond) {
		t.Error("WaitFor saw what was never written")
	}
	if !b.WaitFor("line 0", 0) {
		t.Error("WaitFor missed what the buffer held already")
	}
}
