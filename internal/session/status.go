package session

import (
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/pluginhost"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// status is a session's live status, in words an admin understands.
type status struct {
	mu sync.Mutex
	st mailintakev1.MailboxStatus
	// actionFailing, while set, is what the after-ack action's failure means and what to do:
	// the state of a session that is connected and delivering shows it instead of
	// MAILBOX_STATE_IDLE or MAILBOX_STATE_SYNCING.
	actionFailing string
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func (s *status) set(state mailintakev1.MailboxState, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setLocked(state, msg)
}

func (s *status) setLocked(state mailintakev1.MailboxState, msg string) {
	if s.actionFailing != "" && (state == mailintakev1.MailboxState_MAILBOX_STATE_IDLE || state == mailintakev1.MailboxState_MAILBOX_STATE_SYNCING) {
		state, msg = mailintakev1.MailboxState_MAILBOX_STATE_AFTER_ACK_FAILING, s.actionFailing
	}
	if s.st.State != state {
		s.st.StateTime = timestamppb.Now()
	}
	s.st.State = state
	s.st.Message = msg
	if state != mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED && state != mailintakev1.MailboxState_MAILBOX_STATE_AWAITING_AUTHORIZATION {
		s.st.AuthFailure = nil
	}
	if state == mailintakev1.MailboxState_MAILBOX_STATE_IDLE || state == mailintakev1.MailboxState_MAILBOX_STATE_SYNCING {
		s.st.NextRetryTime = nil
	}
}

func (s *status) fail(state mailintakev1.MailboxState, msg string, err error, retry time.Time, af *mailintakev1.AuthFailure) {
	s.set(state, msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.st.LastError = err.Error()
		s.st.LastErrorTime = timestamppb.Now()
	}
	s.st.NextRetryTime = ts(retry)
	s.st.AuthFailure = af
}

// afterAck records the outcome of an after-ack action: err nil clears a failure, otherwise the
// failure is the session's state (with what to do, in advice) and its last error until an action
// succeeds.
func (s *status) afterAck(err error, advice string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		if s.actionFailing != "" {
			s.actionFailing = ""
			if s.st.State == mailintakev1.MailboxState_MAILBOX_STATE_AFTER_ACK_FAILING {
				s.setLocked(mailintakev1.MailboxState_MAILBOX_STATE_SYNCING, "synchronising")
			}
		}
		return
	}
	s.actionFailing = advice
	s.st.LastError = err.Error()
	s.st.LastErrorTime = timestamppb.Now()
	if s.st.State == mailintakev1.MailboxState_MAILBOX_STATE_IDLE || s.st.State == mailintakev1.MailboxState_MAILBOX_STATE_SYNCING {
		s.setLocked(s.st.State, s.st.Message)
	}
}

// warn adds a standing warning (once).
func (s *status) warn(w string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, have := range s.st.Warnings {
		if have == w {
			return
		}
	}
	s.st.Warnings = append(s.st.Warnings, w)
}

// unwarn withdraws a standing warning that no longer holds.
func (s *status) unwarn(w string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Warnings = slices.DeleteFunc(s.st.Warnings, func(have string) bool { return have == w })
}

func (s *status) synced() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.LastSyncTime = timestamppb.Now()
}

// token records the health of the credential a connection signed in with.
func (s *status) token(h pluginhost.Health) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.Expiry.IsZero() && h.Token == nil {
		s.st.TokenHealth = nil
		return
	}
	th := &mailintakev1.TokenHealth{AccessTokenExpireTime: ts(h.Expiry), LastRefreshTime: ts(h.Issued)}
	if h.Token != nil {
		th.StateRotateTime = ts(h.Token.RefreshTokenIssued)
		th.Warnings = h.Token.Warnings
	}
	s.st.TokenHealth = th
}

func (s *status) snapshot() *mailintakev1.MailboxStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.CloneOf(&s.st)
}
