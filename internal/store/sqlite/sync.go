package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/internal/mailcopy"
)

// SyncState implements store.SyncStore.
func (s *Store) SyncState(ctx context.Context, mailboxID string) (*store.SyncState, error) {
	st := &store.SyncState{MailboxID: mailboxID}
	var updated int64
	err := s.st.syncState.QueryRowContext(ctx, mailboxID).Scan(&st.UIDValidity, &st.AckedThrough, &st.Baseline, &st.ResyncBelow, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(err)
	}
	st.UpdateTime = time.Unix(0, updated).UTC()
	return st, nil
}

// SaveSyncState implements store.SyncStore. A save that only moves acked_through forward (every
// round's checkpoint) is relaxed (relaxed.go); the first save and a resync are durable.
func (s *Store) SaveSyncState(ctx context.Context, st *store.SyncState) error {
	now := time.Now().UnixNano()
	advanced := false
	err := s.relaxedTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, s.st.advanceSyncState).ExecContext(ctx, st.AckedThrough, now, st.MailboxID, st.UIDValidity, st.Baseline, st.ResyncBelow)
		if err != nil {
			return wrap(err)
		}
		n, err := res.RowsAffected()
		advanced = n == 1
		return wrap(err)
	})
	if err != nil || advanced {
		return err
	}
	_, err = s.st.saveSyncState.ExecContext(ctx, st.MailboxID, st.UIDValidity, st.AckedThrough, st.Baseline, st.ResyncBelow, now)
	return wrap(err)
}

// RecordAcks implements store.SyncStore.
func (s *Store) RecordAcks(ctx context.Context, acks map[string][]store.Ack) error {
	if len(acks) == 0 {
		return nil
	}
	return s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, s.st.insertAck)
		for mailboxID, list := range acks {
			for _, a := range list {
				if _, err := stmt.ExecContext(ctx, mailboxID, a.UIDValidity, a.UID, a.SHA256, a.AckTime.UnixNano(), a.Applied); err != nil {
					return wrap(err)
				}
			}
		}
		return nil
	})
}

// ackColumns are the columns queryAcks scans.
const ackColumns = `uid_validity, uid, sha256, acked_at, applied`

func queryAcks(ctx context.Context, st *sql.Stmt, args ...any) ([]store.Ack, error) {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var out []store.Ack
	for rows.Next() {
		var a store.Ack
		var at int64
		if err := rows.Scan(&a.UIDValidity, &a.UID, &a.SHA256, &at, &a.Applied); err != nil {
			return nil, wrap(err)
		}
		a.AckTime = time.Unix(0, at).UTC()
		out = append(out, a)
	}
	return out, wrap(rows.Err())
}

// Acks implements store.SyncStore.
func (s *Store) Acks(ctx context.Context, mailboxID string, uidValidity, aboveUID uint32) ([]store.Ack, error) {
	return queryAcks(ctx, s.st.acksAbove, mailboxID, uidValidity, aboveUID)
}

// UnappliedAcks implements store.SyncStore.
func (s *Store) UnappliedAcks(ctx context.Context, mailboxID string) ([]store.Ack, error) {
	return queryAcks(ctx, s.st.unappliedAcks, mailboxID)
}

// MarkApplied implements store.SyncStore. It is relaxed (relaxed.go): lost to a power failure, the
// action is applied again.
func (s *Store) MarkApplied(ctx context.Context, mailboxID string, uidValidity uint32, uids []uint32) error {
	if len(uids) == 0 {
		return nil
	}
	return s.relaxedTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, s.st.markApplied)
		for _, u := range uids {
			if _, err := stmt.ExecContext(ctx, mailboxID, uidValidity, u); err != nil {
				return wrap(err)
			}
		}
		return nil
	})
}

// AckedHash implements store.SyncStore.
func (s *Store) AckedHash(ctx context.Context, mailboxID, sha256 string) (bool, error) {
	var one int
	err := s.st.ackedHash.QueryRowContext(ctx, mailboxID, sha256).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, wrap(err)
}

// PruneAcks implements store.SyncStore.
func (s *Store) PruneAcks(ctx context.Context, mailboxID string, uidValidity, ackedThrough uint32, olderThan time.Time) error {
	_, err := s.w.ExecContext(ctx, `DELETE FROM acks WHERE mailbox_id = ? AND applied = 1 AND acked_at < ?
		AND (uid_validity != ? OR uid <= ?)`, mailboxID, olderThan.UnixNano(), uidValidity, ackedThrough)
	return wrap(err)
}

// Quarantine implements store.SyncStore.
func (s *Store) Quarantine(ctx context.Context, q *store.Quarantined) error {
	if q.State == "" {
		q.State = store.QuarantineHeld
	}
	if q.CreateTime.IsZero() {
		q.CreateTime = time.Now()
	}
	err := s.w.QueryRowContext(ctx, `INSERT INTO quarantine (mailbox_id, uid_validity, uid, reason, size, headers, state, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (mailbox_id, uid_validity, uid) DO UPDATE SET reason = excluded.reason, size = excluded.size,
			headers = excluded.headers, state = excluded.state
		RETURNING id`,
		q.MailboxID, q.UIDValidity, q.UID, q.Reason, q.Size, q.Headers, string(q.State), q.CreateTime.UnixNano()).Scan(&q.ID)
	return wrap(err)
}

const quarantineColumns = `id, mailbox_id, uid_validity, uid, reason, size, headers, state, created_at`

func scanQuarantined(sc interface{ Scan(...any) error }) (*store.Quarantined, error) {
	var q store.Quarantined
	var st string
	var at int64
	if err := sc.Scan(&q.ID, &q.MailboxID, &q.UIDValidity, &q.UID, &q.Reason, &q.Size, &q.Headers, &st, &at); err != nil {
		return nil, wrap(err)
	}
	q.State = store.QuarantineState(st)
	q.CreateTime = time.Unix(0, at).UTC()
	return &q, nil
}

// ListQuarantine implements store.SyncStore.
func (s *Store) ListQuarantine(ctx context.Context, mailboxID string) ([]*store.Quarantined, error) {
	rows, err := s.st.quarantine.QueryContext(ctx, mailboxID)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var out []*store.Quarantined
	for rows.Next() {
		q, err := scanQuarantined(rows)
		if err != nil {
			return nil, wrap(err)
		}
		out = append(out, q)
	}
	return out, wrap(rows.Err())
}

// GetQuarantined implements store.SyncStore.
func (s *Store) GetQuarantined(ctx context.Context, id int64) (*store.Quarantined, error) {
	q, err := scanQuarantined(s.db.QueryRowContext(ctx, `SELECT `+quarantineColumns+` FROM quarantine WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return q, wrap(err)
}

// SetQuarantineState implements store.SyncStore.
func (s *Store) SetQuarantineState(ctx context.Context, id int64, st store.QuarantineState) error {
	return s.execOne(ctx, `UPDATE quarantine SET state = ? WHERE id = ?`, string(st), id)
}

// DeleteQuarantined implements store.SyncStore.
func (s *Store) DeleteQuarantined(ctx context.Context, id int64) error {
	return s.execOne(ctx, `DELETE FROM quarantine WHERE id = ?`, id)
}

func (s *Store) execOne(ctx context.Context, q string, args ...any) error {
	res, err := s.w.ExecContext(ctx, q, args...)
	if err != nil {
		return wrap(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// addEvent writes one event in tx (AddEvent's group commit, events.go): a repeat of a recent
// entry folded into it, then the mailbox's log pruned.
func (s *Store) addEvent(ctx context.Context, tx *sql.Tx, e store.Event) error {
	msg := e.Message
	if len(msg) > 2000 {
		msg = msg[:2000] + "…"
	}
	msg = strings.ToValidUTF8(msg, "?")
	// A repeat of a recent entry replaces it, counted, as the newest entry.
	count, first := 1, e.Time.UnixNano()
	var oldID, oldCount int64
	var oldFirst sql.NullInt64
	var oldAt int64
	err := tx.StmtContext(ctx, s.st.eventRepeat).QueryRowContext(ctx, e.MailboxID, e.Kind, msg, e.Time.Add(-store.EventFoldWindow).UnixNano()).Scan(&oldID, &oldCount, &oldFirst, &oldAt)
	switch {
	case err == nil:
		count = int(oldCount) + 1
		first = oldAt
		if oldFirst.Valid {
			first = oldFirst.Int64
		}
		if _, err := tx.StmtContext(ctx, s.st.eventDelete).ExecContext(ctx, oldID); err != nil {
			return wrap(err)
		}
	case !errors.Is(err, sql.ErrNoRows):
		return wrap(err)
	}
	if _, err := tx.StmtContext(ctx, s.st.eventInsert).ExecContext(ctx, e.MailboxID, e.Time.UnixNano(), e.Kind, msg, count, first); err != nil {
		return wrap(err)
	}
	// Pruned at every write, by age and by count, so the log's bounds hold exactly.
	if _, err := tx.StmtContext(ctx, s.st.eventPruneAge).ExecContext(ctx, e.MailboxID, e.Time.Add(-store.EventRetention).UnixNano()); err != nil {
		return wrap(err)
	}
	if _, err := tx.StmtContext(ctx, s.st.eventPruneCount).ExecContext(ctx, e.MailboxID, e.MailboxID, store.MaxEventsPerMailbox); err != nil {
		return wrap(err)
	}
	return nil
}

// ListEvents implements store.SyncStore.
func (s *Store) ListEvents(ctx context.Context, mailboxID string, beforeID int64, limit int) ([]store.Event, error) {
	if beforeID <= 0 {
		beforeID = 1<<62 - 1
	}
	if limit <= 0 || limit > store.MaxEventsPerMailbox {
		limit = store.MaxEventsPerMailbox
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, kind, message, count, first_at FROM events WHERE mailbox_id = ? AND id < ? ORDER BY id DESC LIMIT ?`,
		mailboxID, beforeID, limit)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		e := store.Event{MailboxID: mailboxID}
		var at int64
		var first sql.NullInt64
		if err := rows.Scan(&e.ID, &at, &e.Kind, &e.Message, &e.Count, &first); err != nil {
			return nil, wrap(err)
		}
		e.Time = time.Unix(0, at).UTC()
		e.FirstTime = e.Time
		if first.Valid {
			e.FirstTime = time.Unix(0, first.Int64).UTC()
		}
		out = append(out, e)
	}
	return out, wrap(rows.Err())
}

// ClaimCopies implements store.SyncStore. The claims of a call and the reading of their winners
// run in one write transaction on the single writer connection, so no other claim comes between
// them: the first to commit a key is its winner for every later call. A claim expired by the
// call's time is taken over (the upsert's WHERE); expired claims are deleted, in the same
// transaction, at most once per store.CopyPruneInterval.
func (s *Store) ClaimCopies(ctx context.Context, now time.Time, copies []store.MailCopy) ([]string, error) {
	claims, index := mailcopy.Plan(copies, nil)
	if len(claims) == 0 {
		return make([]string, len(copies)), nil
	}
	if now.IsZero() {
		now = time.Now()
	}
	cut := now.Add(-store.CopyRetention).UnixNano()
	prune := s.copies.Due(now)
	winners := make([]mailcopy.Winner, len(claims))
	// Relaxed (relaxed.go): a claim lost to a power failure lets a later copy be the first.
	err := s.relaxedTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if prune {
			if _, err := tx.ExecContext(ctx, `DELETE FROM mail_copies WHERE claimed_at < ?`, cut); err != nil {
				return wrap(err)
			}
		}
		claim, winner := tx.StmtContext(ctx, s.st.copyClaim), tx.StmtContext(ctx, s.st.copyWinner)
		for j, c := range claims {
			if _, err := claim.ExecContext(ctx, c.Key, c.MailboxID, c.ID, now.UnixNano(), cut); err != nil {
				return wrap(err)
			}
			err := winner.QueryRowContext(ctx, c.Key).Scan(&winners[j].MailboxID, &winners[j].ID)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return wrap(err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if prune {
		s.copies.Pruned(now)
	}
	return mailcopy.Answers(copies, index, winners), nil
}
