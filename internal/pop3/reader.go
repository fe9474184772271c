package pop3

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// readBufferSize is the reader's buffer: a line longer than the buffer can never be a valid
// response line, so lines are bounded by it without holding more.
const readBufferSize = 32 << 10

// reader reads a server's answers within bounds: no response line longer than maxLine, no
// list longer than its bound, no message body held beyond its limit. It works on any
// bufio.Reader, so the fuzz targets drive it without a connection. Its errors are
// *ProtocolError (Command empty: the Conn fills it in), or the reader's own.
type reader struct {
	br      *bufio.Reader
	maxLine int
}

// newReader returns a reader of r whose buffer can hold a line of maxLine bytes.
func newReader(r io.Reader, maxLine int) *reader {
	return &reader{br: bufio.NewReaderSize(r, max(readBufferSize, maxLine+2)), maxLine: maxLine}
}

// errBufferedData is the problem of a server that sent more than the answer.
const errBufferedData = "the server sent more than the answer (a line of a message that was not dot-stuffed, or data nobody asked for)"

// pending reports whether bytes the server sent wait unread. POP3 answers one command at a
// time and sends nothing unasked, so after a whole answer there must be none: a message whose
// lone "." line was not dot-stuffed ends its response early and leaves its rest here, and
// data after +OK to STLS is an injection attempt. It sees what has arrived with the answer
// (a server writes a message in one stream); bytes that arrive later are read as the next
// command's answer, where they are most likely not a status line.
func (r *reader) pending() bool { return r.br.Buffered() > 0 }

// line reads one response line without its line ending (CRLF, or a bare LF, which is
// tolerated). The slice is valid until the next read.
func (r *reader) line() ([]byte, error) {
	b, err := r.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, &ProtocolError{Problem: fmt.Sprintf("a line longer than %d bytes", r.maxLine)}
	case errors.Is(err, io.EOF) && len(b) > 0:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	}
	b = trimEOL(b)
	if len(b) > r.maxLine {
		return nil, &ProtocolError{Problem: fmt.Sprintf("a line longer than %d bytes", r.maxLine)}
	}
	return b, nil
}

// trimEOL removes a final LF and the CR before it.
func trimEOL(b []byte) []byte {
	b = b[:len(b)-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

// list reads the lines of a multi-line answer up to its final "." line, undoing the
// dot-stuffing, and gives each to each. More than maxLines lines is a *ProtocolError.
func (r *reader) list(maxLines int, each func([]byte) error) error {
	for n := 0; ; n++ {
		b, err := r.line()
		if err != nil {
			return err
		}
		if len(b) > 0 && b[0] == '.' {
			if len(b) == 1 {
				return nil
			}
			b = b[1:]
		}
		if n >= maxLines {
			return &ProtocolError{Problem: fmt.Sprintf("a list longer than %d lines", maxLines)}
		}
		if err := each(b); err != nil {
			return err
		}
	}
}

// bodyResult is what body read.
type bodyResult struct {
	// Written is what went to the writer: at most the limit.
	Written int64
	// Size is the body's size as far as it was read, dot-stuffing undone.
	Size int64
	// Over says the body was longer than the limit.
	Over bool
	// Unstuffed counts lines that began with a single "." followed by more: a server that
	// did not dot-stuff them. The dot was removed, as RFC 1939 tells a client to.
	Unstuffed int
}

// errDiscardExceeded ends a body over its limit that went on past what may be discarded.
var errDiscardExceeded = errors.New("message too long to discard")

// body copies the body of a multi-line answer (RETR, TOP) to w up to its final "." line,
// undoing the dot-stuffing and keeping the line endings as sent. Lines are not bounded (a
// message's lines may be long) but the body is: at most limit bytes go to w, the rest is read
// and thrown away while it stays within discard more bytes, and beyond that body stops with
// errDiscardExceeded. Memory stays within the reader's buffer whatever the server sends.
func (r *reader) body(w io.Writer, limit, discard int64) (bodyResult, error) {
	var res bodyResult
	atStart := true
	for {
		if atStart {
			end, err := r.dotLine(&res)
			if err != nil || end {
				return res, err
			}
		}
		chunk, err := r.br.ReadSlice('\n')
		switch {
		case err == nil:
			atStart = true
		case errors.Is(err, bufio.ErrBufferFull):
			atStart = false
		case errors.Is(err, io.EOF):
			return res, io.ErrUnexpectedEOF
		default:
			return res, err
		}
		if err := res.emit(w, chunk, limit, discard); err != nil {
			return res, err
		}
	}
}

// dotLine looks at the start of a body line: the final "." line ends the body (end true), a
// leading dot is removed.
func (r *reader) dotLine(res *bodyResult) (end bool, err error) {
	p, err := r.br.Peek(1)
	if err != nil {
		return false, unexpected(err)
	}
	if p[0] != '.' {
		return false, nil
	}
	if p, err = r.br.Peek(2); err != nil {
		return false, unexpected(err)
	}
	switch p[1] {
	case '\n':
		r.br.Discard(2)
		return true, nil
	case '\r':
		if p, err = r.br.Peek(3); err != nil {
			return false, unexpected(err)
		}
		if p[2] == '\n' {
			r.br.Discard(3)
			return true, nil
		}
		res.Unstuffed++
	case '.':
	default:
		res.Unstuffed++
	}
	r.br.Discard(1)
	return false, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// emit gives a chunk of the body to w within the limit.
func (res *bodyResult) emit(w io.Writer, chunk []byte, limit, discard int64) error {
	res.Size += int64(len(chunk))
	if !res.Over {
		room := limit - res.Written
		if int64(len(chunk)) > room {
			chunk, res.Over = chunk[:room], true
		}
		if len(chunk) > 0 {
			n, err := w.Write(chunk)
			res.Written += int64(n)
			if err != nil {
				return &writeError{err}
			}
		}
	}
	if res.Over && res.Size-limit > discard {
		return errDiscardExceeded
	}
	return nil
}

// writeError is the caller's writer failing while a body streams to it.
type writeError struct{ err error }

func (e *writeError) Error() string { return "writing the message: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }
