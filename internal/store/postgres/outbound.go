package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/internal/outboxrow"
)

// The outbox (store.OutboxStore). The sender's writes (TransitionOutbound, InterruptOutbound)
// are fenced by the mailbox's lease when their context carries one: a replica that lost a
// mailbox can neither take one of its messages for sending nor record an outcome over the new
// owner's.

const outboundColumns = `id, mailbox_id, tenant, idempotency_key, request_hash, state, message_id, in_reply_to, mail_from,
	recipients, subject, size, warnings, attempts, next_attempt_at, error, result, created_at, updated_at, sent_at, bounce, sent_copy`

func scanOutbound(row pgx.Row, withRaw bool) (*store.Outbound, error) {
	var o store.Outbound
	var key []byte
	var state, recipients, warnings string
	var errText, result, bounce, sentCopy *string
	var next, created, updated, sent int64
	var attempts int32
	dest := []any{&o.ID, &o.MailboxID, &o.Tenant, &key, &o.RequestHash, &state, &o.MessageID, &o.InReplyTo, &o.From,
		&recipients, &o.Subject, &o.Size, &warnings, &attempts, &next, &errText, &result, &created, &updated, &sent, &bounce, &sentCopy}
	if withRaw {
		dest = append(dest, &o.Raw)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	o.IdempotencyKey, o.State, o.Attempts = string(key), store.OutboundState(state), int(attempts)
	o.NextAttemptTime, o.CreateTime, o.UpdateTime, o.SentTime = outboxrow.Time(next), outboxrow.Time(created), outboxrow.Time(updated), outboxrow.Time(sent)
	var err error
	if o.Recipients, err = outboxrow.ParseList(recipients); err != nil {
		return nil, fmt.Errorf("outbound %s recipients: %w", o.ID, err)
	}
	if o.Warnings, err = outboxrow.ParseList(warnings); err != nil {
		return nil, fmt.Errorf("outbound %s warnings: %w", o.ID, err)
	}
	if o.Error, err = outboxrow.ParseError(errText); err != nil {
		return nil, fmt.Errorf("outbound %s error: %w", o.ID, err)
	}
	if o.Result, err = outboxrow.ParseResult(result); err != nil {
		return nil, fmt.Errorf("outbound %s result: %w", o.ID, err)
	}
	if o.Bounce, err = outboxrow.ParseBounce(bounce); err != nil {
		return nil, fmt.Errorf("outbound %s bounce: %w", o.ID, err)
	}
	if o.SentCopy, err = outboxrow.ParseSentCopy(sentCopy); err != nil {
		return nil, fmt.Errorf("outbound %s sent copy: %w", o.ID, err)
	}
	return &o, nil
}

// CreateOutbound implements store.OutboxStore. Of two calls with the same key at once, the
// second's insert waits for the first's and does nothing; its read then sees the first's row.
func (s *Store) CreateOutbound(ctx context.Context, o *store.Outbound) (*store.Outbound, bool, error) {
	o.Size = int64(len(o.Raw))
	if !storable(o.MailboxID) {
		return nil, false, store.ErrNotFound // no mailbox has this id
	}
	if !storable(o.ID) || !storable(o.Tenant) {
		return nil, false, fmt.Errorf("outbound id %q or tenant %q is not valid UTF-8 text", o.ID, o.Tenant)
	}
	var prev *store.Outbound
	created := false
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		prev, created = nil, false
		tag, err := tx.Exec(ctx, `INSERT INTO outbound (id, mailbox_id, tenant, idempotency_key, request_hash, state, message_id,
			in_reply_to, mail_from, recipients, subject, size, raw, warnings, attempts, next_attempt_at, error, result, created_at, updated_at, sent_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
			ON CONFLICT (mailbox_id, idempotency_key) DO NOTHING`,
			o.ID, o.MailboxID, o.Tenant, []byte(o.IdempotencyKey), o.RequestHash, string(o.State), text(o.MessageID), text(o.InReplyTo), text(o.From),
			outboxrow.List(o.Recipients), text(o.Subject), o.Size, o.Raw, outboxrow.List(o.Warnings), int32(o.Attempts), outboxrow.Nanos(o.NextAttemptTime),
			outboxrow.Error(o.Error), outboxrow.Result(o.Result), outboxrow.Nanos(o.CreateTime), outboxrow.Nanos(o.UpdateTime), outboxrow.Nanos(o.SentTime))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			created = true
			return nil
		}
		prev, err = scanOutbound(tx.QueryRow(ctx, `SELECT `+outboundColumns+` FROM outbound WHERE mailbox_id = $1 AND idempotency_key = $2`,
			o.MailboxID, []byte(o.IdempotencyKey)), false)
		return err
	})
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "23503" { // foreign_key_violation
		return nil, false, store.ErrNotFound
	}
	if err != nil {
		return nil, false, err
	}
	return prev, created, nil
}

// GetOutbound implements store.OutboxStore.
func (s *Store) GetOutbound(ctx context.Context, id string, raw bool) (*store.Outbound, error) {
	if !storable(id) {
		return nil, store.ErrNotFound
	}
	cols := outboundColumns
	if raw {
		cols += ", raw"
	}
	var o *store.Outbound
	err := s.retry(ctx, func() error {
		var err error
		o, err = scanOutbound(s.pool.QueryRow(ctx, `SELECT `+cols+` FROM outbound WHERE id = $1`, id), raw)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return o, err
}

// OutboundByKey implements store.OutboxStore.
func (s *Store) OutboundByKey(ctx context.Context, mailboxID, key string) (*store.Outbound, error) {
	if !storable(mailboxID) {
		return nil, store.ErrNotFound
	}
	var o *store.Outbound
	err := s.retry(ctx, func() error {
		var err error
		o, err = scanOutbound(s.pool.QueryRow(ctx, `SELECT `+outboundColumns+` FROM outbound WHERE mailbox_id = $1 AND idempotency_key = $2`,
			mailboxID, []byte(key)), false)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return o, err
}

func (s *Store) queryOutbound(ctx context.Context, q string, args ...any) ([]*store.Outbound, error) {
	var out []*store.Outbound
	err := s.retry(ctx, func() error {
		out = nil
		rows, err := s.pool.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			o, err := scanOutbound(rows, false)
			if err != nil {
				return err
			}
			out = append(out, o)
		}
		return rows.Err()
	})
	return out, err
}

// ListOutbound implements store.OutboxStore.
func (s *Store) ListOutbound(ctx context.Context, q store.OutboundQuery) ([]*store.Outbound, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{{"tenant", q.Tenant}, {"mailbox_id", q.MailboxID}, {"state", string(q.State)}} {
		if c.v == "" {
			continue
		}
		if !storable(c.v) {
			return nil, nil // nothing has this value
		}
		args = append(args, c.v)
		where = append(where, fmt.Sprintf("%s = $%d", c.col, len(args)))
	}
	if q.AfterID != "" {
		args = append(args, q.AfterID)
		if storable(q.AfterID) {
			where = append(where, fmt.Sprintf("id > $%d", len(args)))
		} else {
			// A page token is bytes: compare bytes, as collation "C" does for text.
			args[len(args)-1] = []byte(q.AfterID)
			where = append(where, fmt.Sprintf("convert_to(id, 'UTF8') > $%d::bytea", len(args)))
		}
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

// DueOutbound implements store.OutboxStore.
func (s *Store) DueOutbound(ctx context.Context, mailboxID string, now time.Time, limit int) ([]*store.Outbound, error) {
	if !storable(mailboxID) {
		return nil, nil
	}
	return s.queryOutbound(ctx, `SELECT `+outboundColumns+` FROM outbound
		WHERE mailbox_id = $1 AND state = 'queued' AND next_attempt_at <= $2 ORDER BY next_attempt_at, id LIMIT $3`,
		mailboxID, now.UnixNano(), limit)
}

// outboundHealthRows selects the rows OutboundHealth counts: the mailbox's QUEUED messages
// after a failed attempt (through the partial index outbound_pending) and its FAILED or UNKNOWN
// ones changed at or after $2 (outbound_trouble).
const outboundHealthRows = `SELECT state, error, updated_at FROM outbound
	WHERE mailbox_id = $1 AND state IN ('queued', 'sending') AND state = 'queued' AND error IS NOT NULL
	UNION ALL SELECT state, error, updated_at FROM outbound
	WHERE mailbox_id = $1 AND state IN ('failed', 'unknown') AND updated_at >= $2`

// OutboundHealth implements store.OutboxStore.
func (s *Store) OutboundHealth(ctx context.Context, mailboxID string, since time.Time) (store.OutboundHealth, error) {
	var h store.OutboundHealth
	if !storable(mailboxID) {
		return h, nil
	}
	err := s.retry(ctx, func() error {
		h = store.OutboundHealth{}
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'failed'),
			count(*) FILTER (WHERE state = 'unknown') FROM (`+outboundHealthRows+`) AS trouble`, mailboxID, outboxrow.Nanos(since)).Scan(&h.Retrying, &h.Failed, &h.Unknown); err != nil {
			return err
		}
		if h.Retrying+h.Failed+h.Unknown == 0 {
			return nil
		}
		var state string
		var errText *string
		var updated int64
		if err := s.pool.QueryRow(ctx, outboundHealthRows+` ORDER BY updated_at DESC LIMIT 1`, mailboxID, outboxrow.Nanos(since)).Scan(&state, &errText, &updated); err != nil {
			return err
		}
		h.LastErrorState = store.OutboundState(state)
		var err error
		h.LastError, err = outboxrow.ParseError(errText)
		return err
	})
	return h, err
}

// OutboxWork implements store.OutboxStore.
func (s *Store) OutboxWork(ctx context.Context, now time.Time) ([]store.OutboundWork, error) {
	var out []store.OutboundWork
	err := s.retry(ctx, func() error {
		out = nil
		rows, err := s.pool.Query(ctx, `SELECT mailbox_id,
				bool_or(state = 'queued' AND next_attempt_at <= $1),
				bool_or(state = 'sending'),
				coalesce(min(CASE WHEN state = 'queued' AND next_attempt_at > $1 THEN next_attempt_at END), 0)
			FROM outbound WHERE state IN ('queued', 'sending') GROUP BY mailbox_id ORDER BY mailbox_id`, now.UnixNano())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var w store.OutboundWork
			var next int64
			if err := rows.Scan(&w.MailboxID, &w.Due, &w.Sending, &next); err != nil {
				return err
			}
			w.NextDue = outboxrow.Time(next)
			out = append(out, w)
		}
		return rows.Err()
	})
	return out, err
}

// TransitionOutbound implements store.OutboxStore. Under a lease for the mailbox it is fenced.
func (s *Store) TransitionOutbound(ctx context.Context, cur *store.Outbound, u store.OutboundUpdate) error {
	if !storable(cur.ID) || !storable(cur.MailboxID) {
		return store.ErrNotFound
	}
	return s.writeTx(ctx, cur.MailboxID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE outbound SET state = $1, attempts = $2, next_attempt_at = $3, error = $4, result = $5, updated_at = $6, sent_at = $7
			WHERE id = $8 AND mailbox_id = $9 AND state = $10 AND attempts = $11`,
			string(u.State), int32(u.Attempts), outboxrow.Nanos(u.NextAttemptTime), outboxrow.Error(u.Error), outboxrow.Result(u.Result),
			outboxrow.Nanos(u.UpdateTime), outboxrow.Nanos(u.SentTime), cur.ID, cur.MailboxID, text(string(cur.State)), int32(cur.Attempts))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM outbound WHERE id = $1`, cur.ID).Scan(&one); errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return err
		}
		return store.ErrConflict
	})
}

// InterruptOutbound implements store.OutboxStore. Under a lease for the mailbox it is fenced.
func (s *Store) InterruptOutbound(ctx context.Context, mailboxID string, e store.OutboundError) ([]string, error) {
	if !storable(mailboxID) {
		return nil, nil
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	var ids []string
	err := s.writeTx(ctx, mailboxID, func(tx pgx.Tx) error {
		ids = nil
		rows, err := tx.Query(ctx, `UPDATE outbound SET state = 'unknown', error = $1, updated_at = $2
			WHERE mailbox_id = $3 AND state = 'sending' RETURNING id`, outboxrow.Error(&e), e.Time.UnixNano(), mailboxID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	return ids, err
}

// BounceOutbound implements store.OutboxStore. The matched row is locked (FOR UPDATE) until the
// change commits, so two reports of one message (delivered by two mailboxes' sessions at once)
// merge their recipients. Under a lease for mailboxID it is fenced.
func (s *Store) BounceOutbound(ctx context.Context, mailboxID string, r store.BounceReport) (string, error) {
	if !storable(mailboxID) || !storable(r.Tenant) {
		return "", nil
	}
	var id string
	err := s.writeTx(ctx, mailboxID, func(tx pgx.Tx) error {
		id = ""
		var state string
		var bounce *string
		found := false
		for _, q := range []struct{ where, v string }{
			{"id = $2", r.EnvelopeID},
			{"message_id = $2", r.MessageID},
		} {
			if q.v == "" || !storable(q.v) {
				continue
			}
			err := tx.QueryRow(ctx, `SELECT id, state, bounce FROM outbound WHERE tenant = $1 AND `+q.where+`
				AND state IN ('sent', 'unknown', 'bounced') ORDER BY created_at DESC, id DESC LIMIT 1 FOR UPDATE`, r.Tenant, q.v).Scan(&id, &state, &bounce)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			found = true
			break
		}
		if !found || !r.Failure {
			return nil
		}
		cur, err := outboxrow.ParseBounce(bounce)
		if err != nil {
			return fmt.Errorf("outbound %s bounce: %w", id, err)
		}
		merged, changed := outboxrow.MergeBounce(cur, r.Bounce)
		if !changed && store.OutboundState(state) == store.OutboundBounced {
			return nil
		}
		_, err = tx.Exec(ctx, `UPDATE outbound SET state = 'bounced', bounce = $1, updated_at = $2 WHERE id = $3`,
			outboxrow.Bounce(merged), time.Now().UnixNano(), id)
		return err
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// RecordSentCopy implements store.OutboxStore. Under a lease for the mailbox it is fenced.
func (s *Store) RecordSentCopy(ctx context.Context, o *store.Outbound, c store.OutboundSentCopy) error {
	if !storable(o.ID) || !storable(o.MailboxID) {
		return store.ErrNotFound
	}
	return s.writeTx(ctx, o.MailboxID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE outbound SET sent_copy = $1 WHERE id = $2`, outboxrow.SentCopy(&c), o.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// PruneOutbound implements store.OutboxStore.
func (s *Store) PruneOutbound(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.retry(ctx, func() error {
		tag, err := s.pool.Exec(ctx, `DELETE FROM outbound WHERE state IN ('sent', 'failed', 'unknown', 'bounced') AND updated_at < $1`, before.UnixNano())
		n = tag.RowsAffected()
		return err
	})
	return int(n), err
}
