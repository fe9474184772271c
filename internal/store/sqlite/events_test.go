package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/store"
)

// Repeats of an event are folded into one entry (count, first and last time) that becomes the
// newest; the log is pruned by count and by age at every write, exactly.
func TestEventsFoldAndPrune(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	if err := s.CreateMailbox(ctx, mailbox("m", "t")); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour)
	add := func(at time.Time, kind, msg string) {
		t.Helper()
		if err := s.AddEvent(ctx, store.Event{MailboxID: "m", Time: at, Kind: kind, Message: msg}); err != nil {
			t.Fatal(err)
		}
	}
	add(t0, "error", "move refused")
	add(t0.Add(time.Minute), "deliver", "delivered 1 message")
	add(t0.Add(2*time.Minute), "error", "move refused")
	add(t0.Add(3*time.Minute), "error", "move refused")
	evs, err := s.ListEvents(ctx, "m", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("events = %+v, want 2 entries", evs)
	}
	if e := evs[0]; e.Message != "move refused" || e.Count != 3 || !e.FirstTime.Equal(t0.UTC()) || !e.Time.Equal(t0.Add(3*time.Minute).UTC()) {
		t.Errorf("folded entry = %+v", e)
	}
	if e := evs[1]; e.Count != 1 || !e.FirstTime.Equal(e.Time) {
		t.Errorf("single entry = %+v", e)
	}
	// A repeat after the fold window is a new entry.
	add(t0.Add(store.EventFoldWindow+4*time.Minute), "error", "move refused")
	evs, _ = s.ListEvents(ctx, "m", 0, 10)
	if len(evs) != 3 || evs[0].Count != 1 {
		t.Errorf("after the fold window: %+v", evs)
	}

	// By count: never more than MaxEventsPerMailbox, the newest kept.
	for i := range store.MaxEventsPerMailbox + 7 {
		add(t0.Add(time.Duration(i)*time.Second), "deliver", fmt.Sprintf("delivered UID %d", i))
	}
	evs, _ = s.ListEvents(ctx, "m", 0, store.MaxEventsPerMailbox)
	if len(evs) != store.MaxEventsPerMailbox || evs[0].Message != fmt.Sprintf("delivered UID %d", store.MaxEventsPerMailbox+6) {
		t.Errorf("after %d more: %d entries, newest %q", store.MaxEventsPerMailbox+7, len(evs), evs[0].Message)
	}
	var n int
	s.db.QueryRow(`SELECT count(*) FROM events WHERE mailbox_id = 'm'`).Scan(&n)
	if n != store.MaxEventsPerMailbox {
		t.Errorf("%d rows stored, want %d", n, store.MaxEventsPerMailbox)
	}
	// By age: an entry older than the retention goes at the next write.
	add(time.Now().Add(-store.EventRetention-time.Hour), "connect", "ancient")
	add(time.Now(), "connect", "now")
	evs, _ = s.ListEvents(ctx, "m", 0, store.MaxEventsPerMailbox)
	for _, e := range evs {
		if e.Message == "ancient" {
			t.Errorf("an entry older than %s survived a write", store.EventRetention)
		}
	}
}

// Many concurrent readers share a bounded pool: 10,000 sessions reading at once must not open a
// SQLite connection (and a file descriptor) each.
func TestReadPoolIsBounded(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	if err := s.CreateMailbox(ctx, mailbox("m", "t")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 200)
	for range 200 {
		go func() {
			_, err := s.ListEvents(ctx, "m", 0, 10)
			if err == nil {
				_, err = s.GetMailbox(ctx, "m")
			}
			done <- err
		}()
	}
	for range 200 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if st := s.db.Stats(); st.MaxOpenConnections != maxReaders || st.OpenConnections > maxReaders {
		t.Errorf("read pool: %d open, max %d; want at most %d", st.OpenConnections, st.MaxOpenConnections, maxReaders)
	}
}

// A data directory opened with another secret key is refused by VerifyKey, not with a decryption
// error at the first secret.
func TestVerifyKeyRefusesAnotherKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.VerifyKey(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	other, _ := secrets.NewBox(bytes.Repeat([]byte{2}, secrets.KeySize))
	s2, err := Open(ctx, dir, other)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.VerifyKey(ctx); !errors.Is(err, store.ErrKeyMismatch) {
		t.Errorf("VerifyKey with another key = %v, want ErrKeyMismatch", err)
	}
}

// Events written at once share transactions (AddEvent's group commit): 200 writers take far
// fewer than 200 commits, and an event of a deleted mailbox among them fails alone.
func TestEventsGroupCommit(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	for _, id := range []string{"a", "b"} {
		if err := s.CreateMailbox(ctx, mailbox(id, "t")); err != nil {
			t.Fatal(err)
		}
	}
	before := s.events.batches.Load()
	type result struct {
		mb  string
		err error
	}
	done := make(chan result, 200)
	for i := range 200 {
		mb := []string{"a", "b", "gone"}[i%3]
		go func() {
			done <- result{mb, s.AddEvent(ctx, store.Event{MailboxID: mb, Kind: "deliver", Message: fmt.Sprint("event ", i)})}
		}()
	}
	var failed, ok int
	for range 200 {
		r := <-done
		switch {
		case r.mb == "gone" && r.err != nil:
			failed++
		case r.mb != "gone" && r.err == nil:
			ok++
		default:
			t.Errorf("event of %s: %v", r.mb, r.err)
		}
	}
	commits := s.events.batches.Load() - before
	t.Logf("200 events at once: %d transactions; %d written, %d of a missing mailbox refused", commits, ok, failed)
	if commits >= 100 {
		t.Errorf("200 events at once took %d transactions: not grouped", commits)
	}
	for _, id := range []string{"a", "b"} {
		evs, err := s.ListEvents(ctx, id, 0, 1000)
		if err != nil || len(evs) < 66 {
			t.Errorf("%s holds %d events (%v), want 66 or 67", id, len(evs), err)
		}
	}

	// A caller that already gave up writes nothing, as before the group commit.
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.AddEvent(gone, store.Event{MailboxID: "a", Kind: "deliver", Message: "given up"}); !errors.Is(err, context.Canceled) {
		t.Errorf("AddEvent with a cancelled context: %v", err)
	}
	if evs, _ := s.ListEvents(ctx, "a", 0, 1); len(evs) == 1 && evs[0].Message == "given up" {
		t.Error("an event whose caller gave up was written")
	}
	// After Close, an event fails instead of waiting for a writer that will not come.
	s.Close()
	if err := s.AddEvent(ctx, store.Event{MailboxID: "a", Kind: "deliver", Message: "late"}); err == nil {
		t.Error("AddEvent after Close succeeded")
	}
}
