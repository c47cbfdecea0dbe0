// Package etcd is the lease store kept in an etcd cluster, so several
// gateways share one state (issue 15). bbolt (package bolt) stays the
// store of a single gateway; this one is chosen by --etcd-endpoints.
//
// Every key lies under a prefix (DefaultPrefix unless told otherwise), as
// this tree:
//
//	<prefix>meta/schema_version      "1", decimal
//	<prefix>meta/events_seq          the newest event's sequence, decimal
//	<prefix>meta/refusals_seq        the newest refusal count's sequence
//	<prefix>leases/<fingerprint>     JSON of lease.Lease
//	<prefix>people/<fingerprint>     JSON of lease.Person (secrets sealed)
//	<prefix>pool/<id>                JSON of lease.PoolMachine
//	<prefix>events/<sequence>        JSON of lease.Event, the sequence as 20
//	                                 decimal digits, so key order is time order
//	<prefix>refusals/<sequence>      JSON of lease.Refusal, keyed as events
//	<prefix>sessions/, notices/      what gateways show each other (presence.go)
//
// Values are the JSON bolt keeps, so moving a gateway's state from one
// store to the other (`gateway store export` and `import`) copies records
// as they are.
//
// # Writes
//
// Each Store write is one etcd transaction: a lease and its events, a
// pool record and its lease and events, commit together or not at all.
// Appending to a log (events, refusals) reads its sequence key first and
// makes the transaction conditional on that key's mod revision, so two
// gateways appending at once never take one sequence: the one that loses
// reads again and retries (at most maxAttempts times, within the call's
// timeout). The same transaction deletes every record more than the log's
// bound behind the newest one, so a log never holds more than its bound
// after any write. Each change of a pool record's state is a compare-and-set
// on that record's mod revision, read in the same attempt as its state.
//
// # Failures
//
// Every call has a deadline (Config.Timeout) and asks for a leader
// (clientv3.WithRequireLeader), so a cluster without quorum fails calls
// within the deadline instead of waiting. Such errors wrap
// lease.ErrStoreUnavailable; other etcd errors, and records that do not
// decode, wrap lease.ErrStoreFailed. A transaction that failed that way
// may still have been applied (etcd applies a write whose answer was lost,
// say when its leader died), so a failed write is never retried blindly:
// it is reported, and the caller's next write starts from what it reads.
// A transaction is applied whole or not at all, so nothing is half-written.
package etcd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// DefaultPrefix is where the store keeps its keys unless told otherwise.
const DefaultPrefix = "/cc-gateway/"

// DefaultTimeout bounds each call: what a person waits at most before
// "temporarily unavailable" when the cluster has lost its quorum.
const DefaultTimeout = 5 * time.Second

// schemaVersion is the layout this binary writes and understands.
const schemaVersion = 1

// EventLimit and RefusalLimit bound the logs, as bolt's do.
const (
	EventLimit   = 10000
	RefusalLimit = 10000
)

// maxAttempts bounds the compare-and-set attempts of one write: each lost
// attempt means another writer changed the same log or record meanwhile.
const maxAttempts = 50

// Key names of the tree drawn in the package comment, under the prefix.
const (
	schemaVersionKey = "meta/schema_version"
	leasesDir        = "leases/"
	peopleDir        = "people/"
	poolDir          = "pool/"
)

// A seqLog is a bounded, sequence-keyed list of records.
type seqLog struct {
	dir     string // events/ or refusals/
	seqKey  string // meta/events_seq or meta/refusals_seq
	records string // names the records in errors
}

var (
	eventsLog   = seqLog{dir: "events/", seqKey: "meta/events_seq", records: "events"}
	refusalsLog = seqLog{dir: "refusals/", seqKey: "meta/refusals_seq", records: "refusals"}
)

// ErrNewerSchema means the keys were written by a newer gateway.
var ErrNewerSchema = errors.New("written by a newer gateway")

// Config says how to reach the cluster.
type Config struct {
	Endpoints []string    // client URLs of the members
	Prefix    string      // DefaultPrefix when empty; must end in "/"
	TLS       *tls.Config // nil: plain connections
	Timeout   time.Duration
}

// Store is a lease store in etcd. It is safe for concurrent use, and
// several gateways may use one prefix at once.
type Store struct {
	cli          *clientv3.Client
	prefix       string
	endpoints    string
	timeout      time.Duration
	eventLimit   int
	refusalLimit int
}

var (
	_ lease.Store     = (*Store)(nil)
	_ lease.PoolStore = (*Store)(nil)
)

// Open connects to the cluster and checks (on a fresh prefix: writes) the
// schema version.
func Open(cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("open etcd store: no endpoints")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("open etcd store: prefix %q does not end in /", cfg.Prefix)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: cfg.Endpoints, DialTimeout: cfg.Timeout, TLS: cfg.TLS, Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("open etcd store %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	s := &Store{
		cli: cli, prefix: cfg.Prefix, endpoints: strings.Join(cfg.Endpoints, ","), timeout: cfg.Timeout,
		eventLimit: EventLimit, refusalLimit: RefusalLimit,
	}
	if err := s.prepare(); err != nil {
		_ = cli.Close()
		if cfg.TLS != nil && errors.Is(err, lease.ErrStoreUnavailable) {
			if problem := tlsProblem(cfg.Endpoints, cfg.TLS, cfg.Timeout); problem != nil {
				return nil, fmt.Errorf("open etcd store %s under %s: %w", s.endpoints, s.prefix, problem)
			}
		}
		return nil, fmt.Errorf("open etcd store %s under %s: %w", s.endpoints, s.prefix, err)
	}
	return s, nil
}

// prepare writes the schema version under a fresh prefix and refuses a
// prefix of a newer gateway, or one that holds keys of something else.
func (s *Store) prepare() error {
	ctx, cancel := s.context()
	defer cancel()
	key := s.prefix + schemaVersionKey
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpGet(s.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return s.failure(err)
	}
	if resp.Succeeded {
		if n := resp.Responses[0].GetResponseRange().Count; n > 0 {
			return fmt.Errorf("the prefix holds %d keys but no %s: it is not a gateway's; choose another --etcd-prefix", n, schemaVersionKey)
		}
		// Another gateway may initialise the same prefix at once: the
		// create-only put lets one write it, and both then agree.
		if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, strconv.Itoa(schemaVersion))).Commit(); err != nil {
			return s.failure(err)
		}
		return nil
	}
	raw := string(resp.Responses[0].GetResponseRange().Kvs[0].Value)
	version, err := strconv.Atoi(raw)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %s holds %q, not a version", lease.ErrStoreFailed, schemaVersionKey, raw)
	case version > schemaVersion:
		return fmt.Errorf("%w (schema version %d; this gateway knows up to %d): run the newer gateway", ErrNewerSchema, version, schemaVersion)
	}
	return nil
}

// Close ends the connections to the cluster.
func (s *Store) Close() error {
	if err := s.cli.Close(); err != nil {
		return fmt.Errorf("close etcd store %s: %w", s.endpoints, err)
	}
	return nil
}

// Healthy asks the cluster for the schema version: nil when a member with
// a leader answers in time. It is the line /readyz shows.
func (s *Store) Healthy() error {
	ctx, cancel := s.context()
	defer cancel()
	if _, err := s.cli.Get(ctx, s.prefix+schemaVersionKey); err != nil {
		return s.failure(err)
	}
	return nil
}

// context bounds one call, and asks for a leader so a member cut off from
// the quorum answers "no leader" rather than hold the call.
func (s *Store) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(clientv3.WithRequireLeader(context.Background()), s.timeout)
}

// failure wraps an etcd error in the domain's: unavailable when the
// cluster cannot serve now, failed otherwise.
func (s *Store) failure(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
		return fmt.Errorf("%w: etcd %s: no answer within %s (are a majority of its members up and reachable?): %w", lease.ErrStoreUnavailable, s.endpoints, s.timeout, err)
	}
	if unavailable(err) {
		return fmt.Errorf("%w: etcd %s: %w", lease.ErrStoreUnavailable, s.endpoints, err)
	}
	return fmt.Errorf("%w: etcd %s: %w", lease.ErrStoreFailed, s.endpoints, err)
}

// unavailable reports whether err is how the etcd client says the cluster
// cannot serve: no leader, no member answering, or no answer in time.
func unavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrTimeout) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) || errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// get reads one key: nil when it is absent.
func (s *Store) get(key string) (*mvccpb.KeyValue, error) {
	ctx, cancel := s.context()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+key)
	if err != nil {
		return nil, s.failure(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0], nil
}

// list reads every key under dir, in key order.
func (s *Store) list(dir string, opts ...clientv3.OpOption) ([]*mvccpb.KeyValue, error) {
	ctx, cancel := s.context()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+dir, append([]clientv3.OpOption{clientv3.WithPrefix()}, opts...)...)
	if err != nil {
		return nil, s.failure(err)
	}
	return resp.Kvs, nil
}

// decode reads a record's JSON; a record that does not decode is damaged.
func decode(kv *mvccpb.KeyValue, v any) error {
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return fmt.Errorf("%w: record %s is damaged: %w", lease.ErrStoreFailed, kv.Key, err)
	}
	return nil
}

// change is what one attempt of a write does: the conditions it needs and
// the operations it commits, beside the records it appends to a log.
type change struct {
	cmps []clientv3.Cmp
	ops  []clientv3.Op
}

// write commits one change and its log records in one transaction. plan
// reads what the change depends on (with ctx, the write's deadline) and
// returns the change, or an error that ends the write; it runs again
// after an attempt another writer beat.
func (s *Store) write(l seqLog, records [][]byte, plan func(ctx context.Context) (change, error)) error {
	ctx, cancel := s.context()
	defer cancel()
	for range maxAttempts {
		c, err := plan(ctx)
		if err != nil {
			return err
		}
		if len(records) > 0 {
			cmp, ops, err := s.appendOps(ctx, l, records)
			if err != nil {
				return err
			}
			c.cmps, c.ops = append(c.cmps, cmp), append(c.ops, ops...)
		}
		resp, err := s.cli.Txn(ctx).If(c.cmps...).Then(c.ops...).Commit()
		if err != nil {
			return s.failure(err)
		}
		if resp.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("%w: other writes came first %d times", lease.ErrStoreUnavailable, maxAttempts)
}

// appendOps returns what appends records to l after its newest sequence
// as read now: the condition that nobody appended meanwhile, the puts,
// the new sequence, and the deletion of every record beyond l's bound.
func (s *Store) appendOps(ctx context.Context, l seqLog, records [][]byte) (clientv3.Cmp, []clientv3.Op, error) {
	seqKey := s.prefix + l.seqKey
	resp, err := s.cli.Get(ctx, seqKey)
	if err != nil {
		return clientv3.Cmp{}, nil, s.failure(err)
	}
	var seq, rev int64
	if len(resp.Kvs) == 1 {
		rev = resp.Kvs[0].ModRevision
		if seq, err = strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64); err != nil {
			return clientv3.Cmp{}, nil, fmt.Errorf("%w: %s holds %q, not a sequence", lease.ErrStoreFailed, l.seqKey, resp.Kvs[0].Value)
		}
	}
	limit := s.limit(l)
	newest := seq + int64(len(records))
	// The oldest sequence kept: records before it are deleted, and those of
	// this write before it are never put (etcd refuses a transaction that
	// puts a key it also deletes).
	oldest := max(newest-int64(limit)+1, 1)
	ops := []clientv3.Op{clientv3.OpPut(seqKey, strconv.FormatInt(newest, 10))}
	for i, raw := range records {
		if n := seq + 1 + int64(i); n >= oldest {
			ops = append(ops, clientv3.OpPut(s.logKey(l, n), string(raw)))
		}
	}
	if oldest > 1 {
		ops = append(ops, clientv3.OpDelete(s.prefix+l.dir, clientv3.WithRange(s.logKey(l, oldest))))
	}
	return clientv3.Compare(clientv3.ModRevision(seqKey), "=", rev), ops, nil
}

func (s *Store) limit(l seqLog) int {
	if l == refusalsLog {
		return s.refusalLimit
	}
	return s.eventLimit
}

func (s *Store) logKey(l seqLog, seq int64) string {
	return fmt.Sprintf("%s%s%020d", s.prefix, l.dir, seq)
}

// unconditional is the plan of a write that depends on nothing it reads.
func unconditional(ops ...clientv3.Op) func(context.Context) (change, error) {
	return func(context.Context) (change, error) { return change{ops: ops}, nil }
}

// Get returns the lease of fingerprint, or an error wrapping lease.ErrNotFound.
func (s *Store) Get(fingerprint string) (lease.Lease, error) {
	var l lease.Lease
	kv, err := s.get(leasesDir + fingerprint)
	if err == nil && kv == nil {
		err = lease.ErrNotFound
	}
	if err == nil {
		err = decode(kv, &l)
	}
	if err != nil {
		return lease.Lease{}, fmt.Errorf("get lease %s: %w", fingerprint, err)
	}
	return l, nil
}

// Put writes l and appends events, in one transaction.
func (s *Store) Put(l lease.Lease, events ...lease.Event) error {
	if l.Fingerprint == "" {
		return errors.New("put lease: lease has no fingerprint")
	}
	raw, rawEvents, err := encodeWith(l, events)
	if err != nil {
		return fmt.Errorf("put lease %s: %w", l.Fingerprint, err)
	}
	if err := s.write(eventsLog, rawEvents, unconditional(clientv3.OpPut(s.prefix+leasesDir+l.Fingerprint, raw))); err != nil {
		return fmt.Errorf("put lease %s: %w", l.Fingerprint, err)
	}
	return nil
}

// Delete removes the lease of fingerprint (absent is no error) and appends
// events, in one transaction.
func (s *Store) Delete(fingerprint string, events ...lease.Event) error {
	rawEvents, err := encodeAll(events, eventName)
	if err != nil {
		return fmt.Errorf("delete lease %s: %w", fingerprint, err)
	}
	if err := s.write(eventsLog, rawEvents, unconditional(clientv3.OpDelete(s.prefix+leasesDir+fingerprint))); err != nil {
		return fmt.Errorf("delete lease %s: %w", fingerprint, err)
	}
	return nil
}

// List returns every lease, sorted by fingerprint (etcd's key order).
func (s *Store) List() ([]lease.Lease, error) {
	all, err := listAll[lease.Lease](s, leasesDir)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return all, nil
}

// People returns what every person keeps, sorted by fingerprint.
func (s *Store) People() ([]lease.Person, error) {
	all, err := listAll[lease.Person](s, peopleDir)
	if err != nil {
		return nil, fmt.Errorf("list people: %w", err)
	}
	return all, nil
}

func listAll[T any](s *Store, dir string) ([]T, error) {
	kvs, err := s.list(dir)
	if err != nil {
		return nil, err
	}
	all := make([]T, 0, len(kvs))
	for _, kv := range kvs {
		var v T
		if err := decode(kv, &v); err != nil {
			return nil, err
		}
		all = append(all, v)
	}
	return all, nil
}

// Person returns what the person of fingerprint keeps apart from leases:
// only the fingerprint when they keep nothing.
func (s *Store) Person(fingerprint string) (lease.Person, error) {
	p := lease.Person{Fingerprint: fingerprint}
	kv, err := s.get(peopleDir + fingerprint)
	if err == nil && kv != nil {
		err = decode(kv, &p)
	}
	if err != nil {
		return lease.Person{}, fmt.Errorf("get person %s: %w", fingerprint, err)
	}
	return p, nil
}

// PutPerson writes p and appends events, in one transaction.
func (s *Store) PutPerson(p lease.Person, events ...lease.Event) error {
	if p.Fingerprint == "" {
		return errors.New("put person: no fingerprint")
	}
	raw, rawEvents, err := encodeWith(p, events)
	if err != nil {
		return fmt.Errorf("put person %s: %w", p.Fingerprint, err)
	}
	if err := s.write(eventsLog, rawEvents, unconditional(clientv3.OpPut(s.prefix+peopleDir+p.Fingerprint, raw))); err != nil {
		return fmt.Errorf("put person %s: %w", p.Fingerprint, err)
	}
	return nil
}

// AppendEvent adds e to the audit log, dropping the oldest events beyond
// the store's limit.
func (s *Store) AppendEvent(e lease.Event) error {
	raw, err := encodeAll([]lease.Event{e}, eventName)
	if err == nil {
		err = s.write(eventsLog, raw, unconditional())
	}
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	return nil
}

// Events returns the newest n events (all of them when n <= 0), oldest
// first.
func (s *Store) Events(n int) ([]lease.Event, error) {
	events, err := newest[lease.Event](s, eventsLog, n)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return events, nil
}

// AppendRefusals adds counts of refused connections in one transaction,
// dropping the oldest beyond the store's refusal limit.
func (s *Store) AppendRefusals(rs []lease.Refusal) error {
	raw, err := encodeAll(rs, func(r lease.Refusal) string { return "refusals of " + r.Source })
	if err == nil && len(raw) > 0 {
		err = s.write(refusalsLog, raw, unconditional())
	}
	if err != nil {
		return fmt.Errorf("append refusals: %w", err)
	}
	return nil
}

// Refusals returns the newest n refusal counts (all of them when n <= 0),
// oldest first.
func (s *Store) Refusals(n int) ([]lease.Refusal, error) {
	rs, err := newest[lease.Refusal](s, refusalsLog, n)
	if err != nil {
		return nil, fmt.Errorf("list refusals: %w", err)
	}
	return rs, nil
}

// newest decodes the newest n records of l (all of them when n <= 0),
// oldest first.
func newest[T any](s *Store, l seqLog, n int) ([]T, error) {
	opts := []clientv3.OpOption{clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if n > 0 {
		opts = append(opts, clientv3.WithLimit(int64(n)))
	}
	kvs, err := s.list(l.dir, opts...)
	if err != nil {
		return nil, err
	}
	records := make([]T, 0, len(kvs))
	for _, kv := range kvs {
		var r T
		if err := decode(kv, &r); err != nil {
			return nil, err
		}
		records = append(records, r)
	}
	slices.Reverse(records)
	return records, nil
}

func eventName(e lease.Event) string { return "event " + e.Kind }

// encodeWith encodes a record and its events before a write starts.
func encodeWith(record any, events []lease.Event) (string, [][]byte, error) {
	raw, err := json.Marshal(record)
	if err != nil {
		return "", nil, fmt.Errorf("encode: %w", err)
	}
	rawEvents, err := encodeAll(events, eventName)
	if err != nil {
		return "", nil, err
	}
	return string(raw), rawEvents, nil
}

// encodeAll encodes records as JSON; what names a record in an error.
func encodeAll[T any](records []T, what func(T) string) ([][]byte, error) {
	raw := make([][]byte, len(records))
	for i, r := range records {
		var err error
		if raw[i], err = json.Marshal(r); err != nil {
			return nil, fmt.Errorf("encode %s: %w", what(r), err)
		}
	}
	return raw, nil
}
