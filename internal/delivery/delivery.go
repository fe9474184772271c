// Package delivery hands parsed messages from mailbox sessions to consumer streams, at least
// once, and takes their acknowledgements.
//
// Each mailbox has a Queue that its session attaches to. A session fetches a message only when
// some stream that may receive the mailbox's messages has a free slot (Demand), and offers it; the
// broker assigns it to one such stream. A message stays in flight until it is acknowledged; when
// its stream ends or its ack deadline passes it leaves the flight and the session is woken to
// deliver it again. Acknowledgements are recorded durably (AckRecorder) before AckMessages
// answers; the session then applies the mailbox's after-ack action.
//
// Memory is bounded by the streams' in-flight limits: the broker keeps no message bodies, only
// the streams' outgoing buffers do.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailintake/mailintake/internal/store"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Defaults and bounds of a stream.
const (
	DefaultMaxInFlight = 16
	MaxMaxInFlight     = 1000
	DefaultAckDeadline = 5 * time.Minute
	MinAckDeadline     = time.Second
	MaxAckDeadline     = 24 * time.Hour
)

// Key identifies a message: its mailbox, the folder's UIDVALIDITY and its UID.
type Key struct {
	MailboxID   string
	UIDValidity uint32
	UID         uint32
}

// String is the message id the API shows: mailbox:uidvalidity:uid.
func (k Key) String() string {
	return k.MailboxID + ":" + strconv.FormatUint(uint64(k.UIDValidity), 10) + ":" + strconv.FormatUint(uint64(k.UID), 10)
}

// ParseKey parses a message id.
func ParseKey(id string) (Key, error) {
	parts := strings.Split(id, ":")
	if len(parts) != 3 || parts[0] == "" {
		return Key{}, fmt.Errorf("%q is not a message id (mailbox:uidvalidity:uid)", id)
	}
	v, err1 := strconv.ParseUint(parts[1], 10, 32)
	u, err2 := strconv.ParseUint(parts[2], 10, 32)
	if err1 != nil || err2 != nil || u == 0 {
		return Key{}, fmt.Errorf("%q is not a message id (mailbox:uidvalidity:uid)", id)
	}
	return Key{MailboxID: parts[0], UIDValidity: uint32(v), UID: uint32(u)}, nil
}

// AckRecorder stores acknowledgements durably.
type AckRecorder interface {
	RecordAcks(ctx context.Context, acks map[string][]store.Ack) error
}

// Broker connects sessions and streams. It is safe for concurrent use.
type Broker struct {
	rec AckRecorder
	now func() time.Time

	mu      sync.Mutex
	streams map[uint64]*Stream
	nextID  uint64
	queues  map[string]*Queue
	// waitq holds the queues waiting for a free slot, in the order they started waiting: a freed
	// slot wakes the first one a stream may serve, not all of them (with thousands of mailboxes
	// waiting, waking every one for each slot meant thousands of IMAP rounds per acknowledgement).
	waitq []*Queue
	// woken are the queues woken for a slot that have not reserved yet, with when: they count
	// against the stream's free slots so one slot does not wake two sessions.
	woken   map[*Queue]time.Time
	stop    chan struct{}
	stopped sync.Once
}

// New returns a broker; Close stops its deadline watcher.
func New(rec AckRecorder) *Broker {
	b := &Broker{rec: rec, now: time.Now, streams: map[uint64]*Stream{}, queues: map[string]*Queue{}, woken: map[*Queue]time.Time{}, stop: make(chan struct{})}
	go b.watchDeadlines()
	return b
}

// Close stops the broker's background work.
func (b *Broker) Close() { b.stopped.Do(func() { close(b.stop) }) }

// flight is a message delivered and not acknowledged.
type flight struct {
	stream   *Stream
	deadline time.Time
}

// sent is what the broker remembers of a delivered message until the session has seen its
// acknowledgement in the store.
type sent struct {
	sha256   string
	attempts uint32
	acked    bool // acknowledged; never offered again
}

// Queue is a mailbox's delivery state.
type Queue struct {
	b         *Broker
	MailboxID string
	Tenant    string
	wake      chan struct{}
	// onWake, when set, is called once by the next signal (OnWake).
	onWake atomic.Pointer[func()]

	// guarded by b.mu
	uidValidity uint32
	// The maps are made when a first entry goes in and dropped when their last entry goes
	// (tidyLocked): a Go map keeps its buckets after its entries are deleted, and thousands of
	// idle mailboxes would each hold what their busiest moment needed.
	inflight map[uint32]*flight
	sent     map[Key]*sent
	reserved map[*Stream]int // slots promised to the session's next offers
	// waiting: the session has messages for which it found no free slot, so freed slots wake
	// it; a session with nothing to deliver is not woken by every acknowledgement.
	waiting   bool
	rr        int
	delivered uint64
	acked     uint64
}

// Queue returns (creating) a mailbox's queue.
func (b *Broker) Queue(mailboxID, tenant string) *Queue {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, ok := b.queues[mailboxID]
	if !ok {
		q = &Queue{b: b, MailboxID: mailboxID, Tenant: tenant, wake: make(chan struct{}, 1)}
		b.queues[mailboxID] = q
	}
	q.Tenant = tenant
	return q
}

// Remove forgets a deleted mailbox's queue; its messages in flight are dropped.
func (b *Broker) Remove(mailboxID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, ok := b.queues[mailboxID]
	if !ok {
		return
	}
	for uid, f := range q.inflight {
		f.stream.leave(Key{mailboxID, q.uidValidity, uid})
	}
	q.releaseLocked()
	q.waiting = false
	delete(b.woken, q)
	delete(b.queues, mailboxID)
}

// wokenGrace is how long a woken queue counts against a stream's free slots: a session that was
// stopped after it was woken must not hold a slot's wake-up for ever.
const wokenGrace = 30 * time.Second

// waitLocked marks the queue as waiting for a free slot, at the end of the line.
func (q *Queue) waitLocked() {
	delete(q.b.woken, q)
	if !q.waiting {
		q.waiting = true
		q.b.waitq = append(q.b.waitq, q)
		for _, s := range q.b.streams {
			if s.credited && s.wants(q.MailboxID, q.Tenant) {
				select {
				case s.notify <- struct{}{}:
				default:
				}
			}
		}
	}
}

// Settle tells the broker the session finished a round. A session woken for a free slot that
// did not reserve it (it had nothing to deliver after all) passes the wake-up on to the next
// waiting session.
func (q *Queue) Settle() {
	q.b.mu.Lock()
	defer q.b.mu.Unlock()
	if _, ok := q.b.woken[q]; !ok {
		return
	}
	delete(q.b.woken, q)
	for _, s := range q.b.streams {
		s.signalCapacity()
	}
}

// Wake returns the channel that signals the session: demand appeared, a message returned from
// flight, or an acknowledgement is waiting to be applied.
func (q *Queue) Wake() <-chan struct{} { return q.wake }

// OnWake arranges for f to be called once by the queue's next signal, or at once (on the
// calling goroutine) when a signal is pending on Wake: a session can wait for one without a
// goroutine of its own. f must not block nor call into the broker. The signal stays on Wake
// either way. cancel withdraws f and reports whether it had not been called (and will not be).
func (q *Queue) OnWake(f func()) (cancel func() bool) {
	p := &f
	q.onWake.Store(p)
	if len(q.wake) > 0 && q.onWake.CompareAndSwap(p, nil) {
		f()
	}
	return func() bool { return q.onWake.CompareAndSwap(p, nil) }
}

func (q *Queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
	if f := q.onWake.Swap(nil); f != nil {
		(*f)()
	}
}

// tidyLocked drops the queue's maps that are empty (see Queue.inflight).
func (q *Queue) tidyLocked() {
	if len(q.inflight) == 0 {
		q.inflight = nil
	}
	if len(q.sent) == 0 {
		q.sent = nil
	}
	if len(q.reserved) == 0 {
		q.reserved = nil
	}
}

// SetUIDValidity tells the queue which UIDVALIDITY the session sees. A change drops the
// messages in flight of the old one (their UIDs now mean other messages).
func (q *Queue) SetUIDValidity(v uint32) {
	q.b.mu.Lock()
	defer q.b.mu.Unlock()
	if q.uidValidity == v {
		return
	}
	for uid, f := range q.inflight {
		f.stream.leave(Key{q.MailboxID, q.uidValidity, uid})
		f.stream.signalCapacity()
	}
	q.inflight = nil
	q.uidValidity = v
}

// Busy reports whether a UID is not to be delivered now: it is in flight, or was acknowledged
// after the session last read the acknowledgements from the store.
func (q *Queue) Busy(uid uint32) bool {
	q.b.mu.Lock()
	defer q.b.mu.Unlock()
	return q.busyLocked(uid)
}

func (q *Queue) busyLocked(uid uint32) bool {
	if _, ok := q.inflight[uid]; ok {
		return true
	}
	st, ok := q.sent[Key{q.MailboxID, q.uidValidity, uid}]
	return ok && st.acked
}

// OfferResult is the outcome of Offer.
type OfferResult int

// Offer outcomes.
const (
	// Delivered: a stream took the message.
	Delivered OfferResult = iota
	// NoCapacity: no stream can take it now; keep it and wait for Wake.
	NoCapacity
	// Skipped: the message is in flight or acknowledged already; drop it.
	Skipped
)

// Reserve promises up to n free slots of the streams that may receive this mailbox to the
// queue's next offers, and returns how many it got (none: the session is woken when a slot
// frees). Sessions fetch only what they reserved, so
// sessions that share streams do not all fetch (and hold) messages for the same free slots.
// Offer uses the reserved slots first; Release gives back those left.
func (q *Queue) Reserve(n int) int {
	q.b.mu.Lock()
	defer q.b.mu.Unlock()
	got := 0
	for ; got < n; got++ {
		s := q.pickLocked(true)
		if s == nil {
			break
		}
		s.reserved++
		if q.reserved == nil {
			q.reserved = map[*Stream]int{}
		}
		q.reserved[s]++
	}
	delete(q.b.woken, q)
	if got == 0 {
		q.waitLocked()
	} else {
		q.waiting = false
	}
	return got
}

// Release gives back the slots Reserve promised that no offer used.
func (q *Queue) Release() {
	q.b.mu.Lock()
	defer q.b.mu.Unlock()
	q.releaseLocked()
}

func (q *Queue) releaseLocked() {
	for s, k := range q.reserved {
		s.reserved -= k
		delete(q.reserved, s)
		if !s.closed {
			s.signalCapacity()
		}
	}
	q.reserved = nil
}

// takeReservedLocked returns a stream with a slot reserved for this queue, and uses the slot.
func (q *Queue) takeReservedLocked() *Stream {
	for s, k := range q.reserved {
		if s.closed {
			delete(q.reserved, s)
			continue
		}
		s.reserved--
		if k == 1 {
			delete(q.reserved, s)
		} else {
			q.reserved[s] = k - 1
		}
		return s
	}
	return nil
}

// pickLocked returns a stream with a free slot that wants this mailbox, round-robin.
func (q *Queue) pickLocked(advance bool) *Stream {
	ids := make([]uint64, 0, len(q.b.streams))
	for id, s := range q.b.streams {
		if s.free() > 0 && s.wants(q.MailboxID, q.Tenant) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	s := q.b.streams[ids[q.rr%len(ids)]]
	if advance {
		q.rr++
	}
	return s
}

// Offer delivers a message to a stream with a free slot.
func (q *Queue) Offer(msg *mailintakev1.Message) OfferResult {
	q.b.mu.Lock()
	defer q.b.mu.Unlock()
	if msg.GetUidValidity() != q.uidValidity || q.busyLocked(msg.GetUid()) {
		return Skipped
	}
	s := q.takeReservedLocked()
	if s == nil {
		s = q.pickLocked(true)
	}
	if s == nil {
		q.waitLocked()
		return NoCapacity
	}
	q.waiting = false
	delete(q.b.woken, q)
	k := Key{q.MailboxID, msg.GetUidValidity(), msg.GetUid()}
	st, ok := q.sent[k]
	if !ok {
		st = &sent{sha256: msg.GetSha256()}
		if q.sent == nil {
			q.sent = map[Key]*sent{}
		}
		q.sent[k] = st
	}
	st.attempts++
	msg.Id = k.String()
	msg.DeliveryAttempt = st.attempts
	f := &flight{stream: s, deadline: q.b.now().Add(s.deadline)}
	if q.inflight == nil {
		q.inflight = map[uint32]*flight{}
	}
	q.inflight[k.UID] = f
	s.inflight[k] = q
	q.delivered++
	s.out <- msg // does not block: checked above, under the lock
	return Delivered
}

// Counts returns how many messages were delivered and acknowledged, and how many are in flight.
func (q *Queue) Counts() (delivered, acked, pending uint64) {
	q.b.mu.Lock()
	defer q.b.mu.Unlock()
	return q.delivered, q.acked, uint64(len(q.inflight))
}

// Stream is a consumer's StreamMessages call, or (credited) another replica's relay of one.
type Stream struct {
	id       uint64
	b        *Broker
	filter   func(mailboxID, tenant string) bool
	capacity int
	deadline time.Duration
	out      chan *mailintakev1.Message
	inflight map[Key]*Queue
	reserved int // slots promised to sessions (Queue.Reserve), not yet used
	closed   bool

	// A credited stream's capacity is what its consumer granted (Grant) less what it took back
	// (Revoke): each message that leaves its flight (acknowledged, past its deadline, its
	// mailbox gone) uses up one credit and is reported on left.
	credited bool
	left     chan Key
	notify   chan struct{} // a session started waiting for a slot this stream could give
}

// leave takes a message out of the stream's flight (caller holds b.mu).
func (s *Stream) leave(k Key) {
	if _, ok := s.inflight[k]; !ok {
		return
	}
	delete(s.inflight, k)
	if s.credited {
		s.capacity--
		select {
		case s.left <- k:
		default: // cannot happen: left holds as many keys as the stream can have in flight
		}
	}
}

// Out returns the messages to send, in order.
func (s *Stream) Out() <-chan *mailintakev1.Message { return s.out }

// free is how many more messages the stream can take: its free in-flight slots, bounded by room
// in its outgoing buffer (messages whose deadline passed may still sit there unread), less the
// slots reserved for sessions.
func (s *Stream) free() int {
	return min(s.capacity-len(s.inflight), cap(s.out)-len(s.out)) - s.reserved
}

func (s *Stream) wants(mailboxID, tenant string) bool {
	return !s.closed && s.filter(mailboxID, tenant)
}

// signalCapacity wakes as many of the sessions waiting for a free slot as the stream has free
// slots not already promised to a woken session, oldest waiter first (caller holds b.mu).
func (s *Stream) signalCapacity() {
	b := s.b
	if s.closed || len(b.waitq) == 0 {
		return
	}
	room := s.free()
	now := b.now()
	for q, at := range b.woken {
		if now.Sub(at) > wokenGrace {
			delete(b.woken, q)
		} else if s.wants(q.MailboxID, q.Tenant) {
			room--
		}
	}
	keep := b.waitq[:0]
	for _, q := range b.waitq {
		switch {
		case !q.waiting:
			// no longer waiting (it reserved, or was removed): drop the stale entry
		case room > 0 && s.wants(q.MailboxID, q.Tenant):
			q.waiting = false
			b.woken[q] = now
			q.signal()
			room--
		default:
			keep = append(keep, q)
		}
	}
	clear(b.waitq[len(keep):])
	b.waitq = keep
}

// Open registers a stream. filter says which mailboxes it receives; maxInFlight and ackDeadline
// must already be within bounds.
func (b *Broker) Open(filter func(mailboxID, tenant string) bool, maxInFlight int, ackDeadline time.Duration) *Stream {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	s := &Stream{id: b.nextID, b: b, filter: filter, capacity: maxInFlight, deadline: ackDeadline,
		out: make(chan *mailintakev1.Message, maxInFlight), inflight: map[Key]*Queue{}}
	b.streams[s.id] = s
	s.signalCapacity()
	return s
}

// OpenCredited registers a stream that starts with no capacity: its consumer (another replica
// relaying it) grants credits as its own consumer frees slots, and is told of each message that
// leaves the flight (Left) and of sessions waiting for a slot (Demand).
func (b *Broker) OpenCredited(filter func(mailboxID, tenant string) bool, ackDeadline time.Duration) *Stream {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	s := &Stream{id: b.nextID, b: b, filter: filter, deadline: ackDeadline, credited: true,
		out: make(chan *mailintakev1.Message, MaxMaxInFlight), inflight: map[Key]*Queue{},
		left: make(chan Key, MaxMaxInFlight), notify: make(chan struct{}, 1)}
	b.streams[s.id] = s
	return s
}

// Grant adds n credits to a credited stream (waking sessions waiting for a slot).
func (s *Stream) Grant(n int) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if s.closed || n <= 0 {
		return
	}
	s.capacity = min(s.capacity+n, MaxMaxInFlight)
	s.signalCapacity()
}

// Revoke takes back up to n unused credits and returns how many it took.
func (s *Stream) Revoke(n int) int {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	k := max(min(n, s.free()), 0)
	s.capacity -= k
	return k
}

// Left reports the messages that left a credited stream's flight; each used up one credit.
func (s *Stream) Left() <-chan Key { return s.left }

// Notify signals when a session starts waiting for a slot this credited stream could give.
func (s *Stream) Notify() <-chan struct{} { return s.notify }

// Demand returns how many sessions that this stream may serve wait for a free slot.
func (s *Stream) Demand() int {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	n := 0
	for _, q := range s.b.waitq {
		if q.waiting && s.wants(q.MailboxID, q.Tenant) {
			n++
		}
	}
	return n
}

// CloseStream ends a stream: its unacknowledged messages return to their mailboxes for delivery to
// another stream.
func (b *Broker) CloseStream(s *Stream) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	delete(b.streams, s.id)
	for k, q := range s.inflight {
		if f, ok := q.inflight[k.UID]; ok && f.stream == s && k.UIDValidity == q.uidValidity {
			delete(q.inflight, k.UID)
			q.tidyLocked()
		}
		q.signal()
	}
	s.inflight = nil
}

// AckResult sorts acknowledged ids.
type AckResult struct {
	Acknowledged []string
	Unknown      []string
}

// ErrNotVisible marks an id of a mailbox the caller may not see; it is reported as unknown.
var ErrNotVisible = errors.New("not visible")

// Ack records acknowledgements. visible says whether the caller may see a mailbox's tenant. An id
// is acknowledged when the message was delivered by this server and not yet acknowledged, or was
// acknowledged already; anything else is unknown. Acknowledged ids are stored durably before
// Ack returns.
func (b *Broker) Ack(ctx context.Context, ids []string, visible func(tenant string) bool) (AckResult, error) {
	var res AckResult
	type rec struct {
		q   *Queue
		key Key
		st  *sent // held: the session may Forget the entry once the ack is in the store
		ack store.Ack
	}
	var recs []rec
	now := b.now()
	b.mu.Lock()
	for _, id := range ids {
		k, err := ParseKey(id)
		if err != nil {
			res.Unknown = append(res.Unknown, id)
			continue
		}
		q, ok := b.queues[k.MailboxID]
		if !ok || !visible(q.Tenant) {
			res.Unknown = append(res.Unknown, id)
			continue
		}
		st, ok := q.sent[k]
		if !ok {
			res.Unknown = append(res.Unknown, id)
			continue
		}
		recs = append(recs, rec{q: q, key: k, st: st, ack: store.Ack{UIDValidity: k.UIDValidity, UID: k.UID, SHA256: st.sha256, AckTime: now}})
	}
	b.mu.Unlock()

	byMailbox := map[string][]store.Ack{}
	for _, r := range recs {
		byMailbox[r.key.MailboxID] = append(byMailbox[r.key.MailboxID], r.ack)
	}
	// One transaction for the whole call: an error means none was recorded, so a consumer that
	// retries a failed call never leaves a message acknowledged without having been told so.
	if err := b.rec.RecordAcks(ctx, byMailbox); err != nil {
		return AckResult{}, fmt.Errorf("recording acknowledgements: %w", err)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range recs {
		q := r.q
		if !r.st.acked {
			q.acked++
			r.st.acked = true
		}
		if f, ok := q.inflight[r.key.UID]; ok && r.key.UIDValidity == q.uidValidity {
			delete(q.inflight, r.key.UID)
			q.tidyLocked()
			f.stream.leave(r.key)
			f.stream.signalCapacity()
		}
		q.signal()
		res.Acknowledged = append(res.Acknowledged, r.key.String())
	}
	return res, nil
}

// Forget drops what the queue remembers of an acknowledged message once the session has read
// its acknowledgement from the store.
func (q *Queue) Forget(uidValidity, uid uint32) {
	q.b.mu.Lock()
	defer q.b.mu.Unlock()
	delete(q.sent, Key{q.MailboxID, uidValidity, uid})
	q.tidyLocked()
}

// watchDeadlines returns messages whose ack deadline passed to their mailboxes.
func (b *Broker) watchDeadlines() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		b.expire()
	}
}

// expire looks at the messages in flight only, through their streams (at most their
// max_in_flight each): going through every mailbox's queue four times a second was most of the
// CPU of thousands of idle mailboxes.
func (b *Broker) expire() {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.streams {
		for k, q := range s.inflight {
			f, ok := q.inflight[k.UID]
			if !ok || f.stream != s || k.UIDValidity != q.uidValidity || !now.After(f.deadline) {
				continue
			}
			delete(q.inflight, k.UID)
			q.tidyLocked()
			s.leave(k)
			s.signalCapacity()
			q.signal()
		}
	}
}

// Signal wakes the queue's session.
func (q *Queue) Signal() { q.signal() }
