package session

import (
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
