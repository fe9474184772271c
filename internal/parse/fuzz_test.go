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
	// Hard senders and attachments, threading.
	"From: Smith, John <j@x.example>\r\nReply-To: =?us-ascii?Q?J=F6rg?= <j@x.example>\r\nSubject: =?iso-8859-1?Q?J=C3=B6rg?= =?x-unknown?B?w6k=?=\r\n\r\n",
	"Sender: <>\r\nReturn-Path: <bounce@x.example>\r\nIn-Reply-To: <a@b>\r\nReferences: <c@d> <a@b>\r\nTo: s+T1@x.example\r\nThread-Index: AQHYhh6dAAAAAAAAAAAAAAAAAAAAAP8AECAA\r\nThread-Topic: t\r\n\r\n",
	"Subject: uu\r\n\r\ntext\r\nbegin 644 a.txt\r\n#86)C\r\n`\r\nend\r\nbegin-base64 644 b\r\nYWJj\r\n====\r\nbegin 644 c\r\nM\r\n",
	"Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain; name*0*=iso-8859-1''a%E9; name*1=b\r\n\r\nx\r\n--a\r\nContent-Type: message/partial; id=x; number=1\r\n\r\nSubject: y\r\n\r\n--a--\r\n",
	"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\nContent-Type: application/pdf; name=a.pdf\r\n\r\nPDF\r\n--i--\r\n--o--\r\n",
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
	for _, id := range []string{"1", "1.1", "2.1", "1:1", "1.1.1", "1:x"} {
		f.Add([]byte(fuzzSeeds[len(fuzzSeeds)-1]), id)
		f.Add([]byte(fuzzSeeds[len(fuzzSeeds)-3]), id)
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

// FuzzContentFingerprint checks that the fingerprint is always 16 hex digits and leaves out the
// fields a delivery adds: a Received and a Delivered-To field before the header do not change it.
func FuzzContentFingerprint(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte("Received: x\r\n\tfor y\r\nX-Spam-Status: no\r\nSubject: s\r\n\r\nbody"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		fp := ContentFingerprint(raw)
		if len(fp) != 16 || strings.Trim(fp, "0123456789abcdef") != "" {
			t.Fatalf("fingerprint %q", fp)
		}
		if len(raw) > 0 && (raw[0] == ' ' || raw[0] == '\t' || bytes.HasPrefix(raw, []byte("From "))) {
			return // a continuation line would join the added field; an mbox line counts only first
		}
		delivered := append([]byte("Received: from mx by store; Mon, 2 Mar 2026\r\nDelivered-To: a@b\r\n"), raw...)
		if got := ContentFingerprint(delivered); got != fp {
			t.Fatalf("delivery fields counted: %s, %s", got, fp)
		}
	})
}
