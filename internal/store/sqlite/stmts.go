package sqlite

import (
	"context"
	"database/sql"
	"errors"
)

// stmts are the statements every session runs in every sync round, prepared once when the store
// opens. Given as SQL text, modernc's SQLite parses and plans a statement on every call: with 200
// mailboxes receiving mail at once that was about a twentieth of the server's CPU (make bench's
// many-mailbox profile). The token lookup runs on every authenticated RPC: a consumer that
// acknowledges each message on its own (the CLI's tail --ack) runs it once per message. A
// reading statement is prepared on the read pool (database/sql prepares it again, once, on each
// connection that runs it); a writing one on the writer, and a transaction runs it through
// Tx.StmtContext, which reuses the writer connection's.
type stmts struct {
	// Reads.
	syncState, acksAbove, unappliedAcks, ackedHash, quarantine, providerState, tokenByID *sql.Stmt
	// Writes.
	saveSyncState, advanceSyncState, insertAck, markApplied                 *sql.Stmt
	eventRepeat, eventDelete, eventInsert, eventPruneAge, eventPruneCount   *sql.Stmt
	savepoint, rollbackToSavepoint, releaseSavepoint, copyClaim, copyWinner *sql.Stmt
}

// prepare prepares every statement of s.st; on an error it closes those it prepared.
func (s *Store) prepare(ctx context.Context) error {
	var all []*sql.Stmt
	var err error
	p := func(db *sql.DB, q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		if st, err = db.PrepareContext(ctx, q); err == nil {
			all = append(all, st)
		}
		return st
	}
	s.st = stmts{
		syncState:     p(s.db, `SELECT uid_validity, acked_through, baseline, resync_below, updated_at FROM sync_state WHERE mailbox_id = ?`),
		acksAbove:     p(s.db, `SELECT `+ackColumns+` FROM acks WHERE mailbox_id = ? AND uid_validity = ? AND uid > ? ORDER BY uid`),
		unappliedAcks: p(s.db, `SELECT `+ackColumns+` FROM acks WHERE mailbox_id = ? AND applied = 0 ORDER BY uid_validity, uid`),
		ackedHash:     p(s.db, `SELECT 1 FROM acks WHERE mailbox_id = ? AND sha256 = ? LIMIT 1`),
		quarantine:    p(s.db, `SELECT `+quarantineColumns+` FROM quarantine WHERE mailbox_id = ? ORDER BY id`),
		providerState: p(s.db, `SELECT sealed FROM provider_state WHERE mailbox_id = ?`),
		tokenByID:     p(s.db, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = ?`),

		saveSyncState: p(s.w, `INSERT INTO sync_state (mailbox_id, uid_validity, acked_through, baseline, resync_below, updated_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (mailbox_id) DO UPDATE SET uid_validity = excluded.uid_validity, acked_through = excluded.acked_through,
				baseline = excluded.baseline, resync_below = excluded.resync_below, updated_at = excluded.updated_at`),
		advanceSyncState: p(s.w, `UPDATE sync_state SET acked_through = ?1, updated_at = ?2
			WHERE mailbox_id = ?3 AND uid_validity = ?4 AND baseline = ?5 AND resync_below = ?6 AND acked_through <= ?1`),
		insertAck: p(s.w, `INSERT INTO acks (mailbox_id, uid_validity, uid, sha256, acked_at, applied) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT DO NOTHING`),
		markApplied: p(s.w, `UPDATE acks SET applied = 1 WHERE mailbox_id = ? AND uid_validity = ? AND uid = ?`),

		eventRepeat: p(s.w, `SELECT id, count, first_at, at FROM events WHERE mailbox_id = ? AND kind = ? AND message = ? AND at >= ?
			ORDER BY id DESC LIMIT 1`),
		eventDelete:   p(s.w, `DELETE FROM events WHERE id = ?`),
		eventInsert:   p(s.w, `INSERT INTO events (mailbox_id, at, kind, message, count, first_at) VALUES (?, ?, ?, ?, ?, ?)`),
		eventPruneAge: p(s.w, `DELETE FROM events WHERE mailbox_id = ? AND at < ?`),
		eventPruneCount: p(s.w, `DELETE FROM events WHERE mailbox_id = ? AND id <= (
			SELECT id FROM events WHERE mailbox_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`),
		savepoint:           p(s.w, `SAVEPOINT event`),
		rollbackToSavepoint: p(s.w, `ROLLBACK TO event`),
		releaseSavepoint:    p(s.w, `RELEASE event`),

		copyClaim: p(s.w, `INSERT INTO mail_copies (key, mailbox_id, message_id, claimed_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET mailbox_id = excluded.mailbox_id, message_id = excluded.message_id, claimed_at = excluded.claimed_at
			WHERE mail_copies.claimed_at < ?`),
		copyWinner: p(s.w, `SELECT mailbox_id, message_id FROM mail_copies WHERE key = ?`),
	}
	if err != nil {
		for _, st := range all {
			st.Close()
		}
		return wrap(err)
	}
	s.stmtList = all
	return nil
}

// closeStmts closes the prepared statements.
func (s *Store) closeStmts() error {
	var errs []error
	for _, st := range s.stmtList {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}
