package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"
)

// Conn is a POP3 connection: greeted, past STLS, its capabilities known. It is not safe for
// concurrent use, except Close, which may be called from another goroutine to abort.
//
// A connection that fails in a way that leaves its state unknown (a timeout, a protocol
// violation, a broken connection, a cancelled context) is closed at once, and every later
// command answers ErrClosed: POP3 has no way to resynchronise, and a hostile server must not
// get a second chance at a confused client. A -ERR answer leaves it usable.
type Conn struct {
	target Target
	raw    net.Conn          // the TCP connection under everything (TLS included)
	r      *reader           // reads raw, or TLS over it
	w      *textproto.Writer // writes the same
	report func(Step)

	greeting string
	caps     Capabilities
	tls      *tls.ConnectionState
	authed   bool
	marked   []int // messages marked with Dele since the login or the last Rset

	err    error       // why the connection can carry no more commands
	closed atomic.Bool // Close was called (possibly from another goroutine)
}

// Capabilities returns what the server announced with CAPA (after STLS, the second answer).
func (c *Conn) Capabilities() Capabilities { return c.caps }

// Greeting returns the text of the server's greeting (after +OK).
func (c *Conn) Greeting() string { return c.greeting }

// TLS returns the connection's TLS state, false when it is not encrypted.
func (c *Conn) TLS() (tls.ConnectionState, bool) {
	if c.tls == nil {
		return tls.ConnectionState{}, false
	}
	return *c.tls, true
}

// Usable reports whether the connection can carry another command: it was not closed and no
// failure left it in an unknown state. Like the commands, it is not for use while another
// goroutine runs one.
func (c *Conn) Usable() bool { return c.err == nil && !c.closed.Load() }

// Close drops the connection without QUIT: the messages marked with Dele are not deleted
// (RFC 1939 deletes only in the UPDATE state that a clean QUIT enters). It is safe to call from
// another goroutine to abort a command, and more than once.
func (c *Conn) Close() error {
	c.closed.Store(true)
	return c.raw.Close()
}

// fail records why the connection can carry no more commands and closes it. TLS's
// close_notify is not sent: the server may have stopped reading.
func (c *Conn) fail(err error) {
	if c.err == nil {
		c.err = err
	}
	c.raw.Close()
}

// run runs one command's exchange fn under a deadline of timeout, and ends it early if ctx
// ends. The deadline bounds the whole answer, so a server that stalls or trickles is cut off.
// Errors that leave the connection's state unknown close it (see Conn).
func (c *Conn) run(ctx context.Context, name string, timeout time.Duration, fn func() error) error {
	if !c.Usable() {
		return c.closedError(name)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("POP3 %s not sent: %w", name, err)
	}
	if name != "greeting" && c.target.Allow != nil && !c.target.Allow() {
		return fmt.Errorf("POP3 %s: %w", name, ErrNotAllowed)
	}
	c.raw.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { c.raw.SetDeadline(time.Unix(1, 0)) })
	err := fn()
	interrupted := !stop()
	if err == nil || usable(err) {
		if c.r.pending() {
			err = &ProtocolError{Problem: errBufferedData}
		} else if !interrupted {
			c.raw.SetDeadline(time.Time{})
			return err
		} else {
			// It finished, but the context's end spoilt the connection's deadline meanwhile.
			c.fail(ctx.Err())
			return err
		}
	}
	c.fail(err)
	if ctx.Err() != nil {
		return fmt.Errorf("POP3 %s: %w; the connection was closed", name, ctx.Err())
	}
	var pe *ProtocolError
	var tl *TooLargeError
	var we *writeError
	var ne net.Error
	switch {
	case errors.As(err, &we):
		return fmt.Errorf("POP3 %s: %w; the connection was closed", name, we)
	case errors.As(err, &pe):
		if pe.Command == "" {
			pe.Command = name
		}
		return pe
	case errors.As(err, &tl):
		tl.Closed = true
		return tl
	case errors.As(err, &ne) && ne.Timeout():
		return &TimeoutError{Command: name, After: timeout}
	case c.closed.Load():
		return fmt.Errorf("POP3 %s: %w", name, ErrClosed)
	}
	return &ConnError{Command: name, Err: err}
}

// usable reports whether an error is a complete answer that leaves the connection usable.
func usable(err error) bool {
	var se *ServerError
	var ae *AuthError
	var tl *TooLargeError
	return errors.As(err, &se) || errors.As(err, &ae) || errors.As(err, &tl) && !tl.Closed
}

// closedError is the error of a command on a closed connection.
func (c *Conn) closedError(name string) error {
	if c.err != nil && !errors.Is(c.err, ErrClosed) {
		return fmt.Errorf("POP3 %s not sent: %w (it failed earlier: %v)", name, ErrClosed, c.err)
	}
	return fmt.Errorf("POP3 %s not sent: %w", name, ErrClosed)
}

// send writes a command line. RFC 2449 limits command lines to 255 octets with the CRLF.
func (c *Conn) send(line string) error {
	if len(line)+2 > maxCommandLine {
		return &lineTooLong{n: len(line) + 2}
	}
	return c.sendRaw(line)
}

// sendRaw writes a line without the command limit (a SASL response).
func (c *Conn) sendRaw(line string) error {
	if strings.ContainsAny(line, "\r\n\x00") {
		return errors.New("a command argument holds a line break or NUL")
	}
	return c.w.PrintfLine("%s", line)
}

// lineTooLong is a command the client would not send.
type lineTooLong struct{ n int }

func (e *lineTooLong) Error() string {
	return fmt.Sprintf("the command would be %d octets, over POP3's limit of %d (RFC 2449)", e.n, maxCommandLine)
}

// command sends a command and reads its status line.
func (c *Conn) command(line string) (status, error) {
	if err := c.send(line); err != nil {
		return status{}, err
	}
	return c.readStatus()
}

// readStatus reads a status line.
func (c *Conn) readStatus() (status, error) {
	line, err := c.r.line()
	if err != nil {
		return status{}, err
	}
	return parseStatus(line)
}

// simple runs a command with a one-line answer and returns its text; -ERR is a *ServerError.
func (c *Conn) simple(ctx context.Context, name, line string) (string, error) {
	var text string
	err := c.run(ctx, name, c.target.CommandTimeout, func() error {
		st, err := c.command(line)
		if err != nil {
			return err
		}
		if !st.ok {
			return &ServerError{Command: name, Code: st.code, Text: st.text}
		}
		text = st.text
		return nil
	})
	return text, err
}
