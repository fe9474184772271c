package session

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/plugins/authplugin"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// authorizations are the interactive sign-ins in progress, by mailbox. They live in memory: a
// restart abandons them (the admin runs authorize again).
type authorizations struct {
	mu sync.Mutex
	m  map[string]*authorization
}

type authorization struct {
	mu     sync.Mutex
	pb     *mailintakev1.Authorization
	cancel context.CancelFunc
}

func (a *authorization) snapshot() *mailintakev1.Authorization {
	a.mu.Lock()
	defer a.mu.Unlock()
	return proto.CloneOf(a.pb)
}

func (a *authorization) finish(state mailintakev1.AuthorizationState, failure *mailintakev1.AuthFailure) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pb.State, a.pb.Failure = state, failure
}

// BeginAuthorization starts an interactive sign-in (e.g. a device code) for a mailbox and polls
// the provider in the background, at the interval the identity platform asks for; when the user
// has signed in, the provider's new state is stored and the mailbox's session starts over.
func (s *Supervisor) BeginAuthorization(ctx context.Context, mb *store.Mailbox) (*mailintakev1.Authorization, error) {
	acct := Account(mb.Spec, mb.RevealedSecrets())
	res, err := s.plugins.BeginAuthorization(ctx, mb.Spec.GetAuthProvider(), acct)
	if err != nil {
		return nil, err
	}
	a := &authorization{pb: &mailintakev1.Authorization{
		MailboxId: mb.Spec.GetId(), State: mailintakev1.AuthorizationState_AUTHORIZATION_STATE_PENDING,
		VerificationUri: res.VerificationURI, UserCode: res.UserCode, Message: res.Message,
		ExpireTime: ts(res.Expiry), Interval: durationpb.New(res.Interval),
	}}
	s.mu.Lock()
	base := s.ctx
	s.mu.Unlock()
	if base == nil {
		base = context.Background()
	}
	pctx, cancel := context.WithCancel(base)
	a.cancel = cancel
	s.authz.mu.Lock()
	if s.authz.m == nil {
		s.authz.m = map[string]*authorization{}
	}
	if old := s.authz.m[mb.Spec.GetId()]; old != nil {
		old.cancel()
	}
	s.authz.m[mb.Spec.GetId()] = a
	s.authz.mu.Unlock()
	if sess := s.session(mb.Spec.GetId()); sess != nil {
		sess.status.set(mailintakev1.MailboxState_MAILBOX_STATE_AWAITING_AUTHORIZATION, res.Message)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.pollAuthorization(pctx, mb, acct, a, res)
	}()
	return a.snapshot(), nil
}

func (s *Supervisor) session(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

func (s *Supervisor) pollAuthorization(ctx context.Context, mb *store.Mailbox, acct authplugin.Account, a *authorization, begin authplugin.Authorization) {
	defer a.cancel()
	id := mb.Spec.GetId()
	interval := begin.Interval
	deadline := begin.Expiry
	if deadline.IsZero() {
		deadline = time.Now().Add(15 * time.Minute)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		if time.Now().After(deadline) {
			a.finish(mailintakev1.AuthorizationState_AUTHORIZATION_STATE_EXPIRED, &mailintakev1.AuthFailure{
				Reason: mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_AUTHORIZATION_REQUIRED, Message: "the code expired before the sign-in",
				Action: "Run mailintake mailbox authorize again and sign in within the time shown."})
			s.eventFor(id, "auth", "interactive sign-in expired")
			return
		}
		res, err := s.plugins.PollAuthorization(ctx, mb.Spec.GetAuthProvider(), acct, begin.Handle)
		if e, ok := authplugin.AsError(err); ok && e.Reason == authplugin.ReasonAuthorizationPending {
			interval += e.RetryAfter
			a.mu.Lock()
			a.pb.Interval = durationpb.New(interval)
			a.mu.Unlock()
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			af := authFailure(err)
			state := mailintakev1.AuthorizationState_AUTHORIZATION_STATE_FAILED
			if e, ok := authplugin.AsError(err); ok && e.Reason == authplugin.ReasonAuthorizationExpired {
				state = mailintakev1.AuthorizationState_AUTHORIZATION_STATE_EXPIRED
			}
			if errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			a.finish(state, af)
			s.eventFor(id, "auth", "interactive sign-in failed: "+af.GetMessage())
			return
		}
		if res.Interval > 0 {
			interval = res.Interval
		}
		if !res.Done {
			continue
		}
		if err := s.store.SetProviderState(ctx, id, res.State); err != nil {
			a.finish(mailintakev1.AuthorizationState_AUTHORIZATION_STATE_FAILED, &mailintakev1.AuthFailure{
				Reason: mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_PROVIDER_ERROR, Message: "storing the sign-in failed: " + err.Error()})
			return
		}
		a.finish(mailintakev1.AuthorizationState_AUTHORIZATION_STATE_COMPLETED, nil)
		s.eventFor(id, "auth", "interactive sign-in completed")
		s.plugins.Invalidate(id)
		s.Reload(ctx, id)
		return
	}
}

// Authorization returns a mailbox's interactive sign-in, or nil.
func (s *Supervisor) Authorization(mailboxID string) *mailintakev1.Authorization {
	s.authz.mu.Lock()
	a := s.authz.m[mailboxID]
	s.authz.mu.Unlock()
	if a == nil {
		return nil
	}
	return a.snapshot()
}

func (s *Supervisor) eventFor(mailboxID, kind, msg string) {
	if err := s.store.AddEvent(context.Background(), store.Event{MailboxID: mailboxID, Kind: kind, Message: msg}); err != nil {
		s.log.Warn("event log", "mailbox_id", mailboxID, "err", err)
	}
}
