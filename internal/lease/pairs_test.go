package lease

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// TestCreateRecordsWhereTheServerWent: the provider may place the server
// elsewhere than the first choice; the lease records where it is, and what
// the provider says on the way reaches the person.
func TestCreateRecordsWhereTheServerWent(t *testing.T) {
	d := newDomain(t, Policy{DefaultTTL: 4 * time.Hour}, ReaperConfig{})
	d.m.cfg.Machine.Locations = []string{"fsn1", "nbg1"}
	d.m.cfg.Machine.User = "claude"
	d.m.cfg.Machine.GatewayKey = testkit.NewKey(t).Signer.PublicKey()
	d.cloud.createFn = func(_ context.Context, spec CreateSpec) (Server, error) {
		spec.Progress("cx23 is sold out in %s; trying %s", "fsn1", "nbg1")
		return Server{ID: 7, Name: spec.Name, Status: "running", IPv4: "192.0.2.7", ServerType: "cx23", Location: "nbg1", Created: d.clock.Now()}, nil
	}
	var mu sync.Mutex
	var steps []string
	key := testkit.NewKey(t).Signer.PublicKey()
	l, err := d.m.Ensure(context.Background(), key, func(s Step) {
		mu.Lock()
		defer mu.Unlock()
		steps = append(steps, s.Text)
	})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := d.stored(t, l.Fingerprint)
	if stored.ServerType != "cx23" || stored.Location != "nbg1" || l.Location != "nbg1" {
		t.Errorf("lease records %s in %s, want cx23 in nbg1", stored.ServerType, stored.Location)
	}
	mu.Lock()
	defer mu.Unlock()
	i := slices.IndexFunc(steps, func(s string) bool { return strings.HasPrefix(s, "Creating your machine") })
	if i < 0 || !strings.HasSuffix(steps[i], "(cx23 in fsn1)") || !slices.Contains(steps, "cx23 is sold out in fsn1; trying nbg1") {
		t.Errorf("progress %q: want the first choice, then the move", steps)
	}
}

// TestPricesOfEveryPair: the reaper's pass knows the price of every place
// a new machine may go, so its cost is known from the start.
func TestPricesOfEveryPair(t *testing.T) {
	d := newDomain(t, Policy{}, ReaperConfig{})
	d.reconciled()
	d.m.cfg.Machine.ServerTypes = []string{"cx23", "cx33"}
	d.m.cfg.Machine.Locations = []string{"fsn1", "nbg1"}
	d.r.Tick(context.Background())
	got := d.cloud.made("Prices")
	slices.Sort(got)
	want := []string{"Prices cx23 fsn1", "Prices cx23 nbg1", "Prices cx33 fsn1", "Prices cx33 nbg1"}
	if !slices.Equal(got, want) {
		t.Errorf("price calls %q, want %q", got, want)
	}
}
