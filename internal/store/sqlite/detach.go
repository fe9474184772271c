package sqlite

import (
	"context"
	"database/sql"
)

// The store's calls on the delivery path run their statements under a context without
// cancellation (detach). modernc.org/sqlite starts a goroutine for every statement run under a
// context that can end (to interrupt the statement when it does), and database/sql one for
// every transaction and every query: for an acknowledgement (its row and the commit), its
// after_ack mark and the token check of each API call, that was about 5,300 goroutines started,
// woken and ended per 2,000 messages (make bench, counted with a uprobe on runtime.newproc1).
// Those statements touch a few indexed rows each, which an interrupt would not cut short (a
// commit waiting for the disk is not interruptible either). What stays cancellable is the
// wait: a call gives up if its context is done before it starts, and a transaction's wait for
// the writer connection (writeTx, relaxedTx) follows the caller's context.

// detach returns ctx's values without its cancellation and deadline, or ctx's error if it is
// done already.
func detach(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

// writeTx runs fn in a write transaction committed with the database's synchronous=FULL. The
// wait for the writer connection follows ctx; fn's statements run under the detached context
// it is given.
func (s *Store) writeTx(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
	c, err := s.w.Conn(ctx)
	if err != nil {
		return wrap(err)
	}
	defer c.Close()
	run, err := detach(ctx)
	if err != nil {
		return err
	}
	return runTx(run, c, fn)
}

// runTx runs fn in a transaction on c under run, a context detach returned.
func runTx(run context.Context, c *sql.Conn, fn func(context.Context, *sql.Tx) error) error {
	tx, err := c.BeginTx(run, nil)
	if err != nil {
		return wrap(err)
	}
	defer tx.Rollback()
	if err := fn(run, tx); err != nil {
		return err
	}
	return wrap(tx.Commit())
}
