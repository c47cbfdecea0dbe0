package lease_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/store/bolt"
	"github.com/cc-gateway/cc-gateway/internal/testkit"
)

// writeCounter is a Store that counts its writes and keeps the events
// each carried.
type writeCounter struct {
	lease.Store
	writes []string // "put" or "append", with the kinds of their events
}

func (s *writeCounter) Put(l lease.Lease, events ...lease.Event) error {
	s.writes = append(s.writes, "put"+kinds(events))
	return s.Store.Put(l, events...)
}

func (s *writeCounter) AppendEvent(e lease.Event) error {
	s.writes = append(s.writes, "append"+kinds([]lease.Event{e}))
	return s.Store.AppendEvent(e)
}

func kinds(events []lease.Event) string {
	out := ""
	for _, e := range events {
		out += " " + e.Kind
	}
	return out
}

// TestExtendIsOneWrite: the new expiry and its audit event are one write.
func TestExtendIsOneWrite(t *testing.T) {
	store, err := bolt.Open(filepath.Join(t.TempDir(), "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c := testkit.NewClock(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	l := lease.Lease{Fingerprint: "SHA256:one", ID: "one", ServerName: "cc-one", State: lease.StateStopped,
		Created: c.Now(), Expires: c.Now().Add(time.Hour), LastActivity: c.Now()}
	if err := store.Put(l); err != nil {
		t.Fatal(err)
	}
	counter := &writeCounter{Store: store}
	m := lease.NewManager(lease.Config{
		Store: counter, Clock: c, Logger: testkit.Quiet,
		Policy: lease.Policy{DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour, MaxLifetime: 72 * time.Hour},
	})
	if _, err := m.Extend(ctx(t), l.Fingerprint, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if len(counter.writes) != 1 || counter.writes[0] != "put extend" {
		t.Errorf("extend wrote %q, want one put carrying its event", counter.writes)
	}
}
