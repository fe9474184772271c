package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/internal/outboxrow"
)

// The outbox (store.OutboxStore). Leases are ignored: one process owns every mailbox.

const outboundColumns = `id, mailbox_id, tenant, idempotency_key, request_hash, state, message_id, in_reply_to, mail_from,
	recipients, subject, size, warnings, attempts, next_attempt_at, error, result, created_at, updated_at, sent_at, bounce, sent_copy`

func scanOutbound(sc interface{ Scan(...any) error }, withRaw bool) (*store.Outbound, error) {
	var o store.Outbound
	var state, recipients, warnings string
	var errText, result, bounce, sentCopy sql.NullString
	var next, created, updated, sent int64
	dest := []any{&o.ID, &o.MailboxID, &o.Tenant, &o.IdempotencyKey, &o.RequestHash, &state, &o.MessageID, &o.InReplyTo, &o.From,
		&recipients, &o.Subject, &o.Size, &warnings, &o.Attempts, &next, &errText, &result, &created, &updated, &sent, &bounce, &sentCopy}
	if withRaw {
		dest = append(dest, &o.Raw)
	}
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	o.State = store.OutboundState(state)
	o.NextAttemptTime, o.CreateTime, o.UpdateTime, o.SentTime = outboxrow.Time(next), outboxrow.Time(created), outboxrow.Time(updated), outboxrow.Time(sent)
	var err error
	if o.Recipients, err = outboxrow.ParseList(recipients); err != nil {
		return nil, fmt.Errorf("outbound %s recipients: %w", o.ID, err)
	}
	if o.Warnings, err = outboxrow.ParseList(warnings); err != nil {
		return nil, fmt.Errorf("outbound %s warnings: %w", o.ID, err)
	}
	if o.Error, err = outboxrow.ParseError(nullable(errText)); err != nil {
		return nil, fmt.Errorf("outbound %s error: %w", o.ID, err)
	}
	if o.Result, err = outboxrow.ParseResult(nullable(result)); err != nil {
		return nil, fmt.Errorf("outbound %s result: %w", o.ID, err)
	}
	if o.Bounce, err = outboxrow.ParseBounce(nullable(bounce)); err != nil {
		return nil, fmt.Errorf("outbound %s bounce: %w", o.ID, err)
	}
	if o.SentCopy, err = outboxrow.ParseSentCopy(nullable(sentCopy)); err != nil {
		return nil, fmt.Errorf("outbound %s sent copy: %w", o.ID, err)
	}
	return &o, nil
}

func nullable(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	return &s.String
}

func nullString(p *string) sql.NullString {
	if p == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: *p, Valid: true}
}

// CreateOutbound implements store.OutboxStore. The insert and, on a key already used, the read
// of the earlier message run in one write transaction.
func (s *Store) CreateOutbound(ctx context.Context, o *store.Outbound) (*store.Outbound, bool, error) {
	o.Size = int64(len(o.Raw))
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, wrap(err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO outbound (id, mailbox_id, tenant, idempotency_key, request_hash, state, message_id,
		in_reply_to, mail_from, recipients, subject, size, raw, warnings, attempts, next_attempt_at, error, result, created_at, updated_at, sent_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (mailbox_id, idempotency_key) DO NOTHING`,
		o.ID, o.MailboxID, o.Tenant, o.IdempotencyKey, o.RequestHash, string(o.State), o.MessageID, o.InReplyTo, o.From,
		outboxrow.List(o.Recipients), o.Subject, o.Size, o.Raw, outboxrow.List(o.Warnings), o.Attempts, outboxrow.Nanos(o.NextAttemptTime),
		nullString(outboxrow.Error(o.Error)), nullString(outboxrow.Result(o.Result)), outboxrow.Nanos(o.CreateTime), outboxrow.Nanos(o.UpdateTime),
		outboxrow.Nanos(o.SentTime))
	switch {
	case isForeignKey(err):
		return nil, false, store.ErrNotFound
	case isConstraint(err):
		return nil, false, store.ErrConflict // the id exists
	case err != nil:
		return nil, false, wrap(err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil, true, wrap(tx.Commit())
	}
	prev, err := scanOutbound(tx.QueryRowContext(ctx, `SELECT `+outboundColumns+` FROM outbound WHERE mailbox_id = ? AND idempotency_key = ?`,
		o.MailboxID, o.IdempotencyKey), false)
	if err != nil {
		return nil, false, wrap(err)
	}
	return prev, false, nil
}

// GetOutbound implements store.OutboxStore.
func (s *Store) GetOutbound(ctx context.Context, id string, raw bool) (*store.Outbound, error) {
	cols := outboundColumns
	if raw {
		cols += ", raw"
	}
	o, err := scanOutbound(s.db.QueryRowContext(ctx, `SELECT `+cols+` FROM outbound WHERE id = ?`, id), raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, wrap(err)
	}
	return o, nil
}

// OutboundByKey implements store.OutboxStore.
func (s *Store) OutboundByKey(ctx context.Context, mailboxID, key string) (*store.Outbound, error) {
	o, err := scanOutbound(s.db.QueryRowContext(ctx, `SELECT `+outboundColumns+` FROM outbound WHERE mailbox_id = ? AND idempotency_key = ?`, mailboxID, key), false)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, wrap(err)
	}
	return o, nil
}

func (s *Store) queryOutbound(ctx context.Context, q string, args ...any) ([]*store.Outbound, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var out []*store.Outbound
	for rows.Next() {
		o, err := scanOutbound(rows, false)
		if err != nil {
			return nil, wrap(err)
		}
		out = append(out, o)
	}
	return out, wrap(rows.Err())
}

// ListOutbound implements store.OutboxStore.
func (s *Store) ListOutbound(ctx context.Context, q store.OutboundQuery) ([]*store.Outbound, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{{"tenant", q.Tenant}, {"mailbox_id", q.MailboxID}, {"state", string(q.State)}} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	if q.AfterID != "" {
		where = append(where, "id > ?")
		args = append(args, q.AfterID)
	}
	clause := ""
	if len(where) > 0 {
		clause = " WHERE " + strings.Join(where, " AND ")
	}
	clause += " ORDER BY id"
	if q.Limit > 0 {
		clause += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	return s.queryOutbound(ctx, `SELECT `+outboundColumns+` FROM outbound`+clause, args...)
}

// dueOutboundWhere selects a mailbox's due messages. The state IN term repeats the partial
// index's WHERE (outbound_pending) so that SQLite uses it: it takes a partial index only for a
// query naming its terms, and otherwise walked every message the mailbox ever sent (30 days of
// them) at each send.
const dueOutboundWhere = `WHERE mailbox_id = ? AND state IN ('queued', 'sending') AND state = 'queued' AND next_attempt_at <= ?
	ORDER BY next_attempt_at, id LIMIT ?`

// DueOutbound implements store.OutboxStore.
func (s *Store) DueOutbound(ctx context.Context, mailboxID string, now time.Time, limit int) ([]*store.Outbound, error) {
	return s.queryOutbound(ctx, `SELECT `+outboundColumns+` FROM outbound `+dueOutboundWhere,
		mailboxID, now.UnixNano(), limit)
}

// outboundHealthRows selects the rows OutboundHealth counts: the mailbox's QUEUED messages
// after a failed attempt (through the partial index outbound_pending, whose terms it repeats)
// and its FAILED or UNKNOWN ones changed at or after ?2 (outbound_trouble).
const outboundHealthRows = `SELECT state, error, updated_at FROM outbound
	WHERE mailbox_id = ?1 AND state IN ('queued', 'sending') AND state = 'queued' AND error IS NOT NULL
	UNION ALL SELECT state, error, updated_at FROM outbound
	WHERE mailbox_id = ?1 AND state IN ('failed', 'unknown') AND updated_at >= ?2`

// OutboundHealth implements store.OutboxStore.
func (s *Store) OutboundHealth(ctx context.Context, mailboxID string, since time.Time) (store.OutboundHealth, error) {
	var h store.OutboundHealth
	if err := s.db.QueryRowContext(ctx, `SELECT coalesce(sum(state = 'queued'), 0), coalesce(sum(state = 'failed'), 0),
		coalesce(sum(state = 'unknown'), 0) FROM (`+outboundHealthRows+`)`, mailboxID, outboxrow.Nanos(since)).Scan(&h.Retrying, &h.Failed, &h.Unknown); err != nil {
		return h, wrap(err)
	}
	if h.Retrying+h.Failed+h.Unknown == 0 {
		return h, nil
	}
	var state string
	var errText sql.NullString
	var updated int64
	if err := s.db.QueryRowContext(ctx, outboundHealthRows+` ORDER BY updated_at DESC LIMIT 1`, mailboxID, outboxrow.Nanos(since)).Scan(&state, &errText, &updated); err != nil {
		return h, wrap(err)
	}
	var err error
	h.LastErrorState = store.OutboundState(state)
	h.LastError, err = outboxrow.ParseError(nullable(errText))
	return h, err
}

// OutboxWork implements store.OutboxStore.
func (s *Store) OutboxWork(ctx context.Context, now time.Time) ([]store.OutboundWork, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT mailbox_id,
			max(state = 'queued' AND next_attempt_at <= ?1),
			max(state = 'sending'),
			coalesce(min(CASE WHEN state = 'queued' AND next_attempt_at > ?1 THEN next_attempt_at END), 0)
		FROM outbound WHERE state IN ('queued', 'sending') GROUP BY mailbox_id ORDER BY mailbox_id`, now.UnixNano())
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var out []store.OutboundWork
	for rows.Next() {
		var w store.OutboundWork
		var next int64
		if err := rows.Scan(&w.MailboxID, &w.Due, &w.Sending, &next); err != nil {
			return nil, wrap(err)
		}
		w.NextDue = outboxrow.Time(next)
		out = append(out, w)
	}
	return out, wrap(rows.Err())
}

// TransitionOutbound implements store.OutboxStore.
func (s *Store) TransitionOutbound(ctx context.Context, cur *store.Outbound, u store.OutboundUpdate) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap(err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE outbound SET state = ?, attempts = ?, next_attempt_at = ?, error = ?, result = ?, updated_at = ?, sent_at = ?
		WHERE id = ? AND state = ? AND attempts = ?`,
		string(u.State), u.Attempts, outboxrow.Nanos(u.NextAttemptTime), nullString(outboxrow.Error(u.Error)), nullString(outboxrow.Result(u.Result)),
		outboxrow.Nanos(u.UpdateTime), outboxrow.Nanos(u.SentTime), cur.ID, string(cur.State), cur.Attempts)
	if err != nil {
		return wrap(err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return wrap(tx.Commit())
	}
	var one int
	if err := tx.QueryRowContext(ctx, `SELECT 1 FROM outbound WHERE id = ?`, cur.ID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	} else if err != nil {
		return wrap(err)
	}
	return store.ErrConflict
}

// InterruptOutbound implements store.OutboxStore.
func (s *Store) InterruptOutbound(ctx context.Context, mailboxID string, e store.OutboundError) ([]string, error) {
	now := e.Time
	if now.IsZero() {
		now = time.Now()
		e.Time = now
	}
	rows, err := s.w.QueryContext(ctx, `UPDATE outbound SET state = 'unknown', error = ?, updated_at = ?
		WHERE mailbox_id = ? AND state = 'sending' RETURNING id`, nullString(outboxrow.Error(&e)), now.UnixNano(), mailboxID)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, wrap(err)
		}
		ids = append(ids, id)
	}
	return ids, wrap(rows.Err())
}

// BounceOutbound implements store.OutboxStore: the look-up and the change in one write
// transaction.
func (s *Store) BounceOutbound(ctx context.Context, mailboxID string, r store.BounceReport) (string, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return "", wrap(err)
	}
	defer tx.Rollback()
	var id, state string
	var bounce sql.NullString
	found := false
	for _, q := range []struct{ where, v string }{
		{"id = ?", r.EnvelopeID},
		{"message_id = ?", r.MessageID},
	} {
		if q.v == "" {
			continue
		}
		err := tx.QueryRowContext(ctx, `SELECT id, state, bounce FROM outbound WHERE tenant = ? AND `+q.where+`
			AND state IN ('sent', 'unknown', 'bounced') ORDER BY created_at DESC, id DESC LIMIT 1`, r.Tenant, q.v).Scan(&id, &state, &bounce)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return "", wrap(err)
		}
		found = true
		break
	}
	if !found || !r.Failure {
		return id, nil
	}
	cur, err := outboxrow.ParseBounce(nullable(bounce))
	if err != nil {
		return "", fmt.Errorf("outbound %s bounce: %w", id, err)
	}
	merged, changed := outboxrow.MergeBounce(cur, r.Bounce)
	if !changed && store.OutboundState(state) == store.OutboundBounced {
		return id, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE outbound SET state = 'bounced', bounce = ?, updated_at = ? WHERE id = ?`,
		nullString(outboxrow.Bounce(merged)), time.Now().UnixNano(), id); err != nil {
		return "", wrap(err)
	}
	return id, wrap(tx.Commit())
}

// RecordSentCopy implements store.OutboxStore.
func (s *Store) RecordSentCopy(ctx context.Context, o *store.Outbound, c store.OutboundSentCopy) error {
	res, err := s.w.ExecContext(ctx, `UPDATE outbound SET sent_copy = ? WHERE id = ?`, nullString(outboxrow.SentCopy(&c)), o.ID)
	if err != nil {
		return wrap(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// PruneOutbound implements store.OutboxStore.
func (s *Store) PruneOutbound(ctx context.Context, before time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM outbound WHERE state IN ('sent', 'failed', 'unknown', 'bounced') AND updated_at < ?`, before.UnixNano())
	if err != nil {
		return 0, wrap(err)
	}
	n, err := res.RowsAffected()
	return int(n), wrap(err)
}
