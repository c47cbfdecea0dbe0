package etcd

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

const bob = "SHA256:bob"

// Two gateways' presences on one prefix: each counts the other's sessions,
// not its own; a count that drops to 0 is withdrawn; a lease lost (as when
// it expires behind a gateway cut off from the cluster) takes its counts
// with it, and the next round grants another and publishes them again; a
// notice reaches the other gateway only; a presence that stops withdraws
// its counts at once.
func TestPresence(t *testing.T) {
	cluster := testkit.StartEtcd(t, 1)
	a := openOn(t, cluster, "/presence/").Presence(testkit.Quiet)
	b := openOn(t, cluster, "/presence/").Presence(testkit.Quiet)
	if err := b.publish(map[string]int{bob: 2, "SHA256:alice": 0}); err != nil {
		t.Fatal(err)
	}
	countsElsewhere(t, a, 2)
	countsElsewhere(t, b, 0)

	if _, err := b.s.cli.Revoke(context.Background(), b.lease); err != nil {
		t.Fatal(err)
	}
	countsElsewhere(t, a, 0)
	if err := b.publish(map[string]int{bob: 2}); err != nil {
		t.Fatal(err)
	}
	countsElsewhere(t, a, 2)
	if err := b.publish(map[string]int{bob: 0}); err != nil {
		t.Fatal(err)
	}
	countsElsewhere(t, a, 0)

	delivered, stop := runPresence(a)
	tellUntilDelivered(t, b, delivered, "warned")
	countsElsewhere(t, b, 1)
	if err := a.Tell(bob, "own", true); err != nil {
		t.Fatal(err)
	}
	if err := b.Tell(bob, "ended", true); err != nil {
		t.Fatal(err)
	}
	// Notices arrive in order; a warning told twice above may come again.
	limit := time.After(10 * time.Second)
	for ended := false; !ended; {
		select {
		case d := <-delivered:
			if d.msg == "warned" {
				continue
			}
			if d != (notified{bob, "ended", true}) {
				t.Fatalf("a delivered %+v, want bob's sessions ended (and never its own notice)", d)
			}
			ended = true
		case <-limit:
			t.Fatal("the end of bob's sessions did not reach a within 10s")
		}
	}
	stop()
	countsElsewhere(t, b, 0)
}

// TestPresenceAfterQuorumLoss: while the cluster has no quorum a notice
// cannot be told (an error, within the store's timeout); once it is back,
// the running presence's watch delivers again and its counts are there,
// with nothing restarted.
func TestPresenceAfterQuorumLoss(t *testing.T) {
	cluster := testkit.StartEtcd(t, 3)
	a := openOn(t, cluster, "/presence/").Presence(testkit.Quiet)
	b := openOn(t, cluster, "/presence/").Presence(testkit.Quiet)
	if err := b.publish(nil); err != nil {
		t.Fatal(err)
	}
	delivered, stop := runPresence(a)
	defer stop()
	tellUntilDelivered(t, b, delivered, "before")

	cluster.Members[0].Stop()
	cluster.Members[1].Stop()
	if err := b.Tell(bob, "lost", false); err == nil {
		t.Error("a notice was told without quorum")
	}
	cluster.Members[0].Start()
	cluster.Members[1].Start()
	tellUntilDelivered(t, b, delivered, "after")
	countsElsewhere(t, b, 1)
}

type notified struct {
	fp, msg string
	end     bool
}

// runPresence runs p, with one session of bob's, until stop; what it
// delivers comes out of delivered.
func runPresence(p *Presence) (delivered <-chan notified, stop func()) {
	out := make(chan notified, 100)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		p.Run(ctx, func() map[string]int { return map[string]int{bob: 1} }, func(fp, msg string, end bool) {
			select {
			case out <- notified{fp, msg, end}:
			default: // the test reads what it needs
			}
		})
	}()
	return out, func() {
		cancel()
		<-stopped
	}
}

// tellUntilDelivered tells bob msg through from until it comes out of
// delivered: the other presence watches from when its watch was made.
func tellUntilDelivered(t *testing.T, from *Presence, delivered <-chan notified, msg string) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, func() error {
		if err := from.Tell(bob, msg, false); err != nil {
			return err
		}
		timeout := time.After(200 * time.Millisecond)
		for {
			select {
			case d := <-delivered:
				if d == (notified{bob, msg, false}) {
					return nil
				}
			case <-timeout:
				return fmt.Errorf("notice %q not delivered yet", msg)
			}
		}
	})
}

func countsElsewhere(t *testing.T, p *Presence, want int) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, func() error {
		if n, err := p.SessionsElsewhere(bob); err != nil || n != want {
			return fmt.Errorf("sessions elsewhere: %d, %v; want %d", n, err, want)
		}
		return nil
	})
}

// openOn opens a store on the cluster under prefix, closed at the test's end.
func openOn(t *testing.T, cluster *testkit.Etcd, prefix string) *Store {
	t.Helper()
	s, err := Open(Config{Endpoints: cluster.Endpoints(), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
