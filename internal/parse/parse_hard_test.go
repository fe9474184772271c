package parse

import (
	"bytes"
	"encoding/base64"
	"io"
	"strings"
	"testing"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Hard senders: encoded words in a wrong or undeclared charset, raw 8-bit, unquoted display
// names with commas or "@", and a From that is missing, empty or unreadable.

func TestEncodedWordsInAWrongCharset(t *testing.T) {
	for in, want := range map[string]string{
		"=?us-ascii?Q?J=F6rg_M=FCller?=":          "Jörg Müller", // 8-bit under us-ascii: Latin-1
		"=?us-ascii?Q?J=C3=B6rg?=":                "Jörg",        // 8-bit under us-ascii: UTF-8
		"=?iso-8859-1?Q?J=C3=B6rg_M=C3=BCller?=":  "Jörg Müller", // UTF-8 labelled Latin-1
		"=?ISO-8859-1?B?SsO2cmc=?=":               "Jörg",
		"=?iso-8859-1?Q?=93Drucker=94_=80_5?=":    "“Drucker” € 5", // Windows-1252 labelled Latin-1
		"=?iso-8859-1?Q?B=FCro?=":                 "Büro",          // right as declared
		"=?utf-8?Q?B=FCro?=":                      "Büro",          // Latin-1 labelled UTF-8
		"=?windows-1252?Q?B=C3=BCro?=":            "Büro",
		"=?x-unknown?Q?B=C3=BCro?=":               "Büro", // a label no decoder knows
		"=?unknown-8bit?Q?B=FCro?=":               "Büro",
		"=?utf-8?B?w6k=?= =?utf-8?B?w6k=?=":       "éé", // adjacent words joined
		"=?utf-8?B?8J+Y?= =?utf-8?B?gA==?=":       "😀",  // one character split over two words
		"Re: =?us-ascii?Q?Gr=FC=DFe?= aus Berlin": "Re: Grüße aus Berlin",
		"=?koi8-r?B?8NLJ18XU?=":                   "Привет", // a right charset is left to the decoder
	} {
		got, err := decodeText(in)
		if err != nil || got != want {
			t.Errorf("decodeText(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestHardSenders(t *testing.T) {
	raw := crlf("From: =?iso-8859-1?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>\n" +
		"To: Smith, John <john@example.com>, Doe, Jane <jane@example.com>, plain@example.com\n" +
		"Cc: john@example.com <john@example.com>, \"=?utf-8?Q?Ren=C3=A9?=\" <rene@example.com>\n" +
		"Reply-To: M\xfcller, J\xf6rg <joerg@example.de>\n" +
		"Subject: Gr\xfc\xdfe =?utf-8?Q?caf=C3=A9?=\n\nbody\n")
	m := Parse(raw, Options{})
	env := m.Envelope
	check := func(what string, got []*mailintakev1.Address, want ...string) {
		t.Helper()
		var g []string
		for _, a := range got {
			g = append(g, a.Name+" <"+a.Address+">")
		}
		if strings.Join(g, ", ") != strings.Join(want, ", ") {
			t.Errorf("%s = %q, want %q", what, g, want)
		}
	}
	check("From", env.From, "Jörg Müller <joerg@example.de>")
	check("To", env.To, "Smith, John <john@example.com>", "Doe, Jane <jane@example.com>", " <plain@example.com>")
	check("Cc", env.Cc, "john@example.com <john@example.com>", "René <rene@example.com>")
	check("Reply-To", env.ReplyTo, "Müller, Jörg <joerg@example.de>")
	if env.Subject != "Grüße café" {
		t.Errorf("Subject = %q", env.Subject)
	}
	for _, h := range m.Headers {
		if h.Name == "Subject" && h.Value != "Grüße café" {
			t.Errorf("Subject header = %q", h.Value)
		}
	}
	var charsetProblems int
	for _, p := range m.Problems {
		if p.Code == "charset" {
			charsetProblems++
		}
	}
	if charsetProblems != 2 { // Reply-To and Subject carry raw 8-bit
		t.Errorf("problems = %v", m.Problems)
	}
	if env.FromFallback != "" {
		t.Errorf("from_fallback = %q", env.FromFallback)
	}
}

func TestFromFallback(t *testing.T) {
	for _, c := range []struct {
		name, header, fallback, from string
	}{
		{"missing, Sender", "Sender: Desk Robot <robot@example.com>\nReply-To: r@example.com\n", "Sender", "Desk Robot <robot@example.com>"},
		{"empty, Reply-To", "From: \nReply-To: Ann <ann@example.com>, bob@example.com\nReturn-Path: <bounce@example.com>\n", "Reply-To", "Ann <ann@example.com>, <bob@example.com>"},
		{"unreadable, Return-Path", "From: Customer Service\nReturn-Path: <bounce@example.com>\n", "Return-Path", "<bounce@example.com>"},
		{"group, Return-Path", "From: undisclosed-recipients:;\nReturn-Path: <>\nReturn-Path: bounce@example.com\n", "Return-Path", "<bounce@example.com>"},
		{"nothing", "From: <>\nReturn-Path: <>\nSubject: x\n", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := Parse(crlf(c.header+"\nbody\n"), Options{})
			env := m.Envelope
			var got []string
			for _, a := range env.From {
				got = append(got, strings.TrimSpace(a.Name+" <"+a.Address+">"))
			}
			if env.FromFallback != c.fallback || strings.Join(got, ", ") != c.from {
				t.Errorf("from %q (fallback %q), want %q (%q)", got, env.FromFallback, c.from, c.fallback)
			}
			var p *mailintakev1.ParseProblem
			for _, pr := range m.Problems {
				if pr.Code == "from" {
					p = pr
				}
			}
			if p == nil || (c.fallback != "" && !strings.Contains(p.Message, c.fallback)) {
				t.Errorf("problem = %v", m.Problems)
			}
		})
	}
	// A usable From: no fallback, no problem. No header at all: nothing to say.
	for _, raw := range []string{"From: a@example.com\nSender: b@example.com\n\nx\n", "\nbody only\n"} {
		m := Parse(crlf(raw), Options{})
		for _, p := range m.Problems {
			if p.Code == "from" {
				t.Errorf("%q: problem %v", raw, p)
			}
		}
		if m.Envelope.FromFallback != "" {
			t.Errorf("%q: from_fallback %q", raw, m.Envelope.FromFallback)
		}
	}
}

// Hard attachments.

func TestAttachmentNames(t *testing.T) {
	raw := crlf(`From: a@example.com
Subject: names
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain

see attached
--b
Content-Type: application/pdf; name="invoice.pdf"
Content-Transfer-Encoding: base64

JVBERi0=
--b
Content-Type: application/pdf; name*=iso-8859-1''R%E9sum%E9.pdf

x
--b
Content-Type: application/octet-stream
Content-Disposition: attachment; filename*0*=utf-8''a%C3%A9; filename*1*=b%20c.pdf

x
--b
Content-Type: application/octet-stream
Content-Disposition: attachment; filename*0*=iso-8859-1''Gr%FC; filename*1=" Notes.txt"

x
--b
Content-Type: application/octet-stream; name="=?iso-8859-1?Q?J=C3=B6rg.pdf?="

x
--b
Content-Type: image/png; name="ignored.png"
Content-Disposition: inline; filename="logo.png"
Content-Id: <logo@x>

x
--b--
`)
	m := Parse(raw, Options{})
	want := []string{"invoice.pdf", "Résumé.pdf", "aéb c.pdf", "Grü Notes.txt", "Jörg.pdf", "logo.png"}
	if len(m.Attachments) != len(want) {
		t.Fatalf("attachments = %v", m.Attachments)
	}
	for i, w := range want {
		if m.Attachments[i].Filename != w {
			t.Errorf("attachment %d: filename %q, want %q", i, m.Attachments[i].Filename, w)
		}
	}
	if string(m.Attachments[0].Data) != "%PDF-" || m.Attachments[0].Id != "2" {
		t.Errorf("name-only attachment = %v", m.Attachments[0])
	}
	if strings.TrimSpace(m.TextBody) != "see attached" {
		t.Errorf("text = %q", m.TextBody)
	}
	// OpenPart describes a part as the parse did.
	for i, w := range want {
		a, _, err := OpenPart(bytes.NewReader(raw), m.Attachments[i].Id)
		if err != nil || a.Filename != w {
			t.Errorf("OpenPart(%s) = %v, %v; want %q", m.Attachments[i].Id, a, err, w)
		}
	}
}

func TestAttachmentsInsideAlternative(t *testing.T) {
	raw := crlf(`From: a@example.com
Subject: alt
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=a

--a
Content-Type: text/plain

plain text
--a
Content-Type: text/plain; name="notes.txt"

the notes
--a
Content-Type: text/plain
Content-Disposition: attachment; filename=log.txt

the log
--a
Content-Type: text/html

<p>html text</p>
--a
Content-Type: image/png

PNG
--a
Content-Type: application/pdf; name=x.pdf

PDF
--a--
`)
	m := Parse(raw, Options{})
	if strings.TrimSpace(m.TextBody) != "plain text" || !strings.Contains(m.HtmlBody, "html text") {
		t.Errorf("bodies: %q / %q", m.TextBody, m.HtmlBody)
	}
	var got []string
	for _, a := range m.Attachments {
		got = append(got, a.Id+" "+a.ContentType+" "+a.Filename+" "+strings.TrimSpace(string(a.Data)))
	}
	want := []string{"2 text/plain notes.txt the notes", "3 text/plain log.txt the log", "5 image/png  PNG", "6 application/pdf x.pdf PDF"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("attachments:\n%q\nwant\n%q", got, want)
	}
	// A named text part first in an alternative is a file, not the body: the HTML is.
	m = Parse(crlf("Content-Type: multipart/alternative; boundary=a\n\n--a\nContent-Type: text/plain; name=notes.txt\n\nthe notes\n--a\nContent-Type: text/html\n\n<p>html text</p>\n--a--\n"), Options{})
	if len(m.Attachments) != 1 || m.Attachments[0].Filename != "notes.txt" || m.TextBody != "html text" || !m.TextFromHtml {
		t.Errorf("text %q, attachments %v", m.TextBody, m.Attachments)
	}
}

func TestMessagePartial(t *testing.T) {
	for _, raw := range [][]byte{
		crlf("From: a@example.com\nSubject: big (1/3)\nMIME-Version: 1.0\nContent-Type: message/partial; id=\"abc@example.com\"; number=1; total=3\n\nSubject: big\nContent-Type: application/zip\n\nUEsDBAo=\n"),
		crlf("From: a@example.com\nSubject: big\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nfragment follows\n--b\nContent-Type: message/partial; id=\"abc@example.com\"; number=2; total=3\n\nUEsDBAo=\n--b--\n"),
	} {
		m := Parse(raw, Options{})
		if len(m.Attachments) != 1 || m.Attachments[0].ContentType != "message/partial" || len(m.Attachments[0].Data) == 0 {
			t.Fatalf("attachments = %v", m.Attachments)
		}
		var p *mailintakev1.ParseProblem
		for _, pr := range m.Problems {
			if pr.Code == "partial" {
				p = pr
			}
		}
		if p == nil || p.Part != m.Attachments[0].Id || !strings.Contains(p.Message, `id="abc@example.com"`) || !strings.Contains(p.Message, "total=3") {
			t.Errorf("problem = %v (attachment %s)", m.Problems, m.Attachments[0].Id)
		}
	}
	if p := partialProblem("2", map[string]string{"id": "x", "number": "2"}); !strings.Contains(p.Message, "number=2 total=?") {
		t.Errorf("without a total: %s", p.Message)
	}
}

// A forwarded message keeps its attachments, numbered under it as IMAP numbers them; those over
// the inline limit are served by OpenPart (GetAttachment) like any other part.
func TestForwardedMessageAttachments(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 200) // 3200 bytes, over the limit below
	inner := "From: b@example.com\nSubject: original\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=i\n\n" +
		"--i\nContent-Type: text/plain\n\ninner text\n" +
		"--i\nContent-Type: application/pdf; name=big.pdf\nContent-Transfer-Encoding: base64\n\n" + base64.StdEncoding.EncodeToString(big) + "\n" +
		"--i\nContent-Type: image/png; name=small.png\n\nPNG\n" +
		"--i\nContent-Type: message/rfc822\n\nFrom: c@example.com\nSubject: deepest\n\ndeep text begin 644 x\n" +
		"--i--\n"
	raw := crlf("From: a@example.com\nSubject: Fwd: original\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=o\n\n" +
		"--o\nContent-Type: text/plain\n\nsee below\n" +
		"--o\nContent-Type: message/rfc822\nContent-Disposition: attachment\n\n" + inner +
		"--o\nContent-Type: message/rfc822\n\nFrom: d@example.com\nSubject: single\n\nsingle part body\n" +
		"--o--\n")
	m := Parse(raw, Options{MaxInlineAttachment: 1000})
	if len(m.Attachments) != 2 {
		t.Fatalf("attachments = %v", m.Attachments)
	}
	fwd := m.Attachments[0]
	if fwd.Id != "2" || !fwd.DataOmitted || fwd.Message == nil || fwd.Message.Envelope.Subject != "original" {
		t.Fatalf("forwarded = %v", fwd)
	}
	if strings.TrimSpace(fwd.Message.TextBody) != "inner text" || fwd.Message.ContentFingerprint != "" {
		t.Errorf("forwarded text %q, fingerprint %q", fwd.Message.TextBody, fwd.Message.ContentFingerprint)
	}
	na := fwd.Message.Attachments
	if len(na) != 3 || na[0].Id != "2.2" || na[0].Filename != "big.pdf" || !na[0].DataOmitted || na[0].Size != uint64(len(big)) ||
		na[1].Id != "2.3" || string(na[1].Data) != "PNG" || na[2].Id != "2.4" || na[2].Message == nil {
		t.Fatalf("forwarded attachments = %v", na)
	}
	if d := na[2].Message; d.Envelope.Subject != "deepest" || strings.TrimSpace(d.TextBody) != "deep text begin 644 x" {
		t.Errorf("deepest = %v", d)
	}
	single := m.Attachments[1]
	if single.Id != "3" || strings.TrimSpace(single.Message.TextBody) != "single part body" {
		t.Errorf("single = %v", single)
	}
	for id, want := range map[string]string{
		"2.2": string(big), "2.3": "PNG", "2.1": "inner text", "3.1": "single part body", "2.4.1": "deep text begin 644 x", "1": "see below",
	} {
		a, body, err := OpenPart(bytes.NewReader(raw), id)
		if err != nil {
			t.Errorf("OpenPart(%s): %v", id, err)
			continue
		}
		b, _ := io.ReadAll(body)
		if strings.TrimSpace(string(b)) != want || a.Id != id {
			t.Errorf("OpenPart(%s) = %v %.40q, want %.40q", id, a, b, want)
		}
	}
	if a, _, _ := OpenPart(bytes.NewReader(raw), "2.2"); a.Filename != "big.pdf" || a.ContentType != "application/pdf" {
		t.Errorf("OpenPart(2.2) = %v", a)
	}
	for _, id := range []string{"2.5", "4", "3.2", "1.1", "2.2.1"} {
		if _, _, err := OpenPart(bytes.NewReader(raw), id); err != ErrNoSuchPart {
			t.Errorf("OpenPart(%s): %v, want ErrNoSuchPart", id, err)
		}
	}
	// A whole message that is message/rfc822: its body is 1.1 (IMAP).
	top := crlf("Content-Type: message/rfc822\n\nFrom: x@example.com\nContent-Type: application/pdf; name=a.pdf\n\nPDF\n")
	m = Parse(top, Options{})
	if len(m.Attachments) != 1 || m.Attachments[0].Id != "1" || len(m.Attachments[0].Message.GetAttachments()) != 1 || m.Attachments[0].Message.Attachments[0].Id != "1.1" {
		t.Fatalf("top message/rfc822: %v", m.Attachments)
	}
	if a, body, err := OpenPart(bytes.NewReader(top), "1.1"); err != nil || a.Filename != "a.pdf" {
		t.Errorf("OpenPart(1.1) = %v, %v", a, err)
	} else if b, _ := io.ReadAll(body); strings.TrimSpace(string(b)) != "PDF" {
		t.Errorf("OpenPart(1.1) body %q", b)
	}
}
