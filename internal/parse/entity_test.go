package parse

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mailintake/mailintake/internal/testutil"
)

func TestLenientBase64(t *testing.T) {
	for _, c := range []struct {
		in, want, problem string
	}{
		{"SGVsbG8gd29ybGQ=", "Hello world", ""},
		{"SGVsbG8g\r\nd29y bGQ=\r\n", "Hello world", ""},
		{"SGVsbG8gd29ybGQ", "Hello world", "padding"},         // padding missing
		{"SGVsbG8gd29ybA==", "Hello worl", ""},                // two pad characters
		{"SGVsbG8gd29ybA=", "Hello worl", ""},                 // one too few
		{"SGVsbG8gd29ybA===", "Hello worl", ""},               // one too many
		{"SGVsbG8=d29ybGQ=", "Helloworld", ""},                // "Hello" padded, then another block
		{"SGVs!bG8*gd29ybGQ=", "Hello world", "2 characters"}, // junk in the middle
		{"SGVsbG8gd29ybGQ=A", "Hello world", "lone"},          // a stray character after the end
		{"-_-_", "\xfb\xff\xbf", ""},                          // URL-safe alphabet
		{"SGVs\x00bG8\x01=", "Hello", "2 characters"},         // control bytes are junk too
		{"", "", ""},
	} {
		r := newBase64Reader(iotest.OneByteReader(strings.NewReader(c.in)))
		got, err := io.ReadAll(r)
		if err != nil || string(got) != c.want {
			t.Errorf("%q: got %q, %v; want %q", c.in, got, err, c.want)
		}
		if p := r.problem(); (c.problem == "") != (p == "") || !strings.Contains(p, c.problem) {
			t.Errorf("%q: problem %q, want one with %q", c.in, p, c.problem)
		}
	}
}

// On well-formed input the lenient decoder gives exactly what encoding/base64 gives, whatever
// the read sizes.
func TestLenientBase64MatchesStandard(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1, 2, 3, 57, 1000, 100_003} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		wrapped := testutil.Base64Lines(data)
		for _, rd := range []io.Reader{strings.NewReader(wrapped), iotest.HalfReader(strings.NewReader(wrapped))} {
			r := newBase64Reader(rd)
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) || r.problem() != "" {
				t.Fatalf("size %d: %d bytes, %v, problem %q", size, len(got), err, r.problem())
			}
		}
	}
}

// A truncated base64 attachment keeps all its bytes, and GetAttachment serves the same ones.
func TestBrokenBase64AttachmentKeepsItsTail(t *testing.T) {
	raw := crlf(`From: a@example.com
Subject: log
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain

see log
--b
Content-Type: text/plain; name=log.txt
Content-Disposition: attachment; filename=log.txt
Content-Transfer-Encoding: Base64 

bGluZSBvbmUKbGluZSB0d28KbGluZSB0aHJlZQ
--b--
`)
	m := Parse(raw, Options{})
	if len(m.Attachments) != 1 || string(m.Attachments[0].Data) != "line one\nline two\nline three" {
		t.Fatalf("attachments = %v", m.Attachments)
	}
	if len(m.Problems) != 1 || !strings.Contains(m.Problems[0].Message, "padding") || m.Problems[0].Part != "2" {
		t.Errorf("problems = %v", m.Problems)
	}
	_, r, err := OpenPart(bytes.NewReader(raw), "2")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(r); string(got) != "line one\nline two\nline three" {
		t.Errorf("OpenPart = %q", got)
	}
}

// Whole lines are decoded by encoding/base64 when it accepts them and character by character
// otherwise: on any input, in any read sizes, both give the same bytes and the same problems.
func TestLenientBase64FastPathAgreesWithScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range 3000 {
		var in strings.Builder
		width := []int{76, 76, 72, 73, 4, 64}[rng.IntN(6)]
		for range rng.IntN(400) {
			for range width {
				switch r := rng.IntN(2000); {
				case r == 0:
					in.WriteByte('=')
				case r == 1:
					in.WriteByte(" \t!*-_\x00\xff"[rng.IntN(8)])
				default:
					in.WriteByte(alphabet[rng.IntN(64)])
				}
			}
			in.WriteString([]string{"\r\n", "\n", "\r\n"}[rng.IntN(3)])
		}
		if rng.IntN(2) == 0 {
			in.WriteString("QQ==\r\n")
		}
		if err := base64Agrees(in.String()); err != nil {
			t.Fatalf("input %d (width %d): %v", i, width, err)
		}
	}
}

// base64Agrees decodes src one byte at a time (the character-by-character path only) and in
// larger reads of several kinds (the SIMD path on whole lines, decoding straight into the
// caller's buffer or through the reader's own; src held in memory and read where it is), and
// measures it without keeping it (discard): all must give the same bytes, size and problems.
func base64Agrees(src string) error {
	slow := newBase64Reader(iotest.OneByteReader(strings.NewReader(src)))
	want, _ := io.ReadAll(slow)
	held := []byte(src) // a body held in memory (memBody) is decoded where it is, never written to
	readers := map[string]func() io.Reader{
		"whole":     func() io.Reader { return strings.NewReader(src) },
		"halves":    func() io.Reader { return iotest.HalfReader(strings.NewReader(src)) },
		"data+EOF":  func() io.Reader { return iotest.DataErrReader(strings.NewReader(src)) },
		"in memory": func() io.Reader { return &memBody{b: held, err: io.EOF} },
	}
	defer func() {
		if string(held) != src {
			panic("the base64 decoder wrote to the body it decoded in memory")
		}
	}()
	for name, rd := range readers {
		for _, size := range []int{7, 512, 64 << 10} {
			fast := newBase64Reader(rd())
			var got bytes.Buffer
			_, err := io.CopyBuffer(struct{ io.Writer }{&got}, struct{ io.Reader }{fast}, make([]byte, size))
			if err != nil || !bytes.Equal(got.Bytes(), want) || fast.problem() != slow.problem() {
				return fmt.Errorf("%d bytes read %s in %d-byte reads: %d bytes, problem %q; one byte at a time: %d bytes, problem %q",
					len(src), name, size, got.Len(), fast.problem(), len(want), slow.problem())
			}
		}
		// Measured: a first read, then the rest discarded.
		m := newBase64Reader(rd())
		head := make([]byte, 100)
		k, _ := io.ReadFull(m, head)
		n, more, err := m.discard(1 << 30)
		if err != nil || more || int64(k)+n != int64(len(want)) || m.problem() != slow.problem() {
			return fmt.Errorf("%d bytes read %s, measured: %d+%d bytes (more %v, %v), problem %q; want %d bytes, problem %q",
				len(src), name, k, n, more, err, m.problem(), len(want), slow.problem())
		}
		if len(want) > 150 {
			m := newBase64Reader(rd())
			if n, more, err := m.discard(int64(len(want)) - 50); err != nil || !more || n != int64(len(want))-50 {
				return fmt.Errorf("%d bytes read %s, measured with a limit: %d bytes, more %v, %v", len(src), name, n, more, err)
			}
		}
	}
	return nil
}
