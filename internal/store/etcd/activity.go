package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cc-gateway/cc-gateway/internal/lease"
)

// PutActivity moves the person's last activity forward to t and changes
// nothing else: a compare-and-set on the lease's revision, so a gateway
// writing activity never undoes what another wrote meanwhile (the
// reaper's stop, say). A lease that is gone, or as recent already, is
// left as it is.
func (s *Store) PutActivity(fingerprint string, t time.Time) error {
	key := s.prefix + leasesDir + fingerprint
	err := s.write(eventsLog, nil, func(ctx context.Context) (change, error) {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return change{}, s.failure(err)
		}
		if len(resp.Kvs) == 0 {
			return change{}, nil
		}
		kv := resp.Kvs[0]
		var l lease.Lease
		if err := decode(kv, &l); err != nil {
			return change{}, err
		}
		if !t.After(l.LastActivity) {
			return change{}, nil
		}
		l.LastActivity = t
		raw, err := json.Marshal(l)
		if err != nil {
			return change{}, fmt.Errorf("encode: %w", err)
		}
		return change{
			cmps: []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)},
			ops:  []clientv3.Op{clientv3.OpPut(key, string(raw))},
		}, nil
	})
	if err != nil {
		return fmt.Errorf("put activity of %s: %w", fingerprint, err)
	}
	return nil
}
