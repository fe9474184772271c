package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/storetest"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	box, err := secrets.NewBox(bytes.Repeat([]byte{1}, secrets.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), dir, box)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mailbox(id, tenant string) *store.Mailbox {
	now := timestamppb.New(time.Unix(1700000000, 0))
	return &store.Mailbox{
		Spec: &mailintakev1.Mailbox{
			Id: id, Tenant: tenant, Host: "imap.example.com", Port: 993, Username: "u@example.com",
			AuthProvider: "basic", AuthConfig: map[string]string{"mechanism": "PLAIN"},
			AuthSecrets: map[string]string{"password": "must-not-be-stored-here"},
			CreateTime:  now, UpdateTime: now,
		},
		Secrets: map[string]secrets.Secret{"password": "correct horse battery staple"},
	}
}

func TestMailboxLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.CreateMailbox(ctx, mailbox("a", "t1")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, mailbox("a", "t1")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate create = %v, want ErrConflict", err)
	}
	for _, id := range []string{"b", "c"} {
		if err := s.CreateMailbox(ctx, mailbox(id, "t2")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetProviderState(ctx, "a", []byte("refresh-token-value")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Reopen: everything survives, secrets decrypt.
	s = openTest(t, dir)
	defer s.Close()
	got, err := s.GetMailbox(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Secrets["password"].Reveal() != "correct horse battery staple" {
		t.Errorf("password after reopen = %q", got.Secrets["password"].Reveal())
	}
	if len(got.Spec.AuthSecrets) != 0 {
		t.Errorf("spec kept auth_secrets: %v", got.Spec.AuthSecrets)
	}
	want := mailbox("a", "t1").Spec
	want.AuthSecrets = nil
	if !proto.Equal(got.Spec, want) {
		t.Errorf("GetMailbox = %v, want %v", got.Spec, want)
	}
	st, err := s.ProviderState(ctx, "a")
	if err != nil || string(st) != "refresh-token-value" {
		t.Errorf("ProviderState = %q, %v", st, err)
	}

	page, err := s.ListMailboxes(ctx, store.MailboxQuery{Tenant: "t2", Limit: 1})
	if err != nil || len(page) != 1 || page[0].Spec.Id != "b" {
		t.Fatalf("first page = %v, %v", page, err)
	}
	page, err = s.ListMailboxes(ctx, store.MailboxQuery{Tenant: "t2", AfterID: "b", Limit: 1})
	if err != nil || len(page) != 1 || page[0].Spec.Id != "c" {
		t.Fatalf("second page = %v, %v", page, err)
	}

	upd := mailbox("a", "t1")
	upd.Spec.DisplayName = "renamed"
	upd.Secrets = map[string]secrets.Secret{"password": "new-password"}
	if err := s.UpdateMailbox(ctx, upd); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetMailbox(ctx, "a")
	if got.Spec.DisplayName != "renamed" || got.Secrets["password"].Reveal() != "new-password" {
		t.Errorf("after update: %q %q", got.Spec.DisplayName, got.Secrets["password"].Reveal())
	}
	if err := s.UpdateMailbox(ctx, mailbox("zz", "t1")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update of a missing mailbox = %v, want ErrNotFound", err)
	}

	if err := s.DeleteMailbox(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMailbox(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get after delete = %v", err)
	}
	if st, _ := s.ProviderState(ctx, "a"); st != nil {
		t.Errorf("provider state survived delete: %q", st)
	}
	if err := s.DeleteMailbox(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete = %v", err)
	}
}

// TestNoPlaintextOnDisk writes known secrets and scans every file of the data directory.
func TestNoPlaintextOnDisk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.CreateMailbox(ctx, mailbox("a", "t1")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetProviderState(ctx, "a", []byte("refresh-token-value")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, needle := range []string{"correct horse battery staple", "refresh-token-value", "must-not-be-stored-here"} {
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, _ := os.ReadFile(path)
			if bytes.Contains(data, []byte(needle)) {
				t.Errorf("%s contains %q in plain text", path, needle)
			}
			return nil
		})
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	now := time.Unix(1700000000, 0).UTC()
	tok := &store.Token{ID: "t1", Name: "psa", Tenant: "acme", Hash: []byte{1, 2, 3}, CreateTime: now}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, &store.Token{ID: "t2", Hash: []byte{1, 2, 3}, CreateTime: now}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate hash = %v, want ErrConflict", err)
	}
	got, err := s.TokenByID(ctx, "t1")
	if err != nil || got.Tenant != "acme" || !got.CreateTime.Equal(now) || !got.RevokeTime.IsZero() {
		t.Fatalf("TokenByID = %+v, %v", got, err)
	}
	if err := s.RevokeToken(ctx, "t1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.ListTokens(ctx, false); len(l) != 0 {
		t.Errorf("ListTokens(false) after revoke = %d tokens", len(l))
	}
	if l, _ := s.ListTokens(ctx, true); len(l) != 1 || l[0].RevokeTime.IsZero() {
		t.Errorf("ListTokens(true) = %+v", l)
	}
	if err := s.RevokeToken(ctx, "nope", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoke missing = %v", err)
	}
}

// An acknowledgement call spanning mailboxes is recorded whole or not at all, so a failed call
// never leaves acknowledgements the consumer was not told about.
func TestRecordAcksAllOrNothing(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	if err := s.CreateMailbox(ctx, mailbox("mb-a", "acme")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, mailbox("mb-b", "acme")); err != nil {
		t.Fatal(err)
	}
	ack := func(uid uint32) store.Ack {
		return store.Ack{UIDValidity: 7, UID: uid, SHA256: "h", AckTime: time.Unix(1700000000, 0)}
	}
	// mb-gone does not exist: the foreign key fails the whole call.
	err := s.RecordAcks(ctx, map[string][]store.Ack{"mb-a": {ack(1), ack(2)}, "mb-gone": {ack(3)}})
	if err == nil {
		t.Fatal("acknowledging a message of a missing mailbox succeeded")
	}
	if got, err := s.UnappliedAcks(ctx, "mb-a"); err != nil || len(got) != 0 {
		t.Fatalf("after a failed call, mb-a has acks %v (err %v); want none", got, err)
	}
	if err := s.RecordAcks(ctx, map[string][]store.Ack{"mb-a": {ack(1), ack(2)}, "mb-b": {ack(3)}}); err != nil {
		t.Fatal(err)
	}
	a, _ := s.UnappliedAcks(ctx, "mb-a")
	b, _ := s.UnappliedAcks(ctx, "mb-b")
	if len(a) != 2 || len(b) != 1 || b[0].UID != 3 {
		t.Fatalf("recorded %v and %v; want UIDs 1, 2 and 3", a, b)
	}
	// Idempotent: the same call again changes nothing and does not fail.
	if err := s.RecordAcks(ctx, map[string][]store.Ack{"mb-a": {ack(1)}}); err != nil {
		t.Fatal(err)
	}
}

// One process owns every mailbox of the embedded store: writes made under a lease (one no
// Cluster handed out) are not fenced, and it does not implement store.Cluster.
func TestLeasesIgnored(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	if err := s.CreateMailbox(context.Background(), mailbox("m", "acme")); err != nil {
		t.Fatal(err)
	}
	if _, ok := any(s).(store.Cluster); ok {
		t.Errorf("the SQLite store implements store.Cluster")
	}
	ctx := store.WithLease(context.Background(), store.Lease{MailboxID: "m", ReplicaID: "nobody", Incarnation: "x", Epoch: 42})
	writes := map[string]error{
		"SaveSyncState":     s.SaveSyncState(ctx, &store.SyncState{MailboxID: "m", UIDValidity: 1, AckedThrough: 5}),
		"SetProviderState":  s.SetProviderState(ctx, "m", []byte("state")),
		"SwapProviderState": s.SwapProviderState(ctx, "m", []byte("state"), []byte("swapped")),
		"Quarantine":        s.Quarantine(ctx, &store.Quarantined{MailboxID: "m", UIDValidity: 1, UID: 2, Reason: "r"}),
		"AddEvent":          s.AddEvent(ctx, store.Event{MailboxID: "m", Kind: "connect", Message: "x"}),
		"MarkApplied":       s.MarkApplied(ctx, "m", 1, []uint32{1}),
		"PruneAcks":         s.PruneAcks(ctx, "m", 1, 1, time.Now()),
		"SaveAuthorization": s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: "m", State: []byte("s"), Handle: "h"}),
	}
	for name, err := range writes {
		if err != nil {
			t.Errorf("%s under a lease = %v", name, err)
		}
	}
	if st, err := s.SyncState(ctx, "m"); err != nil || st == nil || st.AckedThrough != 5 {
		t.Errorf("SyncState = %+v, %v", st, err)
	}
}

// A database made by the previous server (schema version 5, before the authorizations table)
// is migrated at Open: its mailboxes keep everything and can save a pending sign-in.
func TestMigrateFromVersion5(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName)+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:5] {
		if _, err := db.ExecContext(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `PRAGMA user_version = 5`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO mailboxes (id, tenant, spec, created_at, updated_at) VALUES ('old', 'acme', x'', 1, 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := openTest(t, dir)
	defer s.Close()
	var v int
	if err := s.db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("user_version after Open = %d, %v; want %d", v, err, len(migrations))
	}
	if _, err := s.GetMailbox(ctx, "old"); err != nil {
		t.Fatalf("the mailbox made before the migration: %v", err)
	}
	if a, err := s.GetAuthorization(ctx, "old"); err != nil || a != nil {
		t.Errorf("GetAuthorization after the migration = %+v, %v; want nil", a, err)
	}
	if err := s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: "old", State: []byte("s"), Handle: "h"}); err != nil {
		t.Fatal(err)
	}
	if a, err := s.GetAuthorization(ctx, "old"); err != nil || a == nil || a.Handle != "h" {
		t.Errorf("GetAuthorization = %+v, %v", a, err)
	}
}

// A pending sign-in is sealed bound to its mailbox: copied onto another mailbox's row, it does
// not open.
func TestAuthorizationBoundToMailbox(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	for _, id := range []string{"a", "b"} {
		if err := s.CreateMailbox(ctx, mailbox(id, "acme")); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: id, State: []byte("state-" + id), Handle: "handle-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.w.ExecContext(ctx, `UPDATE authorizations SET sealed = (SELECT sealed FROM authorizations WHERE mailbox_id = 'a') WHERE mailbox_id = 'b'`); err != nil {
		t.Fatal(err)
	}
	if a, err := s.GetAuthorization(ctx, "b"); !errors.Is(err, secrets.ErrDecrypt) {
		t.Errorf("GetAuthorization of a sign-in copied from another mailbox = %+v, %v; want ErrDecrypt", a, err)
	}
	if a, err := s.GetAuthorization(ctx, "a"); err != nil || a == nil || a.Handle != "handle-a" {
		t.Errorf("GetAuthorization(a) = %+v, %v", a, err)
	}
}

// Expired claims of ClaimCopies are deleted at most once an hour (by the claims' times).
func TestCopiesPruned(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	storetest.CopiesPruned(t, s, func(t *testing.T) int {
		var n int
		if err := s.db.QueryRowContext(t.Context(), `SELECT count(*) FROM mail_copies`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	})
}

// The sender's look-up of due messages uses the partial index of pending messages, not the
// mailbox's whole history (which it scanned at every send).
func TestDueOutboundUsesPendingIndex(t *testing.T) {
	s := openTest(t, t.TempDir())
	rows, err := s.db.Query(`EXPLAIN QUERY PLAN SELECT id FROM outbound `+dueOutboundWhere, "m", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if len(plan) == 0 || !strings.Contains(plan[0], "USING INDEX outbound_pending (mailbox_id=? AND next_attempt_at<?)") {
		t.Errorf("the plan of DueOutbound: %q", plan)
	}
}
