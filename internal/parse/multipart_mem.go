package parse

import (
	"bufio"
	"bytes"
	"io"

	"github.com/emersion/go-message/textproto"
)

// Parse holds the whole message in memory, and mpReader copied every byte of it through a
// buffer of its own (and through its parent's, one per level of nesting) before a decoder
// copied it again. memMPReader finds the same parts in the bytes where they are and hands
// each out as a memBody, a sub-slice; the base64 decoder reads a memBody without a copy of
// its own. OpenPart, which streams, keeps mpReader.

// memBody is a body held in memory: the bytes not yet read, then err (io.EOF, or the error
// that cut the body short, as the streaming reader would return it after the same bytes).
type memBody struct {
	b   []byte
	err error
}

// Read returns the body's bytes, with err once the last of them is read.
func (m *memBody) Read(p []byte) (int, error) {
	n := copy(p, m.b)
	m.b = m.b[n:]
	if len(m.b) == 0 {
		return n, m.err
	}
	return n, nil
}

// next returns up to n of the body's bytes without copying them (the caller must not write
// to them), with err once they are the last.
func (m *memBody) next(n int) ([]byte, error) {
	chunk := m.b[:min(n, len(m.b))]
	m.b = m.b[len(chunk):]
	if len(m.b) == 0 {
		return chunk, m.err
	}
	return chunk, nil
}

// memMPReader reads the parts of a multipart body held in memory, as mpReader does: the same
// delimiter lines (delimiters), the same end of each part (scanUntilBoundary, given all the
// rest at once: what mpReader's scan gives with a buffer without end, which for a boundary
// shorter than maxWindowedBoundary is what it gives with its own; a longer boundary is read
// by mpReader), the same headers (textproto.ReadHeader, whose result does not depend on its
// buffer's size), the same line limit before a part (limitLine).
type memMPReader struct {
	src  *memBody
	hdr  *bufio.Reader // reads a part's header: ReadHeader takes a bufio.Reader
	hsrc memBody       // hdr's source
	delimiters
}

func newMemMPReader(src *memBody, boundary string) *memMPReader {
	return &memMPReader{src: src, delimiters: newDelimiters(boundary)}
}

// readLine is bufio.ReadSlice('\n') on a buffer that holds all of src, with limitLine's limit.
func (r *memMPReader) readLine() ([]byte, error) {
	var line []byte
	var err error
	if i := bytes.IndexByte(r.src.b, '\n'); i >= 0 {
		line, r.src.b = r.src.b[:i+1], r.src.b[i+1:]
	} else {
		line, r.src.b, err = r.src.b, nil, r.src.err
	}
	return limitLine(line, err)
}

// NextPart returns the next part's header and body, io.EOF after the last.
func (r *memMPReader) NextPart() (textproto.Header, *memBody, error) {
	if err := r.toNextPart(r.readLine); err != nil {
		return textproto.Header{}, nil, err
	}
	h, err := r.readHeader()
	if err != nil {
		return textproto.Header{}, nil, err
	}
	return h, r.cutPart(), nil
}

// readHeader reads a part's header from src, leaving src after it.
func (r *memMPReader) readHeader() (textproto.Header, error) {
	r.hsrc = memBody{b: r.src.b, err: r.src.err}
	if r.hdr == nil {
		r.hdr = bufio.NewReaderSize(&r.hsrc, peekBufferSize)
	} else {
		r.hdr.Reset(&r.hsrc)
	}
	h, err := textproto.ReadHeader(r.hdr)
	// What ReadHeader took: what its source handed to the buffer, less what is still in it.
	r.src.b = r.src.b[len(r.src.b)-len(r.hsrc.b)-r.hdr.Buffered():]
	return h, err
}

// cutPart takes the next part's body off src: up to the delimiter that ends it, or to the end
// of src, with the error a mpPart returns after its last byte.
func (r *memMPReader) cutPart() *memBody {
	readErr := r.src.err
	if readErr == io.EOF {
		readErr = io.ErrUnexpectedEOF // as mpPart.Read reports the end of its input
	}
	buf := r.src.b
	total := 0
	var err error
	for err == nil {
		var n int
		n, err = scanUntilBoundary(buf[total:], r.dashBoundary, r.nlDashBoundary, int64(total), readErr)
		if n == 0 && err == nil {
			err = readErr // cannot happen with readErr set: it would ask for more input
		}
		total += n
	}
	r.src.b = buf[total:]
	return &memBody{b: buf[:total:total], err: err}
}
