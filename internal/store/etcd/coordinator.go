package etcd

import (
	"context"
	"fmt"
	"math"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Where the coordination keeps its keys, under the prefix, beside the
// store's tree (package comment). Each key is bound to an etcd lease of
// the Coordinator's TTL, kept alive by its gateway, so it vanishes with a
// dead gateway.
const (
	locksDir  = "locks/"  // locks/<fingerprint>/<lease id>: a person's lock and its waiters
	leaderDir = "leader/" // leader/<lease id>: the election; the oldest key leads
)

// DefaultLeaderTTL is how long a dead gateway's leadership and locks
// outlive it: the longest a failover waits.
const DefaultLeaderTTL = 15 * time.Second

// Coordinator is the lease.Coordinator of the gateways sharing a prefix,
// built on etcd's concurrency recipes: a person's lock is a
// concurrency.Mutex, the leadership a concurrency.Election.
//
// Each lock and each candidacy has a session (an etcd lease) of its own,
// so ending one never ends another: unlocking revokes the lock's session,
// and if that fails (quorum lost) the session lapses after its TTL
// because nobody keeps it alive any more. A gateway that cannot reach
// the cluster for a TTL loses its leadership: its session's keep-alive
// ends, and with it the context Lead returned, which stops its passes.
type Coordinator struct {
	s    *Store
	ttl  int    // seconds, as etcd leases count
	name string // this gateway, the value of its candidacy, for operators
}

var _ lease.Coordinator = (*Coordinator)(nil)

// Coordinator returns the coordination of the gateways sharing s's
// prefix. ttl (DefaultLeaderTTL when zero) is rounded up to whole seconds;
// name says which gateway leads to someone reading the keys.
func (s *Store) Coordinator(ttl time.Duration, name string) *Coordinator {
	if ttl <= 0 {
		ttl = DefaultLeaderTTL
	}
	return &Coordinator{s: s, ttl: int(math.Ceil(ttl.Seconds())), name: name}
}

// session grants an etcd lease of the TTL, within the store's timeout,
// and keeps it alive until the session is closed or lapses.
func (c *Coordinator) session(ctx context.Context) (*concurrency.Session, error) {
	gctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), c.s.timeout)
	defer cancel()
	grant, err := c.s.cli.Grant(gctx, int64(c.ttl))
	if err != nil {
		return nil, c.failure(ctx, err)
	}
	// The keep-alive must outlive the grant's deadline, so the session
	// gets a context of its own: Close ends it.
	sess, err := concurrency.NewSession(c.s.cli, concurrency.WithLease(grant.ID),
		concurrency.WithTTL(c.ttl), concurrency.WithContext(context.Background()))
	if err != nil {
		return nil, c.failure(ctx, err)
	}
	return sess, nil
}

// failure is ctx's error when ctx ended (the caller gave up), else the
// store's wrapping of err.
func (c *Coordinator) failure(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return c.s.failure(err)
}

// Lock takes the person's lock, waiting in turn while other gateways
// hold it, until ctx ends.
func (c *Coordinator) Lock(ctx context.Context, fingerprint string) (func(), error) {
	sess, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	mu := concurrency.NewMutex(sess, c.s.prefix+locksDir+fingerprint)
	if err := mu.Lock(clientv3.WithRequireLeader(ctx)); err != nil {
		_ = sess.Close()
		return nil, c.failure(ctx, err)
	}
	// Revoking the session deletes the lock's key: the next in line goes.
	return func() { _ = sess.Close() }, nil
}

// Lead campaigns until this gateway leads or ctx ends. The context it
// returns ends when the session lapses (the cluster out of reach for a
// TTL) or ctx ends; resign hands the leadership on at once.
func (c *Coordinator) Lead(ctx context.Context) (context.Context, func(), error) {
	sess, err := c.session(ctx)
	if err != nil {
		return nil, nil, err
	}
	e := concurrency.NewElection(sess, c.s.prefix+leaderDir)
	if err := e.Campaign(clientv3.WithRequireLeader(ctx), c.name); err != nil {
		_ = sess.Close()
		return nil, nil, fmt.Errorf("campaign as %s: %w", c.name, c.failure(ctx, err))
	}
	leading, stop := context.WithCancel(ctx)
	go func() {
		select {
		case <-sess.Done():
		case <-leading.Done():
		}
		stop()
	}()
	resign := func() {
		stop()
		// Closing the session deletes the candidacy's key, so the next
		// candidate leads now rather than after the TTL.
		_ = sess.Close()
	}
	return leading, resign, nil
}
