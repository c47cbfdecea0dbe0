package lease

import "context"

// Coordinator is what the Manager and the Reaper need from the other
// gateways sharing their store: one operation on a person's lease at a
// time across all of them, and one gateway at a time running the
// deployment-wide work (the reaper's passes, reconcile, the pool keeper).
// The etcd store implements it (package etcd); a gateway alone uses
// SoleGateway.
type Coordinator interface {
	// Lock takes the person's lock, waiting while another gateway holds
	// it, until ctx ends. A dead holder's lock expires on its own.
	Lock(ctx context.Context, fingerprint string) (unlock func(), err error)
	// Lead waits until this gateway is the leader, or ctx ends (then it
	// returns ctx's error), or the coordination fails. The returned
	// context ends as soon as the leadership is lost or ctx ends; resign
	// gives the leadership up and must be called once leading is over.
	Lead(ctx context.Context) (leading context.Context, resign func(), err error)
}

// SoleGateway is the Coordinator of a gateway that shares its store with
// no other: its own locks suffice and it always leads.
type SoleGateway struct{}

// Lock returns at once: the Manager's own lock serialises the person.
func (SoleGateway) Lock(context.Context, string) (func(), error) { return func() {}, nil }

// Lead returns at once: a gateway alone is its own leader.
func (SoleGateway) Lead(ctx context.Context) (context.Context, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	return ctx, func() {}, nil
}
