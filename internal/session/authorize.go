package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/plugins/authplugin"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// authorizations are the pollers of interactive sign-ins this process runs, by mailbox. The
// sign-ins themselves live in the store (store.PendingAuthorization), so a restart or a failover
// does not abandon them: whichever process runs the mailbox's session polls.
type authorizations struct {
	mu sync.Mutex
	m  map[string]*poller
}

// poller is one running poll of a sign-in.
type poller struct{ cancel context.CancelFunc }

// BeginAuthorization starts an interactive sign-in (e.g. a device code) for a mailbox and stores
// it; the process that runs the mailbox's session (this one, or its owner, woken by the API) polls
// the provider at the interval the identity platform asks for. When the user has signed in, the
// provider's new state is stored and the mailbox's session starts over.
func (s *Supervisor) BeginAuthorization(ctx context.Context, mb *store.Mailbox) (*mailintakev1.Authorization, error) {
	id := mb.Spec.GetId()
	acct := Account(mb.Spec, mb.RevealedSecrets())
	res, err := s.plugins.BeginAuthorization(ctx, mb.Spec.GetAuthProvider(), acct)
	if err != nil {
		return nil, err
	}
	pb := &mailintakev1.Authorization{
		MailboxId: id, State: mailintakev1.AuthorizationState_AUTHORIZATION_STATE_PENDING,
		VerificationUri: res.VerificationURI, UserCode: res.UserCode, Message: res.Message,
		ExpireTime: ts(res.Expiry), Interval: durationpb.New(res.Interval),
	}
	if pb.ExpireTime == nil {
		pb.ExpireTime = ts(time.Now().Add(15 * time.Minute))
	}
	s.stopAuthorization(id) // a sign-in started again replaces the one in progress
	if err := s.saveAuthorization(ctx, pb, res.Handle); err != nil {
		return nil, fmt.Errorf("storing the sign-in: %w", err)
	}
	s.ResumeAuthorization(ctx, id)
	return pb, nil
}

func (s *Supervisor) saveAuthorization(ctx context.Context, pb *mailintakev1.Authorization, handle []byte) error {
	b, err := proto.Marshal(pb)
	if err != nil {
		return err
	}
	return s.store.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: pb.GetMailboxId(), State: b, Handle: string(handle)})
}

// Authorization returns a mailbox's interactive sign-in, nil when there is none.
func (s *Supervisor) Authorization(ctx context.Context, mailboxID string) (*mailintakev1.Authorization, error) {
	pa, err := s.store.GetAuthorization(ctx, mailboxID)
	if err != nil || pa == nil {
		return nil, err
	}
	pb := &mailintakev1.Authorization{}
	if err := proto.Unmarshal(pa.State, pb); err != nil {
		return nil, fmt.Errorf("the stored sign-in of mailbox %s: %w", mailboxID, err)
	}
	return pb, nil
}

// ResumeAuthorization starts polling a mailbox's pending sign-in if this process runs the
// mailbox and no poller runs yet (after BeginAuthorization, a restart, a takeover).
func (s *Supervisor) ResumeAuthorization(ctx context.Context, id string) {
	s.mu.Lock()
	base := s.ctx
	lease, owned := s.owned[id]
	runs := base != nil && (!s.opts.Clustered || owned)
	s.mu.Unlock()
	if !runs {
		return
	}
	s.authz.mu.Lock()
	if s.authz.m == nil {
		s.authz.m = map[string]*poller{}
	}
	if _, ok := s.authz.m[id]; ok {
		s.authz.mu.Unlock()
		return
	}
	pctx, cancel := context.WithCancel(base)
	if s.opts.Clustered {
		pctx = store.WithLease(pctx, lease)
	}
	p := &poller{cancel: cancel}
	s.authz.m[id] = p
	s.authz.mu.Unlock()

	pa, err := s.store.GetAuthorization(ctx, id)
	var mb *store.Mailbox
	if err == nil && pa != nil {
		mb, err = s.store.GetMailbox(ctx, id)
	}
	pb := &mailintakev1.Authorization{}
	if err == nil && pa != nil {
		err = proto.Unmarshal(pa.State, pb)
	}
	if err != nil || pa == nil || pb.GetState() != mailintakev1.AuthorizationState_AUTHORIZATION_STATE_PENDING {
		if err != nil {
			s.log.Warn("resuming an interactive sign-in", "mailbox_id", id, "err", err)
		}
		s.dropPoller(id, p)
		return
	}
	if sess := s.session(id); sess != nil {
		sess.status.set(mailintakev1.MailboxState_MAILBOX_STATE_AWAITING_AUTHORIZATION, pb.GetMessage())
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.dropPoller(id, p)
		s.pollAuthorization(pctx, mb, pb, []byte(pa.Handle))
	}()
}

// dropPoller forgets a poller (if it is still the mailbox's) and cancels it.
func (s *Supervisor) dropPoller(id string, p *poller) {
	p.cancel()
	s.authz.mu.Lock()
	defer s.authz.mu.Unlock()
	if s.authz.m[id] == p {
		delete(s.authz.m, id)
	}
}

// stopAuthorization stops this process's poller of a mailbox's sign-in (the sign-in stays stored,
// for the next owner).
func (s *Supervisor) stopAuthorization(id string) {
	s.authz.mu.Lock()
	p, ok := s.authz.m[id]
	delete(s.authz.m, id)
	s.authz.mu.Unlock()
	if ok {
		p.cancel()
	}
}

func (s *Supervisor) session(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

func (s *Supervisor) pollAuthorization(ctx context.Context, mb *store.Mailbox, pb *mailintakev1.Authorization, handle []byte) {
	id := mb.Spec.GetId()
	acct := Account(mb.Spec, mb.RevealedSecrets())
	interval := max(pb.GetInterval().AsDuration(), time.Second)
	deadline := pb.GetExpireTime().AsTime()
	finish := func(state mailintakev1.AuthorizationState, failure *mailintakev1.AuthFailure) {
		pb.State, pb.Failure = state, failure
		if err := s.saveAuthorization(ctx, pb, handle); err != nil {
			s.log.Warn("storing the sign-in's outcome", "mailbox_id", id, "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		if time.Now().After(deadline) {
			finish(mailintakev1.AuthorizationState_AUTHORIZATION_STATE_EXPIRED, &mailintakev1.AuthFailure{
				Reason: mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_AUTHORIZATION_REQUIRED, Message: "the code expired before the sign-in",
				Action: "Run mailintake mailbox authorize again and sign in within the time shown."})
			s.eventFor(ctx, id, "auth", "interactive sign-in expired")
			return
		}
		// The mailbox as it is now: a secret saved meanwhile (Google's pasted redirect address,
		// authorization_response) reaches the provider at the next poll, on any replica.
		if cur, err := s.store.GetMailbox(ctx, id); err == nil {
			acct = Account(cur.Spec, cur.RevealedSecrets())
		}
		res, err := s.plugins.PollAuthorization(ctx, mb.Spec.GetAuthProvider(), acct, handle)
		if e, ok := authplugin.AsError(err); ok && e.Reason == authplugin.ReasonAuthorizationPending {
			if e.RetryAfter > 0 {
				interval += e.RetryAfter
				pb.Interval = durationpb.New(interval)
				if err := s.saveAuthorization(ctx, pb, handle); err != nil && ctx.Err() == nil {
					s.log.Warn("storing the sign-in's interval", "mailbox_id", id, "err", err)
				}
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, store.ErrFenced) {
				if ctx.Err() != nil || errors.Is(err, store.ErrFenced) {
					return
				}
				continue
			}
			af := authFailure(err)
			state := mailintakev1.AuthorizationState_AUTHORIZATION_STATE_FAILED
			if e, ok := authplugin.AsError(err); ok && e.Reason == authplugin.ReasonAuthorizationExpired {
				state = mailintakev1.AuthorizationState_AUTHORIZATION_STATE_EXPIRED
			}
			finish(state, af)
			s.eventFor(ctx, id, "auth", "interactive sign-in failed: "+af.GetMessage())
			return
		}
		if res.Interval > 0 {
			interval = res.Interval
		}
		if !res.Done {
			continue
		}
		if err := s.store.SetProviderState(ctx, id, res.State); err != nil {
			if errors.Is(err, store.ErrFenced) || ctx.Err() != nil {
				return // the next owner polls again (the code stays valid until it expires)
			}
			finish(mailintakev1.AuthorizationState_AUTHORIZATION_STATE_FAILED, &mailintakev1.AuthFailure{
				Reason: mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_PROVIDER_ERROR, Message: "storing the sign-in failed: " + err.Error()})
			return
		}
		finish(mailintakev1.AuthorizationState_AUTHORIZATION_STATE_COMPLETED, nil)
		s.eventFor(ctx, id, "auth", "interactive sign-in completed")
		s.plugins.Invalidate(id)
		go s.Reload(context.WithoutCancel(ctx), id) // Reload stops this poller's session: not from within it
		return
	}
}

func (s *Supervisor) eventFor(ctx context.Context, mailboxID, kind, msg string) {
	if err := s.store.AddEvent(context.WithoutCancel(ctx), store.Event{MailboxID: mailboxID, Kind: kind, Message: msg}); err != nil {
		s.log.Warn("event log", "mailbox_id", mailboxID, "err", err)
	}
}
