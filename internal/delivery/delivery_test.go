package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/store"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// recorderFunc is an AckRecorder.
type recorderFunc func(map[string][]store.Ack) error

func (f recorderFunc) RecordAcks(_ context.Context, acks map[string][]store.Ack) error {
	return f(acks)
}

// The session may read an acknowledgement from the store, and forget the message, before Ack
// has finished: the acknowledgement still counts.
func TestAckCountsWhenTheSessionForgetsMeanwhile(t *testing.T) {
	var q *Queue
	b := New(recorderFunc(func(acks map[string][]store.Ack) error {
		for _, a := range acks["mb"] {
			q.Forget(a.UIDValidity, a.UID) // what the session does once the ack is stored
		}
		return nil
	}))
	defer b.Close()
	q = b.Queue("mb", "acme")
	q.SetUIDValidity(7)
	s := b.Open(func(string, string) bool { return true }, 4, time.Minute)
	if r := q.Offer(&mailintakev1.Message{UidValidity: 7, Uid: 1}); r != Delivered {
		t.Fatalf("offer: %v", r)
	}
	m := <-s.Out()
	res, err := b.Ack(context.Background(), []string{m.GetId()}, func(string) bool { return true })
	if err != nil || len(res.Acknowledged) != 1 {
		t.Fatalf("ack: %v %v", res, err)
	}
	if d, a, p := q.Counts(); d != 1 || a != 1 || p != 0 {
		t.Errorf("counts: delivered %d, acknowledged %d, pending %d; want 1, 1, 0", d, a, p)
	}
}

// Reserved slots are taken from what other mailboxes see, used by the reserving mailbox's
// offers, and given back by Release.
func TestReserveAndRelease(t *testing.T) {
	b := New(recorderFunc(func(map[string][]store.Ack) error { return nil }))
	defer b.Close()
	qa, qb := b.Queue("a", "acme"), b.Queue("b", "acme")
	qa.SetUIDValidity(1)
	qb.SetUIDValidity(1)
	b.Open(func(string, string) bool { return true }, 3, time.Minute)
	if got := qa.Reserve(2); got != 2 {
		t.Fatalf("a reserved %d of 3 free slots, want 2", got)
	}
	if got := qb.Reserve(5); got != 1 {
		t.Fatalf("b reserved %d, want the 1 slot left", got)
	}
	if r := qa.Offer(&mailintakev1.Message{UidValidity: 1, Uid: 1}); r != Delivered {
		t.Fatalf("a's offer on its reservation: %v", r)
	}
	qb.Release()
	qa.Release()
	// One slot is in flight: two are free again, for anyone.
	if got := qb.Reserve(5); got != 2 {
		t.Errorf("after Release, b reserved %d, want 2", got)
	}
}

// A freed slot wakes the sessions waiting for one, not every session the stream serves.
func TestFreedSlotsWakeOnlyWaitingSessions(t *testing.T) {
	b := New(recorderFunc(func(map[string][]store.Ack) error { return nil }))
	defer b.Close()
	waiting, idle := b.Queue("waiting", "acme"), b.Queue("idle", "acme")
	if got := waiting.Reserve(1); got != 0 {
		t.Fatalf("reserved %d slots with no stream open", got)
	}
	drain := func(q *Queue) bool {
		select {
		case <-q.Wake():
			return true
		default:
			return false
		}
	}
	drain(waiting)
	drain(idle)
	b.Open(func(string, string) bool { return true }, 1, time.Minute)
	if !drain(waiting) {
		t.Error("the session waiting for a slot was not woken when a stream opened")
	}
	if drain(idle) {
		t.Error("a session with nothing to deliver was woken")
	}
}
