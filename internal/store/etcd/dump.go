package etcd

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/store/dump"
)

// Import's batches stay below etcd's default limits on one transaction
// (--max-txn-ops 128, --max-request-bytes 1.5 MiB).
const (
	importOps   = 100
	importBytes = 512 << 10
)

// Export returns everything the store keeps, read in one request (so at
// one revision of the cluster).
func (s *Store) Export() (dump.Document, error) {
	kvs, err := s.list("")
	if err != nil {
		return dump.Document{}, fmt.Errorf("export: %w", err)
	}
	d := dump.Document{Version: dump.Version, Leases: []lease.Lease{}, People: []lease.Person{},
		Pool: []lease.PoolMachine{}, Events: []lease.Event{}, Refusals: []lease.Refusal{}}
	for _, kv := range kvs {
		name := strings.TrimPrefix(string(kv.Key), s.prefix)
		var err error
		switch {
		case strings.HasPrefix(name, leasesDir):
			d.Leases, err = appendDecoded(d.Leases, kv)
		case strings.HasPrefix(name, peopleDir):
			d.People, err = appendDecoded(d.People, kv)
		case strings.HasPrefix(name, poolDir):
			d.Pool, err = appendDecoded(d.Pool, kv)
		case strings.HasPrefix(name, eventsLog.dir):
			d.Events, err = appendDecoded(d.Events, kv)
		case strings.HasPrefix(name, refusalsLog.dir):
			d.Refusals, err = appendDecoded(d.Refusals, kv)
		}
		if err != nil {
			return dump.Document{}, fmt.Errorf("export: %w", err)
		}
	}
	return d, nil
}

func appendDecoded[T any](records []T, kv *mvccpb.KeyValue) ([]T, error) {
	var r T
	if err := decode(kv, &r); err != nil {
		return nil, err
	}
	return append(records, r), nil
}

// Import replaces everything the store keeps with d. etcd bounds one
// transaction, so Import writes in batches: first the old records go,
// then d's in batches of at most importOps operations, the logs' sequences
// last. Stop every gateway on the prefix first; an import that fails
// midway leaves part of d written, and running it again finishes it.
// Logs longer than the store's bounds keep their newest records.
func (s *Store) Import(d dump.Document) error {
	b := &batches{s: s}
	for _, dir := range []string{leasesDir, peopleDir, poolDir, eventsLog.dir, refusalsLog.dir, eventsLog.seqKey, refusalsLog.seqKey} {
		b.add(clientv3.OpDelete(s.prefix+dir, clientv3.WithPrefix()), len(dir))
	}
	if err := b.flush(); err != nil {
		return fmt.Errorf("import: empty the store: %w", err)
	}
	for _, l := range d.Leases {
		b.put(leasesDir+l.Fingerprint, l)
	}
	for _, p := range d.People {
		b.put(peopleDir+p.Fingerprint, p)
	}
	for _, p := range d.Pool {
		b.put(poolDir+p.ID, p)
	}
	putLog(b, eventsLog, d.Events, s.eventLimit)
	putLog(b, refusalsLog, d.Refusals, s.refusalLimit)
	if err := b.flush(); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	return nil
}

// putLog writes the newest limit of records to l numbered from 1, and l's
// sequence after them.
func putLog[T any](b *batches, l seqLog, records []T, limit int) {
	records = records[max(len(records)-limit, 0):]
	for i, r := range records {
		b.put(strings.TrimPrefix(b.s.logKey(l, int64(i+1)), b.s.prefix), r)
	}
	if len(records) > 0 {
		b.add(clientv3.OpPut(b.s.prefix+l.seqKey, strconv.Itoa(len(records))), len(l.seqKey))
	}
}

// batches collects operations and commits them in transactions within
// etcd's bounds; the first error stops it.
type batches struct {
	s     *Store
	ops   []clientv3.Op
	bytes int
	err   error
}

func (b *batches) put(key string, v any) {
	raw, err := json.Marshal(v)
	if err != nil && b.err == nil {
		b.err = fmt.Errorf("encode %s: %w", key, err)
	}
	b.add(clientv3.OpPut(b.s.prefix+key, string(raw)), len(key)+len(raw))
}

func (b *batches) add(op clientv3.Op, size int) {
	if len(b.ops) >= importOps || b.bytes+size > importBytes {
		b.err = b.flush()
	}
	b.ops = append(b.ops, op)
	b.bytes += size
}

func (b *batches) flush() error {
	if b.err != nil || len(b.ops) == 0 {
		return b.err
	}
	ctx, cancel := b.s.context()
	defer cancel()
	if _, err := b.s.cli.Txn(ctx).Then(b.ops...).Commit(); err != nil {
		b.err = b.s.failure(err)
		return b.err
	}
	b.ops, b.bytes = b.ops[:0], 0
	return nil
}
