package parse

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-message/textproto"

	"github.com/mailintake/mailintake/internal/bench"
)

// multipartCases are multipart bodies with the boundary "b0", well formed and not: each is
// split by go-message's reader and by mpReader, which must agree on every part and error.
var multipartCases = []string{
	"--b0\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b0\r\n\r\nworld\r\n--b0--\r\n",
	"preamble\r\n--b0\r\n\r\none\r\n--b0--",
	"--b0\n\nLF only\n--b0\n\nsecond\n--b0--\n",
	"--b0\r\n\r\nno close delimiter",
	"--b0\r\n\r\n--b0x is not the boundary\r\n--b0-- \r\nepilogue",
	"--b0\r\n\r\nline\n--b0\r\n\r\nbare LF before the delimiter in CRLF mode\r\n--b0--\r\n",
	"--b0\r\n\r\n\r\n--b0\t \r\n\r\nwhite space after the delimiter\r\n--b0--\r\n",
	"--b0\r\n\r\n-- \r\nsignature -- dashes --b0 -b0\r\n---b0\r\n--b0--\r\n",
	"--b0\r\n\r\nbody\r\n--b0\r\njunk after a part\r\n--b0--",
	"--b0\r\n\r\nbody\r\n\r\nx\r\n--b0--",
	"",
	"--b0--",
	"--b0",
	"\r\n--b0\r\n\r\nbody\r\n--b0--",
	"--b0\r\nContent-Type: text/plain\r\nbroken header\r\n\r\nbody\r\n--b0--",
	strings.Repeat("x", 5000) + "\r\n--b0\r\n\r\nafter a long preamble line\r\n--b0--",
	"--b0\r\n\r\n" + strings.Repeat("QUJD", 19) + "\r\n" + strings.Repeat(strings.Repeat("QUJD", 19)+"\r\n", 300) + "--b0--\r\n",
	"--b0\r\n\r\n" + strings.Repeat("ab\r", 3000) + "\r\n--b0--",
	"--b0\r\n\r\n" + strings.Repeat("-", 9000) + "\r\n--b0--",
	// Lines around go-message's 4096-byte limit on what NextPart reads (limitLine).
	strings.Repeat("p", 4094) + "\r\n--b0\r\n\r\nafter a preamble line of 4096 bytes\r\n--b0--",
	strings.Repeat("p", 4095) + "\r\n--b0\r\n\r\nafter a preamble line of 4097 bytes\r\n--b0--",
	strings.Repeat("p", 4095) + "\n--b0\n\nafter an LF preamble line of 4096 bytes\n--b0--",
	"--b0" + strings.Repeat(" ", 5000) + "\r\n\r\nafter a long delimiter line\r\n--b0--",
	"--b0\r\n\r\nx\r\n--b0--" + strings.Repeat(" ", 4090),
	"--b0\r\n\r\nx\r\n--b0--" + strings.Repeat(" ", 4089),
	"--b0\r\n\r\nx\r\n--b0--" + strings.Repeat(" ", 4091),
	"--b0\r\n\r\nx\r\n--b0" + strings.Repeat("\t", 4090) + "\r\n\r\ny\r\n--b0--",
	"--b0\r\n\r\nx\r\n\r\n" + strings.Repeat("z", 4100),
	strings.Repeat("q", 40000),
	strings.Repeat("q\r\n", 20000) + "--b0\r\n\r\nafter a preamble of 60 KB\r\n--b0--",
}

// splitParts reads every part of a multipart body with next, through a reader that hands out
// chunkSize bytes at a time, and describes the parts, their bodies and the error that ended it.
func splitParts(next func() (textproto.Header, io.Reader, error), chunkSize int) string {
	var out strings.Builder
	for i := 0; i < 100; i++ {
		h, body, err := next()
		if err != nil {
			fmt.Fprintf(&out, "end: %v\n", err)
			return out.String()
		}
		var fields []string
		for f := h.Fields(); f.Next(); {
			fields = append(fields, f.Key()+"="+f.Value())
		}
		buf := make([]byte, chunkSize)
		var got []byte
		var rerr error
		for {
			n, err := body.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				rerr = err
				break
			}
		}
		fmt.Fprintf(&out, "part %d %q: %q (%v)\n", i, fields, got, rerr)
	}
	return out.String()
}

// goMessageParts and mpParts split body with go-message's reader and with mpReader; the input
// is read through iotest.OneByteReader when oneByte is set (every buffer boundary a line may
// straddle).
func goMessageParts(body []byte, boundary string, chunk int, oneByte bool) string {
	mr := textproto.NewMultipartReader(input(body, oneByte), boundary)
	return splitParts(nextOf(mr.NextPart, func(p *textproto.Part) textproto.Header { return p.Header }), chunk)
}

func mpParts(body []byte, boundary string, chunk int, oneByte bool) string {
	mr := newMPReader(input(body, oneByte), boundary)
	return splitParts(nextOf(mr.NextPart, func(p *mpPart) textproto.Header { return p.Header }), chunk)
}

// memParts splits body with memMPReader, body held in memory and followed by srcErr (io.EOF, or
// the error that cut a part short when body is a nested multipart's).
func memParts(body []byte, boundary string, chunk int, srcErr error) string {
	mr := newMemMPReader(&memBody{b: body, err: srcErr}, boundary)
	return splitParts(func() (textproto.Header, io.Reader, error) {
		h, b, err := mr.NextPart()
		if err != nil {
			return textproto.Header{}, nil, err
		}
		return h, b, nil
	}, chunk)
}

// mpPartsCut is mpParts with body followed by srcErr instead of the end of the input.
func mpPartsCut(body []byte, boundary string, chunk int, srcErr error) string {
	mr := newMPReader(io.MultiReader(bytes.NewReader(body), iotest.ErrReader(srcErr)), boundary)
	return splitParts(nextOf(mr.NextPart, func(p *mpPart) textproto.Header { return p.Header }), chunk)
}

// memAgrees checks that memMPReader splits body as mpReader does, as a whole message's body
// (after it, the end of the input) and as a part cut short (after it, an error); boundaries
// of maxWindowedBoundary or more are left to mpReader (newMultipartReader).
func memAgrees(body []byte, boundary string, chunk int) error {
	if len(boundary) >= maxWindowedBoundary {
		return nil
	}
	if got, want := memParts(body, boundary, chunk, io.EOF), mpParts(body, boundary, chunk, false); got != want {
		return fmt.Errorf("held in memory:\n got %.2000s\nwant %.2000s", got, want)
	}
	cut := io.ErrUnexpectedEOF
	if got, want := memParts(body, boundary, chunk, cut), mpPartsCut(body, boundary, chunk, cut); got != want {
		return fmt.Errorf("held in memory, cut short:\n got %.2000s\nwant %.2000s", got, want)
	}
	return nil
}

// nextOf adapts a reader's NextPart to splitParts.
func nextOf[P io.Reader](next func() (P, error), header func(P) textproto.Header) func() (textproto.Header, io.Reader, error) {
	return func() (textproto.Header, io.Reader, error) {
		p, err := next()
		if err != nil {
			return textproto.Header{}, nil, err
		}
		return header(p), p, nil
	}
}

func input(body []byte, oneByte bool) io.Reader {
	if oneByte {
		return iotest.OneByteReader(bytes.NewReader(body))
	}
	return bytes.NewReader(body)
}

// TestMPReaderMatchesGoMessage checks that mpReader splits multipart bodies exactly as
// go-message's reader does, on the cases above and on make bench's corpus, in reads of several
// sizes and with the input arriving a byte at a time; and that memMPReader splits them as
// mpReader does.
func TestMPReaderMatchesGoMessage(t *testing.T) {
	check := func(name string, body []byte, boundary string) {
		t.Helper()
		for _, chunk := range []int{1, 7, 4096, 64 << 10} {
			for _, oneByte := range []bool{false, true} {
				if oneByte && len(body) > 200<<10 {
					continue
				}
				want := goMessageParts(body, boundary, chunk, oneByte)
				got := mpParts(body, boundary, chunk, oneByte)
				if got != want {
					t.Fatalf("%s (reads of %d, one byte at a time %v):\n got %.2000s\nwant %.2000s", name, chunk, oneByte, got, want)
				}
			}
			if err := memAgrees(body, boundary, chunk); err != nil {
				t.Fatalf("%s (reads of %d): %v", name, chunk, err)
			}
		}
	}
	for i, c := range multipartCases {
		check(fmt.Sprintf("case %d", i), []byte(c), "b0")
		check(fmt.Sprintf("case %d, LF", i), []byte(strings.ReplaceAll(c, "\r\n", "\n")), "b0")
		// Boundaries that begin with dashes (common: "----=_Part_…") overlap themselves.
		dashed := "----=_Part_0"
		check(fmt.Sprintf("case %d, dashed boundary", i), []byte(strings.ReplaceAll(c, "b0", dashed)), dashed)
		check(fmt.Sprintf("case %d, one dash", i), []byte(strings.ReplaceAll(c, "b0", "-")), "-")
	}
	check("empty boundary", []byte("--\r\n\r\nx\r\n----"), "")
	// Boundaries whose delimiter fills go-message's 4 KB buffer: whether "--boundary" ends a
	// part is decided with what that buffer holds (bufferFor).
	for _, n := range []int{999, 1000, 4091, 4092, 4093, 5000} {
		b := strings.Repeat("b", n)
		check(fmt.Sprintf("boundary of %d", n), []byte("--"+b+"\r\n\r\nabc\r\n--"+b+"x\r\nmore\r\n--"+b+"--\r\n"), b)
		check(fmt.Sprintf("boundary of %d, LF", n), []byte("--"+b+"\n\nabc\n--"+b+"x\nmore\n--"+b+"--\n"), b)
	}
	n := 0
	for _, raw := range bench.Corpus(7, 40) {
		e, _, err := readEntity(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		mt, params, err := e.Header.ContentType()
		if err != nil || !strings.HasPrefix(mt, "multipart/") {
			continue
		}
		body, err := io.ReadAll(e.Body)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("corpus message %d", n), body, params["boundary"])
		n++
	}
	if n < 10 {
		t.Fatalf("only %d multipart messages in the corpus sample", n)
	}
}

// FuzzMultipart checks that mpReader and go-message's reader agree on any input and boundary,
// and memMPReader with them.
func FuzzMultipart(f *testing.F) {
	for _, c := range multipartCases {
		f.Add([]byte(c), "b0", 4096, false)
		f.Add([]byte(strings.ReplaceAll(c, "b0", "--b-")), "--b-", 7, true)
	}
	f.Fuzz(func(t *testing.T, body []byte, boundary string, chunk int, oneByte bool) {
		chunk = 1 + int(uint(chunk)%(8<<10))
		if oneByte && len(body) > 64<<10 {
			oneByte = false
		}
		if got, want := mpParts(body, boundary, chunk, oneByte), goMessageParts(body, boundary, chunk, oneByte); got != want {
			t.Fatalf("boundary %q, reads of %d, a byte at a time %v:\n got %s\nwant %s", boundary, chunk, oneByte, got, want)
		}
		if err := memAgrees(body, boundary, chunk); err != nil {
			t.Fatalf("boundary %q, reads of %d: %v", boundary, chunk, err)
		}
	})
}

// TestIndexNLDashBoundary compares indexNLDashBoundary with bytes.Index on every buffer of up to
// seven bytes over line breaks, dashes and a letter, for delimiters in both line-break modes
// with boundaries of up to two such characters (empty, and beginning with a dash or a line
// break, included).
func TestIndexNLDashBoundary(t *testing.T) {
	const alphabet = "\r\n-b"
	var all func(n int) []string
	all = func(n int) []string {
		if n == 0 {
			return []string{""}
		}
		var out []string
		for _, s := range all(n - 1) {
			for _, c := range alphabet {
				out = append(out, s+string(c))
			}
		}
		return out
	}
	var bufs, boundaries []string
	for n := 0; n <= 7; n++ {
		bufs = append(bufs, all(n)...)
	}
	for n := 0; n <= 2; n++ {
		boundaries = append(boundaries, all(n)...)
	}
	for _, b := range boundaries {
		for _, nl := range []string{"\r\n", "\n"} {
			pattern := []byte(nl + "--" + b)
			for _, buf := range bufs {
				if got, want := indexNLDashBoundary([]byte(buf), pattern), bytes.Index([]byte(buf), pattern); got != want {
					t.Fatalf("indexNLDashBoundary(%q, %q) = %d, bytes.Index says %d", buf, pattern, got, want)
				}
			}
		}
	}
}
