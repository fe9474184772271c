package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/imapconn"
	"github.com/mailintake/mailintake/internal/parse"
	"github.com/mailintake/mailintake/internal/pop3"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/plugins/authplugin"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// DefaultPOP3PollInterval is how often a POP3 mailbox is polled when it sets no poll_interval.
const DefaultPOP3PollInterval = time.Minute

// pop3Transport is POP3 (RFC 1939): every round is a short session of its own, since a POP3
// session holds the maildrop's lock and the server reports nothing while it lasts: connect,
// CAPA, login, UIDL and LIST, DELE of the acknowledged messages whose after_ack is DELETE,
// RETR of what is new within the consumers' demand, QUIT (which is what deletes); then the
// session waits for the mailbox's poll interval (jittered) or the broker's wake-up (an
// acknowledgement to apply, a free consumer slot, a message back from flight).
//
// Each unique-id keeps the UID store.MapUIDLs gave it when first listed, under
// store.POP3UIDValidity, and new ones get UIDs above every earlier one: the IMAP checkpoint
// (acked_through, acks above it, quarantine) then works unchanged, and a message's id is
// stable across restarts. Messages over the size limit are quarantined by their LIST size,
// with the header TOP gives, without being downloaded.
type pop3Transport struct {
	s *session
	// last is when the last round ended well: a wake-up from the broker (each batch of a
	// consumer's acknowledgements) starts the next session no sooner than pop3MinGap after
	// it, so a consumer that acknowledges one message at a time does not log in for each.
	last time.Time
	// polling: the last session ended well, so the next one is a poll, not a reconnection:
	// the status stays as it is (idle, polling) until the login, instead of "connecting".
	polling bool
}

// pop3MinGap is the least time between two POP3 sessions of a mailbox (or its poll interval,
// when shorter).
const pop3MinGap = time.Second

// pollInterval returns the mailbox's poll interval.
func (t *pop3Transport) pollInterval() time.Duration {
	if d := t.s.mb.Spec.GetPollInterval().AsDuration(); d > 0 {
		return d
	}
	return DefaultPOP3PollInterval
}

func (t *pop3Transport) serve(ctx context.Context, force bool) error {
	s := t.s
	polling := t.polling
	t.polling = false
	if wait := time.Until(t.last.Add(min(pop3MinGap, t.pollInterval()))); wait > 0 {
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
	}
	if !polling {
		s.status.set(mailintakev1.MailboxState_MAILBOX_STATE_CONNECTING, "connecting to "+s.mb.Spec.GetHost())
	}
	conn, err := s.sup.connectPOP3(ctx, s.mb.Spec, s.mb.RevealedSecrets(), force, nil)
	if err != nil {
		if _, ok := pop3.IsAuthError(err); ok && !force {
			// The cached credential may be stale: once more with a fresh one (as for IMAP).
			s.sup.plugins.Invalidate(s.id)
			return errForceRefresh
		}
		return err
	}
	if h, ok := s.sup.plugins.Health(s.id); ok {
		s.status.token(h)
	}
	if !s.sup.opts.Trusted() {
		conn.Close()
		return errNotTrusted
	}
	s.status.set(mailintakev1.MailboxState_MAILBOX_STATE_SYNCING, "synchronising")
	r := &pop3Round{t: t, conn: conn}
	more, err := r.run(ctx)
	if err != nil {
		conn.Close() // no QUIT: nothing marked is deleted
		return err
	}
	t.last = time.Now()
	s.status.synced()
	s.sup.metrics.LastSuccess.WithLabelValues(s.id).SetToCurrentTime()
	if more {
		s.status.set(mailintakev1.MailboxState_MAILBOX_STATE_IDLE, "waiting for a consumer to take more messages")
	} else {
		s.status.set(mailintakev1.MailboxState_MAILBOX_STATE_IDLE, fmt.Sprintf("polling every %s", t.pollInterval()))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Set before the wait is armed: its end continues the session on another goroutine.
	t.polling = true
	s.parkWait(&waiting{s: s, ctx: ctx, poll: true}, jitter(t.pollInterval()))
	return errParked
}

func (*pop3Transport) refused(err error) (*mailintakev1.AuthFailure, bool) {
	ae, ok := pop3.IsAuthError(err)
	if !ok {
		return nil, false
	}
	reason := mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_INVALID_CREDENTIALS
	if ae.TokenLogin() {
		// A refused token was issued afresh (the session retried once): configuration.
		reason = mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_CONFIG_INVALID
	}
	return &mailintakev1.AuthFailure{Reason: reason, Message: "the POP3 server refused the " + ae.Method + " login of " + ae.Identity,
		Action: ae.Explanation()}, true
}

// pop3Round is one POP3 session of a mailbox.
type pop3Round struct {
	t    *pop3Transport
	conn *pop3.Conn
	d    *deliverer
	// num maps the UIDs listed in this session to their message numbers, and size to LIST's
	// size.
	num  map[uint32]int
	size map[uint32]int64
	// deleRefused: the server refused a DELE in this session.
	deleRefused bool
}

// run serves the session and ends it with QUIT; more reports messages left for a free
// consumer slot.
func (r *pop3Round) run(ctx context.Context) (more bool, err error) {
	s := r.t.s
	uidl, err := r.conn.UIDL(ctx)
	if err != nil {
		if se, ok := pop3.IsServerError(err); ok {
			return false, fmt.Errorf("the POP3 server has no UIDL (%v): without unique-ids messages cannot be told apart between sessions", se)
		}
		return false, err
	}
	list, err := r.conn.List(ctx)
	if err != nil {
		return false, err
	}
	sizes := make(map[int]int64, len(list))
	for _, e := range list {
		sizes[e.Msg] = e.Size
	}
	var listed []string
	for _, e := range uidl.Entries {
		if _, ok := uidl.ByUID(e.UID); ok {
			listed = append(listed, e.UID)
		}
	}
	if len(uidl.Duplicates) > 0 {
		s.status.warn(duplicateUIDLs)
		s.event("error", "%d unique-ids are carried by more than one message: those messages are not delivered", len(uidl.Duplicates))
	} else {
		s.status.unwarn(duplicateUIDLs)
	}
	now := time.Now()
	uids, err := s.sup.store.MapUIDLs(ctx, s.id, listed, now, now.Add(-store.UIDLRetention))
	if err != nil {
		return false, err
	}
	r.num, r.size = make(map[uint32]int, len(uids)), make(map[uint32]int64, len(uids))
	var top uint32
	for u, uid := range uids {
		n, _ := uidl.ByUID(u)
		r.num[uid], r.size[uid] = n, sizes[n]
		top = max(top, uid)
	}
	st, err := r.checkpoint(ctx, top, len(listed))
	if err != nil {
		return false, err
	}
	s.queue.SetUIDValidity(store.POP3UIDValidity)
	// A unique-id the checkpoint does not know may be a message delivered and acknowledged
	// under another (a server that renumbered its unique-ids, as Dovecot does when the folder's
	// UIDVALIDITY changes; a maildrop restored from a backup): messages are recognised by their
	// hash first.
	r.d = &deliverer{s: s, st: st, byHash: true}
	deleted, err := r.dele(ctx)
	if err != nil {
		return false, err
	}
	pending, replay, err := r.pending(ctx)
	if err != nil {
		return false, err
	}
	more, err = r.deliver(ctx, pending, replay)
	if err != nil {
		return false, err
	}
	if !s.sup.opts.Trusted() {
		return false, errNotTrusted
	}
	// QUIT deletes what DELE marked; only its +OK says it did.
	if _, err := r.conn.Quit(ctx); err != nil {
		if len(deleted) > 0 {
			return false, fmt.Errorf("QUIT (the %d acknowledged messages marked for deletion stay on the server and are deleted at the next clean QUIT): %w", len(deleted), err)
		}
		return false, fmt.Errorf("QUIT: %w", err)
	}
	if len(deleted) > 0 {
		if !r.deleRefused {
			s.status.afterAck(nil, "")
		}
		if err := s.sup.store.MarkApplied(ctx, s.id, store.POP3UIDValidity, deleted); err != nil {
			return false, err
		}
		s.event("ack", "%s deleted (%s)", count(len(deleted), "acknowledged message"), uidsOf(deleted))
		s.sup.metrics.Acked.WithLabelValues(s.id).Add(float64(len(deleted)))
	}
	return more, nil
}

// duplicateUIDLs is the standing warning of a maildrop whose unique-ids are not unique.
const duplicateUIDLs = "the POP3 server gives one unique-id to more than one message: those messages are not delivered, " +
	"since they cannot be told apart between sessions (a server fault, or a maildrop restored from a backup); " +
	"remove the copies on the server (the mailbox's event log counts them)"

// checkpoint loads the checkpoint, creating it on the first sync: start_from NEW passes
// everything listed now (top is the highest UID listed), ALL and UNSEEN (POP3 has no flags)
// deliver it, marked as backfill.
func (r *pop3Round) checkpoint(ctx context.Context, top uint32, n int) (*store.SyncState, error) {
	s := r.t.s
	st, err := s.sup.store.SyncState(ctx, s.id)
	if err != nil || st != nil {
		return st, err
	}
	st = &store.SyncState{MailboxID: s.id, UIDValidity: store.POP3UIDValidity, Baseline: top + 1}
	if s.mb.Spec.GetStartFrom() == mailintakev1.StartFrom_START_FROM_NEW {
		st.AckedThrough = top
	}
	s.event("sync", "first sync (start from %s): %s in the maildrop", startFromName(s.mb.Spec.GetStartFrom()), count(n, "message"))
	if err := s.sup.store.SaveSyncState(ctx, st); err != nil {
		return nil, err
	}
	return st, nil
}

// dele applies the after-ack action to acknowledged messages: KEEP (and a message no longer on
// the server) is applied at once; DELETE marks the message with DELE, applied once QUIT
// succeeds (returned). Until then the acknowledgement stays unapplied and the next session
// marks it again.
func (r *pop3Round) dele(ctx context.Context) ([]uint32, error) {
	s := r.t.s
	acks, err := s.sup.store.UnappliedAcks(ctx, s.id)
	if err != nil || len(acks) == 0 {
		return nil, err
	}
	del := s.mb.Spec.GetAfterAck().GetAction() == mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE
	var now, marked, kept []uint32
	var refused *pop3.ServerError
	for _, a := range acks {
		s.queue.Forget(a.UIDValidity, a.UID)
		n, listed := r.num[a.UID]
		switch {
		case a.UIDValidity != store.POP3UIDValidity || !listed:
			now = append(now, a.UID) // gone from the server already
		case !del:
			kept = append(kept, a.UID)
		default:
			if !s.sup.opts.Trusted() {
				return nil, errNotTrusted
			}
			if err := r.conn.Dele(ctx, n); err != nil {
				if se, ok := pop3.IsServerError(err); ok {
					// The server refuses (a read-only maildrop, say): the message stays
					// acknowledged and on the server, delivery goes on, and the deletion is
					// tried again at every session (the log folds the repeats).
					refused = se
					continue
				}
				return nil, fmt.Errorf("after-ack action (delete): %w", err)
			}
			marked = append(marked, a.UID)
		}
	}
	if err := s.sup.store.MarkApplied(ctx, s.id, store.POP3UIDValidity, append(now, kept...)); err != nil {
		return nil, err
	}
	if len(kept) > 0 {
		s.event("ack", "%s kept (%s)", count(len(kept), "acknowledged message"), uidsOf(kept))
		s.sup.metrics.Acked.WithLabelValues(s.id).Add(float64(len(kept)))
	}
	if refused != nil {
		r.deleRefused = true
		s.status.afterAck(refused, fmt.Sprintf("delivering, but the POP3 server refuses to delete acknowledged messages (%s): check that the account may delete "+
			"from its maildrop, or change the action with 'mailbox update ID --after-ack keep'; acknowledged messages stay on the server, and are never delivered "+
			"again, until the deletion succeeds (retried at every session)", refused.Text))
		s.event("error", "after-ack action (delete) refused by the server: %v", refused)
	}
	return marked, nil
}

// pending returns the UIDs listed in this session to deliver, ascending, and the quarantined
// ones to replay; it advances the checkpoint past everything done (as deliverer.pending).
func (r *pop3Round) pending(ctx context.Context) ([]uint32, map[uint32]int64, error) {
	var onServer []uint32
	for uid := range r.num {
		if uid > r.d.st.AckedThrough {
			onServer = append(onServer, uid)
		}
	}
	return r.d.plan(ctx, store.POP3UIDValidity, onServer, func(uid uint32) bool { _, listed := r.num[uid]; return listed })
}

// deliver fetches, parses and offers pending messages, one at a time, while consumers have free
// slots; more reports messages left for a free slot.
func (r *pop3Round) deliver(ctx context.Context, pending []uint32, replay map[uint32]int64) (more bool, err error) {
	s, d := r.t.s, r.d
	var delivered []uint32
	defer s.queue.Settle()
	defer func() { s.delivered(delivered) }()
	for i := 0; i < len(pending); {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		free := s.queue.Reserve(fetchAhead)
		if free == 0 {
			return true, nil
		}
		for ; i < len(pending) && free > 0; i++ {
			uid := pending[i]
			if s.queue.Busy(uid) {
				continue
			}
			_, replaying := replay[uid]
			msg, err := r.fetch(ctx, uid, replaying)
			if err != nil {
				s.queue.Release()
				return false, err
			}
			if msg == nil {
				continue // quarantined
			}
			if err := d.beforeOffer(ctx, []*mailintakev1.Message{msg}); err != nil {
				s.queue.Release()
				return false, err
			}
			if !s.sup.opts.Trusted() {
				s.queue.Release()
				return false, errNotTrusted
			}
			switch s.queue.Offer(msg) {
			case delivery.NoCapacity:
				// A stream closed meanwhile: the message is fetched again at the next round.
				s.queue.Release()
				return true, nil
			case delivery.Delivered:
				delivered = append(delivered, uid)
				d.offered(ctx, uid, replay)
			}
			free--
		}
		s.queue.Release()
	}
	return false, nil
}

// fetch reads and parses one message. It returns nil, nil for a message quarantined instead.
func (r *pop3Round) fetch(ctx context.Context, uid uint32, replaying bool) (*mailintakev1.Message, error) {
	s, d := r.t.s, r.d
	n, size := r.num[uid], r.size[uid]
	meta := imapconn.Meta{UID: uid, Size: size}
	if size > s.maxSize {
		hdr, err := r.header(ctx, n)
		if err != nil {
			return nil, err
		}
		if !replaying {
			return nil, d.keep(ctx, meta, fmt.Sprintf("the message is %d bytes (by LIST), over the mailbox's limit of %d bytes", size, s.maxSize), hdr)
		}
		msg := parse.Parse(hdr, s.parseOptions())
		msg.RawSize = uint64(size)
		msg.Sha256 = ""
		msg.ContentFingerprint = ""
		msg.Problems = append(msg.Problems, &mailintakev1.ParseProblem{Code: "limit",
			Message: fmt.Sprintf("the message is %d bytes, over the mailbox's limit of %d bytes: only its header was parsed; fetch it with GetRawMessage", size, s.maxSize)})
		s.fill(msg, d.st, meta)
		return msg, nil
	}
	// The body's bytes (as LIST counts them) come out of the budget all sessions share, as
	// IMAP's do, until the message is parsed.
	took, err := s.sup.budget.Acquire(ctx, size)
	if err != nil {
		return nil, err
	}
	defer s.sup.budget.Release(took)
	m, err := r.conn.Retr(ctx, n, s.maxSize)
	var tl *pop3.TooLargeError
	switch {
	case errors.As(err, &tl):
		// The server sent more than LIST said, past the limit.
		meta.Size = tl.Size
		if qerr := d.keep(ctx, meta, fmt.Sprintf("%v (LIST said %d bytes)", tl, size), headerOf(tl.Head)); qerr != nil {
			return nil, qerr
		}
		if tl.Closed {
			return nil, fmt.Errorf("reconnecting after an oversized message: %w", err)
		}
		return nil, nil
	case err != nil:
		if se, ok := pop3.IsServerError(err); ok && !se.Temporary() {
			hdr, _ := r.header(ctx, n)
			return nil, d.keep(ctx, meta, "the server could not return the message: "+se.Error(), hdr)
		}
		return nil, err
	}
	meta.Size = m.Size
	msg, err := d.prepare(ctx, m.Raw, meta)
	if err == nil && msg != nil && m.Unstuffed > 0 {
		msg.Problems = append(msg.Problems, &mailintakev1.ParseProblem{Code: "pop3-dot-stuffing",
			Message: fmt.Sprintf("the server sent %d lines beginning with a single dot (not dot-stuffed): a leading dot may be missing on them", m.Unstuffed)})
	}
	return msg, err
}

// header returns a message's header (TOP n 0), or nil when the server has no TOP or refuses.
func (r *pop3Round) header(ctx context.Context, n int) ([]byte, error) {
	if !r.conn.Capabilities().Has("TOP") {
		return nil, nil
	}
	hdr, err := r.conn.Top(ctx, n, 0)
	if err != nil {
		if _, ok := pop3.IsServerError(err); ok {
			return nil, nil
		}
		var tl *pop3.TooLargeError
		if errors.As(err, &tl) && !tl.Closed {
			return nil, nil
		}
		return nil, err
	}
	return hdr, nil
}

// pop3Target returns the POP3 connection target of a mailbox definition.
func pop3Target(mb *mailintakev1.Mailbox, commandTimeout time.Duration) (pop3.Target, error) {
	t := pop3.Target{Host: mb.GetHost(), Port: int(mb.GetPort()), SkipVerify: mb.GetInsecureSkipVerify(), CommandTimeout: commandTimeout}
	switch mb.GetSecurity() {
	case mailintakev1.Security_SECURITY_STARTTLS:
		t.Security = pop3.StartTLS
	case mailintakev1.Security_SECURITY_NONE:
		// Plaintext only when the mailbox asks for it, and then the login too.
		t.Security, t.InsecureAuth = pop3.Plaintext, true
	default:
		t.Security = pop3.TLS
	}
	if pem := mb.GetCaPem(); pem != "" {
		pool, err := pop3.CertPool([]byte(pem))
		if err != nil {
			return t, errors.New("ca_pem holds no usable certificate")
		}
		t.RootCAs = pool
	}
	return t, nil
}

// connectPOP3 dials and logs in to a POP3 mailbox, reporting each step.
func (s *Supervisor) connectPOP3(ctx context.Context, mb *mailintakev1.Mailbox, secrets map[string]string, force bool, report func(pop3.Step, *authplugin.Error)) (*pop3.Conn, error) {
	if report == nil {
		report = func(pop3.Step, *authplugin.Error) {}
	}
	t, err := pop3Target(mb, s.opts.CommandTimeout)
	if err != nil {
		return nil, err
	}
	if s.opts.Clustered {
		t.Allow = s.opts.Trusted
	}
	conn, err := pop3.Dial(ctx, t, func(st pop3.Step) { report(st, nil) })
	if err != nil {
		return nil, err
	}
	start := time.Now()
	cred, err := s.plugins.Credential(ctx, mb.GetAuthProvider(), Account(mb, secrets), force)
	if err != nil {
		conn.Close()
		pe, _ := authplugin.AsError(err)
		report(pop3.Step{Kind: pop3.StepAuth, Duration: time.Since(start), Err: err}, pe)
		return nil, &providerError{err: err}
	}
	// Authenticate reports its own step through Dial's report.
	if err := conn.Authenticate(ctx, pop3.Credential{Mechanism: cred.Mechanism, Identity: cred.Identity, Secret: cred.Secret, Fresh: force}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}
