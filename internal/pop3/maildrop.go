package pop3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// errNotLoggedIn is the error of a maildrop command before Authenticate succeeded.
var errNotLoggedIn = errors.New("not logged in: the maildrop is available after Authenticate")

// ready checks that a maildrop command may be sent.
func (c *Conn) ready(name string, n int) error {
	if !c.authed {
		return fmt.Errorf("POP3 %s not sent: %w", name, errNotLoggedIn)
	}
	if n < 0 {
		return fmt.Errorf("POP3 %s not sent: %d is not a message number", name, n)
	}
	return nil
}

// Stat returns the number of messages in the maildrop and their total size in octets (not
// counting messages marked with Dele), and reports StepMaildrop.
func (c *Conn) Stat(ctx context.Context) (count int, size int64, err error) {
	if err := c.ready("STAT", 0); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	err = c.run(ctx, "STAT", c.target.CommandTimeout, func() error {
		st, err := c.command("STAT")
		if err != nil {
			return err
		}
		if !st.ok {
			return &ServerError{Command: "STAT", Code: st.code, Text: st.text}
		}
		count, size, err = parseStat(st.text)
		return err
	})
	step := Step{Kind: StepMaildrop, Duration: time.Since(start), Err: err}
	if err == nil {
		step.Detail = fmt.Sprintf("%d messages, %d octets", count, size)
	}
	c.report(step)
	return count, size, err
}

// ListEntry is one line of LIST: a message number (valid in this session only) and its size
// in octets as the server counts it.
type ListEntry struct {
	Msg  int
	Size int64
}

// List returns every message's number and size (LIST), in message number order. Sizes are
// the server's word: Retr's limit, not this size, bounds what is read.
func (c *Conn) List(ctx context.Context) ([]ListEntry, error) {
	if err := c.ready("LIST", 0); err != nil {
		return nil, err
	}
	var out []ListEntry
	err := c.run(ctx, "LIST", c.target.TransferTimeout, func() error {
		st, err := c.command("LIST")
		if err != nil {
			return err
		}
		if !st.ok {
			return &ServerError{Command: "LIST", Code: st.code, Text: st.text}
		}
		return c.r.list(c.target.Limits.MaxMessages, func(line []byte) error {
			e, err := parseListLine(line)
			if err != nil {
				return err
			}
			if len(out) > 0 && e.Msg <= out[len(out)-1].Msg {
				return &ProtocolError{Problem: fmt.Sprintf("LIST gave message %d after message %d", e.Msg, out[len(out)-1].Msg)}
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// UIDEntry is one line of UIDL: a message number (valid in this session only) and its
// unique-id (stable across sessions, if the server keeps its promise).
type UIDEntry struct {
	Msg int
	UID string
}

// UIDList is the answer to UIDL.
type UIDList struct {
	// Entries are every message's number and unique-id, in message number order.
	Entries []UIDEntry
	// Duplicates maps each unique-id that more than one message carries to their message
	// numbers, nil when every unique-id is unique. Such messages cannot be told apart across
	// sessions (a server bug, or a mailbox restored from a backup): they are reported here
	// rather than hidden, and ByUID does not answer for them.
	Duplicates map[string][]int
	byUID      map[string]int
}

// ByUID returns the message number of a unique-id in this session; false when no message
// carries it, or more than one does (see Duplicates).
func (l *UIDList) ByUID(uid string) (int, bool) {
	n, ok := l.byUID[uid]
	return n, ok && l.Duplicates[uid] == nil
}

// UIDL returns every message's unique-id (UIDL, RFC 1939). A server without UIDL answers
// -ERR (*ServerError); Capabilities().Has("UIDL") tells beforehand.
func (c *Conn) UIDL(ctx context.Context) (*UIDList, error) {
	if err := c.ready("UIDL", 0); err != nil {
		return nil, err
	}
	l := &UIDList{byUID: map[string]int{}}
	err := c.run(ctx, "UIDL", c.target.TransferTimeout, func() error {
		st, err := c.command("UIDL")
		if err != nil {
			return err
		}
		if !st.ok {
			return &ServerError{Command: "UIDL", Code: st.code, Text: st.text}
		}
		return c.r.list(c.target.Limits.MaxMessages, func(line []byte) error {
			e, err := parseUIDLLine(line)
			if err != nil {
				return err
			}
			if n := len(l.Entries); n > 0 && e.Msg <= l.Entries[n-1].Msg {
				return &ProtocolError{Problem: fmt.Sprintf("UIDL gave message %d after message %d", e.Msg, l.Entries[n-1].Msg)}
			}
			l.Entries = append(l.Entries, e)
			if first, dup := l.byUID[e.UID]; dup {
				if l.Duplicates == nil {
					l.Duplicates = map[string][]int{}
				}
				if l.Duplicates[e.UID] == nil {
					l.Duplicates[e.UID] = []int{first}
				}
				l.Duplicates[e.UID] = append(l.Duplicates[e.UID], e.Msg)
				return nil
			}
			l.byUID[e.UID] = e.Msg
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Message is a message read by Retr or RetrTo.
type Message struct {
	// Msg is its number in this session.
	Msg int
	// Raw is the message as the server stores it (CRLF line endings as sent), dot-stuffing
	// undone; nil from RetrTo.
	Raw []byte
	// Size is its size in bytes.
	Size int64
	// Announced is the size the server announced on its +OK line ("+OK 1234 octets"), -1
	// when it did not.
	Announced int64
	// Unstuffed counts lines the server sent beginning with a single "." that it should have
	// doubled: the dot was removed (RFC 1939), so those lines may have lost a leading dot.
	Unstuffed int
}

// headBytes is how much of an oversized message TooLargeError keeps.
const headBytes = 64 << 10

// Retr reads message n (RETR) into memory. A message over limit bytes is refused with a
// *TooLargeError: its first bytes are kept (Head), the rest is read and thrown away while it
// stays within Limits.MaxDiscard bytes (the connection, and the deletions marked on it,
// survive), beyond that the connection is closed. No more than limit bytes are ever held,
// whatever size the server announced or listed.
func (c *Conn) Retr(ctx context.Context, n int, limit int64) (*Message, error) {
	buf := &boundedBuffer{max: limit}
	grow := func(announced int64) {
		if announced > 0 {
			buf.b = make([]byte, 0, min(announced, limit))
		}
	}
	m, err := c.retrieve(ctx, "RETR", n, buf, limit, grow)
	var tl *TooLargeError
	if errors.As(err, &tl) {
		tl.Head = bytes.Clone(buf.b[:min(len(buf.b), headBytes)])
	}
	if err != nil {
		return nil, err
	}
	m.Raw = buf.b
	return &m, nil
}

// boundedBuffer collects a message whose writer never gives it more than max bytes: it grows
// by doubling, but never past max, so a server that announces a small size and sends up to the
// limit costs no more than the limit (bytes.Buffer could reach twice it).
type boundedBuffer struct {
	b   []byte
	max int64
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	if need := len(w.b) + len(p); need > cap(w.b) {
		nb := make([]byte, len(w.b), max(need, int(min(int64(max(2*cap(w.b), 4096)), w.max))))
		copy(nb, w.b)
		w.b = nb
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

// RetrTo streams message n (RETR) to w as it arrives, without holding it: at most limit
// bytes go to w, and a longer message is a *TooLargeError as for Retr (w then holds its first
// limit bytes). An error from w ends the read and closes the connection.
func (c *Conn) RetrTo(ctx context.Context, n int, w io.Writer, limit int64) (Message, error) {
	return c.retrieve(ctx, "RETR", n, w, limit, nil)
}

// Top returns message n's header and its first lines of body (TOP, RFC 1939), at most
// Limits.MaxTop bytes (more is a *TooLargeError). Capabilities().Has("TOP") tells whether the
// server has it.
func (c *Conn) Top(ctx context.Context, n, lines int) ([]byte, error) {
	if lines < 0 {
		return nil, fmt.Errorf("POP3 TOP not sent: %d lines", lines)
	}
	buf := &boundedBuffer{max: c.target.Limits.MaxTop}
	_, err := c.retrieve(ctx, "TOP", n, buf, buf.max, nil, strconv.Itoa(lines))
	if err != nil {
		return nil, err
	}
	return buf.b, nil
}

// retrieve sends RETR or TOP and reads the message into w.
func (c *Conn) retrieve(ctx context.Context, name string, n int, w io.Writer, limit int64, grow func(int64), args ...string) (Message, error) {
	m := Message{Msg: n, Announced: -1}
	if err := c.ready(name, n); err != nil {
		return m, err
	}
	if n == 0 {
		return m, fmt.Errorf("POP3 %s not sent: message numbers start at 1", name)
	}
	if limit < 0 {
		limit = 0
	}
	line := name + " " + strconv.Itoa(n)
	for _, a := range args {
		line += " " + a
	}
	err := c.run(ctx, name, c.target.TransferTimeout, func() error {
		st, err := c.command(line)
		if err != nil {
			return err
		}
		if !st.ok {
			return &ServerError{Command: name, Code: st.code, Text: st.text}
		}
		if name == "RETR" {
			m.Announced = parseAnnounced(st.text)
		}
		if grow != nil {
			grow(m.Announced)
		}
		res, err := c.r.body(w, limit, c.target.Limits.MaxDiscard)
		m.Size, m.Unstuffed = res.Size, res.Unstuffed
		tooLarge := &TooLargeError{Command: name, Msg: n, Limit: limit, Size: res.Size, Announced: m.Announced}
		switch {
		case errors.Is(err, errDiscardExceeded):
			tooLarge.Closed = true
			return tooLarge
		case err != nil:
			return err
		case res.Over:
			return tooLarge
		}
		return nil
	})
	return m, err
}
