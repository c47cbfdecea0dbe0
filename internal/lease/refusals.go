package lease

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// Refusal counts the connection attempts one source had refused in one
// minute, for one reason. Strangers are counted rather than recorded one by
// one, and apart from the audit log, so that a flood of them can neither
// push the lifecycle and admin events out nor cost an fsync each.
type Refusal struct {
	Minute time.Time `json:"minute"` // the minute's start
	Source string    `json:"source"` // the client's address as the front door names it, or OtherSources
	Kind   string    `json:"kind"`   // RefusedKey or RefusedLimited
	Count  int       `json:"count"`
	// Fingerprints are distinct refused keys, the first
	// MaxRefusalFingerprints of them.
	Fingerprints []string  `json:"fingerprints,omitempty"`
	First        time.Time `json:"first"`
	Last         time.Time `json:"last"`
}

// The kinds of refusal.
const (
	RefusedKey     = "auth-refused" // a key on no list
	RefusedLimited = "limited"      // dropped before the handshake: too many unauthenticated connections
)

// MaxRefusalFingerprints is how many distinct keys a Refusal names.
const MaxRefusalFingerprints = 5

// OtherSources is the Source of the refusals counted once maxPendingRefusals
// sources are pending: more sources cost no more memory.
const OtherSources = "other"

// maxPendingRefusals bounds the refusals kept in memory between flushes.
const maxPendingRefusals = 1000

type refusalKey struct {
	minute       time.Time
	source, kind string
}

// refusals are the counts not yet written to the store.
type refusals struct {
	mu      sync.Mutex // a leaf, guarding memory only
	pending map[refusalKey]*Refusal
}

// Refused counts an attempt refused before authentication: kind is
// RefusedKey or RefusedLimited, fingerprint the refused key ("" when there
// was none). It only touches memory; the reaper writes the counts of each
// minute once it is over (flushRefusals).
func (m *Manager) Refused(kind, source, fingerprint string) {
	now := m.cfg.Clock.Now()
	k := refusalKey{minute: now.Truncate(time.Minute), source: source, kind: kind}
	r := &m.refusals
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[refusalKey]*Refusal{}
	}
	agg, ok := r.pending[k]
	if !ok && len(r.pending) >= maxPendingRefusals {
		k.source = OtherSources
		agg, ok = r.pending[k]
	}
	if !ok {
		agg = &Refusal{Minute: k.minute, Source: k.source, Kind: kind, First: now}
		r.pending[k] = agg
	}
	agg.Count++
	agg.Last = now
	if fingerprint != "" && len(agg.Fingerprints) < MaxRefusalFingerprints && !slices.Contains(agg.Fingerprints, fingerprint) {
		agg.Fingerprints = append(agg.Fingerprints, fingerprint)
	}
}

// flushRefusals writes the counts of the minutes before until in one write.
// Counts that fail to write are logged and dropped: memory stays bounded.
func (m *Manager) flushRefusals(until time.Time) {
	var batch []Refusal
	r := &m.refusals
	r.mu.Lock()
	for k, agg := range r.pending {
		if k.minute.Before(until) {
			batch = append(batch, *agg)
			delete(r.pending, k)
		}
	}
	r.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	sortRefusals(batch)
	if err := m.cfg.Store.AppendRefusals(batch); err != nil {
		m.log.Error("write refusals", "aggregates", len(batch), "err", err)
	}
}

// Refusals returns the newest n refusal counts (all when n <= 0), those
// written and those still in memory, oldest first.
func (m *Manager) Refusals(n int) ([]Refusal, error) {
	stored, err := m.cfg.Store.Refusals(n)
	if err != nil {
		return nil, err
	}
	r := &m.refusals
	r.mu.Lock()
	for _, agg := range r.pending {
		c := *agg
		c.Fingerprints = slices.Clone(agg.Fingerprints)
		stored = append(stored, c)
	}
	r.mu.Unlock()
	sortRefusals(stored)
	if n > 0 && len(stored) > n {
		stored = stored[len(stored)-n:]
	}
	return stored, nil
}

// sortRefusals puts refusals in time order: by minute, then by first
// attempt, then by source.
func sortRefusals(rs []Refusal) {
	slices.SortStableFunc(rs, func(a, b Refusal) int {
		return cmp.Or(a.Minute.Compare(b.Minute), a.First.Compare(b.First), cmp.Compare(a.Source, b.Source), cmp.Compare(a.Kind, b.Kind))
	})
}
