package etcd

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

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
	const fp = "SHA256:bob"
	elsewhere := func(p *Presence, want int) {
		t.Helper()
		if n, err := p.SessionsElsewhere(fp); err != nil || n != want {
			t.Fatalf("sessions elsewhere: %d, %v; want %d", n, err, want)
		}
	}
	if err := b.publish(map[string]int{fp: 2, "SHA256:alice": 0}); err != nil {
		t.Fatal(err)
	}
	elsewhere(a, 2)
	elsewhere(b, 0)

	if _, err := b.s.cli.Revoke(context.Background(), b.lease); err != nil {
		t.Fatal(err)
	}
	elsewhere(a, 0)
	if err := b.publish(map[string]int{fp: 2}); err != nil {
		t.Fatal(err)
	}
	elsewhere(a, 2)
	if err := b.publish(map[string]int{fp: 0}); err != nil {
		t.Fatal(err)
	}
	elsewhere(a, 0)

	type got struct {
		fp, msg string
		end     bool
	}
	delivered := make(chan got, 10)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		a.Run(ctx, func() map[string]int { return map[string]int{fp: 1} }, func(fp, msg string, end bool) {
			delivered <- got{fp, msg, end}
		})
	}()
	testkit.Eventually(t, 10*time.Second, func() error {
		if n, err := b.SessionsElsewhere(fp); err != nil || n != 1 {
			return fmt.Errorf("b counts %d sessions on a (%v), want 1", n, err)
		}
		// a watches from its start: tell it until a notice arrives.
		if err := b.Tell(fp, "warned", false); err != nil {
			return err
		}
		select {
		case d := <-delivered:
			if d != (got{fp, "warned", false}) {
				t.Fatalf("a delivered %+v, want bob warned", d)
			}
			return nil
		case <-time.After(100 * time.Millisecond):
			return errors.New("no notice delivered yet")
		}
	})
	if err := a.Tell(fp, "own", true); err != nil {
		t.Fatal(err)
	}
	if err := b.Tell(fp, "ended", true); err != nil {
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
			if d != (got{fp, "ended", true}) {
				t.Fatalf("a delivered %+v, want bob's sessions ended (and never its own notice)", d)
			}
			ended = true
		case <-limit:
			t.Fatal("the end of bob's sessions did not reach a within 10s")
		}
	}
	cancel()
	<-stopped
	if n, err := b.SessionsElsewhere(fp); err != nil || n != 0 {
		t.Errorf("after a stopped, b counts %d sessions on it (%v), want 0", n, err)
	}
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
