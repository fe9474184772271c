//go:build postgres

package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	pgserver "github.com/mailintake/mailintake/internal/fakes/postgres"
	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/storetest"
)

func testBox(t testing.TB) *secrets.Box {
	t.Helper()
	box, err := secrets.NewBox(bytes.Repeat([]byte{1}, secrets.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return box
}

// openFresh opens the store on a new database of srv; it is closed at the test's end.
func openFresh(t *testing.T, srv *pgserver.Server) *Store {
	t.Helper()
	s, err := Open(t.Context(), srv.CreateDatabase(t, ""), testBox(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPostgres runs everything on one private server: the conformance suite (a new database for
// each of its tests) and the PostgreSQL-specific tests.
func TestPostgres(t *testing.T) {
	srv := pgserver.Start(t)
	t.Run("Conformance", func(t *testing.T) {
		open := func(t *testing.T) store.Store { return openFresh(t, srv) }
		storetest.Run(t, open, storetest.WithRaw(dumpTables))
	})
	t.Run("SecretsNotInPlaintext", func(t *testing.T) { testSecretsNotInPlaintext(t, srv) })
	t.Run("ConcurrentMigrations", func(t *testing.T) { testConcurrentMigrations(t, srv) })
	t.Run("TerminatedConnections", func(t *testing.T) { testTerminatedConnections(t, srv) })
	t.Run("ClaimCopiesAcrossReplicas", func(t *testing.T) { testClaimCopiesAcrossReplicas(t, srv) })
	t.Run("CopiesPruned", func(t *testing.T) {
		s := openFresh(t, srv)
		storetest.CopiesPruned(t, s, func(t *testing.T) int {
			var n int
			if err := s.pool.QueryRow(t.Context(), `SELECT count(*) FROM mail_copies`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		})
	})
}

// dumpTables returns every row of every table of the store's schema in PostgreSQL's text form
// (bytea as hex).
func dumpTables(t *testing.T, st store.Store) []byte {
	s := st.(*Store)
	ctx := t.Context()
	rows, err := s.pool.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, table := range tables {
		var text string
		if err := s.pool.QueryRow(ctx, `SELECT coalesce(string_agg(t::text, E'\n'), '') FROM `+pgx.Identifier{table}.Sanitize()+` t`).Scan(&text); err != nil {
			t.Fatal(err)
		}
		out.WriteString(table + "\n" + text + "\n")
	}
	return out.Bytes()
}

// Secrets and provider state are sealed in their columns, bound to their row, and never reach
// the database's files in plain text.
func testSecretsNotInPlaintext(t *testing.T, srv *pgserver.Server) {
	ctx := t.Context()
	url := srv.CreateDatabase(t, "sealed")
	s, err := Open(ctx, url, testBox(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range []string{"a", "b"} {
		mb := storetest.NewMailbox(id, "acme")
		mb.Secrets["password"] = secrets.Secret("password-of-" + id)
		if err := s.CreateMailbox(ctx, mb); err != nil {
			t.Fatal(err)
		}
		if err := s.SetProviderState(ctx, id, []byte("refresh-token-of-"+id)); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: id, State: []byte("sign-in-state-of-" + id), Handle: "device-code-of-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	needles := []string{"password-of-a", "password-of-b", "refresh-token-of-a", "refresh-token-of-b", "must-not-be-stored-here",
		"device-code-of-a", "device-code-of-b", "sign-in-state-of-a", "sign-in-state-of-b"}

	// The raw columns.
	var sealed [][]byte
	for _, q := range []string{`SELECT sealed FROM mailbox_secrets`, `SELECT sealed FROM provider_state`, `SELECT sealed FROM authorizations`, `SELECT spec FROM mailboxes`} {
		rows, err := s.pool.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			t.Fatal(err)
		}
		if len(vals) != 2 {
			t.Fatalf("%s: %d rows, want 2", q, len(vals))
		}
		for _, v := range vals {
			for _, n := range needles {
				if bytes.Contains(v, []byte(n)) {
					t.Errorf("%s: a value contains %q in plain text", q, n)
				}
			}
		}
		if !strings.Contains(q, "spec") {
			sealed = append(sealed, vals...)
		}
	}
	for _, v := range sealed {
		if len(v) < 1+12+16 || v[0] != 1 {
			t.Errorf("a sealed value is not a secrets.Box value: % x", v)
		}
	}

	// The files: the database's own and the write-ahead log, after a checkpoint.
	if _, err := s.pool.Exec(ctx, `CHECKPOINT`); err != nil {
		t.Fatal(err)
	}
	var files int
	for _, dir := range []string{srv.DatabaseDir(t, "sealed"), filepath.Join(srv.DataDir(), "pg_wal")} {
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			for _, n := range needles {
				if bytes.Contains(data, []byte(n)) {
					t.Errorf("%s contains %q in plain text", path, n)
				}
			}
			return nil
		})
	}
	if files == 0 {
		t.Fatalf("no database files read")
	}

	// A sealed value is bound to its mailbox: copied onto another row, it does not open.
	if _, err := s.pool.Exec(ctx, `UPDATE mailbox_secrets SET sealed = (SELECT sealed FROM mailbox_secrets WHERE mailbox_id = 'a' AND name = 'password')
		WHERE mailbox_id = 'b' AND name = 'password'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMailbox(ctx, "b"); !errors.Is(err, secrets.ErrDecrypt) {
		t.Errorf("GetMailbox with a secret copied from another mailbox = %v, want ErrDecrypt", err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE provider_state SET sealed = (SELECT sealed FROM provider_state WHERE mailbox_id = 'a') WHERE mailbox_id = 'b'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ProviderState(ctx, "b"); !errors.Is(err, secrets.ErrDecrypt) {
		t.Errorf("ProviderState copied from another mailbox = %v, want ErrDecrypt", err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE authorizations SET sealed = (SELECT sealed FROM authorizations WHERE mailbox_id = 'a') WHERE mailbox_id = 'b'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAuthorization(ctx, "b"); !errors.Is(err, secrets.ErrDecrypt) {
		t.Errorf("GetAuthorization copied from another mailbox = %v, want ErrDecrypt", err)
	}
	// And a store with another key opens nothing.
	other, _ := secrets.NewBox(bytes.Repeat([]byte{2}, secrets.KeySize))
	s2, err := Open(ctx, url, other)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.GetMailbox(ctx, "a"); !errors.Is(err, secrets.ErrDecrypt) {
		t.Errorf("GetMailbox with another key = %v, want ErrDecrypt", err)
	}
}

// Replicas starting at once on an empty database apply each migration once; a later start
// applies nothing; a database migrated by a newer server is refused.
func testConcurrentMigrations(t *testing.T, srv *pgserver.Server) {
	ctx := t.Context()
	url := srv.CreateDatabase(t, "migrations")
	const replicas = 6
	var wg sync.WaitGroup
	stores := make([]*Store, replicas)
	errs := make([]error, replicas)
	start := make(chan struct{})
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			stores[i], errs[i] = Open(ctx, url, testBox(t))
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Open = %v", i, err)
			continue
		}
		defer stores[i].Close()
	}
	if t.Failed() {
		return
	}
	versions := func() []int {
		t.Helper()
		rows, err := stores[0].pool.Query(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
		if err != nil {
			t.Fatal(err)
		}
		v, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	want := len(migrations)
	if v := versions(); len(v) != want || v[0] != 1 || v[len(v)-1] != want {
		t.Errorf("schema_migrations = %v, want 1…%d once each", v, want)
	}
	// Every replica works on the shared schema.
	for i, s := range stores {
		mb := storetest.NewMailbox(string(rune('a'+i)), "acme")
		if err := s.CreateMailbox(ctx, mb); err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
	if l, err := stores[replicas-1].ListMailboxes(ctx, store.MailboxQuery{}); err != nil || len(l) != replicas {
		t.Errorf("ListMailboxes = %d, %v; want %d", len(l), err, replicas)
	}
	// Opening again applies nothing.
	s, err := Open(ctx, url, testBox(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if v := versions(); len(v) != want {
		t.Errorf("after another Open: schema_migrations = %v", v)
	}
	// A newer schema is refused, not used.
	if _, err := stores[0].pool.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, want+1); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(ctx, url, testBox(t)); err == nil || !strings.Contains(err.Error(), "newer than this server") {
		if s != nil {
			s.Close()
		}
		t.Errorf("Open of a newer schema = %v", err)
	}
}

// A connection the server terminated (a failover, pg_terminate_backend) is replaced: the next
// calls succeed.
func testTerminatedConnections(t *testing.T, srv *pgserver.Server) {
	ctx := t.Context()
	s := openFresh(t, srv)
	if err := s.CreateMailbox(ctx, storetest.NewMailbox("m", "acme")); err != nil {
		t.Fatal(err)
	}
	// Several connections in the pool.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.pool.Exec(ctx, `SELECT pg_sleep(0.05)`)
		}()
	}
	wg.Wait()
	for round := range 3 {
		srv.Exec(t, "postgres", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mailintake' AND pid <> pg_backend_pid()`)
		for i := range 3 {
			if _, err := s.GetMailbox(ctx, "m"); err != nil {
				t.Fatalf("round %d, call %d after the server terminated the connections: %v", round, i, err)
			}
			if err := s.AddEvent(ctx, store.Event{MailboxID: "m", Kind: "connect", Message: "x"}); err != nil {
				t.Fatalf("round %d, call %d: AddEvent after the server terminated the connections: %v", round, i, err)
			}
		}
	}
	if evs, _ := s.ListEvents(ctx, "m", 0, 0); len(evs) != 1 || evs[0].Count != 9 {
		t.Errorf("events = %+v, want one entry counted 9 (each write exactly once)", evs)
	}
}

// A stopped server makes every call fail fast with store.ErrUnavailable, saying what to do.
func TestStoppedServer(t *testing.T) {
	srv := pgserver.Start(t)
	ctx := t.Context()
	url := srv.CreateDatabase(t, "stopped")
	s, err := Open(ctx, url, testBox(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateMailbox(ctx, storetest.NewMailbox("m", "acme")); err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	calls := map[string]func(ctx context.Context) error{
		"GetMailbox": func(ctx context.Context) error { _, err := s.GetMailbox(ctx, "m"); return err },
		"ListMailboxes": func(ctx context.Context) error {
			_, err := s.ListMailboxes(ctx, store.MailboxQuery{})
			return err
		},
		"CreateMailbox": func(ctx context.Context) error { return s.CreateMailbox(ctx, storetest.NewMailbox("n", "acme")) },
		"RecordAcks": func(ctx context.Context) error {
			return s.RecordAcks(ctx, map[string][]store.Ack{"m": {{UIDValidity: 1, UID: 1, SHA256: "h", AckTime: time.Now()}}})
		},
		"AddEvent": func(ctx context.Context) error {
			return s.AddEvent(ctx, store.Event{MailboxID: "m", Kind: "connect", Message: "x"})
		},
		"TokenByID": func(ctx context.Context) error { _, err := s.TokenByID(ctx, "t"); return err },
		"SaveSyncState": func(ctx context.Context) error {
			return s.SaveSyncState(ctx, &store.SyncState{MailboxID: "m", UIDValidity: 1})
		},
		"Open": func(ctx context.Context) error {
			s2, err := Open(ctx, url, testBox(t))
			if err == nil {
				s2.Close()
			}
			return err
		},
	}
	for name, call := range calls {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		start := time.Now()
		err := call(cctx)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s on a stopped server = %v, want ErrUnavailable", name, err)
			continue
		}
		if took > 5*time.Second {
			t.Errorf("%s on a stopped server took %v", name, took)
		}
		if msg := err.Error(); !strings.Contains(msg, "check that it is running") {
			t.Errorf("%s: the error does not say what to do: %q", name, msg)
		}
		t.Logf("%s: %v (%v)", name, err, took.Round(time.Millisecond))
	}
}

// Replicas given different secret keys: the second is refused by VerifyKey, before it could
// write anything sealed with a key the others cannot read.
func TestVerifyKeyRefusesAnotherKey(t *testing.T) {
	srv := pgserver.Start(t)
	url := srv.CreateDatabase(t, "keys")
	ctx := context.Background()
	a, err := Open(ctx, url, testBox(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.VerifyKey(ctx); err != nil {
		t.Fatal(err)
	}
	other, _ := secrets.NewBox(bytes.Repeat([]byte{2}, secrets.KeySize))
	b, err := Open(ctx, url, other)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.VerifyKey(ctx); !errors.Is(err, store.ErrKeyMismatch) {
		t.Errorf("VerifyKey with another key = %v, want ErrKeyMismatch", err)
	}
	if err := a.VerifyKey(ctx); err != nil {
		t.Errorf("the first replica's check after the refusal: %v", err)
	}
}

// Copies of one mail claimed at once by several replicas (each its own store on the database)
// agree on one first copy, named by every other.
func testClaimCopiesAcrossReplicas(t *testing.T, srv *pgserver.Server) {
	url := srv.CreateDatabase(t, "copies")
	var replicas []*Store
	for range 3 {
		s, err := Open(t.Context(), url, testBox(t))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		replicas = append(replicas, s)
	}
	const mailboxes = 12
	for round := range 20 {
		msgID := fmt.Sprintf("<round-%d@customer.example>", round)
		answers := make([]string, mailboxes)
		errs := make([]error, mailboxes)
		var wg sync.WaitGroup
		for m := range mailboxes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := store.MailCopy{Tenant: "acme", MessageID: msgID, Fingerprint: "0123456789abcdef",
					MailboxID: fmt.Sprintf("mb%d", m), ID: fmt.Sprintf("mb%d:1:%d", m, round+1)}
				var got []string
				got, errs[m] = replicas[m%len(replicas)].ClaimCopies(t.Context(), time.Time{}, []store.MailCopy{c})
				if errs[m] == nil {
					answers[m] = got[0]
				}
			}()
		}
		wg.Wait()
		first, named := -1, map[string]int{}
		for m, a := range answers {
			if errs[m] != nil {
				t.Fatalf("round %d, mailbox %d: %v", round, m, errs[m])
			}
			if a == "" {
				if first >= 0 {
					t.Fatalf("round %d: mailboxes %d and %d both first", round, first, m)
				}
				first = m
			} else {
				named[a]++
			}
		}
		if want := fmt.Sprintf("mb%d:1:%d", first, round+1); first < 0 || len(named) != 1 || named[want] != mailboxes-1 {
			t.Fatalf("round %d: first %d, named %v", round, first, named)
		}
	}
}

// A transaction left open by a frozen process is ended by PostgreSQL, freeing its locks (the
// owner row's FOR SHARE lock would otherwise keep every claim of the mailbox away), unless the
// connection string sets its own timeout.
func TestIdleInTransactionEnded(t *testing.T) {
	srv := pgserver.Start(t)
	url := srv.CreateDatabase(t, "idle")
	ctx := context.Background()
	s, err := Open(ctx, url, testBox(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got string
	if err := s.pool.QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&got); err != nil || got != idleInTransactionTimeout {
		t.Errorf("idle_in_transaction_session_timeout = %q, %v; want %s", got, err, idleInTransactionTimeout)
	}
	own, err := Open(ctx, url+"&idle_in_transaction_session_timeout=2s", testBox(t))
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	tx, err := own.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&got); err != nil || got != "2s" {
		t.Errorf("with the connection string's own: %q, %v; want 2s", got, err)
	}
	time.Sleep(3 * time.Second) // frozen inside the transaction
	if err := tx.Commit(ctx); err == nil {
		t.Error("a transaction idle past the timeout committed; PostgreSQL should have ended it")
	}
}
