package sqlite

import (
	"context"
	"errors"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/store"
)

// goroutinesCreated is how many goroutines the process has started so far.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// The calls on the delivery path run their statements without a goroutine each (detach.go):
// under a context that can be cancelled, 100 acknowledgements, 100 after_ack marks and 100
// token checks start a handful of goroutines, not one per statement, and they still write and
// read what they should.
func TestDeliveryPathStartsNoGoroutinePerStatement(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.CreateMailbox(ctx, mailbox("mb-a", "acme")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, &store.Token{ID: "t1", Name: "psa", Tenant: "acme", Hash: []byte{1}, CreateTime: time.Now()}); err != nil {
		t.Fatal(err)
	}
	const n = 100
	var acks []store.Ack
	var uids []uint32
	for uid := uint32(1); uid <= n; uid++ {
		acks = append(acks, store.Ack{UIDValidity: 7, UID: uid, SHA256: "h", AckTime: time.Now()})
		uids = append(uids, uid)
	}
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"RecordAcks", func() error { return s.RecordAcks(ctx, map[string][]store.Ack{"mb-a": acks}) }},
		{"MarkApplied", func() error { return s.MarkApplied(ctx, "mb-a", 7, uids) }},
		{"TokenByID", func() error {
			for range n {
				if _, err := s.TokenByID(ctx, "t1"); err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		before := goroutinesCreated()
		if err := c.call(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		// The store's own background work (the event writer) may start one or two.
		if got := goroutinesCreated() - before; got > 10 {
			t.Errorf("%s of %d rows started %d goroutines; want a handful, not one per statement", c.name, n, got)
		}
	}
	if got, err := s.UnappliedAcks(ctx, "mb-a"); err != nil || len(got) != 0 {
		t.Errorf("after MarkApplied, unapplied acks = %d (err %v); want 0", len(got), err)
	}
	if got, err := s.Acks(ctx, "mb-a", 7, 0); err != nil || len(got) != n {
		t.Errorf("recorded acks = %d (err %v); want %d", len(got), err, n)
	}
}

// A call whose context is done already writes nothing and says why; a transaction waiting for
// the writer connection gives up when its context ends.
func TestDetachedCallsStillHonourTheirContext(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	bg := context.Background()
	if err := s.CreateMailbox(bg, mailbox("mb-a", "acme")); err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(bg)
	cancel()
	ack := map[string][]store.Ack{"mb-a": {{UIDValidity: 7, UID: 1, SHA256: "h", AckTime: time.Now()}}}
	if err := s.RecordAcks(done, ack); !errors.Is(err, context.Canceled) {
		t.Errorf("RecordAcks with a cancelled context = %v, want context.Canceled", err)
	}
	if err := s.MarkApplied(done, "mb-a", 7, []uint32{1}); !errors.Is(err, context.Canceled) {
		t.Errorf("MarkApplied with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := s.TokenByID(done, "t1"); !errors.Is(err, context.Canceled) {
		t.Errorf("TokenByID with a cancelled context = %v, want context.Canceled", err)
	}
	if got, err := s.Acks(bg, "mb-a", 7, 0); err != nil || len(got) != 0 {
		t.Errorf("acks after a cancelled call = %v (err %v); want none", got, err)
	}

	// Hold the writer connection; a write waiting for it ends with its context.
	held, err := s.w.Conn(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	wait, stop := context.WithTimeout(bg, 200*time.Millisecond)
	defer stop()
	start := time.Now()
	if err := s.RecordAcks(wait, ack); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("RecordAcks waiting for a busy writer = %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("RecordAcks gave up after %s; want about 200ms", took)
	}
	held.Close()
	if err := s.RecordAcks(bg, ack); err != nil {
		t.Errorf("RecordAcks once the writer is free: %v", err)
	}
}
