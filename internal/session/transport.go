package session

import (
	"context"

	"github.com/mailintake/mailintake/internal/imapconn"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// transport is one mail protocol's side of a mailbox's session: how the mailbox is reached and
// read. The session keeps the rest, whatever the protocol: the run loop (reconnects with
// backoff, refused logins not retried in a tight loop, provider failures), the status and the
// event log, and the delivery logic of deliverer (the checkpoint in sync_state, acks and their
// after-ack actions marked applied, quarantine, duplicate_of, the broker's demand and offers).
// A transport gives every message a UID under a UIDVALIDITY (IMAP's own; POP3's from its
// unique-id checkpoint, store.MapUIDLs), so the message id mailbox:uidvalidity:uid, the acks
// and the quarantine are the same for every protocol.
//
// IMAP (imapTransport) keeps its connection between rounds and waits with IDLE; POP3
// (pop3Transport, pop3.go) connects for each round and waits for its poll interval or the
// broker. A third protocol (Microsoft Graph) adds a file with its transport and a case in
// newTransport.
type transport interface {
	// serve connects (force: with a credential the provider issues afresh), runs a round
	// (after-ack actions, what is new, delivery within the consumers' demand) and parks the
	// session until its next round: errParked once the wait is armed. Any other error ends
	// the connection and the run loop decides when to try again; errForceRefresh asks for one
	// more attempt at once with a fresh credential (a cached one the server refused).
	serve(ctx context.Context, force bool) error
	// refused reports whether err is the mail server refusing the login (not the provider),
	// with what to tell the admin.
	refused(err error) (*mailintakev1.AuthFailure, bool)
}

// newTransport returns the transport of the session's mailbox.
func newTransport(s *session) transport {
	if s.mb.Spec.GetProtocol() == mailintakev1.Protocol_PROTOCOL_POP3 {
		return &pop3Transport{s: s}
	}
	return imapTransport{s: s}
}

// imapTransport is IMAP: session.serve and serveOn, sync.go's deliverer.
type imapTransport struct{ s *session }

func (t imapTransport) serve(ctx context.Context, force bool) error { return t.s.serve(ctx, force) }

func (imapTransport) refused(err error) (*mailintakev1.AuthFailure, bool) {
	if !imapconn.IsAuthError(err) {
		return nil, false
	}
	return refusedLogin(err), true
}
