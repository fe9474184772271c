package pop3

import (
	"context"
	"fmt"
	"slices"
	"strconv"
)

// Dele marks message n as deleted (DELE). NOTHING IS DELETED YET: the server deletes the
// marked messages only when Quit succeeds (RFC 1939's UPDATE state). Rset unmarks them; Close,
// a failed or cancelled command, or a connection that breaks before Quit's answer leave them
// on the server. Pending lists what is marked.
func (c *Conn) Dele(ctx context.Context, n int) error {
	if err := c.ready("DELE", n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("POP3 DELE not sent: message numbers start at 1")
	}
	if _, err := c.simple(ctx, "DELE", "DELE "+strconv.Itoa(n)); err != nil {
		return err
	}
	if !slices.Contains(c.marked, n) {
		c.marked = append(c.marked, n)
	}
	return nil
}

// Pending returns the messages marked with Dele in this session, which Quit would delete.
func (c *Conn) Pending() []int { return slices.Clone(c.marked) }

// Rset unmarks every message marked with Dele (RSET).
func (c *Conn) Rset(ctx context.Context) error {
	if err := c.ready("RSET", 0); err != nil {
		return err
	}
	if _, err := c.simple(ctx, "RSET", "RSET"); err != nil {
		return err
	}
	c.marked = nil
	return nil
}

// Noop asks the server for nothing (NOOP), to keep the connection or test it.
func (c *Conn) Noop(ctx context.Context) error {
	if err := c.ready("NOOP", 0); err != nil {
		return err
	}
	_, err := c.simple(ctx, "NOOP", "NOOP")
	return err
}

// Quit ends the session (QUIT) and closes the connection in every case. After a login the
// server enters its UPDATE state and deletes the messages marked with Dele: only a nil error
// means it did, and deleted lists them (in the order they were marked). With an error none
// can be counted as deleted: a -ERR (*ServerError) says some were not removed (RFC 1939), and
// a connection that broke or timed out after QUIT was sent leaves it unknown. Either way the
// caller keeps its deletions and applies them again in its next session, found by unique-id
// (message numbers are valid for one session only); a message already gone is simply absent.
func (c *Conn) Quit(ctx context.Context) (deleted []int, err error) {
	defer c.Close()
	if _, err := c.simple(ctx, "QUIT", "QUIT"); err != nil {
		return nil, err
	}
	deleted, c.marked = c.marked, nil
	if !c.authed {
		deleted = nil
	}
	return deleted, nil
}
