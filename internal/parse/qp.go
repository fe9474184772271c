// The quoted-printable decoder below is Go's mime/quotedprintable Reader (Copyright 2012 The Go
// Authors; BSD-style license, https://go.dev/LICENSE) with one change: the bytes that pass
// through unchanged (all but "=" and the control characters it refuses) are copied a run at a
// time instead of one by one. go-message decodes with mime/quotedprintable, whose byte loop was
// about 4% of the server's CPU per message on the bench corpus (HTML bodies are mostly
// quoted-printable). Everything else, its leniency and its errors included, is Go's:
// TestQPReaderMatchesGo and FuzzQP hold it to Go's reader, byte for byte and error for error.

package parse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// qpReader is a quoted-printable decoder; see the comment above.
type qpReader struct {
	br   *bufio.Reader
	rerr error  // last read error
	line []byte // to be consumed before more of br
}

// newQPReader returns a quoted-printable reader, decoding from r. Its buffer is bufio's
// default, as Go's: a line longer than that fails the same way.
func newQPReader(r io.Reader) *qpReader {
	return &qpReader{br: bufio.NewReader(r)}
}

// qpPlain marks the bytes Go's reader passes through unchanged: tab, CR, LF, printable ASCII
// but "=", and every byte from 0x80.
var qpPlain = func() (t [256]bool) {
	for b := range 256 {
		t[b] = b != '=' && (b == '\t' || b == '\r' || b == '\n' || b >= 0x80 || (b >= ' ' && b <= '~'))
	}
	return t
}()

func qpFromHex(b byte) (byte, error) {
	switch {
	case b >= '0' && b <= '9':
		return b - '0', nil
	case b >= 'A' && b <= 'F':
		return b - 'A' + 10, nil
	// Accept badly encoded bytes.
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10, nil
	}
	return 0, fmt.Errorf("quotedprintable: invalid hex byte 0x%02x", b)
}

func qpReadHexByte(v []byte) (b byte, err error) {
	if len(v) < 2 {
		return 0, io.ErrUnexpectedEOF
	}
	var hb, lb byte
	if hb, err = qpFromHex(v[0]); err != nil {
		return 0, err
	}
	if lb, err = qpFromHex(v[1]); err != nil {
		return 0, err
	}
	return hb<<4 | lb, nil
}

func isQPDiscardWhitespace(r rune) bool {
	switch r {
	case '\n', '\r', ' ', '\t':
		return true
	}
	return false
}

var (
	qpCRLF       = []byte("\r\n")
	qpLF         = []byte("\n")
	qpSoftSuffix = []byte("=")
)

// Read reads and decodes quoted-printable data from the underlying reader.
func (r *qpReader) Read(p []byte) (n int, err error) {
	// Deviations from RFC 2045 (Go's):
	// 1. in addition to "=\r\n", "=\n" is also treated as soft line break.
	// 2. it will pass through a '\r' or '\n' not preceded by '=', consistent
	//    with other broken QP encoders & decoders.
	// 3. it accepts soft line-break (=) at end of message (issue 15486); i.e.
	//    the final byte read from the underlying reader is allowed to be '=',
	//    and it will be silently ignored.
	// 4. it takes = as literal = if not followed by two hex digits
	//    but not at end of line (issue 13219).
	for len(p) > 0 {
		if len(r.line) == 0 {
			if r.rerr != nil {
				return n, r.rerr
			}
			r.line, r.rerr = r.br.ReadSlice('\n')

			// Does the line end in CRLF instead of just LF?
			hasLF := bytes.HasSuffix(r.line, qpLF)
			hasCR := bytes.HasSuffix(r.line, qpCRLF)
			wholeLine := r.line
			r.line = bytes.TrimRightFunc(wholeLine, isQPDiscardWhitespace)
			if bytes.HasSuffix(r.line, qpSoftSuffix) {
				rightStripped := bytes.TrimLeft(wholeLine[len(r.line):], " \t")
				r.line = r.line[:len(r.line)-1]
				if !bytes.HasPrefix(rightStripped, qpLF) && !bytes.HasPrefix(rightStripped, qpCRLF) &&
					!(len(rightStripped) == 0 && len(r.line) > 0 && r.rerr == io.EOF) {
					r.rerr = fmt.Errorf("quotedprintable: invalid bytes after =: %q", rightStripped)
				}
			} else if hasLF {
				if hasCR {
					r.line = append(r.line, '\r', '\n')
				} else {
					r.line = append(r.line, '\n')
				}
			}
			continue
		}
		// The change: a run of bytes that pass through unchanged, at once.
		k, lim := 0, min(len(r.line), len(p))
		for k < lim && qpPlain[r.line[k]] {
			k++
		}
		if k > 0 {
			copy(p, r.line[:k])
			p = p[k:]
			r.line = r.line[k:]
			n += k
			continue
		}
		b := r.line[0]

		switch {
		case b == '=':
			b, err = qpReadHexByte(r.line[1:])
			if err != nil {
				if len(r.line) >= 2 && r.line[1] != '\r' && r.line[1] != '\n' {
					// Take the = as a literal =.
					b = '='
					break
				}
				return n, err
			}
			r.line = r.line[2:] // 2 of the 3; other 1 is done below
		case b == '\t' || b == '\r' || b == '\n':
			// Passed through (Go's "break" here is a no-op).
		case b >= 0x80:
			// As an extension to RFC 2045, we accept
			// values >= 0x80 without complaint. Issue 22597.
		case b < ' ' || b > '~':
			return n, fmt.Errorf("quotedprintable: invalid unescaped byte 0x%02x in body", b)
		}
		p[0] = b
		p = p[1:]
		r.line = r.line[1:]
		n++
	}
	return n, nil
}
