package imapconn

import (
	"context"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
)

// SentFolder returns the server's name of the folder it marks \Sent (RFC 6154 SPECIAL-USE),
// "" when it marks none. A server with SPECIAL-USE is asked with LIST "" "*" RETURN
// (SPECIAL-USE); one without it is asked with a plain LIST, whose attributes some servers fill
// in anyway.
func (c *Conn) SentFolder(ctx context.Context) (string, error) {
	var opts *imap.ListOptions
	if caps := c.c.Caps(); caps.Has(imap.CapSpecialUse) || caps.Has(imap.CapIMAP4rev2) {
		opts = &imap.ListOptions{ReturnSpecialUse: true}
	}
	var name string
	err := c.guard(ctx, 0, "LIST", func() error {
		items, err := c.c.List("", "*", opts).Collect()
		for _, it := range items {
			if slices.Contains(it.Attrs, imap.MailboxAttrSent) && name == "" {
				name = it.Mailbox
			}
		}
		return err
	})
	if err != nil {
		return "", err
	}
	return name, nil
}

// Append stores a message in a folder with APPEND (RFC 3501 section 6.3.11), with the given
// flags (e.g. \Seen) and internal date (zero: the server's clock). folder is the server's name
// of the folder (as SentFolder returns it) when serverName is set, else a path with "/" between
// levels (see ServerFolder). A folder the server says is missing (NO [TRYCREATE]) is created
// and the APPEND sent once more. It returns the server's name of the folder.
func (c *Conn) Append(ctx context.Context, folder string, serverName bool, raw []byte, flags []imap.Flag, date time.Time) (string, error) {
	if !serverName {
		var err error
		if folder, err = c.ServerFolder(ctx, folder); err != nil {
			return "", err
		}
	}
	err := c.createAndRetry(ctx, folder, func() error {
		return c.guard(ctx, 0, "APPEND", func() error {
			cmd := c.c.Append(folder, int64(len(raw)), &imap.AppendOptions{Flags: flags, Time: date})
			if _, err := cmd.Write(raw); err != nil {
				cmd.Close()
				return err
			}
			if err := cmd.Close(); err != nil {
				return err
			}
			_, err := cmd.Wait()
			return err
		})
	})
	return folder, err
}
