package lease

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestFlightCallsSubscribersWithoutItsLock: subscribers write to SSH
// channels, which can block; they are called with flight.mu free.
func TestFlightCallsSubscribersWithoutItsLock(t *testing.T) {
	f := &flight{done: make(chan struct{}), subs: map[int]*subscriber{}}
	free := 0
	check := func(Step) {
		if f.mu.TryLock() {
			f.mu.Unlock()
			free++
		}
	}
	f.publish(Step{Text: "before"})
	defer f.subscribe(check)()
	f.publish(Step{Text: "after"})
	if free != 2 {
		t.Errorf("%d of 2 steps (one replayed, one published) reached the subscriber with flight.mu free", free)
	}
}

// TestFlightDeliversEveryStepOnceInOrder: subscribing while steps are
// published, each subscriber sees the steps from the first, in order, once.
func TestFlightDeliversEveryStepOnceInOrder(t *testing.T) {
	f := &flight{done: make(chan struct{}), subs: map[int]*subscriber{}}
	const steps, subscribers = 200, 8
	got := make([][]string, subscribers)
	var wg sync.WaitGroup
	unsubscribe := make([]func(), subscribers)
	var mu sync.Mutex
	for i := range subscribers {
		wg.Go(func() {
			u := f.subscribe(func(s Step) { got[i] = append(got[i], s.Text) })
			mu.Lock()
			unsubscribe[i] = u
			mu.Unlock()
		})
	}
	for i := range steps {
		f.publish(Step{Elapsed: time.Duration(i), Text: fmt.Sprint(i)})
	}
	wg.Wait()
	for i, seen := range got {
		unsubscribe[i]()
		if len(seen) != steps {
			t.Fatalf("subscriber %d saw %d of %d steps", i, len(seen), steps)
		}
		for j, text := range seen {
			if text != fmt.Sprint(j) {
				t.Fatalf("subscriber %d saw step %s as number %d", i, text, j)
			}
		}
	}
	f.publish(Step{Text: "late"})
	for i, seen := range got {
		if len(seen) != steps {
			t.Errorf("subscriber %d got a step after unsubscribing", i)
		}
	}
}
