package bolt

import (
	"encoding/json"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/cc-gateway/cc-gateway/internal/lease"
	"github.com/cc-gateway/cc-gateway/internal/store/dump"
)

// Export returns everything the store keeps, read in one transaction.
func (s *Store) Export() (dump.Document, error) {
	var d dump.Document
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		if d.Leases, err = all[lease.Lease](tx, leasesBucket); err != nil {
			return err
		}
		if d.People, err = all[lease.Person](tx, peopleBucket); err != nil {
			return err
		}
		if d.Pool, err = all[lease.PoolMachine](tx, poolBucket); err != nil {
			return err
		}
		if d.Events, err = all[lease.Event](tx, eventsBucket); err != nil {
			return err
		}
		d.Refusals, err = all[lease.Refusal](tx, refusalsBucket)
		return err
	})
	if err != nil {
		return dump.Document{}, fmt.Errorf("export %s: %w", s.path, err)
	}
	d.Version = dump.Version
	return d, nil
}

// all decodes every record of bucket, in key order.
func all[T any](tx *bbolt.Tx, bucket []byte) ([]T, error) {
	records := []T{}
	err := tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		var r T
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("record %x in bucket %s is damaged: %w", k, bucket, err)
		}
		records = append(records, r)
		return nil
	})
	return records, err
}

// Import replaces everything the store keeps with d, in one transaction:
// all of d is written, or nothing changes. Logs longer than the store's
// bounds keep their newest records.
func (s *Store) Import(d dump.Document) error {
	err := s.update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{leasesBucket, peopleBucket, poolBucket, eventsBucket, refusalsBucket} {
			if err := tx.DeleteBucket(name); err != nil {
				return fmt.Errorf("empty bucket %s: %w", name, err)
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		for _, l := range d.Leases {
			if err := putJSON(tx.Bucket(leasesBucket), []byte(l.Fingerprint), l); err != nil {
				return err
			}
		}
		for _, p := range d.People {
			if err := putJSON(tx.Bucket(peopleBucket), []byte(p.Fingerprint), p); err != nil {
				return err
			}
		}
		for _, p := range d.Pool {
			if err := putJSON(tx.Bucket(poolBucket), []byte(p.ID), p); err != nil {
				return err
			}
		}
		events, err := encodeEvents(d.Events)
		if err != nil {
			return err
		}
		if err := appendBounded(tx.Bucket(eventsBucket), events, s.eventLimit); err != nil {
			return err
		}
		refusals, err := encodeAll(d.Refusals, func(r lease.Refusal) string { return "refusals of " + r.Source })
		if err != nil {
			return err
		}
		return appendBounded(tx.Bucket(refusalsBucket), refusals, s.refusalLimit)
	})
	if err != nil {
		return fmt.Errorf("import into %s: %w", s.path, err)
	}
	return nil
}

func putJSON(b *bbolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return b.Put(key, raw)
}
