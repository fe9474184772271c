package parse

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
	simdbase64 "github.com/segmentio/asm/base64"

	"github.com/mailintake/mailintake/internal/uninit"
)

// go-message decodes transfer encodings itself, with encoding/base64, which stops at the first
// malformed quantum: a body whose padding is missing or broken (common from mailers that wrap
// or cut base64 by hand) loses its last bytes. The entities here are built with go-message's
// header and charset code and its multipart reader (multipart.go, with a faster boundary
// search and a larger buffer) but with a lenient base64 decoder, and with the
// Content-Transfer-Encoding value trimmed and lower-cased (" Base64" is seen in the wild);
// quoted-printable is decoded by Go's decoder with a faster byte loop (qp.go).

// maxHeaderBytes bounds a header section, as go-message's reader does.
const maxHeaderBytes = 1 << 20

// readEntityBytes reads a message held in memory: its parts are read where they are
// (memMPReader, memBody).
func readEntityBytes(raw []byte) (*message.Entity, *base64Reader, error) {
	src := &memBody{b: raw, err: io.EOF}
	lr := &io.LimitedReader{R: src, N: maxHeaderBytes}
	br := bufio.NewReader(lr)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, nil, err
	}
	// The body: what follows what ReadHeader took (what br read, less what is still in it).
	consumed := len(raw) - len(src.b) - br.Buffered()
	return newEntity(message.Header{Header: h}, &memBody{b: raw[consumed:], err: io.EOF})
}

// readEntity reads a message from r.
func readEntity(r io.Reader) (*message.Entity, *base64Reader, error) {
	lr := &io.LimitedReader{R: r, N: maxHeaderBytes}
	br := bufio.NewReader(lr)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, nil, err
	}
	lr.N = 1 << 62
	return newEntity(message.Header{Header: h}, br)
}

// newEntity is message.New with the lenient transfer decoding; the returned base64Reader (nil
// unless the part is base64) reports what it had to repair once the body has been read.
func newEntity(h message.Header, body io.Reader) (*message.Entity, *base64Reader, error) {
	mt, _, _ := h.ContentType()
	raw := h.Get("Content-Transfer-Encoding")
	enc := strings.ToLower(strings.TrimSpace(raw))
	if strings.HasPrefix(mt, "multipart/") || enc == raw && enc != "base64" && enc != "quoted-printable" {
		e, err := message.New(h, body)
		return e, nil, err
	}
	decoded := h.Copy()
	var b64 *base64Reader
	switch enc {
	case "base64":
		decoded.Del("Content-Transfer-Encoding")
		b64 = newBase64Reader(body)
		body = b64
	case "quoted-printable":
		decoded.Del("Content-Transfer-Encoding")
		body = newQPReader(body) // Go's decoder with a faster byte loop (qp.go)
	default:
		decoded.Set("Content-Transfer-Encoding", enc)
	}
	e, err := message.New(decoded, body)
	if e != nil {
		e.Header = h
	}
	return e, b64, err
}

// multipartReader reads the parts of a multipart entity, or returns nil for another entity:
// where they are if the entity is held in memory (memMPReader), else as they stream past.
type multipartReader struct {
	r   *mpReader
	mem *memMPReader
}

func newMultipartReader(e *message.Entity) *multipartReader {
	mt, params, err := e.Header.ContentType()
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		return nil
	}
	boundary := params["boundary"]
	if m, ok := e.Body.(*memBody); ok && len(boundary) < maxWindowedBoundary {
		return &multipartReader{mem: newMemMPReader(m, boundary)}
	}
	return &multipartReader{r: newMPReader(e.Body, boundary)}
}

// NextPart returns the next part, io.EOF after the last.
func (r *multipartReader) NextPart() (*message.Entity, *base64Reader, error) {
	if r.mem != nil {
		h, body, err := r.mem.NextPart()
		if err != nil {
			return nil, nil, err
		}
		return newEntity(message.Header{Header: h}, body)
	}
	p, err := r.r.NextPart()
	if err != nil {
		return nil, nil, err
	}
	return newEntity(message.Header{Header: p.Header}, p)
}

// base64Reader decodes base64 leniently: characters outside the alphabet (line breaks, spaces,
// stray punctuation) are skipped, padding may be missing, wrong or in the middle (two encoded
// blocks glued together), and the URL-safe alphabet is accepted. A final partial quantum
// yields the bytes it holds.
type base64Reader struct {
	r       io.Reader
	in      []byte // read buffer
	pend    []byte // clean characters not yet decoded (fewer than 4 between reads)
	outBuf  []byte
	out     []byte // decoded bytes not yet returned
	err     error
	skipped int  // characters outside the alphabet, other than white space and padding
	dropped bool // a lone character at the end of a quantum could not be decoded
	padding bool // the end had no padding
}

func newBase64Reader(r io.Reader) *base64Reader {
	// Not cleared: only what each read returns is looked at.
	return &base64Reader{r: r, in: uninit.Bytes(32 << 10)}
}

// base64Value maps a character to its standard-alphabet character, 1 for white space, '=' for
// padding and 0 for anything else.
var base64Value = func() (t [256]byte) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=" {
		t[c] = byte(c)
	}
	t['-'], t['_'] = '+', '/'
	for _, c := range " \t\r\n\f\v" {
		t[c] = 1
	}
	return t
}()

func (b *base64Reader) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		chunk, err := b.fill()
		n := len(chunk)
		// Decoded straight into p when it has room for all the chunk can hold (the usual case:
		// the parser reads into a large buffer), saving a copy; otherwise into outBuf.
		direct := len(b.pend)+n <= len(p)/3*4-8
		if direct {
			b.out = p[:0:len(p)]
		} else {
			b.out = b.outBuf[:0]
		}
		b.decode(chunk)
		if err != nil {
			b.finish()
			b.err = err
		}
		if direct {
			if len(b.out) > 0 && &b.out[0] != &p[0] {
				// Grown past p after all (the end's partial quantum): hand it out from outBuf.
				b.outBuf = b.out[:0]
			} else {
				m := len(b.out)
				b.out = nil
				if m > 0 || b.err == nil {
					return m, nil
				}
				continue
			}
		} else {
			b.outBuf = b.out[:0]
		}
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

// discard reads and decodes the rest of the body, at most limit decoded bytes, keeping none of
// them; it returns how many there were, and whether the body went on past limit.
func (b *base64Reader) discard(limit int64) (n int64, more bool, err error) {
	n = int64(len(b.out))
	b.out = nil
	for n <= limit {
		if b.err != nil {
			if b.err == io.EOF {
				return min(n, limit), n > limit, nil
			}
			return min(n, limit), n > limit, b.err
		}
		chunk, rerr := b.fill()
		b.out = b.outBuf[:0]
		b.decode(chunk)
		if rerr != nil {
			b.finish()
			b.err = rerr
		}
		n += int64(len(b.out))
		b.outBuf, b.out = b.out[:0], nil
	}
	return limit, true, nil
}

// fill returns the next chunk of encoded input, at most len(in) bytes, and the error that
// follows it. A memBody's bytes are taken where they are (decode writes to in, not to them);
// another reader's are read into in.
func (b *base64Reader) fill() ([]byte, error) {
	if m, ok := b.r.(*memBody); ok {
		return m.next(len(b.in))
	}
	n, err := b.r.Read(b.in)
	return b.in[:n], err
}

// decode appends the bytes of chunk, which fill returned, to out. It may overwrite in.
func (b *base64Reader) decode(chunk []byte) {
	if len(b.pend) > 0 {
		// A line begun in the previous chunk: finish it character by character.
		nl := bytes.IndexByte(chunk, '\n')
		if nl < 0 {
			b.scan(chunk)
			return
		}
		b.scan(chunk[:nl+1])
		chunk = chunk[nl+1:]
	}
	// The whole lines of the chunk at once, with their line breaks taken out: well-formed
	// base64 (nearly all of it) is decoded with SIMD instructions and no pass of ours over it.
	// Anything the strict decoder refuses (junk, spaces, padding in the middle, lines that
	// split quanta) is decoded character by character instead.
	if last := bytes.LastIndexByte(chunk, '\n'); len(b.pend) == 0 && last >= 0 {
		lines := stripLineBreaks(b.in, chunk[:last+1])
		rest := chunk[last+1:]
		n := len(b.out)
		want := base64.StdEncoding.DecodedLen(len(lines))
		b.out = slices.Grow(b.out, want)
		if m, err := simdbase64.StdEncoding.Decode(b.out[n:n+want], lines); err == nil {
			b.out = b.out[:n+m]
			b.scan(rest)
			return
		}
		b.out = b.out[:n]
		b.scan(lines) // white space carries no meaning to the lenient decoder
		chunk = rest
	}
	b.scan(chunk)
}

// stripLineBreaks writes src without its line breaks (LF or CRLF) to dst, which has room for
// all of src, and returns what it wrote. dst may share src's memory if it does not begin after
// src (the bytes move forward only). Encoders write lines of one width: once it is known (from
// the second line: the first may be the end of one begun before src), each next line is taken
// at that width when a CRLF ends it there, without searching for its end. A line break left
// inside a line is harmless: the decoder skips line breaks anywhere, only slower.
func stripLineBreaks(dst, src []byte) []byte {
	width := -1
	if i := bytes.IndexByte(src, '\n'); i >= 0 {
		if j := bytes.IndexByte(src[i+1:], '\n'); j > 0 && src[i+j] == '\r' {
			width = j - 1
		}
	}
	w, r := 0, 0
	if width == 76 {
		// The width of nearly every encoder (RFC 2045's limit): a copy of fixed size the
		// compiler makes without a call.
		for r+78 <= len(src) && w+76 <= len(dst) && src[r+76] == '\r' && src[r+77] == '\n' {
			*(*[76]byte)(dst[w:]) = *(*[76]byte)(src[r:])
			w += 76
			r += 78
		}
	}
	for r < len(src) {
		if width >= 0 && r+width+1 < len(src) && src[r+width] == '\r' && src[r+width+1] == '\n' {
			w += copy(dst[w:], src[r:r+width])
			r += width + 2
			continue
		}
		end, next := len(src), len(src)
		if i := bytes.IndexByte(src[r:], '\n'); i >= 0 {
			end, next = r+i, r+i+1
		}
		if end > r && src[end-1] == '\r' {
			end--
		}
		w += copy(dst[w:], src[r:end])
		r = next
	}
	return dst[:w]
}

// scan decodes chunk character by character, keeping an incomplete quantum pending.
func (b *base64Reader) scan(chunk []byte) {
	for len(chunk) > 0 {
		// Runs of standard-alphabet characters (the bulk of every line) are taken at once; the
		// byte that ends a run is looked at alone.
		n := 0
		for n < len(chunk) && base64Value[chunk[n]] == chunk[n] && chunk[n] > 1 && chunk[n] != '=' {
			n++
		}
		b.pend = append(b.pend, chunk[:n]...)
		if n == len(chunk) {
			break
		}
		switch v := base64Value[chunk[n]]; v {
		case 0:
			b.skipped++
		case 1:
		case '=':
			b.partial()
		default:
			b.pend = append(b.pend, v) // the URL-safe alphabet
		}
		chunk = chunk[n+1:]
	}
	full := len(b.pend) / 4 * 4
	b.out = appendDecoded(b.out, base64.StdEncoding, b.pend[:full])
	b.pend = append(b.pend[:0], b.pend[full:]...)
}

// partial decodes what is pending at padding or at the end: whole quanta, then the bytes of a
// partial one.
func (b *base64Reader) partial() {
	full := len(b.pend) / 4 * 4
	b.out = appendDecoded(b.out, base64.StdEncoding, b.pend[:full])
	switch rest := b.pend[full:]; len(rest) {
	case 1:
		b.dropped = true
	case 2, 3:
		b.out = appendDecoded(b.out, base64.RawStdEncoding, rest)
	}
	b.pend = b.pend[:0]
}

func (b *base64Reader) finish() {
	if len(b.pend) > 0 {
		b.padding = true
		b.partial()
	}
}

func appendDecoded(dst []byte, enc *base64.Encoding, src []byte) []byte {
	if len(src) == 0 {
		return dst
	}
	n := len(dst)
	dst = slices.Grow(dst, enc.DecodedLen(len(src)))[:n+enc.DecodedLen(len(src))]
	// src holds only alphabet characters in whole quanta (or a raw partial one): it cannot fail.
	m, _ := enc.Decode(dst[n:], src)
	return dst[:n+m]
}

// problem describes what the decoder had to repair, or "".
func (b *base64Reader) problem() string {
	var what []string
	if b.skipped > 0 {
		what = append(what, strconv.Itoa(b.skipped)+" characters outside the base64 alphabet were skipped")
	}
	if b.padding {
		what = append(what, "the padding at the end was missing")
	}
	if b.dropped {
		what = append(what, "a lone character at the end of a quantum was dropped")
	}
	return strings.Join(what, "; ")
}
