package parse

import (
	"bytes"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mailintake/mailintake/internal/bench"
)

// qpCases are quoted-printable bodies at the edges of Go's decoder: soft line breaks with CRLF,
// LF and white space after them, escapes in both cases and broken ones, "=" at the end,
// trailing white space, control characters, bytes over 0x7f, and lines longer than its buffer.
var qpCases = []string{
	"",
	"plain text\r\n",
	"caf=C3=A9 cr=c3=a8me\r\nsecond line\r\n",
	"soft=\r\nbreak=\nand LF=  \r\nwith spaces after=\t\r\nend",
	"trailing white space   \r\nand tabs\t\t\r\n",
	"= at the end=",
	"=",
	"x=",
	"=4",
	"=4\r\n",
	"=ZZ literal, =4x literal, =\r\n",
	"bad after soft =x\r\n",
	"= \r\nx",
	"=  x\r\n",
	"control \x01 byte\r\n",
	"nul \x00 byte",
	"delete \x7f byte\r\n",
	"high \x80\xff bytes =FF\r\n",
	"bare \r in the middle\r\n",
	"\r\n\r\n\n\n",
	"lf only\nline two\n",
	"ends in CR\r",
	strings.Repeat("a", 5000) + "\r\nafter a long line\r\n",
	strings.Repeat("=41", 1500) + "\r\n",
	strings.Repeat("0123456789 ", 300) + "=\r\n" + strings.Repeat("é", 3000),
	"<p style=3D\"color: red\">=E2=80=94 hello</p>=\r\n<br>\r\n",
}

// qpTranscript reads all of r in reads of chunk bytes and records every Read's count and error
// with the bytes: a decoder that differs in any of them differs in the transcript. It stops at
// the third error (Go's decoder returns a decoding error again on each Read).
func qpTranscript(r io.Reader, chunk int) string {
	var out bytes.Buffer
	p := make([]byte, chunk)
	errs := 0
	for i := 0; i < 1<<20 && errs < 3; i++ {
		n, err := r.Read(p)
		fmt.Fprintf(&out, "%d:%q", n, p[:n])
		if err != nil {
			fmt.Fprintf(&out, " err %v\n", err)
			if err == io.EOF {
				break
			}
			errs++
		}
	}
	return out.String()
}

func checkQP(t *testing.T, name string, in []byte, chunk int, oneByte bool) {
	t.Helper()
	src := func() io.Reader {
		if oneByte {
			return iotest.OneByteReader(bytes.NewReader(in))
		}
		return bytes.NewReader(in)
	}
	want := qpTranscript(quotedprintable.NewReader(src()), chunk)
	if got := qpTranscript(newQPReader(src()), chunk); got != want {
		t.Fatalf("%s (reads of %d, one byte at a time %v):\n got %.3000s\nwant %.3000s", name, chunk, oneByte, got, want)
	}
}

// TestQPReaderMatchesGo checks that qpReader decodes exactly as mime/quotedprintable does, read
// for read and error for error, on the cases above (CRLF and LF) and on make bench's corpus
// (whole messages, quoted-printable parts and all the rest), in reads of several sizes and
// with the input arriving a byte at a time.
func TestQPReaderMatchesGo(t *testing.T) {
	for i, c := range qpCases {
		for _, chunk := range []int{1, 3, 76, 4096, 64 << 10} {
			for _, oneByte := range []bool{false, true} {
				checkQP(t, fmt.Sprintf("case %d", i), []byte(c), chunk, oneByte)
				checkQP(t, fmt.Sprintf("case %d, LF", i), []byte(strings.ReplaceAll(c, "\r\n", "\n")), chunk, oneByte)
			}
		}
	}
	qp := 0
	for i, raw := range bench.Corpus(11, 40) {
		if bytes.Contains(bytes.ToLower(raw), []byte("quoted-printable")) {
			qp++
		}
		for _, chunk := range []int{1, 4096, 64 << 10} {
			checkQP(t, fmt.Sprintf("corpus message %d", i), raw, chunk, chunk == 4096 && len(raw) < 200<<10)
		}
	}
	if qp < 5 {
		t.Fatalf("only %d corpus messages with quoted-printable parts in the sample", qp)
	}
}

// TestQPInEntity checks that a quoted-printable part is decoded by qpReader, whatever the case
// and spacing of its Content-Transfer-Encoding, and that its header keeps the encoding.
func TestQPInEntity(t *testing.T) {
	for _, cte := range []string{"quoted-printable", " Quoted-Printable "} {
		e, _, err := readEntity(strings.NewReader("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding:" + cte + "\r\n\r\ncaf=C3=A9 =\r\nau lait\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(e.Body)
		if err != nil || string(body) != "café au lait\r\n" {
			t.Fatalf("%q: body %q, %v", cte, body, err)
		}
		if got := e.Header.Get("Content-Transfer-Encoding"); got != cte && got != strings.TrimSpace(cte) {
			t.Fatalf("%q: the header now says %q", cte, got)
		}
	}
	e, _, err := readEntity(strings.NewReader("Content-Transfer-Encoding: quoted-printable\r\n\r\nx"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Body.(*qpReader); !ok {
		t.Fatalf("the body is read by %T, not qpReader", e.Body)
	}
}

// FuzzQP checks that qpReader and mime/quotedprintable agree on any input, read in any size.
func FuzzQP(f *testing.F) {
	for _, c := range qpCases {
		f.Add([]byte(c), 4096, false)
		f.Add([]byte(c), 1, true)
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk int, oneByte bool) {
		chunk = 1 + int(uint(chunk)%(8<<10))
		if oneByte && len(in) > 64<<10 {
			oneByte = false
		}
		checkQP(t, "fuzz input", in, chunk, oneByte)
	})
}
