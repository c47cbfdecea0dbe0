package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// PoolMachines returns every pool record, sorted by id (etcd's key order).
func (s *Store) PoolMachines() ([]lease.PoolMachine, error) {
	all, err := listAll[lease.PoolMachine](s, poolDir)
	if err != nil {
		return nil, fmt.Errorf("list pool machines: %w", err)
	}
	return all, nil
}

// PutPoolMachine writes p and appends events, in one transaction, if the
// stored record is in state from ("": none is stored).
func (s *Store) PutPoolMachine(p lease.PoolMachine, from lease.PoolState, events ...lease.Event) error {
	if p.ID == "" {
		return errors.New("put pool machine: pool machine has no id")
	}
	raw, rawEvents, err := encodeWith(p, events)
	if err != nil {
		return fmt.Errorf("put pool machine %s: %w", p.ID, err)
	}
	err = s.write(eventsLog, rawEvents, s.ifPoolState(p.ID, from, clientv3.OpPut(s.prefix+poolDir+p.ID, raw)))
	if err != nil {
		return fmt.Errorf("put pool machine %s: %w", p.ID, err)
	}
	return nil
}

// DeletePoolMachine removes the record of id and appends events, in one
// transaction; a record that is not there is no error.
func (s *Store) DeletePoolMachine(id string, events ...lease.Event) error {
	rawEvents, err := encodeAll(events, eventName)
	if err == nil {
		err = s.write(eventsLog, rawEvents, unconditional(clientv3.OpDelete(s.prefix+poolDir+id)))
	}
	if err != nil {
		return fmt.Errorf("delete pool machine %s: %w", id, err)
	}
	return nil
}

// ClaimPoolMachine writes p and l and appends events in one transaction,
// if p's stored record is ready and unchanged since it was read.
func (s *Store) ClaimPoolMachine(p lease.PoolMachine, l lease.Lease, events ...lease.Event) error {
	if l.Fingerprint == "" {
		return fmt.Errorf("claim pool machine %s: lease has no fingerprint", p.ID)
	}
	if p.ID == "" {
		return errors.New("claim pool machine: pool machine has no id")
	}
	rawPool, rawEvents, err := encodeWith(p, events)
	if err != nil {
		return fmt.Errorf("claim pool machine %s: %w", p.ID, err)
	}
	rawLease, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("claim pool machine %s: encode lease %s: %w", p.ID, l.Fingerprint, err)
	}
	err = s.write(eventsLog, rawEvents, s.ifPoolState(p.ID, lease.PoolReady,
		clientv3.OpPut(s.prefix+poolDir+p.ID, rawPool),
		clientv3.OpPut(s.prefix+leasesDir+l.Fingerprint, string(rawLease))))
	if err != nil {
		return fmt.Errorf("claim pool machine %s: %w", p.ID, err)
	}
	return nil
}

// FinishPoolClaim writes l, deletes the pool record of l.ID and appends
// events in one transaction, if that record is claiming and unchanged
// since it was read.
func (s *Store) FinishPoolClaim(l lease.Lease, events ...lease.Event) error {
	if l.Fingerprint == "" {
		return fmt.Errorf("finish the claim of pool machine %s: lease has no fingerprint", l.ID)
	}
	raw, rawEvents, err := encodeWith(l, events)
	if err != nil {
		return fmt.Errorf("finish the claim of pool machine %s: %w", l.ID, err)
	}
	err = s.write(eventsLog, rawEvents, s.ifPoolState(l.ID, lease.PoolClaiming,
		clientv3.OpDelete(s.prefix+poolDir+l.ID),
		clientv3.OpPut(s.prefix+leasesDir+l.Fingerprint, raw)))
	if err != nil {
		return fmt.Errorf("finish the claim of pool machine %s: %w", l.ID, err)
	}
	return nil
}

// ifPoolState is the plan of a write that needs the pool record of id in
// state want ("": none): it reads the record, fails with an error
// wrapping lease.ErrPoolMachineTaken when its state is another, and
// otherwise commits ops only if the record's mod revision is still the
// one read (0: still absent).
func (s *Store) ifPoolState(id string, want lease.PoolState, ops ...clientv3.Op) func(context.Context) (change, error) {
	key := s.prefix + poolDir + id
	return func(ctx context.Context) (change, error) {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return change{}, s.failure(err)
		}
		var stored lease.PoolMachine
		var rev int64
		if len(resp.Kvs) == 1 {
			rev = resp.Kvs[0].ModRevision
			if err := decode(resp.Kvs[0], &stored); err != nil {
				return change{}, err
			}
		}
		if stored.State != want {
			return change{}, fmt.Errorf("it is %q, not %q: %w", stored.State, want, lease.ErrPoolMachineTaken)
		}
		return change{cmps: []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}, ops: ops}, nil
	}
}
