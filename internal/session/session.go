package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/imapconn"
	"github.com/mailintake/mailintake/internal/parse"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/plugins/authplugin"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// session is one mailbox's supervised IMAP session.
type session struct {
	sup    *Supervisor
	mb     *store.Mailbox
	id     string
	queue  *delivery.Queue
	status *status
	cancel context.CancelFunc
	done   chan struct{}
	// lease is the mailbox's lease on a clustered replica (zero otherwise); wctx carries it to
	// the store writes made outside the session's run (events), so they are fenced too.
	lease   store.Lease
	wctx    context.Context
	ticket  *regexp.Regexp
	maxSize int64
	inline  int64
	// rs is run's state, handed from one goroutine of the session to the next.
	rs runState
	// tr is the mailbox's protocol (transport.go).
	tr transport
}

func newSession(sup *Supervisor, mb *store.Mailbox) *session {
	s := &session{
		sup: sup, mb: mb, id: mb.Spec.GetId(),
		queue:  sup.broker.Queue(mb.Spec.GetId(), mb.Spec.GetTenant()),
		status: &status{},
		done:   make(chan struct{}),
		wctx:   context.Background(),
	}
	if p := mb.Spec.GetTicketPattern(); p != "" {
		s.ticket, _ = regexp.Compile(p) // validated when saved
	}
	s.maxSize = int64(mb.Spec.GetLimits().GetMaxMessageBytes())
	if s.maxSize == 0 {
		s.maxSize = sup.opts.DefaultMaxMessageBytes
	}
	s.inline = int64(mb.Spec.GetLimits().GetMaxInlineAttachmentBytes())
	if s.inline == 0 {
		s.inline = sup.opts.DefaultMaxInlineAttachment
	}
	s.tr = newTransport(s)
	return s
}

// stop ends the session and waits for it (no-op for a session that never ran).
// cancelRun tells the session to stop.
func (s *session) cancelRun() {
	if s.cancel != nil {
		s.cancel()
	}
}

// wait waits until a session told to stop has ended.
func (s *session) wait() {
	if s.cancel != nil {
		<-s.done
	}
}

func (s *session) event(kind, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	// The event log is diagnostic: a failure to write it must not stop the session.
	if err := s.sup.store.AddEvent(s.wctx, store.Event{MailboxID: s.id, Kind: kind, Message: msg}); err != nil {
		s.sup.log.Warn("event log", "mailbox_id", s.id, "err", err)
	}
}

// errForceRefresh asks run to reconnect at once with a fresh credential.
var errForceRefresh = errors.New("the mail server refused the cached credential")

// errTokenExpiring asks run to reconnect at once: the connection's token is about to lapse.
var errTokenExpiring = errors.New("the access token is about to expire")

// jitter spreads d by ±20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// A session runs on one goroutine at a time, and on none while it waits: for news while idle
// (IDLE, or the poll interval on servers without IDLE) and for its next attempt after an error.
// The goroutine that starts a wait arms its events and returns; the first event (the server's
// report, the broker's wake-up, the connection's end, the IDLE restart or poll or backoff timer,
// the session's end) continues the session on a new goroutine (waiting.fire). A goroutine
// parked in a wait kept the stack its deepest call had grown it to (the store's SQLite queries,
// the parser), and never gave it back: with imapclient's two goroutines per idling connection,
// stacks were 17 KB of the 78 KB an idle mailbox cost (2,000 mailboxes; 7 KB without ours).

// runState is what run keeps from one goroutine of the session to the next.
type runState struct {
	backoff, authBackoff time.Duration
	force                bool
	attempts             int
	start                time.Time // when the current connection attempt began
}

// live is a connection being served.
type live struct {
	conn            *imapconn.Conn
	d               *deliverer
	expiry, renewAt time.Time // the credential's expiry, and when to renew the connection before it
}

// waiting is a parked session's wait.
type waiting struct {
	s   *session
	ctx context.Context
	// l is the connection whose news is awaited (nil: a backoff before the next attempt, or
	// a poll), and idling its IDLE command (nil: a poll interval).
	l      *live
	idling *imapconn.Idling
	// poll: a transport without a connection between rounds (POP3) waits for its poll
	// interval or the broker's wake-up; its next round connects anew, and is no reconnect.
	poll bool
	// slots: the connection waits for a free consumer slot only, with no IDLE (nor a NOOP to
	// end the wait): the next round searches the folder once the backlog is delivered, so news
	// from the server is not needed meanwhile, and an IDLE and its DONE per batch of a
	// consumer's acknowledgements cost both sides CPU for nothing.
	slots bool
	// state: bit 1 once armed, bit 2 once an event fired; whichever sets the second bit
	// continues the session.
	state             atomic.Int32
	timer             *time.Timer
	stopCtx, stopWake func() bool
	stopConn          func() bool
}

const (
	waitArmed = 1 << iota
	waitFired
)

// park waits for the first of: ctx's end, timer, and for a connection its news or end and
// the broker's wake-up. It returns at once; the session continues in resume.
func (s *session) park(ctx context.Context, l *live, idling *imapconn.Idling, timer time.Duration) {
	s.parkWait(&waiting{s: s, ctx: ctx, l: l, idling: idling}, timer)
}

// parkForSlots parks a connection that waits for a free consumer slot only (waiting.slots).
func (s *session) parkForSlots(ctx context.Context, l *live, timer time.Duration) {
	s.parkWait(&waiting{s: s, ctx: ctx, l: l, slots: true}, timer)
}

func (s *session) parkWait(w *waiting, timer time.Duration) {
	ctx, l := w.ctx, w.l
	fire := w.fire
	w.timer = time.AfterFunc(timer, fire)
	w.stopCtx = context.AfterFunc(ctx, fire)
	if l != nil || w.poll {
		w.stopWake = s.queue.OnWake(fire)
	}
	if l != nil {
		w.stopConn = l.conn.Notify(fire)
	}
	if old := w.state.Or(waitArmed); old&waitFired != 0 {
		go s.resume(w) // an event came while the others were armed
	}
}

// fire is each event's callback: the first one continues the session (once it is armed).
func (w *waiting) fire() {
	if old := w.state.Or(waitFired); old&waitFired == 0 && old&waitArmed != 0 {
		go w.s.resume(w)
	}
}

// resume continues a parked session on the goroutine fire started.
func (s *session) resume(w *waiting) {
	w.timer.Stop()
	w.stopCtx()
	if w.l != nil || w.poll {
		w.stopWake()
		if w.l != nil {
			w.stopConn()
		}
		// A wake-up from the broker that came before now is seen by the next round.
		select {
		case <-s.queue.Wake():
		default:
		}
	}
	s.run(w.ctx, w)
}

// start runs the session from its first connection.
func (s *session) start(ctx context.Context) {
	s.rs = runState{backoff: s.sup.opts.MinBackoff, authBackoff: s.sup.opts.AuthBackoff}
	s.run(ctx, nil)
}

// end marks a session that stopped for good.
func (s *session) end() {
	close(s.done)
	s.sup.wg.Done()
}

// log returns the session's logger.
func (s *session) log() *slog.Logger { return s.sup.log.With("mailbox_id", s.id) }

// run connects and serves until ctx ends, reconnecting with backoff. It returns when the
// session ended, or parked in a wait (resume continues it); from is the wait that ended, if
// any.
func (s *session) run(ctx context.Context, from *waiting) {
	for {
		var err error
		if from != nil && from.l != nil {
			// News, the IDLE restart or poll timer, or the end: the wait is ended in any case,
			// and the connection closed if ctx ended.
			err = s.serveOn(ctx, from.l, from)
		} else {
			if ctx.Err() != nil {
				break
			}
			if s.rs.attempts > 0 && (from == nil || !from.poll) {
				s.sup.metrics.Reconnects.WithLabelValues(s.id).Inc()
			}
			s.rs.attempts++
			s.rs.start = time.Now()
			force := s.rs.force
			s.rs.force = false
			err = s.tr.serve(ctx, force)
		}
		from = nil
		if errors.Is(err, errParked) {
			return
		}
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, store.ErrFenced) || !s.sup.opts.Trusted() {
			// Another replica holds the mailbox now: stop; the membership stops this session's
			// record at its next round.
			s.status.set(mailintakev1.MailboxState_MAILBOX_STATE_CONNECTING, "another replica took the mailbox over")
			s.log().Info("lease lost; session stopped", "err", err)
			break
		}
		if time.Since(s.rs.start) > time.Minute {
			s.rs.backoff = s.sup.opts.MinBackoff // it worked for a while: start over
		}
		var wait time.Duration
		var pe *providerError
		af, refused := s.tr.refused(err)
		switch {
		case errors.Is(err, errForceRefresh):
			s.rs.force = true
			continue
		case errors.Is(err, errTokenExpiring):
			continue
		case refused:
			s.sup.metrics.AuthFailed.WithLabelValues(s.id).Inc()
			wait = jitter(s.rs.authBackoff)
			s.status.fail(mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED, "the mail server refused the login", err, time.Now().Add(wait), af)
			s.event("auth", "login refused: %v; next attempt in %s", err, wait.Round(time.Second))
			s.log().Warn("login refused", "err", err, "retry_in", wait)
			s.rs.authBackoff = min(2*s.rs.authBackoff, s.sup.opts.MaxAuthBackoff)
		case errors.As(err, &pe):
			s.sup.metrics.AuthFailed.WithLabelValues(s.id).Inc()
			af := authFailure(pe.err)
			if af.Reason == mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_TEMPORARY ||
				af.Reason == mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_PROVIDER_ERROR {
				wait = jitter(s.rs.backoff)
				s.rs.backoff = min(2*s.rs.backoff, s.sup.opts.MaxBackoff)
				s.status.fail(mailintakev1.MailboxState_MAILBOX_STATE_ERROR, "the auth provider failed; retrying", pe, time.Now().Add(wait), af)
			} else {
				wait = jitter(s.rs.authBackoff)
				s.rs.authBackoff = min(2*s.rs.authBackoff, s.sup.opts.MaxAuthBackoff)
				state := mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED
				if af.Reason == mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_AUTHORIZATION_REQUIRED {
					state = mailintakev1.MailboxState_MAILBOX_STATE_AWAITING_AUTHORIZATION
				}
				s.status.fail(state, af.Message, pe, time.Now().Add(wait), af)
			}
			s.event("auth", "%v; next attempt in %s", pe, wait.Round(time.Second))
			s.log().Warn("auth provider failure", "err", pe, "retry_in", wait)
		default:
			wait = jitter(s.rs.backoff)
			s.rs.backoff = min(2*s.rs.backoff, s.sup.opts.MaxBackoff)
			s.status.fail(mailintakev1.MailboxState_MAILBOX_STATE_ERROR, "connection failed; retrying", err, time.Now().Add(wait), nil)
			s.event("error", "%v; next attempt in %s", err, wait.Round(time.Second))
			s.log().Warn("session error", "err", err, "retry_in", wait)
		}
		s.park(ctx, nil, nil, wait) // the next attempt, on another goroutine
		return
	}
	s.end()
}

// authFailure maps a provider error to the API's explanation.
func authFailure(err error) *mailintakev1.AuthFailure {
	e, ok := authplugin.AsError(err)
	if !ok {
		return &mailintakev1.AuthFailure{Reason: mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_PROVIDER_ERROR,
			Message: err.Error(), Action: "The auth provider plugin failed; the server restarts it and retries. See the server log if it persists."}
	}
	reason := map[authplugin.Reason]mailintakev1.AuthFailureReason{
		authplugin.ReasonInvalidCredentials:    mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_INVALID_CREDENTIALS,
		authplugin.ReasonMFARequired:           mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_MFA_REQUIRED,
		authplugin.ReasonConsentRequired:       mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_CONSENT_REQUIRED,
		authplugin.ReasonAccountLocked:         mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_ACCOUNT_LOCKED,
		authplugin.ReasonAccountDisabled:       mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_ACCOUNT_DISABLED,
		authplugin.ReasonPasswordExpired:       mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_PASSWORD_EXPIRED,
		authplugin.ReasonConfigInvalid:         mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_CONFIG_INVALID,
		authplugin.ReasonTemporary:             mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_TEMPORARY,
		authplugin.ReasonAuthorizationRequired: mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_AUTHORIZATION_REQUIRED,
		authplugin.ReasonAuthorizationPending:  mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_AUTHORIZATION_REQUIRED,
		authplugin.ReasonAuthorizationExpired:  mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_AUTHORIZATION_REQUIRED,
	}[e.Reason]
	msg := e.Message
	if msg == "" {
		msg = e.Reason.String()
	}
	return &mailintakev1.AuthFailure{Reason: reason, ProviderCode: e.Code, Message: msg, Action: e.Action, SupportIds: e.SupportIDs}
}

// errParked is returned when the session parked in a wait: another goroutine continues it.
var errParked = errors.New("the session waits for news")

// serve connects, then serves the connection (serveOn): imapTransport's serve.
func (s *session) serve(ctx context.Context, force bool) error {
	s.status.set(mailintakev1.MailboxState_MAILBOX_STATE_CONNECTING, "connecting to "+s.mb.Spec.GetHost())
	conn, sel, expiry, err := s.sup.connect(ctx, s.mb.Spec, s.mb.RevealedSecrets(), force, nil)
	if err != nil {
		if imapconn.IsAuthError(err) && !force {
			// The cached credential may be stale (a rotated password, an expired token): try
			// once more with a fresh one before calling it a refused login.
			s.sup.plugins.Invalidate(s.id)
			return errForceRefresh
		}
		return err
	}
	if h, ok := s.sup.plugins.Health(s.id); ok {
		s.status.token(h)
	}
	l := &live{conn: conn, expiry: expiry}
	// A token-authenticated connection is renewed a little before its token lapses: a minute
	// before, or a quarter of its lifetime for short-lived tokens.
	if !expiry.IsZero() {
		l.renewAt = expiry.Add(-min(time.Minute, time.Until(expiry)/4))
	}
	s.event("connect", "connected to %s, signed in, selected %s (%s)", s.mb.Spec.GetHost(), sel.Name, count(int(sel.NumMessages), "message"))

	st, err := s.checkpoint(ctx, sel)
	if err != nil {
		conn.Logout()
		return err
	}
	s.queue.SetUIDValidity(sel.UIDValidity)
	l.d = &deliverer{s: s, conn: conn, st: st, meta: map[uint32]imapconn.Meta{}}
	return s.serveOn(ctx, l, nil)
}

// serveOn serves a connection for one round (catch up, deliver) and starts the wait for news
// that follows it: it returns errParked once the wait is armed, and the round after the wait
// runs on the goroutine its end starts. from is the wait that ended, if any. On an error, or
// when ctx ended, the connection is logged out.
func (s *session) serveOn(ctx context.Context, l *live, from *waiting) (err error) {
	conn, d := l.conn, l.d
	defer func() {
		if !errors.Is(err, errParked) {
			conn.Logout()
		}
	}()
	if from != nil {
		if err := s.endWait(ctx, l, from); err != nil {
			return err
		}
	}
	if !s.sup.opts.Trusted() {
		// This replica may have lost the lease (it was paused, or cut off from the
		// database): another may own the mailbox now, so do nothing more on the server.
		return errNotTrusted
	}
	s.status.set(mailintakev1.MailboxState_MAILBOX_STATE_SYNCING, "synchronising")
	// What the server reported so far is seen by this round's search: only what it reports
	// from now on ends the next IDLE or poll early.
	conn.DrainUpdates()
	if err := d.round(ctx); err != nil {
		return err
	}
	s.status.synced()
	s.sup.metrics.LastSuccess.WithLabelValues(s.id).SetToCurrentTime()
	if !l.expiry.IsZero() && time.Now().After(l.renewAt) {
		// The token this connection signed in with is about to lapse; servers may end the
		// session then. Reconnect with a fresh credential first.
		return errTokenExpiring
	}
	if len(d.held) > 0 || d.more {
		// Work is waiting for a free consumer slot: wait for the broker only.
		s.status.set(mailintakev1.MailboxState_MAILBOX_STATE_IDLE, "waiting for a consumer to take more messages")
	} else {
		s.status.set(mailintakev1.MailboxState_MAILBOX_STATE_IDLE, "watching for new mail")
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	wait := s.sup.opts.IdleRestart
	if !l.expiry.IsZero() {
		wait = min(wait, max(time.Until(l.renewAt), 10*time.Millisecond))
	}
	if d.waiting() {
		// Woken by the broker when a slot frees, or after wait at the latest (a round then
		// keeps the connection in use).
		s.parkForSlots(ctx, l, wait)
		return errParked
	}
	if !conn.CanIdle() {
		s.park(ctx, l, nil, s.sup.opts.PollInterval)
		return errParked
	}
	idling, err := conn.StartIdle(ctx)
	if err != nil {
		return fmt.Errorf("IDLE: %w", err)
	}
	s.park(ctx, l, idling, wait)
	return errParked
}

// endWait ends a connection's wait: DONE after IDLE, a NOOP (asking for news) after a poll
// interval, nothing after a wait for consumer slots.
func (s *session) endWait(ctx context.Context, l *live, w *waiting) error {
	if w.idling != nil {
		if err := w.idling.Stop(ctx); err != nil {
			return fmt.Errorf("IDLE: %w", err)
		}
	} else if !w.slots && ctx.Err() == nil {
		if err := l.conn.Noop(ctx); err != nil {
			return fmt.Errorf("NOOP: %w", err)
		}
	}
	return ctx.Err()
}

// checkpoint loads the durable checkpoint, creating it on the first sync and resetting it when
// the folder's UIDVALIDITY changed.
func (s *session) checkpoint(ctx context.Context, sel imapconn.Selected) (*store.SyncState, error) {
	st, err := s.sup.store.SyncState(ctx, s.id)
	if err != nil {
		return nil, err
	}
	switch {
	case st == nil:
		st = &store.SyncState{MailboxID: s.id, UIDValidity: sel.UIDValidity, Baseline: sel.UIDNext}
		if s.mb.Spec.GetStartFrom() == mailintakev1.StartFrom_START_FROM_NEW {
			st.AckedThrough = sel.UIDNext - 1
		}
		s.event("sync", "first sync (start from %s): %s in %s, UIDNEXT %d", startFromName(s.mb.Spec.GetStartFrom()), count(int(sel.NumMessages), "message"), sel.Name, sel.UIDNext)
	case st.UIDValidity != sel.UIDValidity:
		s.event("resync", "UIDVALIDITY of %s changed from %d to %d: resynchronising; messages already acknowledged are recognised by their SHA-256", sel.Name, st.UIDValidity, sel.UIDValidity)
		s.sup.log.Warn("UIDVALIDITY changed", "mailbox_id", s.id, "old", st.UIDValidity, "new", sel.UIDValidity)
		st = &store.SyncState{MailboxID: s.id, UIDValidity: sel.UIDValidity, ResyncBelow: sel.UIDNext}
	default:
		return st, nil
	}
	if err := s.sup.store.SaveSyncState(ctx, st); err != nil {
		return nil, err
	}
	return st, nil
}

func startFromName(v mailintakev1.StartFrom) string {
	switch v {
	case mailintakev1.StartFrom_START_FROM_ALL:
		return "ALL"
	case mailintakev1.StartFrom_START_FROM_UNSEEN:
		return "UNSEEN"
	}
	return "NEW"
}

// parseOptions returns the parser options of the mailbox.
func (s *session) parseOptions() parse.Options {
	return parse.Options{TicketPattern: s.ticket, MaxInlineAttachment: s.inline}
}

// fill sets the delivery fields of a parsed message.
func (s *session) fill(msg *mailintakev1.Message, st *store.SyncState, meta imapconn.Meta) {
	msg.MailboxId = s.id
	msg.Tenant = s.mb.Spec.GetTenant()
	msg.UidValidity = st.UIDValidity
	msg.Uid = meta.UID
	msg.Flags = meta.Flags
	if !meta.InternalDate.IsZero() {
		msg.InternalDate = timestamppb.New(meta.InternalDate)
	}
	msg.Backfill = meta.UID < st.Baseline && s.mb.Spec.GetStartFrom() != mailintakev1.StartFrom_START_FROM_NEW
}

// refusedLogin explains a login the mail server refused. A refused OAuth token was issued fresh
// (the session retries once with a new one before it reports), so the cause is configuration,
// not an expired token: say which settings to check instead of refreshing in a loop.
func refusedLogin(err error) *mailintakev1.AuthFailure {
	var ae *imapconn.AuthError
	if errors.As(err, &ae) && (ae.Mechanism == imapconn.MechXOAuth2 || ae.Mechanism == imapconn.MechOAuthBearer) {
		return &mailintakev1.AuthFailure{Reason: mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_CONFIG_INVALID,
			Message: "the mail server refused a freshly issued OAuth token (" + err.Error() + ")",
			Action: "Check: the token's scope is the mail server's (https://outlook.office.com/IMAP.AccessAsUser.All, or .default for app-only); " +
				"for app-only access the app's service principal is registered in Exchange (New-ServicePrincipal) and has the mailbox permission (Add-MailboxPermission); " +
				"IMAP is enabled for the mailbox; the username is the mailbox address."}
	}
	return &mailintakev1.AuthFailure{Reason: mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_INVALID_CREDENTIALS,
		Message: err.Error(), Action: "Check the username and password (or the provider's settings), then save the mailbox to retry at once."}
}
