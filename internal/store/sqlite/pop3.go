package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/mailintake/mailintake/internal/store"
)

// MapUIDLs implements store.SyncStore.
func (s *Store) MapUIDLs(ctx context.Context, mailboxID string, uidls []string, now, forgetGoneBefore time.Time) (map[string]uint32, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, wrap(err)
	}
	defer tx.Rollback()
	// A deleted mailbox is ErrNotFound, as in PostgreSQL (not a foreign-key failure).
	var one int
	if err := tx.QueryRowContext(ctx, `SELECT 1 FROM mailboxes WHERE id = ?`, mailboxID).Scan(&one); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, store.ErrNotFound
		}
		return nil, wrap(err)
	}
	// What was gone for long enough is forgotten first: listed again, it is new.
	if _, err := tx.ExecContext(ctx, `DELETE FROM pop3_uidls WHERE mailbox_id = ? AND gone_at IS NOT NULL AND gone_at < ?
		AND uid < (SELECT MAX(uid) FROM pop3_uidls WHERE mailbox_id = ?)`, mailboxID, forgetGoneBefore.UnixNano(), mailboxID); err != nil {
		return nil, wrap(err)
	}
	known, top, err := loadUIDLs(ctx, tx, mailboxID)
	if err != nil {
		return nil, err
	}
	plan := store.PlanUIDLs(known, top, uidls)
	for _, u := range plan.Insert {
		if _, err := tx.ExecContext(ctx, `INSERT INTO pop3_uidls (mailbox_id, uidl, uid, first_seen) VALUES (?, ?, ?, ?)`,
			mailboxID, u, plan.UIDs[u], now.UnixNano()); err != nil {
			return nil, wrap(err)
		}
	}
	for _, u := range plan.Back {
		if _, err := tx.ExecContext(ctx, `UPDATE pop3_uidls SET gone_at = NULL WHERE mailbox_id = ? AND uidl = ?`, mailboxID, u); err != nil {
			return nil, wrap(err)
		}
	}
	for _, u := range plan.Gone {
		if _, err := tx.ExecContext(ctx, `UPDATE pop3_uidls SET gone_at = ? WHERE mailbox_id = ? AND uidl = ?`, now.UnixNano(), mailboxID, u); err != nil {
			return nil, wrap(err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, wrap(err)
	}
	return plan.UIDs, nil
}

// UIDLOf implements store.SyncStore.
func (s *Store) UIDLOf(ctx context.Context, mailboxID string, uid uint32) (string, error) {
	var u string
	err := s.db.QueryRowContext(ctx, `SELECT uidl FROM pop3_uidls WHERE mailbox_id = ? AND uid = ?`, mailboxID, uid).Scan(&u)
	if errors.Is(err, sql.ErrNoRows) {
		return "", store.ErrNotFound
	}
	return u, wrap(err)
}

// loadUIDLs reads a mailbox's unique-ids and its highest UID.
func loadUIDLs(ctx context.Context, tx *sql.Tx, mailboxID string) (map[string]store.UIDLState, uint32, error) {
	rows, err := tx.QueryContext(ctx, `SELECT uidl, uid, gone_at IS NOT NULL FROM pop3_uidls WHERE mailbox_id = ?`, mailboxID)
	if err != nil {
		return nil, 0, wrap(err)
	}
	defer rows.Close()
	known := map[string]store.UIDLState{}
	var top uint32
	for rows.Next() {
		var u string
		var st store.UIDLState
		if err := rows.Scan(&u, &st.UID, &st.Gone); err != nil {
			return nil, 0, wrap(err)
		}
		known[u] = st
		top = max(top, st.UID)
	}
	return known, top, wrap(rows.Err())
}
