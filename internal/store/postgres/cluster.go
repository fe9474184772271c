package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailintake/mailintake/internal/store"
)

// The cluster's tables (migration 3): replica has a row per replica id, its current incarnation
// and its heartbeat's expiry by the database's clock; mailbox_owner a row per mailbox that was
// ever claimed, with its holder (NULL when released) and its epoch, the fencing token, which
// only a claim raises.
//
// Every decision about time is made by now() in the statement that acts on it, so replicas with
// skewed clocks still agree on who is alive. Claims never wait for a row lock (SKIP LOCKED):
// a mailbox being written under its current lease, or claimed by another replica at the same
// moment, is left for a later claim. Fenced writes lock their mailbox's owner row FOR SHARE
// for their whole transaction, so a claim cannot change the owner between the check and the
// commit.

// replicaRetention is how long after its heartbeat lapsed a replica is still listed by Replicas
// (and kept in the table): long enough for the others to see that it went, short enough that
// the table does not keep every replica id ever used.
const replicaRetention = "1 minute"

// fenceLockTimeout bounds how long a fenced write waits for a lock. The locks it can meet on its
// mailbox are held by short transactions (a claim, a release, a leave, a mailbox's deletion) or
// by another write of the same mailbox; one held longer is a stuck connection, and the session
// is better off failing with store.ErrUnavailable than hanging with it.
const fenceLockTimeout = "5s"

var _ store.Cluster = (*Store)(nil)

// dbtx is what a write runs on: the pool (an unfenced write, one statement) or the transaction
// of a fenced write.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// write runs f, a write of mailboxID's data. Without a lease for the mailbox in ctx (the API's
// writes, a single-process server) it runs on the pool as before, retried; under a lease it runs
// in a transaction that first checks the lease (see fence).
func (s *Store) write(ctx context.Context, mailboxID string, f func(db dbtx) error) error {
	if _, ok := store.LeaseFrom(ctx, mailboxID); !ok {
		return s.retry(ctx, func() error { return f(s.pool) })
	}
	return s.writeTx(ctx, mailboxID, func(tx pgx.Tx) error { return f(tx) })
}

// writeTx runs f, a write of mailboxID's data that needs a transaction anyway, in one; under a
// lease for the mailbox in ctx, the transaction first checks the lease (see fence).
func (s *Store) writeTx(ctx context.Context, mailboxID string, f func(tx pgx.Tx) error) error {
	l, fenced := store.LeaseFrom(ctx, mailboxID)
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if fenced {
			if err := fence(ctx, tx, l); err != nil {
				return err
			}
		}
		return f(tx)
	})
}

// fence checks, at the start of a write's transaction, that l is still its mailbox's lease, and
// locks the owner row FOR SHARE until the transaction ends: a claim that would raise the epoch
// skips the mailbox (SKIP LOCKED) instead of changing the owner under the write, and a claim
// already in progress makes the check wait for it and then fail. store.ErrFenced, unwrapped and
// not retried, when the lease is not current.
func fence(ctx context.Context, tx pgx.Tx, l store.Lease) error {
	if !storable(l.MailboxID) || !storable(l.ReplicaID) || !storable(l.Incarnation) {
		return store.ErrFenced // no claim hands out such a lease
	}
	b := &pgx.Batch{}
	b.Queue(`SET LOCAL lock_timeout = '` + fenceLockTimeout + `'`)
	b.Queue(`SELECT 1 FROM mailbox_owner
		WHERE mailbox_id = $1 AND replica_id = $2 AND incarnation = $3 AND epoch = $4
		FOR SHARE`, l.MailboxID, l.ReplicaID, l.Incarnation, l.Epoch)
	br := tx.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		var one int
		err = br.QueryRow().Scan(&one)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrFenced
	}
	return err
}

// Heartbeat implements store.Cluster. A join takes the id over from any earlier incarnation;
// a renewal by an incarnation that no longer holds the id (another process joined with it, or
// its row was removed a minute after it lapsed) is store.ErrReplaced. Both remove the rows of
// replicas whose heartbeat lapsed more than a minute ago, in the same statement.
func (s *Store) Heartbeat(ctx context.Context, r store.Replica, ttl time.Duration, join bool) error {
	const prune = `WITH gone AS (
			DELETE FROM replica WHERE expires_at < now() - interval '` + replicaRetention + `' AND id <> $1)
		`
	if join {
		return s.exec(ctx, prune+`INSERT INTO replica (id, incarnation, addr, started_at, expires_at)
			VALUES ($1, $2, $3, now(), now() + $4::bigint * interval '1 microsecond')
			ON CONFLICT (id) DO UPDATE SET incarnation = excluded.incarnation, addr = excluded.addr,
				started_at = excluded.started_at, expires_at = excluded.expires_at`,
			r.ID, r.Incarnation, r.Addr, ttl.Microseconds())
	}
	if !storable(r.ID) || !storable(r.Incarnation) {
		return store.ErrReplaced // never joined: no row can be this one
	}
	var n int64
	err := s.retry(ctx, func() error {
		tag, err := s.pool.Exec(ctx, prune+`UPDATE replica SET expires_at = now() + $3::bigint * interval '1 microsecond'
			WHERE id = $1 AND incarnation = $2`, r.ID, r.Incarnation, ttl.Microseconds())
		n = tag.RowsAffected()
		return err
	})
	if err == nil && n == 0 {
		return store.ErrReplaced
	}
	return err
}

// Replicas implements store.Cluster.
func (s *Store) Replicas(ctx context.Context) ([]store.Replica, error) {
	var out []store.Replica
	err := s.retry(ctx, func() error {
		out = nil
		rows, err := s.pool.Query(ctx, `SELECT id, incarnation, addr, started_at, expires_at, expires_at > now()
			FROM replica WHERE expires_at > now() - interval '`+replicaRetention+`' ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r store.Replica
			if err := rows.Scan(&r.ID, &r.Incarnation, &r.Addr, &r.StartTime, &r.ExpireTime, &r.Alive); err != nil {
				return err
			}
			r.StartTime, r.ExpireTime = r.StartTime.UTC(), r.ExpireTime.UTC()
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// Leases implements store.Cluster. A mailbox never claimed has epoch 0.
func (s *Store) Leases(ctx context.Context) ([]store.Lease, error) {
	var out []store.Lease
	err := s.retry(ctx, func() error {
		out = nil
		rows, err := s.pool.Query(ctx, `SELECT m.id, m.tenant, coalesce(o.replica_id, ''), coalesce(o.incarnation, ''), coalesce(o.epoch, 0), m.updated_at
			FROM mailboxes m LEFT JOIN mailbox_owner o ON o.mailbox_id = m.id
			ORDER BY m.id`)
		if err != nil {
			return err
		}
		out, err = collectLeases(rows)
		return err
	})
	return out, err
}

// collectLeases reads rows of mailbox id, tenant, replica id, incarnation, epoch and the
// mailbox's update time.
func collectLeases(rows pgx.Rows) ([]store.Lease, error) {
	defer rows.Close()
	var out []store.Lease
	for rows.Next() {
		var l store.Lease
		var updated int64
		if err := rows.Scan(&l.MailboxID, &l.Tenant, &l.ReplicaID, &l.Incarnation, &l.Epoch, &updated); err != nil {
			return nil, err
		}
		l.Updated = time.Unix(0, updated).UTC()
		out = append(out, l)
	}
	return out, rows.Err()
}

// storableIDs returns the ids that can name a row, sorted and without repeats.
func storableIDs(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if storable(id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Claim implements store.Cluster, in two statements. The first gives every existing mailbox
// among ids that has none an owner row (held by nobody, epoch 0), locking those mailboxes' rows
// FOR KEY SHARE so a concurrent delete cannot fail it. The second takes, in one snapshot, the
// owner rows that nobody alive holds, provided the claimant itself is alive, and raises their
// epochs. It locks them FOR UPDATE SKIP LOCKED: a row locked by a fenced write in progress, or
// by another claim, is skipped, never waited for. Two claims of the same mailbox at once
// therefore never both take it: the second skips the row, or, when the first committed before
// it got there, re-reads it and sees a live holder. The claimant's own heartbeat is checked by
// the database's clock in the same statement, so a replica whose heartbeat lapsed takes nothing.
func (s *Store) Claim(ctx context.Context, replicaID, incarnation string, ids []string) ([]store.Lease, error) {
	ids = storableIDs(ids)
	if len(ids) == 0 || !storable(replicaID) || !storable(incarnation) {
		return nil, nil
	}
	if err := s.exec(ctx, `INSERT INTO mailbox_owner (mailbox_id)
		SELECT m.id FROM mailboxes m
		WHERE m.id = ANY ($1::text[]) AND NOT EXISTS (SELECT 1 FROM mailbox_owner o WHERE o.mailbox_id = m.id)
		ORDER BY m.id
		FOR KEY SHARE OF m
		ON CONFLICT (mailbox_id) DO NOTHING`, ids); err != nil {
		return nil, err
	}
	var out []store.Lease
	err := s.retry(ctx, func() error {
		rows, err := s.pool.Query(ctx, `WITH c AS (
				SELECT o.mailbox_id FROM mailbox_owner o
				WHERE o.mailbox_id = ANY ($3::text[])
					AND (o.replica_id IS NULL
						OR (o.replica_id = $1 AND o.incarnation IS DISTINCT FROM $2)
						OR NOT EXISTS (SELECT 1 FROM replica r
							WHERE r.id = o.replica_id AND r.incarnation = o.incarnation AND r.expires_at > now()))
					AND EXISTS (SELECT 1 FROM replica me WHERE me.id = $1 AND me.incarnation = $2 AND me.expires_at > now())
				ORDER BY o.mailbox_id
				FOR UPDATE OF o SKIP LOCKED)
			UPDATE mailbox_owner o SET replica_id = $1, incarnation = $2, epoch = o.epoch + 1
			FROM c JOIN mailboxes m ON m.id = c.mailbox_id
			WHERE o.mailbox_id = c.mailbox_id
			RETURNING o.mailbox_id, m.tenant, o.replica_id, o.incarnation, o.epoch, m.updated_at`, replicaID, incarnation, ids)
		if err != nil {
			return err
		}
		out, err = collectLeases(rows)
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b store.Lease) int { return strings.Compare(a.MailboxID, b.MailboxID) })
	return out, nil
}

// Release implements store.Cluster, in one statement. The epoch stays: the next claim raises it,
// and a write under the released lease is refused because the row no longer names its holder.
func (s *Store) Release(ctx context.Context, leases []store.Lease) error {
	// In mailbox order, so that releases running at once lock their rows in the same order.
	leases = slices.SortedFunc(slices.Values(leases), func(a, b store.Lease) int { return strings.Compare(a.MailboxID, b.MailboxID) })
	var mailboxIDs, replicaIDs, incarnations []string
	var epochs []int64
	for _, l := range leases {
		if l.ReplicaID == "" || !storable(l.MailboxID) || !storable(l.ReplicaID) || !storable(l.Incarnation) {
			continue // held by nobody, or not a lease any claim handed out
		}
		mailboxIDs = append(mailboxIDs, l.MailboxID)
		replicaIDs = append(replicaIDs, l.ReplicaID)
		incarnations = append(incarnations, l.Incarnation)
		epochs = append(epochs, l.Epoch)
	}
	if len(mailboxIDs) == 0 {
		return nil
	}
	return s.exec(ctx, `UPDATE mailbox_owner o SET replica_id = NULL, incarnation = NULL
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS l (mailbox_id, replica_id, incarnation, epoch)
		WHERE o.mailbox_id = l.mailbox_id AND o.replica_id = l.replica_id AND o.incarnation = l.incarnation AND o.epoch = l.epoch`,
		mailboxIDs, replicaIDs, incarnations, epochs)
}

// Leave implements store.Cluster: the releases and the end of the heartbeat commit together, so
// no other replica sees the replica gone with mailboxes still held, or the other way round. The
// heartbeat ends at now() (or stays at an earlier lapse), which Alive (expires_at > now()) already
// counts as lapsed.
func (s *Store) Leave(ctx context.Context, replicaID, incarnation string) error {
	if !storable(replicaID) || !storable(incarnation) {
		return nil
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`UPDATE mailbox_owner SET replica_id = NULL, incarnation = NULL WHERE replica_id = $1 AND incarnation = $2`,
			replicaID, incarnation)
		b.Queue(`UPDATE replica SET expires_at = least(expires_at, now()) WHERE id = $1 AND incarnation = $2`, replicaID, incarnation)
		return tx.SendBatch(ctx, b).Close()
	})
}

// PendingWork implements store.Cluster. Both parts use indexes: the partial index of unapplied
// acknowledgements, and quarantine's unique (mailbox, UIDVALIDITY, UID) key.
func (s *Store) PendingWork(ctx context.Context, replicaID, incarnation string, from, to time.Time) ([]string, error) {
	if !storable(replicaID) || !storable(incarnation) {
		return nil, nil
	}
	var out []string
	err := s.retry(ctx, func() error {
		out = nil
		rows, err := s.pool.Query(ctx, `SELECT o.mailbox_id FROM mailbox_owner o
			WHERE o.replica_id = $1 AND o.incarnation = $2 AND (
				EXISTS (SELECT 1 FROM acks a WHERE a.mailbox_id = o.mailbox_id AND NOT a.applied AND a.acked_at >= $3 AND a.acked_at < $4)
				OR EXISTS (SELECT 1 FROM quarantine q WHERE q.mailbox_id = o.mailbox_id AND q.state = 'replay'))
			ORDER BY o.mailbox_id`, replicaID, incarnation, from.UnixNano(), to.UnixNano())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			out = append(out, id)
		}
		return rows.Err()
	})
	return out, err
}

// notifyChannel is the LISTEN/NOTIFY channel of mailbox hints.
const notifyChannel = "mailintake_mailbox"

// Notify implements store.Cluster.
func (s *Store) Notify(ctx context.Context, mailboxID string) error {
	if !storable(mailboxID) {
		return nil
	}
	return s.exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, mailboxID)
}

// Listen implements store.Cluster. It holds a connection of its own outside the pool (LISTEN
// belongs to a session, and notifications are not delivered to a connection inside a transaction),
// made again with backoff when it breaks. Behind PgBouncer in transaction pooling no notification
// arrives; the reconciliation still finds everything, a second later.
func (s *Store) Listen(ctx context.Context, f func(mailboxID string)) {
	backoff := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+notifyChannel)
		}
		if err == nil {
			if !first {
				f("") // what was sent while the listener was away is lost
			}
			first = false
			backoff = 100 * time.Millisecond
			for err == nil {
				var n *pgconn.Notification
				n, err = conn.WaitForNotification(ctx)
				if err == nil {
					f(n.Payload)
				}
			}
		}
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
