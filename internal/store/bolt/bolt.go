// Package bolt is the lease.Store kept in one bbolt file.
//
// The file holds this bucket tree:
//
//	root
//	├── meta                      bucket
//	│   └── schema_version        uint64, 8 bytes big-endian (currently 5)
//	├── leases                    bucket
//	│   └── <fingerprint>         JSON of lease.Lease, key "SHA256:…"
//	├── events                    bucket, the audit log
//	│   └── <sequence>            JSON of lease.Event, key uint64 big-endian,
//	│                             so byte order is time order
//	├── refusals                  bucket, counts of refused connections
//	│   └── <sequence>            JSON of lease.Refusal, keyed as events
//	├── people                    bucket, what people keep apart from leases
//	│   └── <fingerprint>         JSON of lease.Person (secrets sealed)
//	└── pool                      bucket, the warm pool's machines
//	    └── <id>                  JSON of lease.PoolMachine
//
// Schema history:
//
//	v0  only the leases bucket, no meta bucket (early development builds)
//	v1  meta bucket with schema_version added
//	v2  events bucket added
//	v3  refusals bucket added: refused connections leave the events bucket
//	v4  people bucket added (notification targets, sealed secrets)
//	v5  pool bucket added (the warm pool)
//
// Open checks schema_version. A file written by a newer gateway is refused
// untouched; an older file is first copied to <path>.v<N>.bak and then
// migrated in a single transaction, so a failed migration leaves it as it was.
//
// Adding a bucket means: name it below, create it in initialise, append a
// migration that creates it in existing files, and bump schemaVersion.
//
// The events bucket keeps at most EventLimit events: appending one more
// drops the oldest. The refusals bucket has its own bound, RefusalLimit, so
// strangers cannot push events out.
//
// Open runs bbolt's consistency check over the whole file first and refuses
// a damaged one (ErrDamaged), naming the newest backup. At run time a
// transaction that fails (or panics inside bbolt on a damaged page) is
// logged once, makes Healthy report the failure, and returns an error
// wrapping lease.ErrStoreFailed.
package bolt

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	bbolterrors "go.etcd.io/bbolt/errors"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// Bucket and key names of the tree drawn in the package comment.
var (
	metaBucket       = []byte("meta")
	schemaVersionKey = []byte("schema_version")
	leasesBucket     = []byte("leases")
	eventsBucket     = []byte("events")
	refusalsBucket   = []byte("refusals")
	peopleBucket     = []byte("people")
	poolBucket       = []byte("pool")
)

// schemaVersion is the layout this binary writes and understands.
const schemaVersion = 5

// migrations[n] turns a version n file into a version n+1 file, so
// len(migrations) must equal schemaVersion.
var migrations = []func(tx *bbolt.Tx) error{
	migrateV0ToV1,
	migrateV1ToV2,
	migrateV2ToV3,
	migrateV3ToV4,
	migrateV4ToV5,
}

// EventLimit is how many audit events the store keeps.
const EventLimit = 10000

// RefusalLimit is how many refusal counts the store keeps: each is one
// source's refusals in one minute.
const RefusalLimit = 10000

// lockTimeout bounds the wait for the file lock; bbolt otherwise waits forever
// when another process holds the file.
const lockTimeout = time.Second

// ErrInUse means another process holds the database file open.
var ErrInUse = errors.New("in use by another gateway process")

// ErrNewerSchema means the file was written by a newer gateway than this one.
var ErrNewerSchema = errors.New("written by a newer gateway")

// ErrDamaged means the file failed bbolt's consistency check at open.
var ErrDamaged = errors.New("damaged")

// checkTimeout bounds the consistency check at open; a gateway's database
// (leases and a bounded audit log) takes milliseconds.
const checkTimeout = 30 * time.Second

// Store is a lease.Store on a bbolt file. It is safe for concurrent use.
type Store struct {
	db           *bbolt.DB
	path         string
	eventLimit   int
	refusalLimit int
	// failure is the first failure of a transaction at run time; once
	// set, the store is no longer healthy.
	failure atomic.Pointer[error]
}

var _ lease.Store = (*Store)(nil)

// Open opens or creates the database at path (mode 0600, its directory 0700,
// both tightened if they are looser) and brings its schema up to date.
func Open(path string) (*Store, error) {
	return open(path, lockTimeout)
}

func open(path string, timeout time.Duration) (*Store, error) {
	if err := privateDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: timeout})
	if errors.Is(err, bbolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open store: %s is %w; stop the other gateway or choose another --data-dir", path, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, path: path, eventLimit: EventLimit, refusalLimit: RefusalLimit}
	if err := s.check(checkTimeout); err != nil {
		return nil, err
	}
	if err := s.prepare(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// check runs bbolt's consistency check on the whole file, so a damaged
// database is refused at start instead of failing (or panicking inside
// bbolt) at the first login that reads the damaged page. It closes the
// database when it refuses, except after a timeout: the check still holds
// its transaction then, and the file stays locked until the process ends.
func (s *Store) check(timeout time.Duration) error {
	tx, err := s.db.Begin(false)
	if err != nil {
		_ = s.db.Close()
		return fmt.Errorf("check store %s: %w", s.path, err)
	}
	problems := tx.Check()
	var first []string // the first few problems: enough to tell
	total := 0
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for checking := true; checking; {
		select {
		case err, ok := <-problems:
			if !ok {
				checking = false
				continue
			}
			if total++; len(first) < 3 {
				first = append(first, err.Error())
			}
		case <-timer.C:
			go func() {
				for range problems { // the check ends only once its problems are read
				}
				_ = tx.Rollback()
			}()
			return fmt.Errorf("check store %s: the consistency check did not finish within %s; the disk may be failing. %s",
				s.path, timeout, s.restoreHint())
		}
	}
	_ = tx.Rollback()
	if total == 0 {
		return nil
	}
	_ = s.db.Close()
	return fmt.Errorf("open store: %s is %w: %d problems, the first: %s. %s",
		s.path, ErrDamaged, total, strings.Join(first, "; "), s.restoreHint())
}

// restoreHint tells the operator what to do with a database that cannot
// be used, naming the newest backup this store made.
func (s *Store) restoreHint() string {
	hint := "With the gateway stopped, move the file aside and restore your newest backup of it"
	if b := newestBackup(s.path); b != "" {
		hint += fmt.Sprintf("; the newest copy the gateway made itself (before a schema migration) is %s", b)
	}
	return hint + "; without any backup, start on an empty database (see docs/operations.md, Lease database)"
}

// newestBackup is the newest of the copies migrate makes, or "".
func newestBackup(path string) string {
	matches, _ := filepath.Glob(path + ".v*.bak")
	newest, at := "", time.Time{}
	for _, m := range matches {
		if info, err := os.Stat(m); err == nil && info.ModTime().After(at) {
			newest, at = m, info.ModTime()
		}
	}
	return newest
}

// Healthy returns nil while every transaction has worked, and otherwise
// the first failure, naming the database (it is the line /readyz shows):
// the database is damaged or its disk failing, and the gateway is not
// ready until the operator repairs it and restarts.
func (s *Store) Healthy() error {
	if err := s.failure.Load(); err != nil {
		return fmt.Errorf("%w: %s: %w", lease.ErrStoreFailed, s.path, *err)
	}
	return nil
}

// view and update run a transaction as bbolt's View and Update do, turning
// a panic inside bbolt (a damaged page) into an error. A failure other
// than a missing lease or a taken pool machine makes the store unhealthy and is logged once; the
// error wraps lease.ErrStoreFailed, so people are told what happened.
func (s *Store) view(fn func(*bbolt.Tx) error) error {
	return s.guard(func() error { return s.db.View(fn) })
}

func (s *Store) update(fn func(*bbolt.Tx) error) error {
	return s.guard(func() error { return s.db.Update(fn) })
}

func (s *Store) guard(run func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt panicked, the file is damaged: %v", r)
		}
		// A missing lease or a pool machine already taken is an answer,
		// not a failure of the database.
		if err == nil || errors.Is(err, lease.ErrNotFound) || errors.Is(err, lease.ErrPoolMachineTaken) {
			return
		}
		if failure := err; s.failure.CompareAndSwap(nil, &failure) {
			slog.Error("store: the lease database failed; the gateway is not ready until it is repaired and restarted",
				"path", s.path, "err", err, "hint", s.restoreHint())
		}
		err = fmt.Errorf("%w: %s: %w", lease.ErrStoreFailed, s.path, err)
	}()
	return run()
}

// privateDir creates dir 0700, or tightens an existing one to 0700: beside
// the database it holds the upstream key and, in local mode, the machines'
// folders, and nobody but the gateway's user may list or enter it.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data folder %s: %w", dir, err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("stat data folder %s: %w", dir, err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("data folder %s is open to others (mode %v) and cannot be restricted: %w", dir, perm, err)
		}
		slog.Warn("store: restricted data folder mode to 0700", "path", dir, "was", perm.String())
	}
	return nil
}

// prepare tightens the file mode and brings the schema to schemaVersion.
func (s *Store) prepare() error {
	// Leases hold machine host private keys: nobody but us may read them.
	info, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("stat store %s: %w", s.path, err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(s.path, 0o600); err != nil {
			return fmt.Errorf("store %s is readable by others (mode %v) and cannot be restricted: %w", s.path, perm, err)
		}
		slog.Warn("store: restricted database file mode to 0600", "path", s.path, "was", perm.String())
	}

	version, fresh, err := s.version()
	if err != nil {
		return err
	}
	switch {
	case fresh:
		if err := s.db.Update(initialise); err != nil {
			return fmt.Errorf("initialise store %s: %w", s.path, err)
		}
		return nil
	case version > schemaVersion:
		return fmt.Errorf("open store: %s was %w (schema version %d; this gateway knows up to %d); run the newer gateway or restore a backup",
			s.path, ErrNewerSchema, version, schemaVersion)
	case version < schemaVersion:
		return s.migrate(version)
	}
	return nil
}

// version reads the schema version. A file without any bucket is fresh; one
// with buckets but no meta bucket predates schema versions, so it is v0.
func (s *Store) version() (version uint64, fresh bool, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bbolt.Bucket) error {
				empty = false
				return nil
			})
			fresh = empty
			return nil
		}
		raw := meta.Get(schemaVersionKey)
		if len(raw) != 8 {
			return fmt.Errorf("%s/%s holds %d bytes, want 8", metaBucket, schemaVersionKey, len(raw))
		}
		version = binary.BigEndian.Uint64(raw)
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("read schema version of store %s: %w", s.path, err)
	}
	return version, fresh, nil
}

func initialise(tx *bbolt.Tx) error {
	for _, name := range [][]byte{metaBucket, leasesBucket, eventsBucket, refusalsBucket, peopleBucket, poolBucket} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return putVersion(tx, schemaVersion)
}

func putVersion(tx *bbolt.Tx, version uint64) error {
	meta, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", metaBucket, err)
	}
	raw := make([]byte, 8)
	binary.BigEndian.PutUint64(raw, version)
	if err := meta.Put(schemaVersionKey, raw); err != nil {
		return fmt.Errorf("write schema version: %w", err)
	}
	return nil
}

// migrate backs the file up as it is, then runs every migration from `from`
// to schemaVersion in one transaction.
func (s *Store) migrate(from uint64) error {
	backup := fmt.Sprintf("%s.v%d.bak", s.path, from)
	if err := s.backup(backup); err != nil {
		return fmt.Errorf("back up store %s before migrating: %w", s.path, err)
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for v := from; v < schemaVersion; v++ {
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("migrate from schema version %d: %w", v, err)
			}
		}
		return putVersion(tx, schemaVersion)
	})
	if err != nil {
		return fmt.Errorf("migrate store %s (a copy of the original is at %s): %w", s.path, backup, err)
	}
	slog.Info("store: migrated database", "path", s.path, "from", from, "to", schemaVersion, "backup", backup)
	return nil
}

// backup writes a consistent copy of the database to path, replacing any
// earlier copy only once the new one is complete.
func (s *Store) backup(path string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = s.db.View(func(tx *bbolt.Tx) error {
		_, err := tx.WriteTo(f)
		return err
	})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// migrateV0ToV1 adds the meta bucket (its version is written by migrate) and
// makes sure the leases bucket exists.
func migrateV0ToV1(tx *bbolt.Tx) error {
	for _, name := range [][]byte{metaBucket, leasesBucket} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return nil
}

// migrateV1ToV2 adds the events bucket.
func migrateV1ToV2(tx *bbolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(eventsBucket); err != nil {
		return fmt.Errorf("create bucket %s: %w", eventsBucket, err)
	}
	return nil
}

// migrateV2ToV3 adds the refusals bucket. Refusals already in the events
// bucket stay there, to age out with the events around them.
func migrateV2ToV3(tx *bbolt.Tx) error {
	return createBucket(tx, refusalsBucket)
}

// migrateV3ToV4 adds the people bucket.
func migrateV3ToV4(tx *bbolt.Tx) error {
	return createBucket(tx, peopleBucket)
}

// migrateV4ToV5 adds the pool bucket.
func migrateV4ToV5(tx *bbolt.Tx) error {
	return createBucket(tx, poolBucket)
}

func createBucket(tx *bbolt.Tx, name []byte) error {
	if _, err := tx.CreateBucketIfNotExists(name); err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}

// Close releases the file.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// Get returns the lease of fingerprint, or an error wrapping lease.ErrNotFound.
func (s *Store) Get(fingerprint string) (lease.Lease, error) {
	var l lease.Lease
	err := s.view(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(leasesBucket).Get([]byte(fingerprint))
		if raw == nil {
			return lease.ErrNotFound
		}
		return decode(fingerprint, raw, &l)
	})
	if err != nil {
		return lease.Lease{}, fmt.Errorf("get lease %s: %w", fingerprint, err)
	}
	return l, nil
}

// Put writes l under its fingerprint and appends events to the audit log,
// all in one transaction: both are on disk when Put returns, or neither.
func (s *Store) Put(l lease.Lease, events ...lease.Event) error {
	if l.Fingerprint == "" {
		return errors.New("put lease: lease has no fingerprint")
	}
	raw, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("put lease %s: encode: %w", l.Fingerprint, err)
	}
	rawEvents, err := encodeEvents(events)
	if err != nil {
		return fmt.Errorf("put lease %s: %w", l.Fingerprint, err)
	}
	err = s.update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(leasesBucket).Put([]byte(l.Fingerprint), raw); err != nil {
			return err
		}
		return s.appendEvents(tx, rawEvents)
	})
	if err != nil {
		return fmt.Errorf("put lease %s: %w", l.Fingerprint, err)
	}
	return nil
}

// Delete removes the lease of fingerprint and appends events to the audit
// log in one transaction. Deleting a lease that is not there is not an
// error, so a retried delete succeeds.
func (s *Store) Delete(fingerprint string, events ...lease.Event) error {
	rawEvents, err := encodeEvents(events)
	if err != nil {
		return fmt.Errorf("delete lease %s: %w", fingerprint, err)
	}
	err = s.update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(leasesBucket).Delete([]byte(fingerprint)); err != nil {
			return err
		}
		return s.appendEvents(tx, rawEvents)
	})
	if err != nil {
		return fmt.Errorf("delete lease %s: %w", fingerprint, err)
	}
	return nil
}

// List returns every lease, sorted by fingerprint (bbolt keeps keys in
// byte order, which is Go's string order).
func (s *Store) List() ([]lease.Lease, error) {
	var all []lease.Lease
	err := s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(leasesBucket).ForEach(func(k, v []byte) error {
			var l lease.Lease
			if err := decode(string(k), v, &l); err != nil {
				return err
			}
			all = append(all, l)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return all, nil
}

func decode(fingerprint string, raw []byte, l *lease.Lease) error {
	return decodeIn(leasesBucket, fingerprint, raw, l)
}

func decodeIn(bucket []byte, key string, raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("record %s in bucket %s is damaged: %w", key, bucket, err)
	}
	return nil
}

// Person returns what the person of fingerprint keeps apart from leases:
// only the fingerprint when they keep nothing.
func (s *Store) Person(fingerprint string) (lease.Person, error) {
	p := lease.Person{Fingerprint: fingerprint}
	err := s.view(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(peopleBucket).Get([]byte(fingerprint))
		if raw == nil {
			return nil
		}
		return decodeIn(peopleBucket, fingerprint, raw, &p)
	})
	if err != nil {
		return lease.Person{}, fmt.Errorf("get person %s: %w", fingerprint, err)
	}
	return p, nil
}

// People returns every person's record, sorted by fingerprint.
func (s *Store) People() ([]lease.Person, error) {
	var all []lease.Person
	err := s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(peopleBucket).ForEach(func(k, v []byte) error {
			var p lease.Person
			if err := decodeIn(peopleBucket, string(k), v, &p); err != nil {
				return err
			}
			all = append(all, p)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list people: %w", err)
	}
	return all, nil
}

// PutPerson writes p under its fingerprint and appends events, in one
// transaction.
func (s *Store) PutPerson(p lease.Person, events ...lease.Event) error {
	if p.Fingerprint == "" {
		return errors.New("put person: no fingerprint")
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("put person %s: encode: %w", p.Fingerprint, err)
	}
	rawEvents, err := encodeEvents(events)
	if err != nil {
		return fmt.Errorf("put person %s: %w", p.Fingerprint, err)
	}
	err = s.update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(peopleBucket).Put([]byte(p.Fingerprint), raw); err != nil {
			return err
		}
		return s.appendEvents(tx, rawEvents)
	})
	if err != nil {
		return fmt.Errorf("put person %s: %w", p.Fingerprint, err)
	}
	return nil
}

// AppendEvent adds e to the audit log, dropping the oldest events beyond
// the store's limit.
func (s *Store) AppendEvent(e lease.Event) error {
	raw, err := encodeEvents([]lease.Event{e})
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	if err := s.update(func(tx *bbolt.Tx) error { return s.appendEvents(tx, raw) }); err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	return nil
}

// encodeEvents encodes events before a transaction starts, so a write
// transaction does no more than write.
func encodeEvents(events []lease.Event) ([][]byte, error) {
	return encodeAll(events, func(e lease.Event) string { return "event " + e.Kind })
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

// appendEvents adds encoded events to the audit log in tx, dropping the
// oldest events beyond the store's limit.
func (s *Store) appendEvents(tx *bbolt.Tx, events [][]byte) error {
	return appendBounded(tx.Bucket(eventsBucket), events, s.eventLimit)
}

// appendBounded adds encoded records to b under the next sequence numbers,
// then drops the oldest beyond limit.
func appendBounded(b *bbolt.Bucket, records [][]byte, limit int) error {
	if len(records) == 0 {
		return nil
	}
	var seq uint64
	for _, raw := range records {
		var err error
		if seq, err = b.NextSequence(); err != nil {
			return err
		}
		if err := b.Put(sequenceKey(seq), raw); err != nil {
			return err
		}
	}
	// Keys are consecutive and only the oldest are ever deleted, so the
	// first key tells how many there are. The keys are collected first: a
	// cursor that deletes and then moves on skips the next key (etcd-io/bbolt
	// issue 146).
	var old [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && seq-binary.BigEndian.Uint64(k) >= uint64(limit); k, _ = c.Next() {
		old = append(old, slices.Clone(k))
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Events returns the newest n events (all of them when n <= 0), oldest
// first.
func (s *Store) Events(n int) ([]lease.Event, error) {
	events, err := newest[lease.Event](s, eventsBucket, n)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return events, nil
}

// AppendRefusals adds counts of refused connections in one transaction,
// dropping the oldest beyond the store's refusal limit.
func (s *Store) AppendRefusals(rs []lease.Refusal) error {
	raw, err := encodeAll(rs, func(r lease.Refusal) string { return "refusals of " + r.Source })
	if err != nil {
		return fmt.Errorf("append refusals: %w", err)
	}
	err = s.update(func(tx *bbolt.Tx) error {
		return appendBounded(tx.Bucket(refusalsBucket), raw, s.refusalLimit)
	})
	if err != nil {
		return fmt.Errorf("append refusals: %w", err)
	}
	return nil
}

// Refusals returns the newest n refusal counts (all of them when n <= 0),
// oldest first.
func (s *Store) Refusals(n int) ([]lease.Refusal, error) {
	rs, err := newest[lease.Refusal](s, refusalsBucket, n)
	if err != nil {
		return nil, fmt.Errorf("list refusals: %w", err)
	}
	return rs, nil
}

// newest decodes the newest n records of a bucket keyed by sequence (all
// of them when n <= 0), oldest first.
func newest[T any](s *Store, bucket []byte, n int) ([]T, error) {
	var records []T
	err := s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.Last(); k != nil && (n <= 0 || len(records) < n); k, v = c.Prev() {
			var r T
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("record %d in bucket %s is damaged: %w", binary.BigEndian.Uint64(k), bucket, err)
			}
			records = append(records, r)
		}
		return nil
	})
	slices.Reverse(records)
	return records, err
}

func sequenceKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}
