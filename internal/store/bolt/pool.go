package bolt

import (
	"encoding/json"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

var _ lease.PoolStore = (*Store)(nil)

// PoolMachines returns every pool record, sorted by id (bbolt's key order).
func (s *Store) PoolMachines() ([]lease.PoolMachine, error) {
	var all []lease.PoolMachine
	err := s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(poolBucket).ForEach(func(k, v []byte) error {
			var p lease.PoolMachine
			if err := decodeIn(poolBucket, string(k), v, &p); err != nil {
				return err
			}
			all = append(all, p)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list pool machines: %w", err)
	}
	return all, nil
}

// PutPoolMachine writes p under its id and appends events, in one
// transaction, if the stored record is in state from ("": none is stored).
func (s *Store) PutPoolMachine(p lease.PoolMachine, from lease.PoolState, events ...lease.Event) error {
	raw, rawEvents, err := encodePool(p, events)
	if err != nil {
		return fmt.Errorf("put pool machine %s: %w", p.ID, err)
	}
	err = s.update(func(tx *bbolt.Tx) error {
		pool := tx.Bucket(poolBucket)
		if err := expectPoolState(pool, p.ID, from); err != nil {
			return err
		}
		if err := pool.Put([]byte(p.ID), raw); err != nil {
			return err
		}
		return s.appendEvents(tx, rawEvents)
	})
	if err != nil {
		return fmt.Errorf("put pool machine %s: %w", p.ID, err)
	}
	return nil
}

// DeletePoolMachine removes the record of id and appends events, in one
// transaction; a record that is not there is no error, so a retry succeeds.
func (s *Store) DeletePoolMachine(id string, events ...lease.Event) error {
	rawEvents, err := encodeEvents(events)
	if err != nil {
		return fmt.Errorf("delete pool machine %s: %w", id, err)
	}
	err = s.update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(poolBucket).Delete([]byte(id)); err != nil {
			return err
		}
		return s.appendEvents(tx, rawEvents)
	})
	if err != nil {
		return fmt.Errorf("delete pool machine %s: %w", id, err)
	}
	return nil
}

// ClaimPoolMachine writes p and l and appends events in one transaction,
// after checking in it that p's stored record is ready: two claims of one
// machine cannot both pass, since bbolt runs one writer at a time.
func (s *Store) ClaimPoolMachine(p lease.PoolMachine, l lease.Lease, events ...lease.Event) error {
	if l.Fingerprint == "" {
		return fmt.Errorf("claim pool machine %s: lease has no fingerprint", p.ID)
	}
	rawPool, rawEvents, err := encodePool(p, events)
	if err != nil {
		return fmt.Errorf("claim pool machine %s: %w", p.ID, err)
	}
	rawLease, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("claim pool machine %s: encode lease %s: %w", p.ID, l.Fingerprint, err)
	}
	err = s.update(func(tx *bbolt.Tx) error {
		pool := tx.Bucket(poolBucket)
		if err := expectPoolState(pool, p.ID, lease.PoolReady); err != nil {
			return err
		}
		if err := pool.Put([]byte(p.ID), rawPool); err != nil {
			return err
		}
		if err := tx.Bucket(leasesBucket).Put([]byte(l.Fingerprint), rawLease); err != nil {
			return err
		}
		return s.appendEvents(tx, rawEvents)
	})
	if err != nil {
		return fmt.Errorf("claim pool machine %s: %w", p.ID, err)
	}
	return nil
}

// FinishPoolClaim writes l and deletes the pool record of l.ID and
// appends events in one transaction, after checking in it that the
// record is claiming: the claimed machine is then the lease's alone.
func (s *Store) FinishPoolClaim(l lease.Lease, events ...lease.Event) error {
	if l.Fingerprint == "" {
		return fmt.Errorf("finish the claim of pool machine %s: lease has no fingerprint", l.ID)
	}
	rawLease, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("finish the claim of pool machine %s: encode lease %s: %w", l.ID, l.Fingerprint, err)
	}
	rawEvents, err := encodeEvents(events)
	if err != nil {
		return fmt.Errorf("finish the claim of pool machine %s: %w", l.ID, err)
	}
	err = s.update(func(tx *bbolt.Tx) error {
		pool := tx.Bucket(poolBucket)
		if err := expectPoolState(pool, l.ID, lease.PoolClaiming); err != nil {
			return err
		}
		if err := pool.Delete([]byte(l.ID)); err != nil {
			return err
		}
		if err := tx.Bucket(leasesBucket).Put([]byte(l.Fingerprint), rawLease); err != nil {
			return err
		}
		return s.appendEvents(tx, rawEvents)
	})
	if err != nil {
		return fmt.Errorf("finish the claim of pool machine %s: %w", l.ID, err)
	}
	return nil
}

// expectPoolState returns an error wrapping lease.ErrPoolMachineTaken
// unless the record of id is in state want ("": there is none).
func expectPoolState(pool *bbolt.Bucket, id string, want lease.PoolState) error {
	var stored lease.PoolMachine
	if raw := pool.Get([]byte(id)); raw != nil {
		if err := decodeIn(poolBucket, id, raw, &stored); err != nil {
			return err
		}
	}
	if stored.State != want {
		return fmt.Errorf("it is %q, not %q: %w", stored.State, want, lease.ErrPoolMachineTaken)
	}
	return nil
}

func encodePool(p lease.PoolMachine, events []lease.Event) (raw []byte, rawEvents [][]byte, err error) {
	if p.ID == "" {
		return nil, nil, errors.New("pool machine has no id")
	}
	if raw, err = json.Marshal(p); err != nil {
		return nil, nil, fmt.Errorf("encode: %w", err)
	}
	if rawEvents, err = encodeEvents(events); err != nil {
		return nil, nil, err
	}
	return raw, rawEvents, nil
}
