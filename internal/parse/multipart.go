// Derived from go-message's textproto/multipart.go (MIT License, Copyright (c) 2016 emersion),
// itself derived from Go's mime/multipart (Copyright 2010 The Go Authors; BSD-style license).

package parse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/emersion/go-message/textproto"
)

// The multipart reader below is go-message's, with two changes. The first is how a part's end
// is found.
// go-message (like mime/multipart) searches for "\r\n--boundary" with bytes.Index, which stops
// at every line break: in a base64 body that is every 78 bytes, and the search was about a
// twentieth of the server's CPU on mail with attachments (make bench's profile). Here the search
// is for "--boundary" and then looks at the line break before it: base64 has no '-', so a whole
// base64 body is passed over by one vectorised byte search. The result is the same position,
// and everything else (what counts as a delimiter line, the preamble, LF-only mail, errors) is
// go-message's, so the parts and problems are what they were. The second is a larger buffer
// (windowSize), which changes nothing but the one case limitLine describes.

// peekBufferSize is go-message's buffer: at least 76 (a delimiter of 70 characters with its
// line break and dashes must fit), and the longest line NextPart reads before a part.
const peekBufferSize = 4096

// windowSize is this reader's buffer. A part's body is handed out at most a buffer at a time,
// and go-message's 4 KB made the decoders below work in 4 KB pieces (each with its own call
// overhead, and for base64 its own pass setup): 32 KB made the parse of make bench's corpus
// about 5% faster. NextPart still refuses a line longer than peekBufferSize, as go-message's
// ReadSlice does (see limitLine). A boundary of maxWindowedBoundary characters or more gets
// go-message's buffer: telling whether "--boundary" ends a part can then take more bytes than
// its buffer holds, and go-message decides with what it holds; its parts are kept as they were
// for such a boundary too (RFC 2046 allows 70 characters).
const (
	windowSize          = 32 << 10
	maxWindowedBoundary = 1000
)

// mpPart is one part of a multipart body: its header, and as an io.Reader its body up to the
// next delimiter, undecoded.
type mpPart struct {
	Header textproto.Header

	mr *mpReader

	n       int   // known data bytes waiting in mr.bufReader
	total   int64 // total data bytes read already
	err     error // error to return when n == 0
	readErr error // read error observed from mr.bufReader
}

// newMPReader returns a reader of the parts of a multipart body read from r, whose parts are
// delimited by boundary.
func newMPReader(r io.Reader, boundary string) *mpReader {
	return &mpReader{
		bufReader:  bufio.NewReaderSize(&stickyErrorReader{r: r}, bufferFor(boundary)),
		delimiters: newDelimiters(boundary),
	}
}

// stickyErrorReader never calls Read on its reader once an error has been seen (the reader
// below reads again after an error; io.Reader promises nothing then).
type stickyErrorReader struct {
	r   io.Reader
	err error
}

func (r *stickyErrorReader) Read(p []byte) (n int, _ error) {
	if r.err != nil {
		return 0, r.err
	}
	n, r.err = r.r.Read(p)
	return n, r.err
}

// Read reads the part's body, up to the next delimiter.
func (p *mpPart) Read(d []byte) (int, error) {
	br := p.mr.bufReader
	// Read into the buffer until there is some data to return, or a reason to stop (the
	// delimiter or a read error).
	for p.n == 0 && p.err == nil {
		peek, _ := br.Peek(br.Buffered())
		p.n, p.err = scanUntilBoundary(peek, p.mr.dashBoundary, p.mr.nlDashBoundary, p.total, p.readErr)
		if p.n == 0 && p.err == nil {
			// Make the buffered reader read more.
			_, p.readErr = br.Peek(len(peek) + 1)
			if p.readErr == io.EOF {
				p.readErr = io.ErrUnexpectedEOF
			}
		}
	}
	if p.n == 0 {
		return 0, p.err
	}
	n := min(len(d), p.n)
	n, _ = br.Read(d[:n])
	p.total += int64(n)
	p.n -= n
	if p.n == 0 {
		return n, p.err
	}
	return n, nil
}

// close reads the rest of the part's body.
func (p *mpPart) close() {
	_, _ = io.Copy(io.Discard, p)
}

// scanUntilBoundary returns how much of buf is body of the part for certain, and the error to
// return once those bytes are read. dashBoundary is "--boundary", nlDashBoundary "\r\n--boundary"
// or "\n--boundary" (the reader's line break mode); total is how much of the body was read
// before (at 0 a leading "--boundary" counts); readErr is the read error that followed buf.
func scanUntilBoundary(buf, dashBoundary, nlDashBoundary []byte, total int64, readErr error) (int, error) {
	if total == 0 {
		// At the beginning of the body, "--boundary" without a line break before it counts.
		if bytes.HasPrefix(buf, dashBoundary) {
			switch matchAfterPrefix(buf, dashBoundary, readErr) {
			case -1:
				return len(dashBoundary), nil
			case 0:
				return 0, nil
			case +1:
				return 0, io.EOF
			}
		}
		if bytes.HasPrefix(dashBoundary, buf) {
			return 0, readErr
		}
	}
	if i := indexNLDashBoundary(buf, nlDashBoundary); i >= 0 {
		switch matchAfterPrefix(buf[i:], nlDashBoundary, readErr) {
		case -1:
			return i + len(nlDashBoundary), nil
		case 0:
			return i, nil
		case +1:
			return i, io.EOF
		}
	}
	if bytes.HasPrefix(nlDashBoundary, buf) {
		return 0, readErr
	}
	// Everything before the last line break is body; from it on too, unless what follows it
	// may still become the delimiter.
	i := bytes.LastIndexByte(buf, nlDashBoundary[0])
	if i >= 0 && bytes.HasPrefix(nlDashBoundary, buf[i:]) {
		return i, nil
	}
	return len(buf), readErr
}

// indexNLDashBoundary is bytes.Index(buf, nlDashBoundary): the first "--boundary" that the line
// break (nlDashBoundary up to its dashes) precedes. It searches for the dashes first: bodies
// have line breaks on every line and, when base64, no '-' at all.
func indexNLDashBoundary(buf, nlDashBoundary []byte) int {
	nl := len(nlDashBoundary) - len(bytes.TrimLeft(nlDashBoundary, "\r\n"))
	dash := nlDashBoundary[nl:]
	for from := nl; from <= len(buf); {
		j := bytes.Index(buf[from:], dash)
		if j < 0 {
			return -1
		}
		j += from
		if bytes.Equal(buf[j-nl:j], nlDashBoundary[:nl]) {
			return j - nl
		}
		from = j + 1
	}
	return -1
}

// matchAfterPrefix tells whether buf, which begins with prefix ("--boundary", "\r\n--boundary"
// or "\n--boundary"), is a delimiter: +1 if the prefix is followed by a dash, space, tab, CR,
// LF or the end of the input; -1 if by another character ("--foobar" is not "--foo"); 0 if more
// input is needed to tell (buf is just the prefix and no read error followed).
func matchAfterPrefix(buf, prefix []byte, readErr error) int {
	if len(buf) == len(prefix) {
		if readErr != nil {
			return +1
		}
		return 0
	}
	c := buf[len(prefix)]
	if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '-' {
		return +1
	}
	return -1
}

// mpReader iterates over the parts of a multipart body, reading its input as needed.
type mpReader struct {
	bufReader   *bufio.Reader
	currentPart *mpPart
	delimiters
}

// delimiters tells the delimiter lines of one multipart body apart, as go-message does.
type delimiters struct {
	partsRead int

	nl               []byte // "\r\n" or "\n" (set after seeing the first delimiter line)
	nlDashBoundary   []byte // nl + "--boundary"
	dashBoundaryDash []byte // "--boundary--"
	dashBoundary     []byte // "--boundary"
}

func newDelimiters(boundary string) delimiters {
	b := []byte("\r\n--" + boundary + "--")
	return delimiters{nl: b[:2], nlDashBoundary: b[:len(b)-2], dashBoundaryDash: b[2:], dashBoundary: b[2 : len(b)-2]}
}

// NextPart returns the next part, io.EOF after the last.
func (r *mpReader) NextPart() (*mpPart, error) {
	if r.currentPart != nil {
		r.currentPart.close()
	}
	if err := r.toNextPart(func() ([]byte, error) { return limitLine(r.bufReader.ReadSlice('\n')) }); err != nil {
		return nil, err
	}
	h, err := textproto.ReadHeader(r.bufReader)
	if err != nil {
		return nil, err
	}
	bp := &mpPart{Header: h, mr: r}
	r.currentPart = bp
	return bp, nil
}

// toNextPart reads lines with readLine (which reads one, its line break included, or what is
// left) up to and including the next part's delimiter line, as go-message's NextPart does: nil
// when one was read, io.EOF after the close delimiter, another error for anything else.
func (r *delimiters) toNextPart(readLine func() ([]byte, error)) error {
	if string(r.dashBoundary) == "--" {
		return fmt.Errorf("multipart: boundary is empty")
	}
	expectNewPart := false
	for {
		line, err := readLine()
		if err == io.EOF && r.isFinalBoundary(line) {
			// "--boundary--" at the very end, without a line break, ends the body as well.
			return io.EOF
		}
		if err != nil {
			return fmt.Errorf("multipart: NextPart: %v", err)
		}
		if r.isBoundaryDelimiterLine(line) {
			r.partsRead++
			return nil
		}
		if r.isFinalBoundary(line) {
			return io.EOF
		}
		if expectNewPart {
			return fmt.Errorf("multipart: expecting a new Part; got line %q", string(line))
		}
		if r.partsRead == 0 {
			continue // the preamble
		}
		// The line break between the previous part's body and the delimiter line that must
		// follow it.
		if bytes.Equal(line, r.nl) {
			expectNewPart = true
			continue
		}
		return fmt.Errorf("multipart: unexpected line in Next(): %q", line)
	}
}

// bufferFor is the reader's buffer size for a boundary (see windowSize).
func bufferFor(boundary string) int {
	if len(boundary) >= maxWindowedBoundary {
		return peekBufferSize
	}
	return windowSize
}

// limitLine is what go-message's ReadSlice, with its buffer of peekBufferSize bytes, gives for
// a line that ReadSlice read from a larger buffer: bufio.ErrBufferFull when no line break is in
// the line's first peekBufferSize bytes and as many are there. One case may differ: an
// unterminated last line of exactly peekBufferSize bytes. go-message's outcome there depends on
// how its source hands out the last bytes: with the end (as a nested multipart's source does,
// when the bytes line up so) it reads the line to the end, which ends the body cleanly if the
// line is a close delimiter padded with 4,000 spaces and with an EOF error otherwise; after
// them, it reports a full buffer. This reader always reports the full buffer.
func limitLine(line []byte, err error) ([]byte, error) {
	if len(line) > peekBufferSize || len(line) == peekBufferSize && line[len(line)-1] != '\n' {
		return line[:peekBufferSize], bufio.ErrBufferFull
	}
	return line, err
}

// isFinalBoundary reports whether line is the close delimiter, `^--boundary--[ \t]*(\r\n)?$`.
func (r *delimiters) isFinalBoundary(line []byte) bool {
	if !bytes.HasPrefix(line, r.dashBoundaryDash) {
		return false
	}
	rest := skipLWSPChar(line[len(r.dashBoundaryDash):])
	return len(rest) == 0 || bytes.Equal(rest, r.nl)
}

// isBoundaryDelimiterLine reports whether line is a delimiter line (RFC 2046 section 5.1: two
// hyphens, the boundary, optional white space, CRLF). On the first part, a line ending in LF
// alone switches the reader to LF line breaks: against the standard, but seen in practice.
func (r *delimiters) isBoundaryDelimiterLine(line []byte) bool {
	if !bytes.HasPrefix(line, r.dashBoundary) {
		return false
	}
	rest := skipLWSPChar(line[len(r.dashBoundary):])
	if r.partsRead == 0 && len(rest) == 1 && rest[0] == '\n' {
		r.nl = r.nl[1:]
		r.nlDashBoundary = r.nlDashBoundary[1:]
	}
	return bytes.Equal(rest, r.nl)
}

// skipLWSPChar returns b without its leading spaces and tabs.
func skipLWSPChar(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
