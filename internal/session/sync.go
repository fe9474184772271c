package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/imapconn"
	"github.com/mailintake/mailintake/internal/parse"
	"github.com/mailintake/mailintake/internal/store"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// metaBatch is how many messages' sizes are fetched at once ahead of their bodies.
const metaBatch = 50

// A batch of bodies fetched with one pipelined UID FETCH holds at most fetchAhead messages and
// fetchAheadBytes of announced size (a larger message goes alone), and never more messages than
// the slots the session reserved on the consumers' streams.
const (
	fetchAhead      = 64
	fetchAheadBytes = 64 << 20
)

// deliverer is the state of one connection's synchronisation.
type deliverer struct {
	s    *session
	conn *imapconn.Conn
	st   *store.SyncState
	meta map[uint32]imapconn.Meta
	// held are messages fetched and parsed that no stream could take yet, in order.
	held []*mailintakev1.Message
	// more is set when messages wait on the server for a free consumer slot.
	more bool
	// lastPrune is when acknowledgements were last pruned.
	lastPrune time.Time

	// After a round that left messages waiting for consumer slots, the rounds the consumers'
	// acknowledgements wake deliver from that round's list instead of searching the folder and
	// reading the store's acknowledgements again (per batch of acknowledgements, a search, an
	// IDLE and several queries: a fifth of the server's CPU per message when a consumer
	// acknowledges in small batches). backlog is the list, backlogReplay its quarantined
	// messages to replay, backlogAt when the folder was searched, and done the UIDs
	// acknowledged or quarantined since. The folder is searched again once the list is
	// delivered, or backlogFor after the last search.
	backlog       []uint32
	backlogReplay map[uint32]int64
	backlogAt     time.Time
	done          map[uint32]bool

	// byHash: every message is compared with the acknowledged ones by its SHA-256 before it is
	// delivered (POP3, whose unique-ids may all change at once: Dovecot's follow the folder's
	// UIDVALIDITY), not only those below ResyncBelow.
	byHash bool

	// shared is whether the mailbox's tenant has other mailboxes, as seen at sharedAt (see
	// markCopies).
	shared   bool
	sharedAt time.Time
}

// sharedEvery is how often a session looks again whether its tenant has other mailboxes.
const sharedEvery = time.Minute

// backlogFor bounds how long rounds deliver from the last search's list: new mail and replay
// requests are seen at the latest this long after they arrive while consumers are behind.
const backlogFor = 10 * time.Second

// round applies pending after-ack actions, advances the checkpoint and delivers what consumers
// can take.
func (d *deliverer) round(ctx context.Context) error {
	if err := d.applyAcks(ctx); err != nil {
		return err
	}
	if pending, ok := d.fromBacklog(); ok {
		if err := d.deliver(ctx, pending, d.backlogReplay); err != nil || d.waiting() {
			return err
		}
		// The list is delivered: search for what came meanwhile.
	}
	pending, replay, err := d.pending(ctx)
	if err != nil {
		return err
	}
	d.backlog, d.backlogReplay, d.backlogAt = pending, replay, time.Now()
	clear(d.done)
	err = d.deliver(ctx, pending, replay)
	if !d.waiting() {
		d.dropBacklog()
	}
	return err
}

// waiting reports whether messages wait for a free consumer slot.
func (d *deliverer) waiting() bool { return d.more || len(d.held) > 0 }

// fromBacklog returns the last search's list without what was acknowledged or quarantined
// since, if rounds may still deliver from it.
func (d *deliverer) fromBacklog() ([]uint32, bool) {
	if d.backlog == nil || time.Since(d.backlogAt) > backlogFor {
		d.dropBacklog()
		return nil, false
	}
	left := make([]uint32, 0, len(d.backlog))
	for _, u := range d.backlog {
		if !d.done[u] {
			left = append(left, u)
		}
	}
	d.backlog = left
	return left, true
}

// dropBacklog forgets the last search's list; an idle mailbox keeps no map of its own.
func (d *deliverer) dropBacklog() {
	d.backlog, d.backlogReplay, d.done = nil, nil, nil
	if len(d.meta) == 0 {
		d.meta = nil
	}
}

// markDone records a UID that no round may deliver again from the backlog.
func (d *deliverer) markDone(uid uint32) {
	if d.done == nil {
		d.done = map[uint32]bool{}
	}
	d.done[uid] = true
}

// errNotTrusted stops a session whose replica may have lost the mailbox's lease.
var errNotTrusted = errors.New("this replica could not renew its lease in time; another may own the mailbox now")

// applyAcks applies the mailbox's after-ack action to acknowledged messages, then records that.
func (d *deliverer) applyAcks(ctx context.Context) error {
	s := d.s
	acks, err := s.sup.store.UnappliedAcks(ctx, s.id)
	if err != nil || len(acks) == 0 {
		return err
	}
	var uids []uint32
	staleBy := map[uint32][]uint32{}
	for _, a := range acks {
		s.queue.Forget(a.UIDValidity, a.UID)
		if a.UIDValidity == d.st.UIDValidity {
			d.markDone(a.UID)
		}
		if a.UIDValidity != d.st.UIDValidity {
			// Acknowledged under an older UIDVALIDITY: the UID now names another message.
			staleBy[a.UIDValidity] = append(staleBy[a.UIDValidity], a.UID)
			continue
		}
		uids = append(uids, a.UID)
	}
	for v, us := range staleBy {
		if err := s.sup.store.MarkApplied(ctx, s.id, v, us); err != nil {
			return err
		}
	}
	if len(uids) == 0 {
		return nil
	}
	if !s.sup.opts.Trusted() {
		return errNotTrusted
	}
	aa := s.mb.Spec.GetAfterAck()
	var what string
	var out imapconn.Outcome
	switch aa.GetAction() {
	case mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP:
		what = "kept"
	case mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MOVE:
		what = "moved to " + aa.GetFolder()
		out, err = d.conn.Move(ctx, uids, aa.GetFolder())
	case mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE:
		what = "deleted"
		out, err = d.conn.Delete(ctx, uids)
	default:
		what = "marked seen"
		err = d.conn.MarkSeen(ctx, uids)
	}
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			// The server refused the action (no right to create the folder, a folder outside
			// the namespace). The messages stay acknowledged and where they are; the action is
			// retried on every round. The event's words do not change from round to round, so
			// the log folds them into one entry with a count.
			s.status.afterAck(err, afterAckAdvice(aa, ie))
			s.event("error", "after-ack action (%s) refused by the server: %v", what, err)
			return nil
		}
		return fmt.Errorf("after-ack action (%s): %w", what, err)
	}
	s.status.afterAck(nil, "")
	if out.Kept {
		s.status.warn(imapconn.KeptNote)
		what += ", left flagged \\Deleted (no UIDPLUS)"
	}
	if err := s.sup.store.MarkApplied(ctx, s.id, d.st.UIDValidity, uids); err != nil {
		return err
	}
	s.event("ack", "%s %s (%s)", count(len(uids), "acknowledged message"), what, uidsOf(uids))
	s.sup.metrics.Acked.WithLabelValues(s.id).Add(float64(len(uids)))
	return nil
}

// afterAckAdvice says what to do about an after-ack action the server refused.
func afterAckAdvice(aa *mailintakev1.AfterAck, ie *imap.Error) string {
	base := "acknowledged messages stay in the folder, and are never delivered again, until the after-ack action succeeds (retried on every sync)"
	switch aa.GetAction() {
	case mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MOVE:
		return fmt.Sprintf("delivering, but the server refuses to move acknowledged messages to %q (%s): check that the account may create and write that folder "+
			"(on servers whose personal folders live under \"INBOX.\" the path is resolved there), or change the action with 'mailbox update ID --after-ack ...'; %s",
			aa.GetFolder(), ie.Text, base)
	case mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE:
		return fmt.Sprintf("delivering, but the server refuses to delete acknowledged messages (%s): check the account's rights on the folder (it needs to set \\Deleted and expunge), "+
			"or change the action with 'mailbox update ID --after-ack ...'; %s", ie.Text, base)
	}
	return fmt.Sprintf("delivering, but the server refuses to flag acknowledged messages \\Seen (%s): the folder may be read-only for this account; "+
		"check its rights, or use --after-ack keep; %s", ie.Text, base)
}

// pending returns the UIDs to deliver, ascending, and the quarantined UIDs to replay; it advances
// the checkpoint past everything done.
func (d *deliverer) pending(ctx context.Context) ([]uint32, map[uint32]int64, error) {
	s := d.s
	from := d.st.AckedThrough + 1
	onServer, err := d.conn.SearchUIDs(ctx, from, false)
	if err != nil {
		return nil, nil, err
	}
	if s.mb.Spec.GetStartFrom() == mailintakev1.StartFrom_START_FROM_UNSEEN && from < d.st.Baseline {
		// Before the first sync's baseline only unseen messages are wanted.
		unseen, err := d.conn.SearchUIDs(ctx, from, true)
		if err != nil {
			return nil, nil, err
		}
		filtered := onServer[:0:0]
		for _, u := range onServer {
			if u >= d.st.Baseline || slices.Contains(unseen, u) {
				filtered = append(filtered, u)
			}
		}
		if len(filtered) == 0 || filtered[0] > d.st.Baseline-1 {
			// Nothing unseen below the baseline is left: the checkpoint can move up to it.
			if err := d.advance(ctx, d.st.Baseline-1); err != nil {
				return nil, nil, err
			}
		}
		onServer = filtered
	}
	return d.plan(ctx, d.st.UIDValidity, onServer, func(uint32) bool { return true })
}

// delivered records a round's deliveries: an event naming their UIDs, and the metrics.
func (s *session) delivered(uids []uint32) {
	if len(uids) > 0 {
		s.event("deliver", "delivered %s (%s)", count(len(uids), "message"), uidsOf(uids))
		s.sup.metrics.Delivered.WithLabelValues(s.id).Add(float64(len(uids)))
	}
	_, _, p := s.queue.Counts()
	s.sup.metrics.Pending.WithLabelValues(s.id).Set(float64(p))
}

// plan is a round's work, whatever the transport: from the UIDs on the server above the
// checkpoint (onServer, any order) it leaves out those acknowledged or quarantined under
// uidValidity, advances the checkpoint past everything done, and adds the quarantined UIDs an
// operator asked to replay (those replayable says can be fetched in this round). It returns the
// UIDs to deliver, ascending, and the replays by UID.
func (d *deliverer) plan(ctx context.Context, uidValidity uint32, onServer []uint32, replayable func(uint32) bool) ([]uint32, map[uint32]int64, error) {
	s := d.s
	acked, err := s.sup.store.Acks(ctx, s.id, uidValidity, d.st.AckedThrough)
	if err != nil {
		return nil, nil, err
	}
	done := map[uint32]bool{}
	highest := d.st.AckedThrough
	for _, a := range acked {
		done[a.UID] = true
		highest = max(highest, a.UID)
	}
	qs, err := s.sup.store.ListQuarantine(ctx, s.id)
	if err != nil {
		return nil, nil, err
	}
	replay := map[uint32]int64{}
	for _, q := range qs {
		if q.UIDValidity != uidValidity {
			continue
		}
		if q.State == store.QuarantineReplay {
			replay[q.UID] = q.ID
		} else {
			done[q.UID] = true
		}
	}
	var pending []uint32
	for _, u := range onServer {
		highest = max(highest, u)
		if !done[u] {
			pending = append(pending, u)
		}
	}
	slices.Sort(pending)
	through := highest
	if len(pending) > 0 {
		through = pending[0] - 1
	}
	if err := d.advance(ctx, through); err != nil {
		return nil, nil, err
	}
	for u := range replay {
		if replayable(u) && !slices.Contains(pending, u) {
			pending = append(pending, u)
		}
	}
	slices.Sort(pending)
	return pending, replay, nil
}

// advance moves the checkpoint forward (never back) and prunes what it passed.
func (d *deliverer) advance(ctx context.Context, through uint32) error {
	if through <= d.st.AckedThrough {
		return nil
	}
	d.st.AckedThrough = through
	if err := d.s.sup.store.SaveSyncState(ctx, d.st); err != nil {
		return err
	}
	if time.Since(d.lastPrune) > time.Hour {
		d.lastPrune = time.Now()
		return d.s.sup.store.PruneAcks(ctx, d.s.id, d.st.UIDValidity, through, time.Now().Add(-d.s.sup.opts.HashRetention))
	}
	return nil
}

// deliver fetches, parses and offers pending messages while consumers have free slots. Bodies
// are fetched in batches no larger than the free slots, with one pipelined UID FETCH each, and
// parsed by parallel workers while the next bodies are on the wire; they are offered in UID
// order.
func (d *deliverer) deliver(ctx context.Context, pending []uint32, replay map[uint32]int64) error {
	s := d.s
	d.more = false
	var delivered []uint32
	defer s.queue.Settle() // a wake-up for a slot this round did not use goes to the next session
	defer func() { s.delivered(delivered) }()
	// offer hands a message to a stream. Once one could not be taken, the rest are held behind
	// it, so the order holds.
	offer := func(msg *mailintakev1.Message) {
		if len(d.held) > 0 || !s.sup.opts.Trusted() {
			// Held, in order; a replica that may have lost its lease delivers nothing more (the
			// new owner may have delivered and seen acknowledged what this one would offer).
			d.held = append(d.held, msg)
			return
		}
		switch s.queue.Offer(msg) {
		case delivery.NoCapacity:
			d.held = append(d.held, msg)
			d.more = true
		case delivery.Delivered:
			delivered = append(delivered, msg.GetUid())
			d.offered(ctx, msg.GetUid(), replay)
		}
	}
	held := d.held
	d.held = nil
	for _, msg := range held {
		// Skipped if acknowledged meanwhile, or from another UIDVALIDITY.
		if msg.GetUidValidity() == d.st.UIDValidity && slices.Contains(pending, msg.GetUid()) {
			offer(msg)
		}
	}
	for i := 0; i < len(pending) && len(d.held) == 0; {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		free := s.queue.Reserve(fetchAhead)
		if free == 0 {
			d.more = true
			return nil
		}
		var err error
		i, err = d.fetchNext(ctx, pending, i, free, replay, offer)
		s.queue.Release() // whatever happened, the slots no offer used go back
		if err != nil {
			return err
		}
	}
	if len(d.held) > 0 {
		d.more = true
	}
	return nil
}

// fetchNext fetches, parses and offers the next messages of pending from index i, at most free
// of them: a batch, or one message that must be fetched alone. It returns the index to go on
// from.
func (d *deliverer) fetchNext(ctx context.Context, pending []uint32, i, free int, replay map[uint32]int64, offer func(*mailintakev1.Message)) (int, error) {
	s := d.s
	var batch []imapconn.Meta
	var alone *imapconn.Meta
	var size int64
	for i < len(pending) && len(batch) < free {
		uid := pending[i]
		if s.queue.Busy(uid) {
			i++
			continue
		}
		meta, ok := d.meta[uid]
		if !ok {
			if err := d.loadMeta(ctx, pending[i:]); err != nil {
				return i, err
			}
			if meta, ok = d.meta[uid]; !ok {
				d.markDone(uid)
				i++
				continue // expunged meanwhile
			}
		}
		if meta.Size > s.maxSize {
			if len(batch) == 0 {
				alone = &meta
				delete(d.meta, uid)
				i++
			}
			break
		}
		if len(batch) > 0 && size+meta.Size > fetchAheadBytes {
			break
		}
		delete(d.meta, uid)
		i++
		batch = append(batch, meta)
		size += meta.Size
	}
	if err := d.fetchAlone(ctx, alone, replay, offer); err != nil {
		return i, err
	}
	return i, d.fetchBatch(ctx, batch, replay, offer)
}

// fetchAlone fetches, parses and offers one message, if there is one.
func (d *deliverer) fetchAlone(ctx context.Context, meta *imapconn.Meta, replay map[uint32]int64, offer func(*mailintakev1.Message)) error {
	if meta == nil {
		return nil
	}
	_, replaying := replay[meta.UID]
	msg, err := d.fetch(ctx, *meta, replaying)
	if err != nil || msg == nil {
		return err // nil: quarantined, gone, or recognised as already acknowledged
	}
	if err := d.beforeOffer(ctx, []*mailintakev1.Message{msg}); err != nil {
		return err
	}
	offer(msg)
	return nil
}

// fetchBatch fetches a batch of messages with one UID FETCH. The bodies go to parse workers as
// they arrive, while the server sends the next; the parsed messages go to offer in the batch's
// order. At most a few bodies are between the connection and offer at any time.
func (d *deliverer) fetchBatch(ctx context.Context, batch []imapconn.Meta, replay map[uint32]int64, offer func(*mailintakev1.Message)) error {
	if len(batch) == 0 {
		return nil
	}
	s := d.s
	uids := make([]uint32, len(batch))
	for i, m := range batch {
		uids[i] = m.UID
	}
	type result struct {
		msg *mailintakev1.Message
		err error
	}
	type job struct {
		f   imapconn.Fetched
		res chan result
	}
	workers := max(1, min(runtime.GOMAXPROCS(0), len(batch)))
	jobs := make(chan job, workers)
	order := make(chan job, workers)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				msg, err := d.prepare(fctx, j.f.Raw, j.f.Meta)
				j.f.Release() // the parsed message shares nothing with the body
				j.res <- result{msg, err}
			}
		}()
	}
	fetched := make(chan error, 1)
	go func() {
		err := d.conn.FetchBodies(fctx, uids, s.maxSize, func(f imapconn.Fetched) error {
			j := job{f: f, res: make(chan result, 1)}
			select {
			case order <- j:
			case <-fctx.Done():
				f.Release()
				return fctx.Err()
			}
			jobs <- j // a worker is free: order's buffer bounds the jobs in flight
			return nil
		})
		close(jobs)
		close(order)
		fetched <- err
	}()
	got := map[uint32]bool{}
	var failed error
	// Parsed messages wait in ready for their copies' claim (markCopies), then are offered in
	// order. A message whose successor is parsed already waits for it, so the messages parsed
	// by then share one store write (while the loop waits for a claim, the workers go on); the
	// others are claimed and offered before the loop waits for the next parse. ready holds at
	// most the batch.
	var ready []*mailintakev1.Message
	flush := func() {
		if failed == nil && len(ready) > 0 {
			if err := d.beforeOffer(ctx, ready); err != nil {
				failed = err
				cancel()
			} else {
				for _, m := range ready {
					offer(m)
				}
			}
		}
		ready = ready[:0]
	}
	var ahead *job       // the next job, taken from order to see whether it is parsed
	var aheadRes *result // its result, when it was
	for {
		j := ahead
		if j == nil {
			next, ok := <-order
			if !ok {
				break
			}
			j = &next
		}
		var r result
		if aheadRes != nil {
			r = *aheadRes
		} else {
			r = <-j.res
		}
		ahead, aheadRes = nil, nil
		got[j.f.Meta.UID] = true
		switch {
		case failed != nil:
		case r.err != nil:
			failed = r.err
			cancel() // the connection closes; the session reconnects
		case r.msg != nil:
			ready = append(ready, r.msg)
		}
		select {
		case next, ok := <-order:
			if ok {
				ahead = &next
				select {
				case nr := <-next.res:
					aheadRes = &nr
					continue // parsed already: it joins this claim
				default:
				}
			}
		default:
		}
		flush()
	}
	flush()
	err := <-fetched
	wg.Wait()
	if failed != nil {
		return failed
	}
	var tooLarge *imapconn.TooLargeError
	var ie *imap.Error
	switch {
	case err == nil:
		var missing []imapconn.Meta
		for _, m := range batch {
			if !got[m.UID] {
				missing = append(missing, m)
			}
		}
		return d.unreturned(ctx, missing)
	case errors.As(err, &tooLarge):
		// The server sent a larger body than it announced. The connection is gone (the literal
		// was abandoned); quarantine with the header from the bytes read, then reconnect.
		// go-imap hands a body to the command only after the UID that names it.
		i := slices.IndexFunc(batch, func(m imapconn.Meta) bool { return m.UID == tooLarge.UID })
		if i < 0 {
			return fmt.Errorf("reconnecting after an oversized body: %w", err)
		}
		meta := batch[i]
		reason := fmt.Sprintf("%v (it announced %d bytes)", tooLarge, meta.Size)
		meta.Size = tooLarge.Size
		if qerr := d.keep(ctx, meta, reason, headerOf(tooLarge.Head)); qerr != nil {
			return qerr
		}
		return fmt.Errorf("reconnecting after an oversized body: %w", err)
	case errors.As(err, &ie):
		// The server refused the batch (a message it cannot read, say): what it did not send is
		// fetched one at a time, so only a message that cannot be read is quarantined.
		for _, m := range batch {
			if got[m.UID] {
				continue
			}
			_, replaying := replay[m.UID]
			msg, err := d.fetch(ctx, m, replaying)
			if err != nil {
				return err
			}
			if msg != nil {
				if err := d.beforeOffer(ctx, []*mailintakev1.Message{msg}); err != nil {
					return err
				}
				offer(msg)
			}
		}
		return nil
	default:
		return err
	}
}

// offered finishes the delivery of a replayed quarantined message.
func (d *deliverer) offered(ctx context.Context, uid uint32, replay map[uint32]int64) {
	if id, ok := replay[uid]; ok {
		if err := d.s.sup.store.DeleteQuarantined(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			d.s.sup.log.Warn("removing a replayed message from quarantine", "mailbox_id", d.s.id, "err", err)
		}
	}
}

func (d *deliverer) loadMeta(ctx context.Context, next []uint32) error {
	batch := next[:min(len(next), metaBatch)]
	m, err := d.conn.FetchMeta(ctx, batch)
	if err != nil {
		return err
	}
	d.meta = m
	return nil
}

// fetch fetches and parses one message. It returns nil, nil when the message is not to be
// delivered: quarantined, gone, or (after a UIDVALIDITY change) already acknowledged.
func (d *deliverer) fetch(ctx context.Context, meta imapconn.Meta, replaying bool) (*mailintakev1.Message, error) {
	s := d.s
	uid := meta.UID
	if meta.Size > s.maxSize {
		if !replaying {
			return nil, d.quarantine(ctx, meta, fmt.Sprintf("the message is %d bytes, over the mailbox's limit of %d bytes", meta.Size, s.maxSize))
		}
		// A replayed oversized message travels as its header with a problem; its bytes are
		// fetched with GetRawMessage.
		hdr, err := d.conn.FetchHeader(ctx, uid)
		if err != nil {
			return nil, err
		}
		msg := parse.Parse(hdr, s.parseOptions())
		msg.RawSize = uint64(meta.Size)
		msg.Sha256 = ""
		msg.ContentFingerprint = "" // the header's, not the message's: it claims no copy
		msg.Problems = append(msg.Problems, &mailintakev1.ParseProblem{Code: "limit",
			Message: fmt.Sprintf("the message is %d bytes, over the mailbox's limit of %d bytes: only its header was parsed; fetch it with GetRawMessage", meta.Size, s.maxSize)})
		s.fill(msg, d.st, meta)
		return msg, nil
	}
	f, err := d.conn.FetchRaw(ctx, uid, s.maxSize)
	defer f.Release()
	raw, fmeta := f.Raw, f.Meta
	var tooLarge *imapconn.TooLargeError
	switch {
	case errors.Is(err, imapconn.ErrGone):
		return nil, d.unreturned(ctx, []imapconn.Meta{meta})
	case errors.As(err, &tooLarge):
		// The server announced a smaller size than it sent. The connection is gone (the
		// literal was abandoned); quarantine with the header from the bytes read, then
		// reconnect.
		reason := fmt.Sprintf("%v (it announced %d bytes)", tooLarge, meta.Size)
		meta.Size = tooLarge.Size
		if qerr := d.keep(ctx, meta, reason, headerOf(tooLarge.Head)); qerr != nil {
			return nil, qerr
		}
		return nil, fmt.Errorf("reconnecting after an oversized body: %w", err)
	case err != nil:
		var ie *imap.Error
		if errors.As(err, &ie) {
			return nil, d.quarantine(ctx, meta, "the server could not return the message: "+ie.Error())
		}
		return nil, err
	}
	if fmeta.UID != 0 {
		meta = fmeta
	}
	return d.prepare(ctx, raw, meta)
}

// prepare parses a fetched message for delivery. It returns nil, nil for a message recognised as
// acknowledged before a UIDVALIDITY change. The message it returns shares nothing with raw. It is
// safe to call from several goroutines.
func (d *deliverer) prepare(ctx context.Context, raw []byte, meta imapconn.Meta) (*mailintakev1.Message, error) {
	s := d.s
	if meta.UID < d.st.ResyncBelow || d.byHash {
		// After a UIDVALIDITY change (or a POP3 unique-id seen for the first time): a message
		// acknowledged before is recognised by its hash.
		sum := parse.SHA256(raw)
		if seen, err := s.sup.store.AckedHash(ctx, s.id, sum); err != nil {
			return nil, err
		} else if seen {
			// POP3 applies its after-ack action (DELETE) to it at the next session.
			err := s.sup.store.RecordAcks(ctx, map[string][]store.Ack{s.id: {{UIDValidity: d.st.UIDValidity, UID: meta.UID, SHA256: sum, AckTime: time.Now(), Applied: !d.byHash}}})
			if err == nil && d.byHash {
				// One sentence, so the log folds the repeats into one entry with a count.
				d.s.event("resync", "a message acknowledged before came back under a new unique-id: recognised by its SHA-256, not delivered again")
			}
			return nil, err
		}
	}
	msg := parse.Parse(raw, s.parseOptions())
	if msg.Raw != nil {
		// A message the parser could not read travels with its raw bytes; raw's buffer is
		// lent again (internal/offheap) once the caller releases it.
		msg.Raw = bytes.Clone(msg.Raw)
	}
	s.fill(msg, d.st, meta)
	return msg, nil
}

// beforeOffer does what the store must record about messages before they are offered:
// duplicate_of (markCopies) and the outbound message a delivery report is about (matchBounces).
func (d *deliverer) beforeOffer(ctx context.Context, msgs []*mailintakev1.Message) error {
	if err := d.markCopies(ctx, msgs); err != nil {
		return err
	}
	return d.matchBounces(ctx, msgs)
}

// markCopies sets Message.duplicate_of on messages about to be offered that are copies of a mail
// delivered earlier from another mailbox of the tenant (a customer who wrote to sales@ and
// support@ at once): it claims the messages that have a Message-ID and a content fingerprint
// in one store call (store.SyncStore.ClaimCopies, one small write), under the ids the delivery
// queue gives them. Messages without either claim nothing and are not looked up.
//
// A tenant with a single mailbox claims nothing: the claim's write was 6% of the server's CPU
// per message, for copies that cannot arrive. Whether the tenant has other mailboxes is looked
// up at most once a minute (sharedEvery), so copies are recognised among the mailboxes that
// exist when the mail arrives (a mailbox added within the minute, or one that backfills old
// mail later, may deliver a copy of a mail its sibling delivered without duplicate_of).
//
// A store error fails the round, as the other store errors of a round do: the messages are not
// offered, and are fetched again at the next round once the store is back. Delivering them
// without duplicate_of instead would open the second ticket this prevents, and the answer
// would change at a redelivery. The exception is a store that cannot write at all
// (store.ErrUnavailable: a full or failing disk): intake goes on without duplicate_of, as it
// goes on while acknowledgements are refused, instead of stopping until an admin frees space.
func (d *deliverer) markCopies(ctx context.Context, msgs []*mailintakev1.Message) error {
	if shared, err := d.sharedTenant(ctx); err != nil || !shared {
		return err
	}
	var copies []store.MailCopy
	var claimed []*mailintakev1.Message
	for _, m := range msgs {
		mid, fp := m.GetEnvelope().GetMessageId(), m.GetContentFingerprint()
		if mid == "" || fp == "" {
			continue
		}
		id := delivery.Key{MailboxID: d.s.queue.MailboxID, UIDValidity: m.GetUidValidity(), UID: m.GetUid()}.String()
		copies = append(copies, store.MailCopy{Tenant: m.GetTenant(), MessageID: mid, Fingerprint: fp, MailboxID: d.s.queue.MailboxID, ID: id})
		claimed = append(claimed, m)
	}
	if len(copies) == 0 {
		return nil
	}
	firsts, err := d.s.sup.store.ClaimCopies(ctx, time.Now(), copies)
	if errors.Is(err, store.ErrUnavailable) {
		// The disk is full or failing: nothing can be recorded, acknowledgements included.
		// Intake goes on (the PSA sees the mail; its acks are refused until the store is back
		// and the messages come again, then with duplicate_of) rather than stopping altogether.
		d.s.event("error", "delivered without duplicate_of: %v", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("recording the messages' copies for duplicate_of: %w", err)
	}
	for i, m := range claimed {
		m.DuplicateOf = firsts[i]
	}
	return nil
}

// sharedTenant reports whether the mailbox's tenant has other mailboxes, looking at most once
// every sharedEvery. A store that cannot answer makes it claim (the safe side).
func (d *deliverer) sharedTenant(ctx context.Context) (bool, error) {
	if now := time.Now(); d.sharedAt.IsZero() || now.Sub(d.sharedAt) >= sharedEvery {
		mbs, err := d.s.sup.store.ListMailboxes(ctx, store.MailboxQuery{Tenant: d.s.mb.Spec.GetTenant(), Limit: 2})
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return true, nil
		}
		d.shared, d.sharedAt = len(mbs) > 1, now
	}
	return d.shared, nil
}

// unreturned deals with messages a body fetch did not return. Expunged meanwhile: nothing to do.
// Still in the folder: the server answered without naming them (a FETCH response whose UID
// comes after the body is not taken as an answer, nor one under another UID), and they are
// quarantined rather than skipped in silence on every round.
func (d *deliverer) unreturned(ctx context.Context, metas []imapconn.Meta) error {
	if len(metas) == 0 {
		return nil
	}
	uids := make([]uint32, len(metas))
	for i, m := range metas {
		uids[i] = m.UID
	}
	still, err := d.conn.FetchMeta(ctx, uids)
	if err != nil {
		return err
	}
	for _, m := range metas {
		if _, ok := still[m.UID]; ok {
			if err := d.keep(ctx, m, "the server did not return the message's body under its UID (fetch it with GetRawMessage, or check the server)", nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// quarantine keeps a message that cannot be delivered, with its header when it can be read.
func (d *deliverer) quarantine(ctx context.Context, meta imapconn.Meta, reason string) error {
	hdr, err := d.conn.FetchHeader(ctx, meta.UID)
	if err != nil {
		var ie *imap.Error
		if !errors.As(err, &ie) {
			return err
		}
	}
	return d.keep(ctx, meta, reason, hdr)
}

// headerOf returns the header section at the start of a message's bytes (all of them if the
// blank line is not among them).
func headerOf(b []byte) []byte {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return b[:i+4]
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return b[:i+2]
	}
	return b
}

// keep records a quarantined message with the header given.
func (d *deliverer) keep(ctx context.Context, meta imapconn.Meta, reason string, hdr []byte) error {
	s := d.s
	q := &store.Quarantined{MailboxID: s.id, UIDValidity: d.st.UIDValidity, UID: meta.UID, Reason: reason, Size: meta.Size, Headers: string(hdr)}
	if err := s.sup.store.Quarantine(ctx, q); err != nil {
		return err
	}
	d.markDone(meta.UID)
	s.sup.metrics.Quarantined.WithLabelValues(s.id).Inc()
	s.event("quarantine", "UID %d quarantined: %s", meta.UID, reason)
	s.sup.log.Warn("message quarantined", "mailbox_id", s.id, "uid", meta.UID, "reason", reason)
	return nil
}

// count says n of a noun that takes an s in the plural: "1 message", "2 messages".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// uidsOf names UIDs for an event: "UID 7", "UIDs 1:5,9".
func uidsOf(uids []uint32) string {
	if len(uids) == 1 {
		return "UID " + uidRanges(uids)
	}
	return "UIDs " + uidRanges(uids)
}

// uidRanges formats UIDs compactly: 1:5,9.
func uidRanges(uids []uint32) string {
	var set imap.UIDSet
	for _, u := range uids {
		set.AddNum(imap.UID(u))
	}
	return set.String()
}
