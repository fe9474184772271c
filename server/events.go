package server

import (
	"context"

	"github.com/mailintake/mailintake/internal/store"
)

// addEvent writes to a mailbox's event log; a failure is logged, not returned (the log is
// diagnostic).
func (s *Server) addEvent(ctx context.Context, mailboxID, kind, msg string) {
	if err := s.store.AddEvent(ctx, store.Event{MailboxID: mailboxID, Kind: kind, Message: msg, Time: s.now()}); err != nil {
		s.log.WarnContext(ctx, "event log", "mailbox_id", mailboxID, "err", err)
	}
}
