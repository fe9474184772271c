package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailintake/mailintake/internal/store"
)

// MapUIDLs implements store.SyncStore. Under a lease for the mailbox it is fenced.
func (s *Store) MapUIDLs(ctx context.Context, mailboxID string, uidls []string, now, forgetGoneBefore time.Time) (map[string]uint32, error) {
	if !storable(mailboxID) {
		return nil, store.ErrNotFound
	}
	for _, u := range uidls {
		if !storable(u) {
			return nil, store.ErrNotFound
		}
	}
	var out map[string]uint32
	err := s.writeTx(ctx, mailboxID, func(tx pgx.Tx) error {
		// The mailbox's row is locked first, so two calls for one mailbox give no UID twice.
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM mailboxes WHERE id = $1 FOR UPDATE`, mailboxID).Scan(&one); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return store.ErrNotFound
			}
			return err
		}
		// What was gone for long enough is forgotten first: listed again, it is new.
		if _, err := tx.Exec(ctx, `DELETE FROM pop3_uidls WHERE mailbox_id = $1 AND gone_at IS NOT NULL AND gone_at < $2
			AND uid < (SELECT MAX(uid) FROM pop3_uidls WHERE mailbox_id = $1)`, mailboxID, forgetGoneBefore.UnixNano()); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT uidl, uid, gone_at IS NOT NULL FROM pop3_uidls WHERE mailbox_id = $1`, mailboxID)
		if err != nil {
			return err
		}
		known := map[string]store.UIDLState{}
		var top uint32
		for rows.Next() {
			var u string
			var uid int64
			var gone bool
			if err := rows.Scan(&u, &uid, &gone); err != nil {
				rows.Close()
				return err
			}
			known[u] = store.UIDLState{UID: uint32(uid), Gone: gone}
			top = max(top, uint32(uid))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		plan := store.PlanUIDLs(known, top, uidls)
		b := &pgx.Batch{}
		for _, u := range plan.Insert {
			b.Queue(`INSERT INTO pop3_uidls (mailbox_id, uidl, uid, first_seen) VALUES ($1, $2, $3, $4)`, mailboxID, u, int64(plan.UIDs[u]), now.UnixNano())
		}
		if len(plan.Back) > 0 {
			b.Queue(`UPDATE pop3_uidls SET gone_at = NULL WHERE mailbox_id = $1 AND uidl = ANY($2)`, mailboxID, plan.Back)
		}
		if len(plan.Gone) > 0 {
			b.Queue(`UPDATE pop3_uidls SET gone_at = $3 WHERE mailbox_id = $1 AND uidl = ANY($2)`, mailboxID, plan.Gone, now.UnixNano())
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		out = plan.UIDs
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UIDLOf implements store.SyncStore.
func (s *Store) UIDLOf(ctx context.Context, mailboxID string, uid uint32) (string, error) {
	if !storable(mailboxID) {
		return "", store.ErrNotFound
	}
	var u string
	err := s.retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT uidl FROM pop3_uidls WHERE mailbox_id = $1 AND uid = $2`, mailboxID, int64(uid)).Scan(&u)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return "", store.ErrNotFound
	}
	return u, err
}
