// Package sqlite is the embedded store: a single SQLite file (pure Go, no cgo) in the data
// directory, with versioned migrations.
//
// One process uses it, and that process owns every mailbox: the store does not implement
// store.Cluster, and it ignores leases. A write made under one (store.WithLease) is never
// fenced: there is no other replica whose newer lease it could be refused for.
package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/internal/authrecord"
	"github.com/mailintake/mailintake/internal/store/internal/mailcopy"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// FileName is the database file's name in the data directory.
const FileName = "mailintake.db"

// maxReaders bounds the read pool's connections.
const maxReaders = 8

// migrations are applied in order; the index+1 is the schema version. Never edit one that has
// shipped: append a new one.
var migrations = []string{
	`CREATE TABLE mailboxes (
		id         TEXT PRIMARY KEY,
		tenant     TEXT NOT NULL,
		spec       BLOB NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE INDEX mailboxes_tenant ON mailboxes (tenant, id);
	CREATE TABLE mailbox_secrets (
		mailbox_id TEXT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
		name       TEXT NOT NULL,
		sealed     BLOB NOT NULL,
		PRIMARY KEY (mailbox_id, name)
	);
	CREATE TABLE provider_state (
		mailbox_id TEXT PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
		sealed     BLOB NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE TABLE api_tokens (
		id         TEXT PRIMARY KEY,
		name       TEXT NOT NULL,
		tenant     TEXT NOT NULL,
		admin      INTEGER NOT NULL,
		hash       BLOB NOT NULL UNIQUE,
		created_at INTEGER NOT NULL,
		revoked_at INTEGER
	);`,
	`CREATE TABLE sync_state (
		mailbox_id   TEXT PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
		uid_validity INTEGER NOT NULL,
		acked_through INTEGER NOT NULL,
		baseline     INTEGER NOT NULL,
		resync_below INTEGER NOT NULL,
		updated_at   INTEGER NOT NULL
	);
	CREATE TABLE acks (
		mailbox_id   TEXT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
		uid_validity INTEGER NOT NULL,
		uid          INTEGER NOT NULL,
		sha256       TEXT NOT NULL,
		acked_at     INTEGER NOT NULL,
		applied      INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (mailbox_id, uid_validity, uid)
	);
	CREATE INDEX acks_hash ON acks (mailbox_id, sha256);
	CREATE INDEX acks_unapplied ON acks (mailbox_id) WHERE applied = 0;
	CREATE TABLE quarantine (
		id           INTEGER PRIMARY KEY AUTOINCREMENT,
		mailbox_id   TEXT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
		uid_validity INTEGER NOT NULL,
		uid          INTEGER NOT NULL,
		reason       TEXT NOT NULL,
		size         INTEGER NOT NULL,
		headers      TEXT NOT NULL,
		state        TEXT NOT NULL,
		created_at   INTEGER NOT NULL,
		UNIQUE (mailbox_id, uid_validity, uid)
	);
	CREATE TABLE events (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		mailbox_id TEXT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
		at         INTEGER NOT NULL,
		kind       TEXT NOT NULL,
		message    TEXT NOT NULL
	);
	CREATE INDEX events_mailbox ON events (mailbox_id, id);`,
	`ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;`,
	`ALTER TABLE events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
	ALTER TABLE events ADD COLUMN first_at INTEGER;
	CREATE INDEX events_at ON events (mailbox_id, at);`,
	`CREATE TABLE meta (
		name  TEXT PRIMARY KEY,
		value BLOB NOT NULL
	);`,
	// A mailbox's interactive sign-in in progress: its state and handle sealed as one value.
	`CREATE TABLE authorizations (
		mailbox_id TEXT PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
		sealed     BLOB NOT NULL,
		updated_at INTEGER NOT NULL
	);`,
	// The first delivery of each mail in a tenant (ClaimCopies), keyed by the hash of tenant,
	// Message-ID and content fingerprint (mailcopy.Key). No foreign key to mailboxes: a claim
	// belongs to the tenant's mail, it stays when its mailbox is deleted (the message was
	// delivered, a later copy is still its duplicate) until it expires, and a claim never fails
	// for a mailbox deleted meanwhile.
	`CREATE TABLE mail_copies (
		key        BLOB PRIMARY KEY,
		mailbox_id TEXT NOT NULL,
		message_id TEXT NOT NULL,
		claimed_at INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX mail_copies_claimed ON mail_copies (claimed_at);`,
	// The outbox: mail sent as the mailboxes (store.OutboxStore). Lists and structures are JSON
	// text (outboxrow); raw is the composed message, in the clear (bodies are not secrets).
	`CREATE TABLE outbound (
		id              TEXT PRIMARY KEY,
		mailbox_id      TEXT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
		tenant          TEXT NOT NULL,
		idempotency_key TEXT NOT NULL,
		request_hash    BLOB NOT NULL,
		state           TEXT NOT NULL,
		message_id      TEXT NOT NULL,
		in_reply_to     TEXT NOT NULL,
		mail_from       TEXT NOT NULL,
		recipients      TEXT NOT NULL,
		subject         TEXT NOT NULL,
		size            INTEGER NOT NULL,
		raw             BLOB NOT NULL,
		warnings        TEXT NOT NULL,
		attempts        INTEGER NOT NULL,
		next_attempt_at INTEGER NOT NULL,
		error           TEXT,
		result          TEXT,
		created_at      INTEGER NOT NULL,
		updated_at      INTEGER NOT NULL,
		sent_at         INTEGER NOT NULL,
		UNIQUE (mailbox_id, idempotency_key)
	);
	CREATE INDEX outbound_mailbox ON outbound (mailbox_id, id);
	CREATE INDEX outbound_tenant ON outbound (tenant, id);
	CREATE INDEX outbound_pending ON outbound (mailbox_id, next_attempt_at) WHERE state IN ('queued', 'sending');
	CREATE INDEX outbound_final ON outbound (updated_at) WHERE state IN ('sent', 'failed', 'unknown');`,
	// Bounces and Sent copies of outbound messages (JSON text, outboxrow): a delivery failure
	// report finds its outbound message by tenant and Message-ID, and BOUNCED is final too.
	`ALTER TABLE outbound ADD COLUMN bounce TEXT;
	ALTER TABLE outbound ADD COLUMN sent_copy TEXT;
	CREATE INDEX outbound_message_id ON outbound (tenant, message_id);
	DROP INDEX outbound_final;
	CREATE INDEX outbound_final ON outbound (updated_at) WHERE state IN ('sent', 'failed', 'unknown', 'bounced');`,
	`CREATE TABLE pop3_uidls (
		mailbox_id TEXT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
		uidl       TEXT NOT NULL,
		uid        INTEGER NOT NULL,
		first_seen INTEGER NOT NULL,
		gone_at    INTEGER,
		PRIMARY KEY (mailbox_id, uidl),
		UNIQUE (mailbox_id, uid)
	);`,
	// A mailbox's status tells of its sending trouble (OutboundHealth): the FAILED and UNKNOWN
	// messages of the last day, found without walking everything the mailbox sent.
	`CREATE INDEX outbound_trouble ON outbound (mailbox_id, updated_at) WHERE state IN ('failed', 'unknown');`,
}

// Store is the SQLite implementation of store.Store.
//
// Writes go through a pool of one connection, so concurrent writers (every mailbox's session,
// acknowledgements, the API) wait their turn in the server, in order, instead of competing for
// SQLite's lock, where a writer backing off in the busy handler can miss its turn again and
// again under load and fail after the busy timeout. Reads use their own pool; in WAL mode they
// never wait for the writer.
type Store struct {
	db  *sql.DB // reads
	w   *sql.DB // writes: one connection
	box *secrets.Box
	// copies says when ClaimCopies deletes expired claims.
	copies mailcopy.Pruner
	// events is AddEvent's group commit (events.go).
	events eventQueue
	// st are the prepared statements of the sync rounds (stmts.go); stmtList all of them.
	st       stmts
	stmtList []*sql.Stmt
	// relaxedCommits counts the transactions committed by relaxedTx (relaxed.go).
	relaxedCommits atomic.Int64
}

// Open opens (creating if needed) the database in dir and applies pending migrations.
func Open(ctx context.Context, dir string, box *secrets.Box) (*Store, error) {
	dsn := "file:" + filepath.Join(dir, FileName) +
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate"
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, wrap(err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	s := &Store{w: w, box: box}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("migrating %s: %w", filepath.Join(dir, FileName), err)
	}
	// The read pool opens after the migration, so it never sees an older schema.
	if s.db, err = sql.Open("sqlite", dsn); err != nil {
		w.Close()
		return nil, wrap(err)
	}
	// Reads are bounded too: unbounded, 10,000 sessions reading at once opened thousands of
	// SQLite connections (a file descriptor and a page cache each) until the process ran out of
	// descriptors and every write failed with an I/O error. Readers beyond the pool wait their
	// turn; a read takes well under a millisecond.
	s.db.SetMaxOpenConns(maxReaders)
	s.db.SetMaxIdleConns(maxReaders)
	if err := s.prepare(ctx); err != nil {
		s.db.Close()
		w.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap(err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		return wrap(err)
	}
	if v > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this server (%d)", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations))); err != nil {
		return wrap(err)
	}
	return wrap(tx.Commit())
}

// Close implements store.Store.
func (s *Store) Close() error {
	// Events queued before Close are written (or fail) before the database closes.
	s.events.mu.Lock()
	s.events.closed = true
	s.events.mu.Unlock()
	s.events.writers.Wait()
	return errors.Join(s.closeStmts(), s.db.Close(), s.w.Close())
}

func secretOwner(mailboxID, name string) string { return "mailbox/" + mailboxID + "/secret/" + name }
func stateOwner(mailboxID string) string        { return "mailbox/" + mailboxID + "/provider-state" }
func authOwner(mailboxID string) string         { return "mailbox/" + mailboxID + "/authorization" }

// specBytes marshals the definition without its secrets.
func specBytes(spec *mailintakev1.Mailbox) ([]byte, error) {
	c := proto.CloneOf(spec)
	c.AuthSecrets = nil
	c.AuthSecretsSet = nil
	return proto.MarshalOptions{Deterministic: true}.Marshal(c)
}

// wrap turns a failure of the storage itself into store.ErrUnavailable with what the admin must
// do; other errors pass unchanged.
func wrap(err error) error {
	var se *sqlite.Error
	if err == nil || !errors.As(err, &se) {
		return err
	}
	var what string
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_FULL:
		what = "the data directory's disk is full: free space on it"
	case sqlite3.SQLITE_READONLY:
		what = "the data directory is read-only: make it writable"
	case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
		what = "the database file cannot be read or written (I/O error): check the data directory's disk"
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		what = "the database is locked by another process: is a second server using the same data directory?"
	case sqlite3.SQLITE_NOMEM:
		what = "the server is out of memory"
	default:
		return err
	}
	return &unavailableError{what: what, cause: err}
}

// unavailableError is store.ErrUnavailable with what to do; its text leaves out the driver's
// message (which can name files), which stays reachable with errors.As for the log.
type unavailableError struct {
	what  string
	cause error
}

func (e *unavailableError) Error() string   { return store.ErrUnavailable.Error() + ": " + e.what }
func (e *unavailableError) Unwrap() []error { return []error{store.ErrUnavailable, e.cause} }

func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE)
}

// isForeignKey reports whether err is a foreign key violation: a row of a mailbox that does not
// exist.
func isForeignKey(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// CreateMailbox implements store.Store.
func (s *Store) CreateMailbox(ctx context.Context, mb *store.Mailbox) error {
	return s.writeMailbox(ctx, mb, true)
}

// UpdateMailbox implements store.Store.
func (s *Store) UpdateMailbox(ctx context.Context, mb *store.Mailbox) error {
	return s.writeMailbox(ctx, mb, false)
}

func (s *Store) writeMailbox(ctx context.Context, mb *store.Mailbox, create bool) error {
	spec, err := specBytes(mb.Spec)
	if err != nil {
		return wrap(err)
	}
	id := mb.Spec.GetId()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap(err)
	}
	defer tx.Rollback()
	if create {
		_, err = tx.ExecContext(ctx, `INSERT INTO mailboxes (id, tenant, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
			id, mb.Spec.GetTenant(), spec, mb.Spec.GetCreateTime().AsTime().UnixNano(), mb.Spec.GetUpdateTime().AsTime().UnixNano())
		if isConstraint(err) {
			return store.ErrConflict
		}
		if err != nil {
			return wrap(err)
		}
	} else {
		res, err := tx.ExecContext(ctx, `UPDATE mailboxes SET tenant = ?, spec = ?, updated_at = ? WHERE id = ?`,
			mb.Spec.GetTenant(), spec, mb.Spec.GetUpdateTime().AsTime().UnixNano(), id)
		if err != nil {
			return wrap(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM mailbox_secrets WHERE mailbox_id = ?`, id); err != nil {
			return wrap(err)
		}
	}
	for name, v := range mb.Secrets {
		sealed := s.box.Seal([]byte(v.Reveal()), secretOwner(id, name))
		if _, err := tx.ExecContext(ctx, `INSERT INTO mailbox_secrets (mailbox_id, name, sealed) VALUES (?, ?, ?)`, id, name, sealed); err != nil {
			return wrap(err)
		}
	}
	return wrap(tx.Commit())
}

// GetMailbox implements store.Store.
func (s *Store) GetMailbox(ctx context.Context, id string) (*store.Mailbox, error) {
	mbs, err := s.queryMailboxes(ctx, `WHERE id = ?`, id)
	if err != nil {
		return nil, wrap(err)
	}
	if len(mbs) == 0 {
		return nil, store.ErrNotFound
	}
	return mbs[0], nil
}

// ListMailboxes implements store.Store.
func (s *Store) ListMailboxes(ctx context.Context, q store.MailboxQuery) ([]*store.Mailbox, error) {
	var where []string
	var args []any
	if q.Tenant != "" {
		where = append(where, "tenant = ?")
		args = append(args, q.Tenant)
	}
	if q.AfterID != "" {
		where = append(where, "id > ?")
		args = append(args, q.AfterID)
	}
	clause := ""
	if len(where) > 0 {
		clause = "WHERE " + strings.Join(where, " AND ")
	}
	clause += " ORDER BY id"
	if q.Limit > 0 {
		clause += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	return s.queryMailboxes(ctx, clause, args...)
}

// queryMailboxes reads mailboxes and their secrets in one read transaction: one snapshot, so a
// concurrent update cannot pair an old definition with new secrets, nor a delete leave a mailbox
// without its secrets.
func (s *Store) queryMailboxes(ctx context.Context, clause string, args ...any) ([]*store.Mailbox, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, wrap(err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id, spec FROM mailboxes `+clause, args...)
	if err != nil {
		return nil, wrap(err)
	}
	var out []*store.Mailbox
	byID := map[string]*store.Mailbox{}
	for rows.Next() {
		var id string
		var spec []byte
		if err := rows.Scan(&id, &spec); err != nil {
			rows.Close()
			return nil, wrap(err)
		}
		mb := &store.Mailbox{Spec: &mailintakev1.Mailbox{}, Secrets: map[string]secrets.Secret{}}
		if err := proto.Unmarshal(spec, mb.Spec); err != nil {
			rows.Close()
			return nil, fmt.Errorf("mailbox %s: %w", id, err)
		}
		out = append(out, mb)
		byID[id] = mb
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrap(err)
	}
	for id, mb := range byID {
		if err := s.loadSecrets(ctx, tx, id, mb); err != nil {
			return nil, wrap(err)
		}
	}
	return out, nil
}

func (s *Store) loadSecrets(ctx context.Context, tx *sql.Tx, id string, mb *store.Mailbox) error {
	rows, err := tx.QueryContext(ctx, `SELECT name, sealed FROM mailbox_secrets WHERE mailbox_id = ?`, id)
	if err != nil {
		return wrap(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var sealed []byte
		if err := rows.Scan(&name, &sealed); err != nil {
			return wrap(err)
		}
		pt, err := s.box.Open(sealed, secretOwner(id, name))
		if err != nil {
			return fmt.Errorf("mailbox %s secret %s: %w", id, name, err)
		}
		mb.Secrets[name] = secrets.Secret(pt)
	}
	return wrap(rows.Err())
}

// DeleteMailbox implements store.Store.
func (s *Store) DeleteMailbox(ctx context.Context, id string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM mailboxes WHERE id = ?`, id)
	if err != nil {
		return wrap(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// ProviderState implements store.Store.
func (s *Store) ProviderState(ctx context.Context, mailboxID string) ([]byte, error) {
	var sealed []byte
	err := s.st.providerState.QueryRowContext(ctx, mailboxID).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(err)
	}
	return s.box.Open(sealed, stateOwner(mailboxID))
}

// SetProviderState implements store.Store.
func (s *Store) SetProviderState(ctx context.Context, mailboxID string, state []byte) error {
	if state == nil {
		_, err := s.w.ExecContext(ctx, `DELETE FROM provider_state WHERE mailbox_id = ?`, mailboxID)
		return wrap(err)
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO provider_state (mailbox_id, sealed, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (mailbox_id) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at`,
		mailboxID, s.box.Seal(state, stateOwner(mailboxID)), time.Now().UnixNano())
	return wrap(err)
}

// SwapProviderState implements store.Store. The read, the comparison and the write run in one
// write transaction (BEGIN IMMEDIATE) on the single writer connection, so no other write can
// come between them.
func (s *Store) SwapProviderState(ctx context.Context, mailboxID string, old, new []byte) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return wrap(err)
	}
	defer tx.Rollback()
	var sealed []byte
	err = tx.QueryRowContext(ctx, `SELECT sealed FROM provider_state WHERE mailbox_id = ?`, mailboxID).Scan(&sealed)
	exists := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return wrap(err)
	}
	var cur []byte // nil: there is none
	if exists {
		if cur, err = s.box.Open(sealed, stateOwner(mailboxID)); err != nil {
			return err
		}
	}
	if !bytes.Equal(cur, old) {
		return store.ErrConflict
	}
	switch {
	case new == nil && exists:
		_, err = tx.ExecContext(ctx, `DELETE FROM provider_state WHERE mailbox_id = ?`, mailboxID)
	case new == nil:
		return nil // none for none: nothing to write
	default:
		_, err = tx.ExecContext(ctx, `INSERT INTO provider_state (mailbox_id, sealed, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (mailbox_id) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at`,
			mailboxID, s.box.Seal(new, stateOwner(mailboxID)), time.Now().UnixNano())
	}
	if err != nil {
		return wrap(err)
	}
	return wrap(tx.Commit())
}

// SaveAuthorization implements store.Store. State and Handle are sealed together, bound to the
// mailbox; a.UpdateTime is set to the time stored. A nil a writes nothing. A mailbox that does not
// exist (the foreign key fails) is store.ErrNotFound.
func (s *Store) SaveAuthorization(ctx context.Context, a *store.PendingAuthorization) error {
	if a == nil {
		return nil
	}
	sealed := s.box.Seal(authrecord.Marshal(a.State, a.Handle), authOwner(a.MailboxID))
	now := time.Now().UnixNano()
	_, err := s.w.ExecContext(ctx, `INSERT INTO authorizations (mailbox_id, sealed, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (mailbox_id) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at`,
		a.MailboxID, sealed, now)
	if isForeignKey(err) {
		return store.ErrNotFound
	}
	if err != nil {
		return wrap(err)
	}
	a.UpdateTime = time.Unix(0, now).UTC()
	return nil
}

// GetAuthorization implements store.Store.
func (s *Store) GetAuthorization(ctx context.Context, mailboxID string) (*store.PendingAuthorization, error) {
	var sealed []byte
	var updated int64
	err := s.db.QueryRowContext(ctx, `SELECT sealed, updated_at FROM authorizations WHERE mailbox_id = ?`, mailboxID).Scan(&sealed, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(err)
	}
	pt, err := s.box.Open(sealed, authOwner(mailboxID))
	if err != nil {
		return nil, fmt.Errorf("mailbox %s's sign-in: %w", mailboxID, err)
	}
	state, handle, err := authrecord.Unmarshal(pt)
	if err != nil {
		return nil, fmt.Errorf("mailbox %s's sign-in: %w", mailboxID, err)
	}
	return &store.PendingAuthorization{MailboxID: mailboxID, State: state, Handle: handle, UpdateTime: time.Unix(0, updated).UTC()}, nil
}

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t *store.Token) error {
	var expires sql.NullInt64
	if !t.ExpireTime.IsZero() {
		expires = sql.NullInt64{Int64: t.ExpireTime.UnixNano(), Valid: true}
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO api_tokens (id, name, tenant, admin, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, t.Tenant, t.Admin, t.Hash, t.CreateTime.UnixNano(), expires)
	if isConstraint(err) {
		return store.ErrConflict
	}
	return wrap(err)
}

const tokenColumns = `id, name, tenant, admin, hash, created_at, revoked_at, expires_at`

func scanToken(sc interface{ Scan(...any) error }) (*store.Token, error) {
	var t store.Token
	var created int64
	var revoked, expires sql.NullInt64
	if err := sc.Scan(&t.ID, &t.Name, &t.Tenant, &t.Admin, &t.Hash, &created, &revoked, &expires); err != nil {
		return nil, wrap(err)
	}
	t.CreateTime = time.Unix(0, created).UTC()
	if revoked.Valid {
		t.RevokeTime = time.Unix(0, revoked.Int64).UTC()
	}
	if expires.Valid {
		t.ExpireTime = time.Unix(0, expires.Int64).UTC()
	}
	return &t, nil
}

// TokenByID implements store.Store.
func (s *Store) TokenByID(ctx context.Context, id string) (*store.Token, error) {
	ctx, err := detach(ctx) // every API call reads its token (detach.go)
	if err != nil {
		return nil, err
	}
	t, err := scanToken(s.st.tokenByID.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return t, wrap(err)
}

// ListTokens implements store.Store.
func (s *Store) ListTokens(ctx context.Context, includeRevoked bool) ([]*store.Token, error) {
	q := `SELECT ` + tokenColumns + ` FROM api_tokens`
	if !includeRevoked {
		q += ` WHERE revoked_at IS NULL`
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created_at, id`)
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var out []*store.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, wrap(err)
		}
		out = append(out, t)
	}
	return out, wrap(rows.Err())
}

// RevokeToken implements store.Store.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, at.UnixNano(), id)
	if err != nil {
		return wrap(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

var _ store.Store = (*Store)(nil)

// keyCheck is the value VerifyKey seals, and the owner it is bound to.
const (
	keyCheckValue = "mailintake key check"
	keyCheckOwner = "meta/key-check"
)

// VerifyKey implements store.Store.
func (s *Store) VerifyKey(ctx context.Context) error {
	sealed := s.box.Seal([]byte(keyCheckValue), keyCheckOwner)
	if _, err := s.w.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES ('key_check', ?) ON CONFLICT (name) DO NOTHING`, sealed); err != nil {
		return wrap(err)
	}
	var stored []byte
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'key_check'`).Scan(&stored); err != nil {
		return wrap(err)
	}
	if pt, err := s.box.Open(stored, keyCheckOwner); err != nil || string(pt) != keyCheckValue {
		return store.ErrKeyMismatch
	}
	return nil
}

// ClaimOnce implements store.Store.
func (s *Store) ClaimOnce(ctx context.Context, name string) (bool, error) {
	res, err := s.w.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, x'01') ON CONFLICT (name) DO NOTHING`, "claim/"+name)
	if err != nil {
		return false, wrap(err)
	}
	n, err := res.RowsAffected()
	return n == 1, wrap(err)
}
