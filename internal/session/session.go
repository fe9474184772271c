package session

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
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

// run connects and serves until ctx ends, reconnecting with backoff.
func (s *session) run(ctx context.Context) {
	log := s.sup.log.With("mailbox_id", s.id)
	backoff := s.sup.opts.MinBackoff
	authBackoff := s.sup.opts.AuthBackoff
	force := false
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			s.sup.metrics.Reconnects.WithLabelValues(s.id).Inc()
		}
		start := time.Now()
		err := s.serve(ctx, force)
		force = false
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, store.ErrFenced) || !s.sup.opts.Trusted() {
			// Another replica holds the mailbox now: stop; the membership stops this session's
			// record at its next round.
			s.status.set(mailintakev1.MailboxState_MAILBOX_STATE_CONNECTING, "another replica took the mailbox over")
			log.Info("lease lost; session stopped", "err", err)
			return
		}
		if time.Since(start) > time.Minute {
			backoff = s.sup.opts.MinBackoff // it worked for a while: start over
		}
		var wait time.Duration
		var pe *providerError
		switch {
		case errors.Is(err, errForceRefresh):
			force = true
			continue
		case errors.Is(err, errTokenExpiring):
			continue
		case imapconn.IsAuthError(err):
			s.sup.metrics.AuthFailed.WithLabelValues(s.id).Inc()
			wait = jitter(authBackoff)
			af := refusedLogin(err)
			s.status.fail(mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED, "the mail server refused the login", err, time.Now().Add(wait), af)
			s.event("auth", "login refused: %v; next attempt in %s", err, wait.Round(time.Second))
			log.Warn("login refused", "err", err, "retry_in", wait)
			authBackoff = min(2*authBackoff, s.sup.opts.MaxAuthBackoff)
		case errors.As(err, &pe):
			s.sup.metrics.AuthFailed.WithLabelValues(s.id).Inc()
			af := authFailure(pe.err)
			if af.Reason == mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_TEMPORARY ||
				af.Reason == mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_PROVIDER_ERROR {
				wait = jitter(backoff)
				backoff = min(2*backoff, s.sup.opts.MaxBackoff)
				s.status.fail(mailintakev1.MailboxState_MAILBOX_STATE_ERROR, "the auth provider failed; retrying", pe, time.Now().Add(wait), af)
			} else {
				wait = jitter(authBackoff)
				authBackoff = min(2*authBackoff, s.sup.opts.MaxAuthBackoff)
				state := mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED
				if af.Reason == mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_AUTHORIZATION_REQUIRED {
					state = mailintakev1.MailboxState_MAILBOX_STATE_AWAITING_AUTHORIZATION
				}
				s.status.fail(state, af.Message, pe, time.Now().Add(wait), af)
			}
			s.event("auth", "%v; next attempt in %s", pe, wait.Round(time.Second))
			log.Warn("auth provider failure", "err", pe, "retry_in", wait)
		default:
			wait = jitter(backoff)
			backoff = min(2*backoff, s.sup.opts.MaxBackoff)
			s.status.fail(mailintakev1.MailboxState_MAILBOX_STATE_ERROR, "connection failed; retrying", err, time.Now().Add(wait), nil)
			s.event("error", "%v; next attempt in %s", err, wait.Round(time.Second))
			log.Warn("session error", "err", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
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

// serve runs one connection: connect, catch up, deliver, idle, until an error or ctx ends.
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
	defer conn.Logout()
	if h, ok := s.sup.plugins.Health(s.id); ok {
		s.status.token(h)
	}
	// A token-authenticated connection is renewed a little before its token lapses: a minute
	// before, or a quarter of its lifetime for short-lived tokens.
	var renewAt time.Time
	if !expiry.IsZero() {
		renewAt = expiry.Add(-min(time.Minute, time.Until(expiry)/4))
	}
	s.event("connect", "connected to %s, signed in, selected %s (%d messages)", s.mb.Spec.GetHost(), sel.Name, sel.NumMessages)

	st, err := s.checkpoint(ctx, sel)
	if err != nil {
		return err
	}
	s.queue.SetUIDValidity(sel.UIDValidity)
	d := &deliverer{s: s, conn: conn, st: st, meta: map[uint32]imapconn.Meta{}}
	for {
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
		if !expiry.IsZero() && time.Now().After(renewAt) {
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
		if conn.CanIdle() {
			wait := s.sup.opts.IdleRestart
			if !expiry.IsZero() {
				wait = min(wait, max(time.Until(renewAt), 10*time.Millisecond))
			}
			if err := conn.Idle(ctx, s.queue.Wake(), wait); err != nil {
				return fmt.Errorf("IDLE: %w", err)
			}
		} else {
			select {
			case <-ctx.Done():
			case <-s.queue.Wake():
			case <-conn.Updates():
			case <-time.After(s.sup.opts.PollInterval):
			}
			if ctx.Err() == nil {
				if err := conn.Noop(ctx); err != nil {
					return fmt.Errorf("NOOP: %w", err)
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
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
		s.event("sync", "first sync (start from %s): %d messages in %s, UIDNEXT %d", startFromName(s.mb.Spec.GetStartFrom()), sel.NumMessages, sel.Name, sel.UIDNext)
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
