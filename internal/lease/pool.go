package lease

// The warm pool (issue 13) keeps machines booted and unassigned, so a new
// person's first shell does not wait for a cloud server to boot.
//
// # Identity
//
// A pool machine is made as a test machine is (testmachine.go): from the
// configured image, with a host key the gateway generates and pins, and the
// gateway's own key as the only one authorised. Its bootstrap document
// names no person. Its server is named and labelled as a lease's would be
// ("cc-"+id, LeaseLabel=id), plus the role label PoolLabel=true
// (CreateSpec.Pool), so operators see what it is. The person who claims it
// is to get a lease with the pool machine's id, so the server needs no
// rename and keeps its LeaseLabel; the claim only removes the role label
// (the provider's Unpool).
//
// # Records
//
// Each pool machine has a PoolMachine record in the store's pool bucket
// (schema v5), keyed by its id. Its State moves only forward:
//
//	creating ──▶ ready ──▶ claiming ──▶ (record deleted: the lease owns the server)
//	    │          │          │
//	    └──────────┴──────────┴──▶ draining ──▶ (record deleted with the server)
//
//   - creating is written before Provider.Create, like a lease's creating,
//     so a crash leaves a record of the server that may exist; ServerID is
//     set once Create returns.
//   - ready once the machine presents the pinned host key and accepts the
//     gateway's key.
//   - claiming is written in the same store write as the new person's lease
//     (state creating, naming the pool machine's server, host key and
//     address): that one write is the lock. Only a ready record can become
//     claiming, and nothing ever makes a claiming record ready again, so a
//     machine is never handed to two people and a claimed machine never
//     returns to the pool.
//   - draining is written before Provider.Delete, for machines past
//     --warm-pool-max-age, extras when the pool shrinks, machines whose
//     create failed, leftovers of a crash, and ready machines whose server
//     vanished.
//
// Every change of state is a compare-and-set in the store (PoolStore), so
// a claim and a drain of one machine cannot both pass, whatever runs them.
//
// # Keeping (poolkeeper.go)
//
// The keeper runs beside the reaper's passes, one round at a time. A round
// drains what planPool says, then creates machines up to the pool's size,
// at once, and waits for them. As rounds never overlap, a record still
// creating when a round starts was left by a crash: the round drains it,
// finding its server by LeaseLabel when the record never learnt its id. A
// draining record is drained again until its server is gone.
//
// # Reconcile
//
// A server whose LeaseLabel is a pool record's id is the pool's: never an
// orphan. (Once claimed, it is the claiming lease's, which has that id.) A
// pool-labelled server whose id no record and no lease has is an orphan as
// any other, with the same grace. A ready record whose server the listing
// lacks is drained, so no claim takes a machine that is gone.
//
// # Claiming (claim.go)
//
// A new person's create takes a ready machine (pickPoolMachine): of the
// most preferred pair (server type, then location, in the configured
// order) that has one, the oldest. The claim write comes first
// (ClaimPoolMachine: the record claiming and the person's lease creating,
// naming the machine's id, server, address and host key, one write); a
// machine taken meanwhile is skipped for the next, a few times at most.
// Then the gateway personalises the machine over the pinned SSH
// connection (Machines.Personalise: the lease's bootstrap document, with
// the person's key beside the gateway's and the expiry, the pool
// document's instance id and host key), removes the pool label (the
// provider's Unpool), and writes the lease running and deletes the
// record (FinishPoolClaim, one write). The person's secrets follow as
// after any start. Each step has its fault point (ClaimFaultPoints); a
// step that fails leaves the lease creating and the record claiming, and
// the person is told so (ClaimError): a half-personalised machine is never
// handed out. Their next connection, or reconcile, finishes the claim
// (personalising with the same document and unpooling again: both
// idempotent), or closes the lease when the server is gone; reconcile
// drains a claiming record no lease names, judged under its claimant's
// lease lock. After a claim the keeper is nudged to refill at once. When
// no machine is ready the cold path runs as before, and the person is
// told so, with how long the latest pool machine took to boot.
//
// # Cost
//
// Pool machines are nobody's lease, so they are never anyone's cost:
// `admin list` shows them and their cost apart; cc_gateway_pool_machines
// counts them and Observer.PoolCost reports their cost apart. A claimed
// machine's cost is the pool's until its claim and the lease's from then
// on (its ServerCreated is the claim's time).
//
// # Locks
//
// The keeper's round is marked by Reaper.keeping, under Reaper.mu (a
// leaf). The keeper takes no lease lock and holds no lock across a store,
// provider or SSH call: the store's compare-and-set is what orders it
// against claims. A claim runs under the person's lease lock, as every
// create does.

import (
	"cmp"
	"errors"
	"slices"
	"time"
)

// PoolLabel marks, with the value "true", the server of a pool machine
// nobody has claimed yet; providers set it and remove it (Unpool).
const PoolLabel = "cc-gateway-pool"

// PoolState is where a pool machine is in its life.
type PoolState string

// The states of a pool machine; see the package comment of pool.go.
const (
	PoolCreating PoolState = "creating"
	PoolReady    PoolState = "ready"
	PoolClaiming PoolState = "claiming"
	PoolDraining PoolState = "draining"
)

// PoolStates lists every PoolState.
var PoolStates = []PoolState{PoolCreating, PoolReady, PoolClaiming, PoolDraining}

// PoolMachine is one machine of the warm pool: booted, pinned, and nobody's.
type PoolMachine struct {
	ID         string    `json:"id"`           // random, names the server and labels it
	State      PoolState `json:"state"`        //
	ServerID   int64     `json:"server_id"`    // provider's id; 0 before creation returns
	ServerName string    `json:"server_name"`  // as a lease's: "cc-" + ID
	Address    string    `json:"address"`      // host:port of the machine's sshd
	HostKey    string    `json:"host_key"`     // pinned host key, authorized_keys form
	HostKeyPEM []byte    `json:"host_key_pem"` // its private half
	ServerType string    `json:"server_type"`  //
	Location   string    `json:"location"`     //
	Created    time.Time `json:"created"`      // when the creating record was written
	// Claimant is the fingerprint of the person claiming the machine, set
	// with State claiming.
	Claimant string `json:"claimant,omitempty"`
}

// ErrPoolMachineTaken is returned by a PoolStore write that found the
// record no longer in the state it expected: another claim, a drain or a
// recycle took the machine first.
var ErrPoolMachineTaken = errors.New("pool machine is no longer in the state expected")

// PoolStore keeps the pool's records. Like Store, every write is durable
// when it returns, and its events go to the same audit log in the same
// write. Every change of state is a compare-and-set on the stored state, so
// a claim and a drain of one machine cannot both pass.
type PoolStore interface {
	// PoolMachines returns every pool record, sorted by id.
	PoolMachines() ([]PoolMachine, error)
	// PutPoolMachine writes p if the stored record is in state from ("":
	// there is none yet); otherwise it writes nothing and returns an error
	// wrapping ErrPoolMachineTaken.
	PutPoolMachine(p PoolMachine, from PoolState, events ...Event) error
	// DeletePoolMachine removes the record (absent is no error).
	DeletePoolMachine(id string, events ...Event) error
	// ClaimPoolMachine writes p (claiming) and l (the person's lease,
	// naming p's server) as one write: the claim's intent and its lock.
	// It fails, writing nothing, with an error wrapping
	// ErrPoolMachineTaken unless the stored record of p is ready.
	ClaimPoolMachine(p PoolMachine, l Lease, events ...Event) error
	// FinishPoolClaim writes l (the claiming lease, now running) and
	// deletes the pool record of l.ID, as one write: the machine is the
	// lease's from then on. It fails, writing nothing, with an error
	// wrapping ErrPoolMachineTaken unless that record is claiming.
	FinishPoolClaim(l Lease, events ...Event) error
}

// poolPlan is what one round of the pool keeper does.
type poolPlan struct {
	Create int      // machines to create
	Drain  []string // ids of records to drain, oldest first
}

// planPool decides a keeper round for a pool that should hold want
// machines no older than maxAge at now. Machines being created count as
// the pool's (so a slow boot is not doubled); claiming ones are no longer
// the pool's and are left to the claim and reconcile; draining ones are
// drained again until gone. Ready machines past maxAge are recycled; when
// the pool holds more than want, the oldest ready ones go first. Machines
// still being created are never drained here: their create finishes, and
// a later round drains them if they are still too many.
func planPool(machines []PoolMachine, want int, maxAge time.Duration, now time.Time) poolPlan {
	var plan poolPlan
	var ready []PoolMachine
	counted := 0
	for _, m := range machines {
		switch m.State {
		case PoolDraining:
			plan.Drain = append(plan.Drain, m.ID)
		case PoolCreating:
			counted++
		case PoolReady:
			if maxAge > 0 && now.Sub(m.Created) >= maxAge {
				plan.Drain = append(plan.Drain, m.ID)
				continue
			}
			ready = append(ready, m)
			counted++
		}
	}
	slices.SortStableFunc(ready, oldestFirst)
	for i := 0; counted > max(want, 0) && i < len(ready); i++ {
		plan.Drain = append(plan.Drain, ready[i].ID)
		counted--
	}
	plan.Create = max(want-counted, 0)
	return plan
}

// pickPoolMachine returns the ready machine a new person takes: of the
// most preferred pair (server type, then location, in the order of
// types and locations, as the provider tries them) that has one, the
// oldest, so stale ones are used before they are recycled. Machines
// maxAge old at now and machines of a pair no longer configured are never
// taken. It returns false when no machine fits.
func pickPoolMachine(machines []PoolMachine, types, locations []string, maxAge time.Duration, now time.Time) (PoolMachine, bool) {
	rank := func(m PoolMachine) int {
		t, l := slices.Index(types, m.ServerType), slices.Index(locations, m.Location)
		if t < 0 || l < 0 {
			return -1
		}
		return t*len(locations) + l
	}
	var best PoolMachine
	bestRank := -1
	for _, m := range machines {
		r := rank(m)
		if m.State != PoolReady || r < 0 || (maxAge > 0 && now.Sub(m.Created) >= maxAge) {
			continue
		}
		if bestRank < 0 || r < bestRank || (r == bestRank && oldestFirst(m, best) < 0) {
			best, bestRank = m, r
		}
	}
	return best, bestRank >= 0
}

// oldestFirst orders pool machines by creation, then id, so the order
// never depends on how the store listed them.
func oldestFirst(a, b PoolMachine) int {
	if c := a.Created.Compare(b.Created); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}
