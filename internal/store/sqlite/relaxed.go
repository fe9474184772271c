package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
)

// The database runs with synchronous=FULL: a write transaction returns once the WAL is on disk,
// so what the server answered survives a power failure of the host (a crash of the process
// loses nothing in either mode). Four writes of every sync round are relaxed to
// synchronous=NORMAL, committed to the WAL without waiting for the disk: moving the checkpoint
// forward (SaveSyncState when only acked_through grows), marking after_ack applied
// (MarkApplied), the copy claims (ClaimCopies) and the event log. A power failure may roll them
// back, and only them: SQLite's WAL keeps commits in order and every later FULL commit makes the
// earlier ones durable with it, so what survives is the state of a moment before the failure.
// In that state the acknowledgements (RecordAcks, FULL) are still there, so nothing
// acknowledged is delivered again; an after_ack action is applied again (moving or flagging a
// message already moved or flagged changes nothing; a delete of a message already gone is a
// no-op); a copy claim lost can make a later copy of the same mail the first (for copies not yet
// acknowledged, duplicate_of may then name the other copy at redelivery); a few events are
// missing. Waiting for the disk on those four cost one fsync each per round on the one writer
// connection every mailbox shares: with 200 mailboxes receiving mail at once, fsync was about a
// fifteenth of the server's CPU (make bench's many-mailbox profile), and on a disk where an
// fsync takes milliseconds it caps how many rounds per second all mailboxes together get.

// relaxedTx runs fn in a write transaction committed with synchronous=NORMAL, then puts the
// writer connection back to FULL. If that fails the connection is discarded, so no later write
// runs relaxed by mistake: the pool opens a new one from the DSN (FULL). The wait for the
// connection follows ctx; fn's statements run under the detached context it is given
// (detach.go).
func (s *Store) relaxedTx(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
	c, err := s.w.Conn(ctx)
	if err != nil {
		return wrap(err)
	}
	defer c.Close()
	run, err := detach(ctx)
	if err != nil {
		return err
	}
	// SQLite refuses to change the level inside a transaction: it is set around it.
	if _, err := c.ExecContext(run, `PRAGMA synchronous = NORMAL`); err != nil {
		s.discard(c)
		return wrap(err)
	}
	// Put back even if fn panics, so the pool never hands out a relaxed connection.
	defer func() {
		if _, rerr := c.ExecContext(run, `PRAGMA synchronous = FULL`); rerr != nil {
			s.discard(c)
		}
	}()
	if err := runTx(run, c, fn); err != nil {
		return err
	}
	s.relaxedCommits.Add(1)
	return nil
}

// discard makes the pool close c instead of reusing it.
func (s *Store) discard(c *sql.Conn) {
	_ = c.Raw(func(any) error { return driver.ErrBadConn })
}
