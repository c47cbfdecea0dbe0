package lease

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"
)

// Activity is kept in memory (Touch) and reaches the store with the lease's
// next write. With one gateway that is enough: its reaper reads the memory.
// With several sharing a store, the reaper runs on one of them and sees
// only what the others wrote, so each gateway also writes its people's
// activity every so often (RunActivityFlush): at most one write per active
// person per round, however busy their sessions are.

// ActivityFlushEvery is the round of RunActivityFlush for a reaper that
// passes every interval: a fraction of it, so the reaper decides on
// activity at most that stale.
func ActivityFlushEvery(interval time.Duration) time.Duration {
	return max(interval/4, 100*time.Millisecond)
}

// RunActivityFlush writes the activity seen since the last round, every
// round, until ctx ends.
func (m *Manager) RunActivityFlush(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.FlushActivity()
		}
	}
}

// FlushActivity writes the activity of every person touched since their
// last flush into their lease, one write each. A person whose lease is
// being worked on (a flight, the reaper) is left for the next round: that
// work writes the activity with the lease anyway, and the flush never
// waits for it.
func (m *Manager) FlushActivity() {
	m.mu.Lock()
	touched := slices.Collect(maps.Keys(m.touched))
	m.mu.Unlock()
	for _, fp := range touched {
		err := m.flushOne(fp)
		if err == nil {
			continue
		}
		m.log.Warn("write activity", "fingerprint", fp, "err", err)
		if errors.Is(err, ErrStoreUnavailable) {
			// The others would wait as long each: they keep their
			// activity in memory for the next round.
			return
		}
	}
}

// activityStore is a Store that moves a lease's last activity alone,
// leaving the rest as the store holds it: gateways sharing a store need
// it, or one's activity write could undo another's change (etcd's store).
type activityStore interface {
	PutActivity(fingerprint string, t time.Time) error
}

func (m *Manager) flushOne(fp string) error {
	unlock, ok := m.tryLock(fp)
	if !ok {
		return nil
	}
	defer unlock()
	m.mu.Lock()
	delete(m.touched, fp)
	t := m.activity[fp]
	m.mu.Unlock()
	if s, ok := m.cfg.Store.(activityStore); ok {
		if err := s.PutActivity(fp, t); err != nil {
			m.markTouched(fp)
			return err
		}
		return nil
	}
	l, err := m.cfg.Store.Get(fp)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		m.markTouched(fp)
		return err
	}
	if merged := m.withActivity(l); merged.LastActivity.After(l.LastActivity) {
		if err := m.put(merged); err != nil {
			m.markTouched(fp)
			return err
		}
	}
	return nil
}

func (m *Manager) markTouched(fp string) {
	m.mu.Lock()
	m.touched[fp] = true
	m.mu.Unlock()
}
