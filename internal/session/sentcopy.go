package session

import (
	"context"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailintake/mailintake/internal/imapconn"
	"github.com/mailintake/mailintake/internal/store"
)

// DefaultSentFolder is the folder a Sent copy goes to when the mailbox names none and the server
// marks none \Sent.
const DefaultSentFolder = "Sent"

// SaveSentCopy saves a copy of a message sent as the mailbox in its Sent folder: it connects to
// the mailbox's IMAP server as the session does (the mailbox's security and CA, a credential its
// provider issues for IMAP, refused in a cluster once this replica stops trusting its leases),
// finds the folder (the mailbox's sent_folder, else the one the server marks \Sent, else
// "Sent"), and APPENDs the message flagged \Seen with the time it was sent. A missing folder is
// created. It returns the folder's name on the server (or the one it tried), on a connection of
// its own so the mailbox's session is not disturbed.
func (s *Supervisor) SaveSentCopy(ctx context.Context, mb *store.Mailbox, raw []byte, sent time.Time) (string, error) {
	spec := mb.Spec
	folder, serverName := spec.GetSentFolder(), false
	// As the session signs in; a cached credential the server refuses is replaced once.
	var conn *imapconn.Conn
	for _, force := range []bool{false, true} {
		var err error
		if conn, _, err = s.signIn(ctx, spec, mb.RevealedSecrets(), force, nil); err == nil {
			break
		}
		if force || !imapconn.IsAuthError(err) {
			return folder, err
		}
	}
	defer conn.Logout()
	if folder == "" {
		name, err := conn.SentFolder(ctx)
		if err != nil {
			return DefaultSentFolder, err
		}
		folder, serverName = name, name != ""
		if folder == "" {
			folder = DefaultSentFolder
		}
	}
	return conn.Append(ctx, folder, serverName, raw, []imap.Flag{imap.FlagSeen}, sent)
}
