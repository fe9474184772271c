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
