package imapconn

import (
	"context"

	"github.com/emersion/go-imap/v2/imapclient"
)

// Idling is an IDLE command the server accepted (StartIdle). Meanwhile Notify tells of the
// server's reports and of the connection's end; Stop ends the command.
type Idling struct {
	c   *Conn
	cmd *imapclient.IdleCommand
}

// StartIdle sends IDLE and returns once the server accepted it. Unlike Idle it does not wait:
// the caller learns of news with Notify, and calls Stop.
func (c *Conn) StartIdle(ctx context.Context) (*Idling, error) {
	var idle *imapclient.IdleCommand
	err := c.guard(ctx, 0, "IDLE", func() error {
		var err error
		idle, err = c.c.Idle()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Idling{c: c, cmd: idle}, nil
}

// Stop ends the IDLE command (DONE) and waits for the server's answer. An error means the
// connection is broken (or ctx ended: then ctx's error).
func (i *Idling) Stop(ctx context.Context) error {
	return i.c.guard(ctx, 0, "DONE", func() error {
		if err := i.cmd.Close(); err != nil {
			return err
		}
		return i.cmd.Wait()
	})
}
