package etcd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// What the gateways on one prefix show each other of the people connected
// to them, besides the lease store. Each gateway holds an etcd lease of
// PresenceTTL, kept alive while it runs, and every key below is attached to
// it, so what a dead gateway published vanishes within the TTL:
//
//	<prefix>sessions/<fingerprint>/<gateway>  the person's live sessions on that gateway, decimal
//	<prefix>notices/<fingerprint>             the latest notice to the person's sessions, JSON of notice
//
// <gateway> is a random id a Presence draws when it is made. Notices are
// read by a watch on notices/: every put is one notice, delivered by every
// gateway but the one that published it (which delivered it itself).
const (
	sessionsDir = "sessions/"
	noticesDir  = "notices/"
)

// PresenceTTL is how long a dead gateway's session counts and notices
// outlive it.
const PresenceTTL = 10 * time.Second

// presenceRound is how often a Presence publishes its counts and renews its
// lease: a fraction of the TTL, so one lost round loses nothing.
const presenceRound = PresenceTTL / 5

// maxPresenceOps bounds the operations of one publishing transaction,
// below etcd's default of 128.
const maxPresenceOps = 100

// notice is one message for a person's sessions.
type notice struct {
	From    string `json:"from"` // the publishing gateway's id
	Message string `json:"message"`
	End     bool   `json:"end"` // end the sessions, not only warn
}

// Presence is one gateway's part of the shared view: its session counts,
// and the notices it sends and receives. Run keeps it up.
type Presence struct {
	s   *Store
	id  string
	log *slog.Logger

	mu        sync.Mutex
	lease     clientv3.LeaseID // 0 until granted, and after it was lost
	published map[string]int   // what the session keys hold under lease
}

// Presence returns this gateway's presence on the store's prefix; it does
// no I/O until Run.
func (s *Store) Presence(log *slog.Logger) *Presence {
	b := make([]byte, 8)
	rand.Read(b) // never fails (crypto/rand)
	return &Presence{s: s, id: hex.EncodeToString(b), log: log.With("component", "presence"), published: map[string]int{}}
}

// Run publishes counts() every round and delivers the other gateways'
// notices to deliver, until ctx ends; then it withdraws what it published.
// It outlives a cluster without quorum: once the cluster is back, the lease
// is granted again, the counts published again and the watch re-made.
func (p *Presence) Run(ctx context.Context, counts func() map[string]int, deliver func(fingerprint, message string, end bool)) {
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		p.watch(ctx, deliver)
	}()
	t := time.NewTicker(presenceRound)
	defer t.Stop()
	for {
		if err := p.publish(counts()); err != nil {
			p.log.Warn("publish session counts", "err", err)
		}
		select {
		case <-ctx.Done():
			<-watched
			p.withdraw()
			return
		case <-t.C:
		}
	}
}

// publish renews the lease (granting one when there is none) and writes
// the counts that changed since the last publish.
func (p *Presence) publish(counts map[string]int) error {
	ctx, cancel := p.s.context()
	defer cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lease != 0 {
		if _, err := p.s.cli.KeepAliveOnce(ctx, p.lease); errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// Expired while the cluster was out of reach: its keys went with it.
			p.lease, p.published = 0, map[string]int{}
		} else if err != nil {
			return p.s.failure(err)
		}
	}
	if p.lease == 0 {
		granted, err := p.s.cli.Grant(ctx, int64(PresenceTTL/time.Second))
		if err != nil {
			return p.s.failure(err)
		}
		p.lease, p.published = granted.ID, map[string]int{}
	}
	var ops []clientv3.Op
	for fp, n := range counts {
		if n > 0 && p.published[fp] != n {
			ops = append(ops, clientv3.OpPut(p.sessionKey(fp), strconv.Itoa(n), clientv3.WithLease(p.lease)))
		}
	}
	for fp := range p.published {
		if counts[fp] <= 0 {
			ops = append(ops, clientv3.OpDelete(p.sessionKey(fp)))
		}
	}
	for len(ops) > 0 {
		batch := ops[:min(len(ops), maxPresenceOps)]
		if _, err := p.s.cli.Txn(ctx).Then(batch...).Commit(); err != nil {
			// Which batches landed is unknown: publish everything next round.
			p.published = map[string]int{}
			return p.s.failure(err)
		}
		ops = ops[len(batch):]
	}
	p.published = maps.Clone(counts)
	maps.DeleteFunc(p.published, func(_ string, n int) bool { return n <= 0 })
	return nil
}

// withdraw revokes the lease, taking its keys with it, so a gateway that
// stops shows nothing at once rather than within the TTL.
func (p *Presence) withdraw() {
	ctx, cancel := p.s.context()
	defer cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lease == 0 {
		return
	}
	if _, err := p.s.cli.Revoke(ctx, p.lease); err != nil {
		p.log.Info("withdraw session counts; they vanish within the TTL", "ttl", PresenceTTL, "err", p.s.failure(err))
	}
	p.lease = 0
}

func (p *Presence) sessionKey(fp string) string {
	return p.s.prefix + sessionsDir + fp + "/" + p.id
}

// SessionsElsewhere counts the person's live sessions on the other
// gateways, as they last published them.
func (p *Presence) SessionsElsewhere(fingerprint string) (int, error) {
	kvs, err := p.s.list(sessionsDir + fingerprint + "/")
	if err != nil {
		return 0, err
	}
	total := 0
	for _, kv := range kvs {
		if strings.HasSuffix(string(kv.Key), "/"+p.id) {
			continue
		}
		n, err := strconv.Atoi(string(kv.Value))
		if err != nil {
			return 0, fmt.Errorf("%s: %q is not a count", kv.Key, kv.Value)
		}
		total += n
	}
	return total, nil
}

// Tell publishes a notice to the person's sessions on the other gateways:
// a warning, or with end, the end of their sessions.
func (p *Presence) Tell(fingerprint, message string, end bool) error {
	raw, err := json.Marshal(notice{From: p.id, Message: message, End: end})
	if err != nil {
		return fmt.Errorf("encode notice: %w", err)
	}
	p.mu.Lock()
	id := p.lease
	p.mu.Unlock()
	if id == 0 {
		return errors.New("tell the other gateways: no presence lease yet (is etcd reachable?)")
	}
	ctx, cancel := p.s.context()
	defer cancel()
	if _, err := p.s.cli.Put(ctx, p.s.prefix+noticesDir+fingerprint, string(raw), clientv3.WithLease(id)); err != nil {
		return p.s.failure(err)
	}
	return nil
}

// watch delivers every notice put from now on by another gateway, until
// ctx ends. A watch that breaks (no leader, a member gone) is made again
// from the revision after the last one seen, so no notice is lost unless
// the cluster compacted past it meanwhile.
func (p *Presence) watch(ctx context.Context, deliver func(fingerprint, message string, end bool)) {
	var next int64 // 0: from now
	var backoff time.Duration
	for ctx.Err() == nil {
		opts := []clientv3.OpOption{clientv3.WithPrefix()}
		if next > 0 {
			opts = append(opts, clientv3.WithRev(next))
		}
		for resp := range p.s.cli.Watch(clientv3.WithRequireLeader(ctx), p.s.prefix+noticesDir, opts...) {
			if resp.CompactRevision > 0 {
				p.log.Warn("notices compacted away while the watch was down; watching from now", "compacted", resp.CompactRevision)
				next = 0
				break
			}
			if err := resp.Err(); err != nil {
				p.log.Info("notice watch broke; watching again", "err", err)
				break
			}
			backoff = 0
			next = resp.Header.Revision + 1
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				var n notice
				if err := json.Unmarshal(ev.Kv.Value, &n); err != nil {
					p.log.Warn("notice does not decode", "key", string(ev.Kv.Key), "err", err)
					continue
				}
				if n.From != p.id {
					deliver(strings.TrimPrefix(string(ev.Kv.Key), p.s.prefix+noticesDir), n.Message, n.End)
				}
			}
		}
		// Bounded, growing waits while the cluster cannot serve a watch.
		backoff = min(max(2*backoff, 100*time.Millisecond), 2*time.Second)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
}
