package delivery

import (
	"context"
	"strconv"
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

// A freed slot wakes one waiting session, the one that waited longest, not every waiting one;
// a woken session that does not take the slot passes the wake-up on.
func TestFreedSlotWakesOneWaiterInOrder(t *testing.T) {
	b := New(recorderFunc(func(map[string][]store.Ack) error { return nil }))
	defer b.Close()
	s := b.Open(func(string, string) bool { return true }, 1, time.Minute)
	busy := b.Queue("busy", "acme")
	busy.SetUIDValidity(1)
	if r := busy.Offer(&mailintakev1.Message{UidValidity: 1, Uid: 1}); r != Delivered {
		t.Fatalf("offer: %v", r)
	}
	var waiters []*Queue
	for i := range 50 {
		q := b.Queue(string(rune('a'+i%26))+string(rune('a'+i/26)), "acme")
		q.SetUIDValidity(1)
		if got := q.Reserve(1); got != 0 {
			t.Fatalf("reserved %d of a full stream", got)
		}
		waiters = append(waiters, q)
	}
	woken := func() []int {
		var out []int
		for i, q := range waiters {
			select {
			case <-q.Wake():
				out = append(out, i)
			default:
			}
		}
		return out
	}
	m := <-s.Out()
	if _, err := b.Ack(context.Background(), []string{m.GetId()}, func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if w := woken(); len(w) != 1 || w[0] != 0 {
		t.Fatalf("one freed slot woke %v, want [0] (the first to wait)", w)
	}
	// The first waiter finds nothing to deliver after all: the next one is woken.
	waiters[0].Settle()
	if w := woken(); len(w) != 1 || w[0] != 1 {
		t.Fatalf("after the first settled: woke %v, want [1]", w)
	}
	// The second takes the slot: nobody else is woken.
	if got := waiters[1].Reserve(1); got != 1 {
		t.Fatalf("the woken waiter reserved %d", got)
	}
	waiters[1].Settle()
	if w := woken(); len(w) != 0 {
		t.Fatalf("a used slot woke %v", w)
	}
}

// A message past its ack deadline leaves the flight and wakes its mailbox; the broker finds it
// through the streams' flights, whatever the number of idle mailboxes.
func TestExpireReturnsMessagesPastTheirDeadline(t *testing.T) {
	b := New(recorderFunc(func(map[string][]store.Ack) error { return nil }))
	defer b.Close()
	now := time.Now()
	b.mu.Lock()
	b.now = func() time.Time { return now }
	b.mu.Unlock()
	for i := range 1000 {
		b.Queue("idle"+strconv.Itoa(i), "acme").SetUIDValidity(1)
	}
	q := b.Queue("mb", "acme")
	q.SetUIDValidity(1)
	s := b.Open(func(string, string) bool { return true }, 4, time.Minute)
	if r := q.Offer(&mailintakev1.Message{UidValidity: 1, Uid: 5}); r != Delivered {
		t.Fatalf("offer: %v", r)
	}
	<-s.Out()
	select {
	case <-q.Wake():
	default:
	}
	b.expire()
	if _, _, p := q.Counts(); p != 1 {
		t.Fatalf("%d in flight before the deadline, want 1", p)
	}
	now = now.Add(2 * time.Minute)
	b.expire()
	if _, _, p := q.Counts(); p != 0 {
		t.Fatalf("%d in flight after the deadline, want 0", p)
	}
	select {
	case <-q.Wake():
	default:
		t.Error("the mailbox was not woken to deliver the message again")
	}
	if s.free() != 4 {
		t.Errorf("the stream has %d free slots after the expiry, want 4", s.free())
	}
	// Delivered again, as attempt 2.
	if r := q.Offer(&mailintakev1.Message{UidValidity: 1, Uid: 5}); r != Delivered {
		t.Fatalf("offer again: %v", r)
	}
	if m := <-s.Out(); m.GetDeliveryAttempt() != 2 {
		t.Errorf("delivery attempt %d, want 2", m.GetDeliveryAttempt())
	}
}

// A queue's maps go once empty: an idle mailbox holds none after its traffic.
func TestQueueMapsDroppedWhenEmpty(t *testing.T) {
	var q *Queue
	b := New(recorderFunc(func(map[string][]store.Ack) error { return nil }))
	defer b.Close()
	q = b.Queue("mb", "acme")
	q.SetUIDValidity(3)
	s := b.Open(func(string, string) bool { return true }, 8, time.Minute)
	if got := q.Reserve(4); got != 4 {
		t.Fatalf("reserved %d", got)
	}
	for uid := uint32(1); uid <= 3; uid++ {
		if r := q.Offer(&mailintakev1.Message{UidValidity: 3, Uid: uid}); r != Delivered {
			t.Fatalf("offer %d: %v", uid, r)
		}
	}
	q.Release()
	var ids []string
	for range 3 {
		ids = append(ids, (<-s.Out()).GetId())
	}
	if _, err := b.Ack(context.Background(), ids, func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	for uid := uint32(1); uid <= 3; uid++ {
		q.Forget(3, uid)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if q.inflight != nil || q.sent != nil || q.reserved != nil {
		t.Errorf("maps kept after the traffic: inflight %v, sent %v, reserved %v", q.inflight, q.sent, q.reserved)
	}
	if _, ok := q.sent[Key{"mb", 3, 1}]; ok || q.busyLocked(1) {
		t.Error("a forgotten message is still known")
	}
}

// OnWake: f runs once, on the next signal or at once for a pending one; cancel withdraws it.
func TestOnWake(t *testing.T) {
	b := New(recorderFunc(func(map[string][]store.Ack) error { return nil }))
	defer b.Close()
	q := b.Queue("mb", "acme")
	calls := 0
	f := func() { calls++ }
	q.OnWake(f)
	if calls != 0 {
		t.Fatal("called with no signal pending")
	}
	q.Signal()
	q.Signal()
	if calls != 1 {
		t.Fatalf("called %d times by two signals, want once", calls)
	}
	// A signal is pending on Wake: a new f runs at once.
	cancel := q.OnWake(f)
	if calls != 2 || cancel() {
		t.Fatalf("with a signal pending: called %d times (want 2), cancel said not called", calls)
	}
	<-q.Wake()
	cancel = q.OnWake(f)
	if !cancel() {
		t.Fatal("cancel of a waiting f reported it called")
	}
	q.Signal()
	if calls != 2 {
		t.Errorf("a cancelled f was called")
	}
}
