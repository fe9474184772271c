package sqlite

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/store"
)

// synchronous reads the writer connection's synchronous level (1 NORMAL, 2 FULL).
func synchronous(t *testing.T, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) int {
	t.Helper()
	var n int
	if err := q.QueryRowContext(context.Background(), `PRAGMA synchronous`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRelaxedWrites: the sync round's checkpoint advance, MarkApplied, the copy claims and the
// event log commit with synchronous=NORMAL, everything else (the first checkpoint, a resync,
// the acknowledgements) with FULL, and the writer is back to FULL after each.
func TestRelaxedWrites(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	if got := synchronous(t, s.w); got != 2 {
		t.Fatalf("writer synchronous = %d at open, want 2 (FULL)", got)
	}
	if err := s.CreateMailbox(ctx, mailbox("a", "t1")); err != nil {
		t.Fatal(err)
	}
	// A TEMP table lives on its connection only: still there, the writer was kept, not
	// discarded and replaced (which would also read FULL).
	if _, err := s.w.ExecContext(ctx, `CREATE TEMP TABLE probe (x)`); err != nil {
		t.Fatal(err)
	}
	relaxed := func(what string, want int64, f func() error) {
		t.Helper()
		before := s.relaxedCommits.Load()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := s.relaxedCommits.Load() - before; got != want {
			t.Errorf("%s: %d relaxed commits, want %d", what, got, want)
		}
		if got := synchronous(t, s.w); got != 2 {
			t.Errorf("after %s the writer's synchronous = %d, want 2 (FULL)", what, got)
		}
		if _, err := s.w.ExecContext(ctx, `SELECT count(*) FROM temp.probe`); err != nil {
			t.Errorf("after %s the writer connection was replaced: %v", what, err)
		}
	}
	st := &store.SyncState{MailboxID: "a", UIDValidity: 7, AckedThrough: 0, Baseline: 1}
	// The first save finds no row to advance: the relaxed attempt changes nothing (it commits
	// an empty transaction) and the durable upsert writes the row.
	relaxed("the first checkpoint", 1, func() error { return s.SaveSyncState(ctx, st) })
	relaxed("acknowledgements", 0, func() error {
		return s.RecordAcks(ctx, map[string][]store.Ack{"a": {{UIDValidity: 7, UID: 3, SHA256: "h", AckTime: time.Now()}}})
	})
	st.AckedThrough = 3
	relaxed("a checkpoint advance", 1, func() error { return s.SaveSyncState(ctx, st) })
	relaxed("MarkApplied", 1, func() error { return s.MarkApplied(ctx, "a", 7, []uint32{3}) })
	relaxed("an event", 1, func() error { return s.AddEvent(ctx, store.Event{MailboxID: "a", Kind: "sync", Message: "m"}) })
	relaxed("a copy claim", 1, func() error {
		_, err := s.ClaimCopies(ctx, time.Now(), []store.MailCopy{{Tenant: "t1", MailboxID: "a", ID: "a:7:3", MessageID: "<m@x>", Fingerprint: "f"}})
		return err
	})
	got, err := s.SyncState(ctx, "a")
	if err != nil || got.AckedThrough != 3 || got.Baseline != 1 {
		t.Fatalf("after the advance: %+v, %v; want acked_through 3, baseline 1", got, err)
	}
	// A resync (new UIDVALIDITY) and a checkpoint moved back are durable and still written.
	resync := &store.SyncState{MailboxID: "a", UIDValidity: 8, ResyncBelow: 10}
	before := s.relaxedCommits.Load()
	if err := s.SaveSyncState(ctx, resync); err != nil {
		t.Fatal(err)
	}
	if got, err := s.SyncState(ctx, "a"); err != nil || got.UIDValidity != 8 || got.ResyncBelow != 10 || got.AckedThrough != 0 {
		t.Fatalf("after the resync: %+v, %v", got, err)
	}
	resync.AckedThrough = 5
	if err := s.SaveSyncState(ctx, resync); err != nil {
		t.Fatal(err)
	}
	resync.AckedThrough = 4
	if err := s.SaveSyncState(ctx, resync); err != nil {
		t.Fatal(err)
	}
	if got, err := s.SyncState(ctx, "a"); err != nil || got.AckedThrough != 4 {
		t.Fatalf("a checkpoint saved back: %+v, %v; want acked_through 4", got, err)
	}
	// resync: relaxed attempt (no match) + durable; advance to 5: relaxed; back to 4: relaxed
	// attempt (no match) + durable.
	if got := s.relaxedCommits.Load() - before; got != 3 {
		t.Errorf("resync, advance, move back: %d relaxed commits, want 3", got)
	}

	// Inside a relaxed transaction the level is NORMAL.
	if err := s.relaxedTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if got := synchronous(t, tx); got != 1 {
			t.Errorf("inside relaxedTx synchronous = %d, want 1 (NORMAL)", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestDiscardedConnection: a writer connection whose level could not be put back is closed, and
// the next write gets a new connection at the DSN's FULL.
func TestDiscardedConnection(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	c, err := s.w.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecContext(ctx, `PRAGMA synchronous = OFF`); err != nil {
		t.Fatal(err)
	}
	s.discard(c)
	c.Close()
	if got := synchronous(t, s.w); got != 2 {
		t.Fatalf("after a discarded connection the writer's synchronous = %d, want 2 (FULL)", got)
	}
}
