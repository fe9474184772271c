package postgres

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/internal/mailcopy"
)

// SyncState implements store.SyncStore.
func (s *Store) SyncState(ctx context.Context, mailboxID string) (*store.SyncState, error) {
	if !storable(mailboxID) {
		return nil, nil
	}
	st := &store.SyncState{MailboxID: mailboxID}
	var updated int64
	err := s.retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT uid_validity, acked_through, baseline, resync_below, updated_at FROM sync_state WHERE mailbox_id = $1`, mailboxID).
			Scan(&st.UIDValidity, &st.AckedThrough, &st.Baseline, &st.ResyncBelow, &updated)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st.UpdateTime = time.Unix(0, updated).UTC()
	return st, nil
}

// SaveSyncState implements store.SyncStore. Under a lease for the mailbox it is fenced.
func (s *Store) SaveSyncState(ctx context.Context, st *store.SyncState) error {
	return s.write(ctx, st.MailboxID, func(db dbtx) error {
		_, err := db.Exec(ctx, `INSERT INTO sync_state (mailbox_id, uid_validity, acked_through, baseline, resync_below, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (mailbox_id) DO UPDATE SET uid_validity = excluded.uid_validity, acked_through = excluded.acked_through,
				baseline = excluded.baseline, resync_below = excluded.resync_below, updated_at = excluded.updated_at`,
			st.MailboxID, int64(st.UIDValidity), int64(st.AckedThrough), int64(st.Baseline), int64(st.ResyncBelow), time.Now().UnixNano())
		return err
	})
}

// RecordAcks implements store.SyncStore. Every acknowledgement of the call goes in one INSERT,
// which is atomic: an acknowledgement of a mailbox that does not exist fails the foreign key and
// none is recorded. Rows are sorted by key, so concurrent calls take their row locks in the same
// order and do not deadlock. It is never fenced, lease or not: an acknowledgement is a fact from
// a consumer, and recording it again is harmless.
func (s *Store) RecordAcks(ctx context.Context, acks map[string][]store.Ack) error {
	type row struct {
		mailboxID   string
		uidValidity uint32
		uid         uint32
		a           store.Ack
	}
	var rows []row
	for mailboxID, list := range acks {
		for _, a := range list {
			rows = append(rows, row{mailboxID, a.UIDValidity, a.UID, a})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	slices.SortStableFunc(rows, func(x, y row) int {
		return cmp.Or(strings.Compare(x.mailboxID, y.mailboxID), cmp.Compare(x.uidValidity, y.uidValidity), cmp.Compare(x.uid, y.uid))
	})
	n := len(rows)
	mailboxIDs, shas := make([]string, n), make([]string, n)
	uidValidities, uids, ackedAt := make([]int64, n), make([]int64, n), make([]int64, n)
	applied := make([]bool, n)
	for i, r := range rows {
		mailboxIDs[i], uidValidities[i], uids[i] = r.mailboxID, int64(r.uidValidity), int64(r.uid)
		shas[i], ackedAt[i], applied[i] = r.a.SHA256, r.a.AckTime.UnixNano(), r.a.Applied
	}
	return s.exec(ctx, `INSERT INTO acks (mailbox_id, uid_validity, uid, sha256, acked_at, applied)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::boolean[])
		ON CONFLICT DO NOTHING`, mailboxIDs, uidValidities, uids, shas, ackedAt, applied)
}

func (s *Store) queryAcks(ctx context.Context, q string, args ...any) ([]store.Ack, error) {
	var out []store.Ack
	err := s.retry(ctx, func() error {
		out = nil
		rows, err := s.pool.Query(ctx, `SELECT uid_validity, uid, sha256, acked_at, applied FROM acks `+q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var a store.Ack
			var at int64
			if err := rows.Scan(&a.UIDValidity, &a.UID, &a.SHA256, &at, &a.Applied); err != nil {
				return err
			}
			a.AckTime = time.Unix(0, at).UTC()
			out = append(out, a)
		}
		return rows.Err()
	})
	return out, err
}

// Acks implements store.SyncStore.
func (s *Store) Acks(ctx context.Context, mailboxID string, uidValidity, aboveUID uint32) ([]store.Ack, error) {
	if !storable(mailboxID) {
		return nil, nil
	}
	return s.queryAcks(ctx, `WHERE mailbox_id = $1 AND uid_validity = $2 AND uid > $3 ORDER BY uid`,
		mailboxID, int64(uidValidity), int64(aboveUID))
}

// UnappliedAcks implements store.SyncStore.
func (s *Store) UnappliedAcks(ctx context.Context, mailboxID string) ([]store.Ack, error) {
	if !storable(mailboxID) {
		return nil, nil
	}
	return s.queryAcks(ctx, `WHERE mailbox_id = $1 AND NOT applied ORDER BY uid_validity, uid`, mailboxID)
}

// MarkApplied implements store.SyncStore. Under a lease for the mailbox it is fenced.
func (s *Store) MarkApplied(ctx context.Context, mailboxID string, uidValidity uint32, uids []uint32) error {
	if len(uids) == 0 || !storable(mailboxID) {
		return nil
	}
	list := make([]int64, len(uids))
	for i, u := range uids {
		list[i] = int64(u)
	}
	slices.Sort(list)
	return s.write(ctx, mailboxID, func(db dbtx) error {
		_, err := db.Exec(ctx, `UPDATE acks SET applied = true WHERE mailbox_id = $1 AND uid_validity = $2 AND uid = ANY ($3::bigint[])`,
			mailboxID, int64(uidValidity), list)
		return err
	})
}

// AckedHash implements store.SyncStore.
func (s *Store) AckedHash(ctx context.Context, mailboxID, sha256 string) (bool, error) {
	if !storable(mailboxID) || !storable(sha256) {
		return false, nil
	}
	var found bool
	err := s.retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM acks WHERE mailbox_id = $1 AND sha256 = $2)`, mailboxID, sha256).Scan(&found)
	})
	return found, err
}

// PruneAcks implements store.SyncStore. Under a lease for the mailbox it is fenced.
func (s *Store) PruneAcks(ctx context.Context, mailboxID string, uidValidity, ackedThrough uint32, olderThan time.Time) error {
	if !storable(mailboxID) {
		return nil
	}
	return s.write(ctx, mailboxID, func(db dbtx) error {
		_, err := db.Exec(ctx, `DELETE FROM acks WHERE mailbox_id = $1 AND applied AND acked_at < $2
			AND (uid_validity <> $3 OR uid <= $4)`, mailboxID, olderThan.UnixNano(), int64(uidValidity), int64(ackedThrough))
		return err
	})
}

// Quarantine implements store.SyncStore. The header section is kept as bytes (bytea): it is
// whatever the mail server sent, not necessarily UTF-8. Under a lease for the mailbox it is
// fenced.
func (s *Store) Quarantine(ctx context.Context, q *store.Quarantined) error {
	if q.State == "" {
		q.State = store.QuarantineHeld
	}
	if q.CreateTime.IsZero() {
		q.CreateTime = time.Now()
	}
	var id int64
	err := s.write(ctx, q.MailboxID, func(db dbtx) error {
		return db.QueryRow(ctx, `INSERT INTO quarantine (mailbox_id, uid_validity, uid, reason, size, headers, state, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (mailbox_id, uid_validity, uid) DO UPDATE SET reason = excluded.reason, size = excluded.size,
				headers = excluded.headers, state = excluded.state
			RETURNING id`,
			q.MailboxID, int64(q.UIDValidity), int64(q.UID), text(q.Reason), q.Size, []byte(q.Headers), text(string(q.State)),
			q.CreateTime.UnixNano()).Scan(&id)
	})
	if err != nil {
		return err
	}
	q.ID = id
	return nil
}

const quarantineColumns = `id, mailbox_id, uid_validity, uid, reason, size, headers, state, created_at`

func scanQuarantined(row pgx.Row) (*store.Quarantined, error) {
	var q store.Quarantined
	var st string
	var headers []byte
	var at int64
	if err := row.Scan(&q.ID, &q.MailboxID, &q.UIDValidity, &q.UID, &q.Reason, &q.Size, &headers, &st, &at); err != nil {
		return nil, err
	}
	q.Headers = string(headers)
	q.State = store.QuarantineState(st)
	q.CreateTime = time.Unix(0, at).UTC()
	return &q, nil
}

// ListQuarantine implements store.SyncStore.
func (s *Store) ListQuarantine(ctx context.Context, mailboxID string) ([]*store.Quarantined, error) {
	if !storable(mailboxID) {
		return nil, nil
	}
	var out []*store.Quarantined
	err := s.retry(ctx, func() error {
		out = nil
		rows, err := s.pool.Query(ctx, `SELECT `+quarantineColumns+` FROM quarantine WHERE mailbox_id = $1 ORDER BY id`, mailboxID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			q, err := scanQuarantined(rows)
			if err != nil {
				return err
			}
			out = append(out, q)
		}
		return rows.Err()
	})
	return out, err
}

// GetQuarantined implements store.SyncStore.
func (s *Store) GetQuarantined(ctx context.Context, id int64) (*store.Quarantined, error) {
	var q *store.Quarantined
	err := s.retry(ctx, func() error {
		var err error
		q, err = scanQuarantined(s.pool.QueryRow(ctx, `SELECT `+quarantineColumns+` FROM quarantine WHERE id = $1`, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return q, err
}

// SetQuarantineState implements store.SyncStore.
func (s *Store) SetQuarantineState(ctx context.Context, id int64, st store.QuarantineState) error {
	return s.execOne(ctx, `UPDATE quarantine SET state = $1 WHERE id = $2`, text(string(st)), id)
}

// DeleteQuarantined implements store.SyncStore.
func (s *Store) DeleteQuarantined(ctx context.Context, id int64) error {
	return s.execOne(ctx, `DELETE FROM quarantine WHERE id = $1`, id)
}

// eventMessage is what AddEvent stores of a message, as the SQLite store does: at most 2000
// bytes and an ellipsis, invalid UTF-8 as "?"; and, as PostgreSQL's text needs, NUL as "?".
func eventMessage(msg string) string {
	if len(msg) > 2000 {
		msg = msg[:2000] + "…"
	}
	return text(strings.ToValidUTF8(msg, "?"))
}

// AddEvent implements store.SyncStore. The fold, the insert and both prunes run in one
// transaction that first takes a transaction-level advisory lock on the mailbox's log, so
// concurrent writers (any replica) apply them one after the other: a repeat is folded exactly
// once, ids grow in commit order within a mailbox, and the bounds hold exactly. Under a lease for
// the mailbox it is fenced (checked before the advisory lock is taken).
func (s *Store) AddEvent(ctx context.Context, e store.Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	msg := eventMessage(e.Message)
	kind := text(e.Kind)
	at := e.Time.UnixNano()
	return s.writeTx(ctx, e.MailboxID, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`SELECT pg_advisory_xact_lock($1::integer, hashtext($2::text))`, eventsLockClass, e.MailboxID)
		// A repeat of a recent entry replaces it, counted, as the newest entry (a new id); its
		// first time stays.
		b.Queue(`WITH old AS (
				DELETE FROM events WHERE id = (
					SELECT id FROM events WHERE mailbox_id = $1 AND kind = $2 AND message = $3 AND at >= $5::bigint
					ORDER BY id DESC LIMIT 1)
				RETURNING count, first_at)
			INSERT INTO events (mailbox_id, at, kind, message, count, first_at)
			SELECT $1, $4::bigint, $2, $3, coalesce((SELECT count FROM old), 0) + 1, coalesce((SELECT first_at FROM old), $4::bigint)`,
			e.MailboxID, kind, msg, at, e.Time.Add(-store.EventFoldWindow).UnixNano())
		// Pruned at every write, by age and by count, so the log's bounds hold exactly.
		b.Queue(`DELETE FROM events WHERE mailbox_id = $1 AND at < $2`, e.MailboxID, e.Time.Add(-store.EventRetention).UnixNano())
		b.Queue(`DELETE FROM events WHERE mailbox_id = $1 AND id <= (
				SELECT id FROM events WHERE mailbox_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)`, e.MailboxID, store.MaxEventsPerMailbox)
		return tx.SendBatch(ctx, b).Close()
	})
}

// ListEvents implements store.SyncStore.
func (s *Store) ListEvents(ctx context.Context, mailboxID string, beforeID int64, limit int) ([]store.Event, error) {
	if !storable(mailboxID) {
		return nil, nil
	}
	if beforeID <= 0 {
		beforeID = 1<<62 - 1
	}
	if limit <= 0 || limit > store.MaxEventsPerMailbox {
		limit = store.MaxEventsPerMailbox
	}
	var out []store.Event
	err := s.retry(ctx, func() error {
		out = nil
		rows, err := s.pool.Query(ctx, `SELECT id, at, kind, message, count, first_at FROM events
			WHERE mailbox_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`, mailboxID, beforeID, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e := store.Event{MailboxID: mailboxID}
			var at, first int64
			if err := rows.Scan(&e.ID, &at, &e.Kind, &e.Message, &e.Count, &first); err != nil {
				return err
			}
			e.Time = time.Unix(0, at).UTC()
			e.FirstTime = time.Unix(0, first).UTC()
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, err
}

// ClaimCopies implements store.SyncStore. One round trip: a batch, which PostgreSQL runs as one
// implicit transaction, of the claims (one INSERT … ON CONFLICT, rows sorted by key so that
// concurrent calls take their locks in the same order) and a SELECT of the keys' winners. Under
// READ COMMITTED the SELECT takes a new snapshot, after the INSERT waited for any concurrent
// claim of the same key to commit: it reads that claim when it won. A claim expired by the
// call's time is taken over (the upsert's WHERE); expired claims are deleted, in the same batch,
// at most once per store.CopyPruneInterval by each replica. Not fenced: the claim is a fact
// about the tenant's mail, and a replica that lost the mailbox names its messages as the new
// owner does.
func (s *Store) ClaimCopies(ctx context.Context, now time.Time, copies []store.MailCopy) ([]string, error) {
	claims, index := mailcopy.Plan(copies, func(c store.MailCopy) bool { return storable(c.MailboxID) && storable(c.ID) })
	if len(claims) == 0 {
		return make([]string, len(copies)), nil
	}
	if now.IsZero() {
		now = time.Now()
	}
	cut := now.Add(-store.CopyRetention).UnixNano()
	prune := s.copies.Due(now)
	n := len(claims)
	keys := make([][]byte, n)
	mailboxIDs, ids := make([]string, n), make([]string, n)
	for j, c := range claims {
		keys[j], mailboxIDs[j], ids[j] = c.Key, c.MailboxID, c.ID
	}
	winners := make([]mailcopy.Winner, n)
	err := s.retry(ctx, func() error {
		clear(winners)
		b := &pgx.Batch{}
		if prune {
			b.Queue(`DELETE FROM mail_copies WHERE claimed_at < $1`, cut)
		}
		b.Queue(`INSERT INTO mail_copies (key, mailbox_id, message_id, claimed_at)
			SELECT k, m, i, $4::bigint FROM unnest($1::bytea[], $2::text[], $3::text[]) AS c (k, m, i)
			ON CONFLICT (key) DO UPDATE SET mailbox_id = excluded.mailbox_id, message_id = excluded.message_id, claimed_at = excluded.claimed_at
			WHERE mail_copies.claimed_at < $5::bigint`, keys, mailboxIDs, ids, now.UnixNano(), cut)
		b.Queue(`SELECT key, mailbox_id, message_id FROM mail_copies WHERE key = ANY ($1::bytea[])`, keys)
		br := s.pool.SendBatch(ctx, b)
		defer br.Close()
		if prune {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var key []byte
			var w mailcopy.Winner
			if err := rows.Scan(&key, &w.MailboxID, &w.ID); err != nil {
				rows.Close()
				return err
			}
			if j, ok := slices.BinarySearchFunc(claims, key, func(c mailcopy.Claim, k []byte) int { return bytes.Compare(c.Key, k) }); ok {
				winners[j] = w
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		return br.Close()
	})
	if err != nil {
		return nil, err
	}
	if prune {
		s.copies.Pruned(now)
	}
	return mailcopy.Answers(copies, index, winners), nil
}
