package parse

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// Seeds: the shapes real mail takes, and the broken ones the parser must survive.
var fuzzSeeds = []string{
	"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n",
	"From a@b Mon Jan 1\nFrom: a@example.com\n\nmbox body\n",
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nB=FCro\r\n--b\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n",
	"Content-Type: multipart/alternative; boundary=----=_Part_1\r\n\r\n------=_Part_1\r\nContent-Type: text/html\r\n\r\n<p>x<script>y</script></p>\r\n------=_Part_1--\r\n",
	"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner\r\n",
	"Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; x@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n--r--\r\n",
	"Subject: =?UTF-8?B?broken?= =?iso-2022-jp?B?GyRCJDkbKEI=?=\r\nTo: \"a@b\" <c@d>, e@f\r\n\r\n",
	"Content-Type: text/plain; name=This is a test.txt\r\n\r\n",
	"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := Parse(raw, Options{MaxParts: 50, MaxDepth: 8, MaxDecodedBytes: 1 << 20})
		if m == nil || m.GetRawSize() != uint64(len(raw)) || len(m.GetSha256()) != 64 {
			t.Fatalf("Parse lost the message: %v", m)
		}
	})
}

func FuzzSplitReply(f *testing.F) {
	for _, s := range []string{"a\n\nOn Mon, 1 Jan 2026, b <b@c> wrote:\n> q\n", "> q\nanswer\n", "x\n-- \nsig", "From: a\nSent: b\nTo: c\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := SplitReply(s)
		// Nothing is dropped: every word of the input is somewhere in the result (a reply and an
		// "On … wrote:" header sharing a line are split in two, without the dashes between them).
		all := []byte(r.Body + "\n" + r.Quoted + "\n" + r.NewText + "\n" + r.Signature)
		for _, w := range bytes.Fields([]byte(s)) {
			w = bytes.Trim(w, "-")
			if len(w) > 0 && !bytes.Contains(all, w) {
				t.Fatalf("word %q lost", w)
			}
		}
	})
}

func FuzzOpenPart(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), "2")
	}
	f.Fuzz(func(t *testing.T, raw []byte, id string) {
		_, body, err := OpenPart(bytes.NewReader(raw), id)
		if err == nil && body != nil {
			io.Copy(io.Discard, io.LimitReader(body, 1<<20))
		}
	})
}

func FuzzHTMLToText(f *testing.F) {
	f.Add("<p>Hello <b>world</b></p><script>x</script><div>Bye</div>")
	f.Fuzz(func(t *testing.T, s string) { HTMLToText(s) })
}

// FuzzBase64 checks that the lenient base64 decoder gives the same bytes, size and problems
// whatever its read sizes and paths (SIMD on whole lines, character by character, measuring).
func FuzzBase64(f *testing.F) {
	for _, s := range []string{"SGVsbG8gd29ybGQ=", "SGVsbG8g\r\nd29y bGQ=\r\n", "SGVsbG8=d29ybGQ=", "-_-_", "QQ==\r\nQUJD\r\n",
		strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n", 40) + "QQ=\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if err := base64Agrees(src); err != nil {
			t.Fatal(err)
		}
	})
}
