package store

import (
	"context"
	"errors"
	"time"
)

// ErrFenced is returned by a write made under a Lease that is no longer the mailbox's: another
// replica took the mailbox over (its epoch is higher), or this replica released it. Nothing was
// written; the session that made the write must stop.
var ErrFenced = errors.New("this replica no longer owns the mailbox (its lease was taken over)")

// ErrReplaced is returned by Heartbeat when another process took over the replica id (it started
// with the same --replica-id): this process must stop every session and join again.
var ErrReplaced = errors.New("another process took over this replica id")

// Lease is a replica's ownership of one mailbox. Epoch is the fencing token: it is raised at
// every change of owner, so a write made under an older epoch is refused.
type Lease struct {
	MailboxID   string
	ReplicaID   string // empty when no replica holds the mailbox
	Incarnation string // the holding process (a replica id keeps its name across restarts)
	Epoch       int64
	Tenant      string // the mailbox's tenant, for routing
	// Updated is when the mailbox's definition last changed: the owner restarts the session when
	// it differs from the one the session runs, even if the hint from the replica that made the
	// change was lost.
	Updated time.Time
}

// Holds reports whether two leases are the same holding (replica, incarnation, epoch), whatever
// the mailbox's definition.
func (l Lease) Holds(o Lease) bool {
	return l.MailboxID == o.MailboxID && l.ReplicaID == o.ReplicaID && l.Incarnation == o.Incarnation && l.Epoch == o.Epoch
}

type leaseKey struct{}

// WithLease returns a context whose store writes for lease.MailboxID are fenced: stores shared
// by several replicas (Cluster) refuse them with ErrFenced when the lease is no longer current.
// A session runs under its lease, so every write it makes (checkpoint, applied marks,
// quarantine, events, provider state) is fenced without each call passing it.
func WithLease(ctx context.Context, l Lease) context.Context {
	return context.WithValue(ctx, leaseKey{}, l)
}

// LeaseFrom returns the lease a write for mailboxID is made under, if any.
func LeaseFrom(ctx context.Context, mailboxID string) (Lease, bool) {
	l, ok := ctx.Value(leaseKey{}).(Lease)
	if !ok || l.MailboxID != mailboxID {
		return Lease{}, false
	}
	return l, true
}

// Replica is a running server process that shares the database with others.
type Replica struct {
	ID          string // stable name (--replica-id): a restarted process keeps it
	Incarnation string // new at every process start
	Addr        string // where other replicas reach its API port (--advertise-addr)
	StartTime   time.Time
	ExpireTime  time.Time // its heartbeat lapses then (the database's clock)
	Alive       bool      // ExpireTime is in the future by the database's clock
}

// Cluster is implemented by stores that several replicas share (PostgreSQL). The embedded SQLite
// store is used by one process and does not implement it: that process owns every mailbox.
//
// The database's clock decides whether a replica is alive; a replica trusts its own lease only
// until its last successful heartbeat's start plus the TTL less a margin, so it stops its
// sessions before another replica can take its mailboxes.
type Cluster interface {
	// Heartbeat registers the replica (join: a new incarnation takes over the id and its
	// address) or renews it (join false: ErrReplaced when another incarnation holds the id) for
	// ttl from now by the database's clock.
	Heartbeat(ctx context.Context, r Replica, ttl time.Duration, join bool) error
	// Replicas returns the replicas that have heartbeated within the retention (a minute), alive
	// or not, ordered by id.
	Replicas(ctx context.Context) ([]Replica, error)
	// Leases returns every mailbox with its lease (ReplicaID empty when none), ordered by id.
	Leases(ctx context.Context) ([]Lease, error)
	// Claim takes the mailboxes among ids that no live replica holds (never held, released, or
	// held by a replica whose heartbeat lapsed or by an older incarnation of this one) for the
	// replica, raising each one's epoch, and returns the leases taken. It never waits for a
	// mailbox another replica is writing under its lease: that one is left for a later claim.
	// The claimant must itself be alive (its heartbeat current), or nothing is claimed.
	Claim(ctx context.Context, replicaID, incarnation string, ids []string) ([]Lease, error)
	// Release gives leases up (the holder stopped their sessions): each is released only if it
	// is still exactly that lease.
	Release(ctx context.Context, leases []Lease) error
	// Leave releases every lease of the incarnation and ends its heartbeat at once, so the other
	// replicas take its mailboxes without waiting for it to lapse.
	Leave(ctx context.Context, replicaID, incarnation string) error
	// PendingWork returns the mailboxes the incarnation holds that have work waiting: an
	// acknowledgement recorded between from and to and not yet applied (a quarantined message
	// released on another replica), or a quarantined message to deliver again (replayed). It is
	// the truth behind the wake-up hints, which can be lost.
	PendingWork(ctx context.Context, replicaID, incarnation string, from, to time.Time) ([]string, error)

	// Notify tells every replica that something about a mailbox changed (created, changed,
	// deleted, a replay, a release, a sign-in begun). A hint: it can be lost, and the replicas'
	// reconciliation is the truth.
	Notify(ctx context.Context, mailboxID string) error
	// Listen calls f with the mailbox id of every Notify, from any replica, until ctx ends. After
	// its connection to the database broke and was made again, it calls f("") once: hints may
	// have been lost meanwhile.
	Listen(ctx context.Context, f func(mailboxID string))
}
