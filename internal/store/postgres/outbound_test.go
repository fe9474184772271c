//go:build postgres

package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/storetest"
)

// The outbox's sender writes are fenced: a replica that lost a mailbox can neither take one of
// its messages for sending nor record an outcome, nor interrupt the new owner's sends; the new
// owner can. The API's writes (CreateOutbound) carry no lease.
func testFencedOutbox(t *testing.T, s *Store) {
	ctx := context.Background()
	createMailboxes(t, s, "m")
	join(t, s, "r1", "i1")
	join(t, s, "r2", "j1")
	l1 := claim(t, s, "r1", "i1", "m")["m"]
	ctx1 := store.WithLease(ctx, l1)
	for _, id := range []string{"o1", "o2"} {
		if _, _, err := s.CreateOutbound(ctx, storetest.NewOutbound(id, "m", id)); err != nil {
			t.Fatal(err)
		}
	}
	o1, _ := s.GetOutbound(ctx, "o1", false)
	if err := s.TransitionOutbound(ctx1, o1, store.OutboundUpdate{State: store.OutboundSending, Attempts: 1, UpdateTime: time.Now()}); err != nil {
		t.Fatalf("taking o1 under the current lease: %v", err)
	}
	o1, _ = s.GetOutbound(ctx, "o1", false)

	lapse(t, s, "r1")
	l2 := claim(t, s, "r2", "j1", "m")["m"]
	ctx2 := store.WithLease(ctx, l2)
	o2, _ := s.GetOutbound(ctx, "o2", false)
	if err := s.TransitionOutbound(ctx1, o2, store.OutboundUpdate{State: store.OutboundSending, Attempts: 1, UpdateTime: time.Now()}); err != store.ErrFenced {
		t.Errorf("taking o2 under a lease taken over = %v, want ErrFenced", err)
	}
	if err := s.TransitionOutbound(ctx1, o1, store.OutboundUpdate{State: store.OutboundSent, Attempts: 1, UpdateTime: time.Now()}); err != store.ErrFenced {
		t.Errorf("recording o1's outcome under a lease taken over = %v, want ErrFenced", err)
	}
	if _, err := s.InterruptOutbound(ctx1, "m", store.OutboundError{Kind: "unknown"}); err != store.ErrFenced {
		t.Errorf("InterruptOutbound under a lease taken over = %v, want ErrFenced", err)
	}
	for id, want := range map[string]store.OutboundState{"o1": store.OutboundSending, "o2": store.OutboundQueued} {
		if o, _ := s.GetOutbound(ctx, id, false); o.State != want {
			t.Errorf("%s after refused writes: %s, want %s", id, o.State, want)
		}
	}
	// The new owner interrupts what the old one was sending, and sends the rest.
	ids, err := s.InterruptOutbound(ctx2, "m", store.OutboundError{Kind: "unknown", Explanation: "taken over while sending"})
	if err != nil || len(ids) != 1 || ids[0] != "o1" {
		t.Errorf("InterruptOutbound under the new lease = %v, %v", ids, err)
	}
	if err := s.TransitionOutbound(ctx2, o2, store.OutboundUpdate{State: store.OutboundSending, Attempts: 1, UpdateTime: time.Now()}); err != nil {
		t.Errorf("taking o2 under the new lease: %v", err)
	}
	if err := s.TransitionOutbound(ctx1, o1, store.OutboundUpdate{State: store.OutboundSent, Attempts: 1, UpdateTime: time.Now()}); !errors.Is(err, store.ErrFenced) {
		t.Errorf("the old owner's late outcome = %v", err)
	}
	// The Sent copy and a bounce are fenced too: the old owner records neither.
	o2, _ = s.GetOutbound(ctx, "o2", false)
	if err := s.RecordSentCopy(ctx1, o2, store.OutboundSentCopy{Folder: "Sent", Saved: true}); !errors.Is(err, store.ErrFenced) {
		t.Errorf("the old owner's Sent copy = %v", err)
	}
	if err := s.RecordSentCopy(ctx2, o2, store.OutboundSentCopy{Folder: "Sent", Saved: true}); err != nil {
		t.Errorf("the new owner's Sent copy = %v", err)
	}
	if err := s.TransitionOutbound(ctx2, o2, store.OutboundUpdate{State: store.OutboundSent, Attempts: 1, UpdateTime: time.Now()}); err != nil {
		t.Fatal(err)
	}
	report := store.BounceReport{Tenant: "acme", EnvelopeID: "o2", Failure: true, Bounce: store.OutboundBounce{MessageID: "m:1:1", Time: time.Now()}}
	if _, err := s.BounceOutbound(ctx1, "m", report); !errors.Is(err, store.ErrFenced) {
		t.Errorf("a bounce delivered under a lease taken over = %v", err)
	}
	if o, _ := s.GetOutbound(ctx, "o2", false); o.State != store.OutboundSent || o.SentCopy == nil || !o.SentCopy.Saved {
		t.Errorf("o2 after the old owner's bounce: %s %+v", o.State, o.SentCopy)
	}
	if id, err := s.BounceOutbound(ctx2, "m", report); err != nil || id != "o2" {
		t.Errorf("a bounce delivered under the current lease = %q, %v", id, err)
	}
	if o, _ := s.GetOutbound(ctx, "o2", false); o.State != store.OutboundBounced {
		t.Errorf("o2 after the bounce: %s", o.State)
	}
}
