// Package postgres is the store for several replicas: the same [store.Store] as the embedded
// SQLite store (store/sqlite), on a PostgreSQL database that every replica shares, through a
// pgx connection pool.
//
// The schema is versioned: [Open] applies the migrations this server has and the database lacks,
// recorded in a schema_migrations table, in one transaction under a transaction-level advisory
// lock, so replicas that start at the same time apply each migration once and never see a
// half-migrated schema. Times are stored as BIGINT Unix nanoseconds (as in the SQLite store, so
// they round-trip exactly), except the replicas' heartbeat times, which only the database's clock
// sets and reads (timestamptz from now()); UIDs and UIDVALIDITYs, unsigned 32-bit, as BIGINT;
// identifiers as text collated "C", so that ordering and pagination follow bytes, as in the
// SQLite store, whatever the database's default collation.
//
// The store also implements store.Cluster (cluster.go): replicas heartbeat in the replica table
// and claim mailboxes in mailbox_owner, whose epoch is the fencing token. A write of a mailbox's
// delivery state made under a lease (store.WithLease: the checkpoint, applied marks, pruning,
// quarantine, events, provider state, the pending sign-in) runs in a transaction that first locks
// the mailbox's owner row FOR SHARE if it still matches the lease, and is store.ErrFenced,
// writing nothing, if it does not. Writes without a lease (the API's) are not fenced, nor are
// acknowledgements.
//
// Secrets, provider state and pending sign-ins are sealed with a secrets.Box bound to the same
// owner strings as in the SQLite store. Failures of the database itself (it is down, restarting,
// out of disk or connections, read-only, unreachable) are store.ErrUnavailable with what the
// admin must do; deadlocks, serialization failures and connections that broke before a statement
// was sent are retried a few times first.
package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/internal/authrecord"
	"github.com/mailintake/mailintake/internal/store/internal/mailcopy"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// migrations are applied in order; the index+1 is the schema version recorded in
// schema_migrations. Never edit one that has shipped: append a new one.
var migrations = []string{
	`CREATE TABLE mailboxes (
		id         text COLLATE "C" PRIMARY KEY,
		tenant     text COLLATE "C" NOT NULL,
		spec       bytea NOT NULL,
		created_at bigint NOT NULL,
		updated_at bigint NOT NULL
	);
	CREATE INDEX mailboxes_tenant ON mailboxes (tenant, id);
	CREATE TABLE mailbox_secrets (
		mailbox_id text COLLATE "C" NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
		name       text COLLATE "C" NOT NULL,
		sealed     bytea NOT NULL,
		PRIMARY KEY (mailbox_id, name)
	);
	CREATE TABLE provider_state (
		mailbox_id text COLLATE "C" PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
		sealed     bytea NOT NULL,
		updated_at bigint NOT NULL
	);
	CREATE TABLE api_tokens (
		id         text COLLATE "C" PRIMARY KEY,
		name       text NOT NULL,
		tenant     text COLLATE "C" NOT NULL,
		admin      boolean NOT NULL,
		hash       bytea NOT NULL UNIQUE,
		created_at bigint NOT NULL,
		revoked_at bigint,
		expires_at bigint
	);
	CREATE INDEX api_tokens_created ON api_tokens (created_at, id);
	CREATE TABLE sync_state (
		mailbox_id    text COLLATE "C" PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
		uid_validity  bigint NOT NULL,
		acked_through bigint NOT NULL,
		baseline      bigint NOT NULL,
		resync_below  bigint NOT NULL,
		updated_at    bigint NOT NULL
	);
	CREATE TABLE acks (
		mailbox_id   text COLLATE "C" NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
		uid_validity bigint NOT NULL,
		uid          bigint NOT NULL,
		sha256       text COLLATE "C" NOT NULL,
		acked_at     bigint NOT NULL,
		applied      boolean NOT NULL DEFAULT false,
		PRIMARY KEY (mailbox_id, uid_validity, uid)
	);
	CREATE INDEX acks_hash ON acks (mailbox_id, sha256);
	CREATE INDEX acks_unapplied ON acks (mailbox_id, uid_validity, uid) WHERE NOT applied;
	CREATE TABLE quarantine (
		id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		mailbox_id   text COLLATE "C" NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
		uid_validity bigint NOT NULL,
		uid          bigint NOT NULL,
		reason       text NOT NULL,
		size         bigint NOT NULL,
		headers      bytea NOT NULL,
		state        text NOT NULL,
		created_at   bigint NOT NULL,
		UNIQUE (mailbox_id, uid_validity, uid)
	);
	CREATE TABLE events (
		id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		mailbox_id text COLLATE "C" NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
		at         bigint NOT NULL,
		kind       text NOT NULL,
		message    text NOT NULL,
		count      integer NOT NULL DEFAULT 1,
		first_at   bigint NOT NULL
	);
	CREATE INDEX events_mailbox ON events (mailbox_id, id);
	CREATE INDEX events_at ON events (mailbox_id, at);`,
	`CREATE TABLE meta (
		name  text COLLATE "C" PRIMARY KEY,
		value bytea NOT NULL
	);`,
	// Replicas and the ownership of mailboxes (store.Cluster). Heartbeat times are the
	// database's own (timestamptz from now()), unlike the stored times above: they are compared
	// only with now(), so the replicas' clocks never matter. A mailbox gets its owner row at its
	// first claim.
	`CREATE TABLE replica (
		id          text COLLATE "C" PRIMARY KEY,
		incarnation text NOT NULL,
		addr        text NOT NULL,
		started_at  timestamptz NOT NULL,
		expires_at  timestamptz NOT NULL
	);
	CREATE TABLE mailbox_owner (
		mailbox_id  text COLLATE "C" PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
		replica_id  text COLLATE "C",
		incarnation text,
		epoch       bigint NOT NULL DEFAULT 0
	);
	CREATE INDEX mailbox_owner_replica ON mailbox_owner (replica_id, incarnation) WHERE replica_id IS NOT NULL;`,
	// A mailbox's interactive sign-in in progress: its state and handle sealed as one value.
	`CREATE TABLE authorizations (
		mailbox_id text COLLATE "C" PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
		sealed     bytea NOT NULL,
		updated_at bigint NOT NULL
	);`,
	// The first delivery of each mail in a tenant (ClaimCopies), keyed by the hash of tenant,
	// Message-ID and content fingerprint (mailcopy.Key). No foreign key to mailboxes: a claim
	// belongs to the tenant's mail, it stays when its mailbox is deleted (the message was
	// delivered, a later copy is still its duplicate) until it expires, and a claim never fails
	// for a mailbox deleted meanwhile.
	`CREATE TABLE mail_copies (
		key        bytea PRIMARY KEY,
		mailbox_id text COLLATE "C" NOT NULL,
		message_id text COLLATE "C" NOT NULL,
		claimed_at bigint NOT NULL
	);
	CREATE INDEX mail_copies_claimed ON mail_copies (claimed_at);`,
	// The outbox: mail sent as the mailboxes (store.OutboxStore). Lists and structures are JSON
	// text (outboxrow); raw is the composed message, in the clear (bodies are not secrets). The
	// idempotency key is bytea: any bytes a caller sends are a key of their own.
	`CREATE TABLE outbound (
		id              text COLLATE "C" PRIMARY KEY,
		mailbox_id      text COLLATE "C" NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
		tenant          text COLLATE "C" NOT NULL,
		idempotency_key bytea NOT NULL,
		request_hash    bytea NOT NULL,
		state           text NOT NULL,
		message_id      text NOT NULL,
		in_reply_to     text NOT NULL,
		mail_from       text NOT NULL,
		recipients      text NOT NULL,
		subject         text NOT NULL,
		size            bigint NOT NULL,
		raw             bytea NOT NULL,
		warnings        text NOT NULL,
		attempts        integer NOT NULL,
		next_attempt_at bigint NOT NULL,
		error           text,
		result          text,
		created_at      bigint NOT NULL,
		updated_at      bigint NOT NULL,
		sent_at         bigint NOT NULL,
		UNIQUE (mailbox_id, idempotency_key)
	);
	CREATE INDEX outbound_mailbox ON outbound (mailbox_id, id);
	CREATE INDEX outbound_tenant ON outbound (tenant, id);
	CREATE INDEX outbound_pending ON outbound (mailbox_id, next_attempt_at) WHERE state IN ('queued', 'sending');
	CREATE INDEX outbound_final ON outbound (updated_at) WHERE state IN ('sent', 'failed', 'unknown');`,
	// Bounces and Sent copies of outbound messages (JSON text, outboxrow): a delivery failure
	// report finds its outbound message by tenant and Message-ID, and BOUNCED is final too.
	`ALTER TABLE outbound ADD COLUMN bounce text, ADD COLUMN sent_copy text;
	CREATE INDEX outbound_message_id ON outbound (tenant, message_id);
	DROP INDEX outbound_final;
	CREATE INDEX outbound_final ON outbound (updated_at) WHERE state IN ('sent', 'failed', 'unknown', 'bounced');`,
	`CREATE TABLE pop3_uidls (
		mailbox_id text COLLATE "C" NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
		uidl       text COLLATE "C" NOT NULL,
		uid        bigint NOT NULL,
		first_seen bigint NOT NULL,
		gone_at    bigint,
		PRIMARY KEY (mailbox_id, uidl),
		UNIQUE (mailbox_id, uid)
	);`,
	// A mailbox's status tells of its sending trouble (OutboundHealth): the FAILED and UNKNOWN
	// messages of the last day, found without walking everything the mailbox sent.
	`CREATE INDEX outbound_trouble ON outbound (mailbox_id, updated_at) WHERE state IN ('failed', 'unknown');`,
}

// Advisory lock keys. The migration lock is the one-bigint form; the events lock the two-int4
// form (class, hashtext(mailbox id)): the two forms never conflict with each other.
const (
	migrationLock    int64 = 0x6d61696c696e74 // "mailint"
	eventsLockClass  int32 = 0x6d690001
	defaultConnectTO       = 10 * time.Second
	// idleInTransactionTimeout is PostgreSQL's idle_in_transaction_session_timeout for the
	// store's connections (see Open).
	idleInTransactionTimeout = "10s"
	maxAttempts              = 5
)

// Store is the PostgreSQL implementation of store.Store. It is safe for concurrent use, by one
// process and by several replicas sharing the database.
type Store struct {
	pool *pgxpool.Pool
	box  *secrets.Box
	// copies says when this process's ClaimCopies deletes expired claims (each replica does,
	// at most once per store.CopyPruneInterval).
	copies mailcopy.Pruner
}

// Open connects to the database at url (a PostgreSQL URL or key=value connection string, as
// libpq takes; pool settings such as pool_max_conns are read from it) and applies pending
// migrations. Without connect_timeout in url, a connection attempt gives up after 10 s. An
// unreachable database is store.ErrUnavailable.
func Open(ctx context.Context, url string, box *secrets.Box) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's ParseConfigError redacts the password (best effort).
		return nil, fmt.Errorf("the PostgreSQL connection string: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTO
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "mailintake"
	}
	// A replica frozen inside a transaction (SIGSTOP, a frozen VM, a long stop of the world)
	// holds its locks, among them the FOR SHARE lock a fenced write takes on its mailbox's owner
	// row, which makes every claim of that mailbox skip it: the mailbox would have no session
	// until the frozen replica woke. PostgreSQL ends such a connection after this long idle in a
	// transaction, which rolls the transaction back and frees the locks; the replica, once
	// awake, finds its write refused and its lease gone. No transaction of the store waits on
	// anything but the database, so a healthy one is never idle this long.
	if _, ok := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = idleInTransactionTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, wrap(ctx, err)
	}
	s := &Store{pool: pool, box: box}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		if errors.Is(err, store.ErrUnavailable) {
			return nil, err
		}
		return nil, fmt.Errorf("migrating the PostgreSQL database: %w", err)
	}
	return s, nil
}

// migrate applies the pending migrations in one transaction. The advisory lock serialises
// replicas that start together: the second one waits, then sees the versions the first recorded.
func (s *Store) migrate(ctx context.Context) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return err
		}
		var v int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
			return err
		}
		if v > len(migrations) {
			return fmt.Errorf("database schema version %d is newer than this server (%d): upgrade this server", v, len(migrations))
		}
		for i := v; i < len(migrations); i++ {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, i+1); err != nil {
				return err
			}
		}
		return nil
	})
}

// Close implements store.Store. It waits for queries in progress; it may be called again.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
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

// storable reports whether s can be a text value in the database: PostgreSQL's text holds valid
// UTF-8 without NUL bytes. A key that is not storable names nothing that exists, so lookups by
// it find nothing instead of failing (SQLite, which keeps any bytes, finds nothing either).
func storable(s string) bool { return utf8.ValidString(s) && !strings.Contains(s, "\x00") }

// text makes free text (an event's message, a quarantine reason) storable: invalid UTF-8 and NUL
// bytes become "?".
func text(s string) string {
	if storable(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "?"), "\x00", "?")
}

// inTx runs f in a transaction, retried as retry does.
func (s *Store) inTx(ctx context.Context, f func(tx pgx.Tx) error) error {
	return s.retry(ctx, func() error { return pgx.BeginFunc(ctx, s.pool, f) })
}

// retry runs f (one statement, or one transaction) until it succeeds, fails for good, or has
// failed maxAttempts times with errors after which nothing was written: a deadlock or a
// serialization failure (the transaction was rolled back), a connection that broke before the
// statement was sent, or one the server terminated. The error is mapped by wrap.
func (s *Store) retry(ctx context.Context, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil || attempt == maxAttempts-1 || !retryable(err) || ctx.Err() != nil {
			return wrap(ctx, err)
		}
		d := time.Duration(5<<attempt)*time.Millisecond + rand.N(5*time.Millisecond)
		select {
		case <-ctx.Done():
			return wrap(ctx, err)
		case <-time.After(d):
		}
	}
}

func retryable(err error) bool {
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01": // serialization_failure, deadlock_detected: rolled back
			return true
		case "57P01": // admin_shutdown: the connection was terminated; the statement did not commit
			return true
		case "0A000": // feature_not_supported: "cached plan must not change result type" after a migration
			return strings.Contains(pe.Message, "cached plan")
		}
		return false
	}
	return pgconn.SafeToRetry(err)
}

// wrap turns a failure of the database itself into store.ErrUnavailable with what the admin must
// do, and a unique violation into store.ErrConflict; other errors pass unchanged. When ctx is
// done, its error passes unchanged: the caller gave up, the database did not fail.
func wrap(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return err
	}
	var what string
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) {
		switch code := pe.Code; {
		case code == "23505": // unique_violation
			return store.ErrConflict
		case code == "57P01", code == "57P02", code == "57P03": // admin/crash shutdown, cannot connect now
			what = "PostgreSQL is shutting down, restarting or recovering: wait until it accepts connections again"
		case code == "53100": // disk_full
			what = "PostgreSQL's disk is full: free space on the database server"
		case code == "53300": // too_many_connections
			what = "PostgreSQL has no free connection slot: raise its max_connections, or lower the replicas' pool size (pool_max_conns in the database URL)"
		case code == "53200": // out_of_memory
			what = "PostgreSQL is out of memory"
		case strings.HasPrefix(code, "53"): // insufficient_resources, configuration_limit_exceeded
			what = "PostgreSQL is out of resources (" + pe.Message + "): check the database server"
		case strings.HasPrefix(code, "08"): // connection_exception
			what = "the connection to PostgreSQL failed: check that it is running and reachable"
		case code == "40001", code == "40P01":
			what = "transactions kept conflicting in PostgreSQL (serialization failures or deadlocks): try again"
		case code == "25006": // read_only_sql_transaction
			what = "PostgreSQL is read-only (a standby, or default_transaction_read_only is on): point the database URL at the primary"
		case code == "57014", code == "55P03": // query_canceled (statement_timeout), lock_not_available (lock_timeout)
			what = "a statement timed out in PostgreSQL (statement_timeout or lock_timeout): the database is overloaded or a lock is held too long"
		case strings.HasPrefix(code, "58"), code == "XX001", code == "XX002": // system_error, io_error, data/index_corrupted
			what = "PostgreSQL had an I/O error or found corrupted data: check the database server's disk and log"
		case strings.HasPrefix(code, "28"): // invalid_authorization_specification, invalid_password
			what = "PostgreSQL refused the credentials: check the user and password in the database URL"
		case code == "3D000": // invalid_catalog_name
			what = "the database named in the database URL does not exist: create it"
		default:
			return err
		}
		return &unavailableError{what: what, cause: err}
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		what = "cannot connect to PostgreSQL: check that it is running and that the database URL's host and port are right"
	case pgconn.Timeout(err), errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNREFUSED):
		what = "the connection to PostgreSQL broke: check that it is running and reachable"
	default:
		return err
	}
	return &unavailableError{what: what, cause: err}
}

// unavailableError is store.ErrUnavailable with what to do; its text leaves out the driver's
// message (which can name hosts and users), which stays reachable with errors.As for the log.
type unavailableError struct {
	what  string
	cause error
}

func (e *unavailableError) Error() string   { return store.ErrUnavailable.Error() + ": " + e.what }
func (e *unavailableError) Unwrap() []error { return []error{store.ErrUnavailable, e.cause} }

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
		return err
	}
	id := mb.Spec.GetId()
	if !create && !storable(id) {
		return store.ErrNotFound
	}
	names := make([]string, 0, len(mb.Secrets))
	sealed := make([][]byte, 0, len(mb.Secrets))
	for name, v := range mb.Secrets {
		names = append(names, name)
		sealed = append(sealed, s.box.Seal([]byte(v.Reveal()), secretOwner(id, name)))
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if create {
			if _, err := tx.Exec(ctx, `INSERT INTO mailboxes (id, tenant, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)`,
				id, mb.Spec.GetTenant(), spec, mb.Spec.GetCreateTime().AsTime().UnixNano(), mb.Spec.GetUpdateTime().AsTime().UnixNano()); err != nil {
				return err
			}
		} else {
			tag, err := tx.Exec(ctx, `UPDATE mailboxes SET tenant = $1, spec = $2, updated_at = $3 WHERE id = $4`,
				mb.Spec.GetTenant(), spec, mb.Spec.GetUpdateTime().AsTime().UnixNano(), id)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return store.ErrNotFound
			}
			if _, err := tx.Exec(ctx, `DELETE FROM mailbox_secrets WHERE mailbox_id = $1`, id); err != nil {
				return err
			}
		}
		if len(names) == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, `INSERT INTO mailbox_secrets (mailbox_id, name, sealed)
			SELECT $1, name, sealed FROM unnest($2::text[], $3::bytea[]) AS s (name, sealed)`, id, names, sealed)
		return err
	})
}

// GetMailbox implements store.Store.
func (s *Store) GetMailbox(ctx context.Context, id string) (*store.Mailbox, error) {
	if !storable(id) {
		return nil, store.ErrNotFound
	}
	mbs, err := s.queryMailboxes(ctx, `WHERE id = $1`, id)
	if err != nil {
		return nil, err
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
		if !storable(q.Tenant) {
			return nil, nil
		}
		args = append(args, q.Tenant)
		where = append(where, fmt.Sprintf("tenant = $%d", len(args)))
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
		clause = "WHERE " + strings.Join(where, " AND ")
	}
	clause += " ORDER BY id"
	if q.Limit > 0 {
		clause += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	return s.queryMailboxes(ctx, clause, args...)
}

// queryMailboxes reads the mailboxes that clause selects, with their secrets, in one query (one
// snapshot).
func (s *Store) queryMailboxes(ctx context.Context, clause string, args ...any) ([]*store.Mailbox, error) {
	q := `SELECT m.id, m.spec, ms.name, ms.sealed
		FROM (SELECT id, spec FROM mailboxes ` + clause + `) m
		LEFT JOIN mailbox_secrets ms ON ms.mailbox_id = m.id
		ORDER BY m.id`
	var out []*store.Mailbox
	err := s.retry(ctx, func() error {
		out = nil
		rows, err := s.pool.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		var cur *store.Mailbox
		var curID string
		for rows.Next() {
			var id string
			var spec, sealed []byte
			var name *string
			if err := rows.Scan(&id, &spec, &name, &sealed); err != nil {
				return err
			}
			if cur == nil || curID != id {
				curID = id
				cur = &store.Mailbox{Spec: &mailintakev1.Mailbox{}, Secrets: map[string]secrets.Secret{}}
				if err := proto.Unmarshal(spec, cur.Spec); err != nil {
					return fmt.Errorf("mailbox %s: %w", id, err)
				}
				out = append(out, cur)
			}
			if name == nil {
				continue
			}
			pt, err := s.box.Open(sealed, secretOwner(id, *name))
			if err != nil {
				return fmt.Errorf("mailbox %s secret %s: %w", id, *name, err)
			}
			cur.Secrets[*name] = secrets.Secret(pt)
		}
		return rows.Err()
	})
	return out, err
}

// DeleteMailbox implements store.Store.
func (s *Store) DeleteMailbox(ctx context.Context, id string) error {
	if !storable(id) {
		return store.ErrNotFound
	}
	return s.execOne(ctx, `DELETE FROM mailboxes WHERE id = $1`, id)
}

// ProviderState implements store.Store.
func (s *Store) ProviderState(ctx context.Context, mailboxID string) ([]byte, error) {
	if !storable(mailboxID) {
		return nil, nil
	}
	var sealed []byte
	err := s.retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT sealed FROM provider_state WHERE mailbox_id = $1`, mailboxID).Scan(&sealed)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.box.Open(sealed, stateOwner(mailboxID))
}

// SetProviderState implements store.Store. Under a lease for the mailbox it is fenced.
func (s *Store) SetProviderState(ctx context.Context, mailboxID string, state []byte) error {
	if state == nil {
		if !storable(mailboxID) {
			return nil
		}
		return s.write(ctx, mailboxID, func(db dbtx) error {
			_, err := db.Exec(ctx, `DELETE FROM provider_state WHERE mailbox_id = $1`, mailboxID)
			return err
		})
	}
	sealed := s.box.Seal(state, stateOwner(mailboxID))
	return s.write(ctx, mailboxID, func(db dbtx) error {
		_, err := db.Exec(ctx, `INSERT INTO provider_state (mailbox_id, sealed, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (mailbox_id) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at`,
			mailboxID, sealed, time.Now().UnixNano())
		return err
	})
}

// SwapProviderState implements store.Store. The current value is read FOR UPDATE in the write's
// transaction, so concurrent swaps of a mailbox's state run one after the other and each compares
// with what the one before it wrote. When there is no state, the row is inserted without ON
// CONFLICT: of two swaps from nil at once, the second's insert meets the first's row and is
// store.ErrConflict (a unique violation). Under a lease for the mailbox it is fenced.
func (s *Store) SwapProviderState(ctx context.Context, mailboxID string, old, new []byte) error {
	if !storable(mailboxID) {
		// No mailbox has this id, so it has no state.
		switch {
		case old != nil:
			return store.ErrConflict
		case new == nil:
			return nil
		default:
			return store.ErrNotFound
		}
	}
	var sealedNew []byte
	if new != nil {
		sealedNew = s.box.Seal(new, stateOwner(mailboxID))
	}
	return s.writeTx(ctx, mailboxID, func(tx pgx.Tx) error {
		var sealed []byte
		err := tx.QueryRow(ctx, `SELECT sealed FROM provider_state WHERE mailbox_id = $1 FOR UPDATE`, mailboxID).Scan(&sealed)
		exists := err == nil
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
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
			_, err = tx.Exec(ctx, `DELETE FROM provider_state WHERE mailbox_id = $1`, mailboxID)
		case new == nil:
			return nil // none for none: nothing to write
		case exists:
			_, err = tx.Exec(ctx, `UPDATE provider_state SET sealed = $2, updated_at = $3 WHERE mailbox_id = $1`,
				mailboxID, sealedNew, time.Now().UnixNano())
		default:
			_, err = tx.Exec(ctx, `INSERT INTO provider_state (mailbox_id, sealed, updated_at) VALUES ($1, $2, $3)`,
				mailboxID, sealedNew, time.Now().UnixNano())
		}
		return err
	})
}

// SaveAuthorization implements store.Store. State and Handle are sealed together, bound to the
// mailbox; a.UpdateTime is set to the time stored. A nil a writes nothing. A mailbox that does not
// exist (the foreign key fails) is store.ErrNotFound. Under a lease for the mailbox it is fenced.
func (s *Store) SaveAuthorization(ctx context.Context, a *store.PendingAuthorization) error {
	if a == nil {
		return nil
	}
	if !storable(a.MailboxID) {
		return store.ErrNotFound // no mailbox has this id
	}
	sealed := s.box.Seal(authrecord.Marshal(a.State, a.Handle), authOwner(a.MailboxID))
	now := time.Now().UnixNano()
	err := s.write(ctx, a.MailboxID, func(db dbtx) error {
		_, err := db.Exec(ctx, `INSERT INTO authorizations (mailbox_id, sealed, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (mailbox_id) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at`,
			a.MailboxID, sealed, now)
		return err
	})
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "23503" { // foreign_key_violation
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	a.UpdateTime = time.Unix(0, now).UTC()
	return nil
}

// GetAuthorization implements store.Store.
func (s *Store) GetAuthorization(ctx context.Context, mailboxID string) (*store.PendingAuthorization, error) {
	if !storable(mailboxID) {
		return nil, nil
	}
	var sealed []byte
	var updated int64
	err := s.retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT sealed, updated_at FROM authorizations WHERE mailbox_id = $1`, mailboxID).Scan(&sealed, &updated)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
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

// exec runs one statement, retried.
func (s *Store) exec(ctx context.Context, q string, args ...any) error {
	return s.retry(ctx, func() error {
		_, err := s.pool.Exec(ctx, q, args...)
		return err
	})
}

// execOne runs one statement, retried; store.ErrNotFound when it touched no row.
func (s *Store) execOne(ctx context.Context, q string, args ...any) error {
	var n int64
	err := s.retry(ctx, func() error {
		tag, err := s.pool.Exec(ctx, q, args...)
		n = tag.RowsAffected()
		return err
	})
	if err == nil && n == 0 {
		return store.ErrNotFound
	}
	return err
}

func nanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixNano()
	return &n
}

func fromNanos(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return time.Unix(0, *n).UTC()
}

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t *store.Token) error {
	return s.exec(ctx, `INSERT INTO api_tokens (id, name, tenant, admin, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		t.ID, t.Name, t.Tenant, t.Admin, t.Hash, t.CreateTime.UnixNano(), nanos(t.ExpireTime))
}

const tokenColumns = `id, name, tenant, admin, hash, created_at, revoked_at, expires_at`

func scanToken(row pgx.Row) (*store.Token, error) {
	var t store.Token
	var created int64
	var revoked, expires *int64
	if err := row.Scan(&t.ID, &t.Name, &t.Tenant, &t.Admin, &t.Hash, &created, &revoked, &expires); err != nil {
		return nil, err
	}
	t.CreateTime = time.Unix(0, created).UTC()
	t.RevokeTime = fromNanos(revoked)
	t.ExpireTime = fromNanos(expires)
	return &t, nil
}

// TokenByID implements store.Store.
func (s *Store) TokenByID(ctx context.Context, id string) (*store.Token, error) {
	if !storable(id) {
		return nil, store.ErrNotFound
	}
	var t *store.Token
	err := s.retry(ctx, func() error {
		var err error
		t, err = scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = $1`, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return t, err
}

// ListTokens implements store.Store.
func (s *Store) ListTokens(ctx context.Context, includeRevoked bool) ([]*store.Token, error) {
	q := `SELECT ` + tokenColumns + ` FROM api_tokens`
	if !includeRevoked {
		q += ` WHERE revoked_at IS NULL`
	}
	q += ` ORDER BY created_at, id`
	var out []*store.Token
	err := s.retry(ctx, func() error {
		out = nil
		rows, err := s.pool.Query(ctx, q)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			t, err := scanToken(rows)
			if err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, err
}

// RevokeToken implements store.Store. A token revoked before keeps its first revocation time.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	if !storable(id) {
		return store.ErrNotFound
	}
	return s.execOne(ctx, `UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2`, at.UnixNano(), id)
}

var _ store.Store = (*Store)(nil)

// keyCheck is the value VerifyKey seals, and the owner it is bound to (as in the SQLite store).
const (
	keyCheckValue = "mailintake key check"
	keyCheckOwner = "meta/key-check"
)

// VerifyKey implements store.Store.
func (s *Store) VerifyKey(ctx context.Context) error {
	sealed := s.box.Seal([]byte(keyCheckValue), keyCheckOwner)
	if err := s.exec(ctx, `INSERT INTO meta (name, value) VALUES ('key_check', $1) ON CONFLICT (name) DO NOTHING`, sealed); err != nil {
		return err
	}
	var stored []byte
	if err := s.retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT value FROM meta WHERE name = 'key_check'`).Scan(&stored)
	}); err != nil {
		return err
	}
	if pt, err := s.box.Open(stored, keyCheckOwner); err != nil || string(pt) != keyCheckValue {
		return store.ErrKeyMismatch
	}
	return nil
}

// ClaimOnce implements store.Store.
func (s *Store) ClaimOnce(ctx context.Context, name string) (bool, error) {
	var first bool
	err := s.retry(ctx, func() error {
		tag, err := s.pool.Exec(ctx, `INSERT INTO meta (name, value) VALUES ($1, '\x01') ON CONFLICT (name) DO NOTHING`, "claim/"+name)
		first = err == nil && tag.RowsAffected() == 1
		return err
	})
	return first, err
}
