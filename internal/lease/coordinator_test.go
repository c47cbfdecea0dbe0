package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// termCoordinator hands out leadership when the test says: Lead waits for
// a term on terms. Its locks fail with lockErr, when set.
type termCoordinator struct {
	campaigns chan struct{}        // a send per Lead call
	terms     chan context.Context // the leadership a Lead returns
	resigned  chan struct{}        // a send per resign
	lockErr   error
	mu        sync.Mutex
	locked    []string
}

func newTermCoordinator() *termCoordinator {
	return &termCoordinator{
		campaigns: make(chan struct{}, 10), terms: make(chan context.Context), resigned: make(chan struct{}, 10),
	}
}

func (c *termCoordinator) Lock(_ context.Context, fp string) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.locked = append(c.locked, fp)
	if c.lockErr != nil {
		return nil, c.lockErr
	}
	return func() {}, nil
}

func (c *termCoordinator) Lead(ctx context.Context) (context.Context, func(), error) {
	c.campaigns <- struct{}{}
	select {
	case term := <-c.terms:
		leading, stop := context.WithCancel(ctx)
		go func() {
			<-term.Done()
			stop()
		}()
		return leading, func() { stop(); c.resigned <- struct{}{} }, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// The reaper passes only while its gateway leads: none while it
// campaigns, one at once when a term starts (its reconcile first, though
// the last was recent), none once the term ends; a lost term is resigned
// and campaigned for again, and the Observer hears each change.
func TestReaperPassesOnlyWhileLeading(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{Interval: time.Hour})
	d.reconciled()
	coord := newTermCoordinator()
	d.m.cfg.Coordinator = coord
	passes := func() int {
		d.obs.mu.Lock()
		defer d.obs.mu.Unlock()
		return len(d.obs.passes)
	}
	lists := func() int {
		d.cloud.mu.Lock()
		defer d.cloud.mu.Unlock()
		return len(slices.DeleteFunc(slices.Clone(d.cloud.calls), func(c string) bool { return c != "List" }))
	}
	leading := func() bool {
		d.obs.mu.Lock()
		defer d.obs.mu.Unlock()
		return d.obs.leading
	}

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		d.r.Run(ctx)
	}()
	testkit.Receive(t, time.Minute, coord.campaigns, "campaign")
	if n := passes(); n != 0 {
		t.Fatalf("%d passes before leading", n)
	}
	for term := 1; term <= 2; term++ {
		end, lose := context.WithCancel(context.Background())
		coord.terms <- end
		testkit.Eventually(t, time.Minute, func() error {
			if passes() != term || lists() != term || !leading() {
				return fmt.Errorf("term %d: %d passes, %d reconciles, leading %v", term, passes(), lists(), leading())
			}
			return nil
		})
		lose()
		testkit.Receive(t, time.Minute, coord.resigned, "resign")
		testkit.Receive(t, time.Minute, coord.campaigns, "campaign after the term")
		if leading() || passes() != term {
			t.Errorf("after term %d: leading %v, %d passes", term, leading(), passes())
		}
	}
	cancel()
	testkit.Receive(t, time.Minute, stopped, "end of Run")
}

// Every change to a person's lease takes the Coordinator's lock, and a
// lock that cannot be had (the cluster out of reach) fails the operation
// before it touches the cloud.
func TestOperationsTakeTheCoordinatorsLock(t *testing.T) {
	d := newDomain(t, Policy{DefaultTTL: time.Hour, MaxTTL: time.Hour}, ReaperConfig{})
	coord := newTermCoordinator()
	coord.lockErr = fmt.Errorf("%w: no leader", ErrStoreUnavailable)
	d.m.cfg.Coordinator = coord
	key := testkit.NewKey(t).Signer.PublicKey()
	if _, _, err := d.ensure(t, key); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("Ensure without the lock: %v, want the store unavailable", err)
	}
	if _, err := d.m.Extend(context.Background(), Fingerprint(key), time.Hour); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("Extend without the lock: %v, want the store unavailable", err)
	}
	if len(d.cloud.calls) != 0 {
		t.Errorf("the cloud was called without the lock: %v", d.cloud.calls)
	}
	if want := []string{Fingerprint(key), Fingerprint(key)}; !slices.Equal(coord.locked, want) {
		t.Errorf("locks taken: %v, want %v", coord.locked, want)
	}
}
