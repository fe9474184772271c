package parse

import (
	"bytes"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"github.com/mailintake/mailintake/internal/testutil"
)

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func TestMultipartWithAttachmentAndCharsets(t *testing.T) {
	raw := crlf(`From: =?ISO-8859-1?Q?J=F6rg_M=FCller?= <joerg@example.de>
To: support@example.com, "Help Desk" <help@example.com>
Cc: boss@example.com
Subject: =?UTF-8?B?RHJ1Y2tlciBkZWZla3Qg4oCTIFsjNDIxXQ==?=
Date: Tue, 03 Mar 2026 10:15:00 +0100
Message-ID: <abc@mail.example.de>
In-Reply-To: <prev@example.com>
References: <root@example.com> <prev@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: multipart/alternative; boundary="b2"

--b2
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Der Drucker im B=FCro ist kaputt.
--b2
Content-Type: text/html; charset=utf-8

<p>Der Drucker im B&uuml;ro ist kaputt.</p>
--b2--
--b1
Content-Type: application/pdf; name="Rechnung.pdf"
Content-Disposition: attachment; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--b1--
`)
	m := Parse(raw, Options{TicketPattern: regexp.MustCompile(`\[#(\d+)\]`)})
	if len(m.Problems) != 0 {
		t.Errorf("problems: %v", m.Problems)
	}
	env := m.Envelope
	if env.Subject != "Drucker defekt – [#421]" {
		t.Errorf("Subject = %q", env.Subject)
	}
	if len(env.From) != 1 || env.From[0].Name != "Jörg Müller" || env.From[0].Address != "joerg@example.de" {
		t.Errorf("From = %v", env.From)
	}
	if len(env.To) != 2 || env.To[1].Name != "Help Desk" || len(env.Cc) != 1 {
		t.Errorf("To = %v, Cc = %v", env.To, env.Cc)
	}
	if env.MessageId != "abc@mail.example.de" || len(env.References) != 2 || env.InReplyTo[0] != "prev@example.com" {
		t.Errorf("ids: %q %v %v", env.MessageId, env.References, env.InReplyTo)
	}
	if env.Date.AsTime().UTC().Format("2006-01-02T15:04") != "2026-03-03T09:15" {
		t.Errorf("Date = %v", env.Date.AsTime())
	}
	if strings.TrimSpace(m.TextBody) != "Der Drucker im Büro ist kaputt." {
		t.Errorf("TextBody = %q", m.TextBody)
	}
	if !strings.Contains(m.HtmlBody, "Büro") || m.TextFromHtml {
		t.Errorf("HtmlBody = %q, from html %v", m.HtmlBody, m.TextFromHtml)
	}
	if len(m.Attachments) != 1 {
		t.Fatalf("attachments = %v", m.Attachments)
	}
	a := m.Attachments[0]
	if a.Filename != "Rechnung März.pdf" || a.ContentType != "application/pdf" || string(a.Data) != "%PDF-1.4\n" || a.Id != "2" || a.Size != 9 {
		t.Errorf("attachment = %+v", a)
	}
	if m.Signals.TicketReference != "421" {
		t.Errorf("ticket = %q", m.Signals.TicketReference)
	}
	if m.RawSize != uint64(len(raw)) || len(m.Sha256) != 64 {
		t.Errorf("raw size %d, sha %q", m.RawSize, m.Sha256)
	}
}

func TestHTMLOnlyNestedAndSignals(t *testing.T) {
	raw := crlf(`From: a@example.com
Subject: Fwd: hello
Auto-Submitted: auto-replied
List-Id: <list.example.com>
Content-Type: multipart/mixed; boundary=x

--x
Content-Type: text/html

<html><head><style>p{}</style></head><body><p>Hello <b>world</b></p><script>alert(1)</script><div>Bye</div></body></html>
--x
Content-Type: message/rfc822

From: b@example.com
Subject: inner

inner body
--x--
`)
	m := Parse(raw, Options{})
	if m.TextBody != "Hello *world*\n\nBye" || !m.TextFromHtml {
		t.Errorf("TextBody = %q (from html %v)", m.TextBody, m.TextFromHtml)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Message == nil || m.Attachments[0].Message.Envelope.Subject != "inner" ||
		strings.TrimSpace(m.Attachments[0].Message.TextBody) != "inner body" {
		t.Fatalf("nested message not parsed: %v", m.Attachments)
	}
	if m.Signals.AutoReply == 0 || !m.Signals.MailingList {
		t.Errorf("signals = %v", m.Signals)
	}
}

func TestBrokenInputIsKept(t *testing.T) {
	for name, raw := range map[string][]byte{
		"empty":         nil,
		"no header end": []byte("From: a@example.com\r\nSubject: x"),
		"binary":        {0xff, 0xfe, 0x00, 0x01, '\n', '\n', 0x80},
		"bad charset":   crlf("Subject: x\nContent-Type: text/plain; charset=x-klingon\n\nqapla'\n"),
		"bad boundary":  crlf("Content-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain\n\nunterminated"),
		"bad date":      crlf("Date: yesterday-ish\nFrom: <<>>\n\nbody\n"),
	} {
		t.Run(name, func(t *testing.T) {
			m := Parse(raw, Options{})
			if m == nil || m.RawSize != uint64(len(raw)) {
				t.Fatalf("Parse = %v", m)
			}
			if len(m.Problems) == 0 && name != "empty" && name != "no header end" && name != "binary" {
				t.Errorf("no problems reported for %s", name)
			}
			if m.Raw == nil && len(m.Problems) > 0 && m.TextBody == "" && len(m.Attachments) == 0 && len(m.Headers) == 0 {
				t.Errorf("%s: nothing read and raw not kept", name)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for range 20 {
		b.WriteString("--b\r\nContent-Type: application/octet-stream\r\n\r\nxxxx\r\n")
	}
	b.WriteString("--b--\r\n")
	m := Parse([]byte(b.String()), Options{MaxParts: 5, MaxInlineAttachment: 2})
	if len(m.Attachments) != 4 {
		t.Errorf("attachments = %d, want 4 (5 parts with the multipart itself)", len(m.Attachments))
	}
	if !m.Attachments[0].DataOmitted || m.Attachments[0].Data != nil || m.Attachments[0].Size != 4 {
		t.Errorf("large attachment kept inline: %+v", m.Attachments[0])
	}
	found := false
	for _, p := range m.Problems {
		found = found || p.Code == "limit"
	}
	if !found {
		t.Errorf("no limit problem reported: %v", m.Problems)
	}
}

func TestSanitizedHTMLAndSignals(t *testing.T) {
	raw := crlf(`From: a@example.com
Subject: Out of Office: Re: printer
Auto-Submitted: auto-replied
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/html

<p onclick="steal()">Hi<script>alert(1)</script><img src="https://tracker.example/p.gif"><img src="cid:logo@x"><a href="javascript:alert(1)">x</a></p>
--b
Content-Type: text/calendar; charset=utf-8

BEGIN:VCALENDAR
METHOD:REQUEST
END:VCALENDAR
--b--
`)
	m := Parse(raw, Options{})
	for _, bad := range []string{"onclick", "<script", "tracker.example", "javascript:"} {
		if strings.Contains(m.HtmlBody, bad) {
			t.Errorf("sanitised HTML keeps %q: %s", bad, m.HtmlBody)
		}
	}
	if !strings.Contains(m.HtmlBody, `src="cid:logo@x"`) {
		t.Errorf("inline cid: image dropped: %s", m.HtmlBody)
	}
	if m.Signals.CalendarMethod != "REQUEST" || m.Signals.AutoReply != 1 {
		t.Errorf("signals = %v", m.Signals)
	}
	dsn := Parse(crlf("From: MAILER-DAEMON@example.com\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\n\n--r\nContent-Type: text/plain\n\nDelivery failed.\n--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\nFinal-Recipient: rfc822; gone@example.net\nAction: failed\nStatus: 5.1.1 (user unknown)\nDiagnostic-Code: smtp; 550 5.1.1 no such user\n--r--\n"), Options{})
	if !dsn.Signals.Bounce || len(dsn.Signals.BounceRecipients) != 1 {
		t.Fatalf("bounce = %v", dsn.Signals)
	}
	r := dsn.Signals.BounceRecipients[0]
	if r.Address != "gone@example.net" || r.Action != "failed" || r.Status != "5.1.1" || !strings.Contains(r.Diagnostic, "550") {
		t.Errorf("bounce recipient = %v", r)
	}
}

func TestHTMLToTextBold(t *testing.T) {
	for in, want := range map[string]string{
		"<p>This is <strong>a</strong> <b>test</b> <i>mailing</i></p>": "This is *a* *test* mailing",
		"<b>Phone: </b>123":                           "*Phone:* 123",
		"<b><strong>nested</strong></b> and <b></b>x": "*nested* and x",
		"<script><b>no</b></script>ok":                "ok",
	} {
		if got := HTMLToText(in); got != want {
			t.Errorf("HTMLToText(%q) = %q, want %q", in, got, want)
		}
	}
}

// Parts are read through one reused buffer: every kept body (attachment data, a nested
// message, the text) must be its own copy, untouched by the parts read after it.
func TestKeptBodiesDoNotShareTheReadBuffer(t *testing.T) {
	one := bytes.Repeat([]byte("first attachment "), 200)
	two := bytes.Repeat([]byte("SECOND ATTACHMENT"), 200)
	inner := "From: x@example.com\nSubject: inner\n\ninner body\n"
	raw := crlf("From: a@example.com\nSubject: s\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n" +
		"--b\nContent-Type: text/plain\n\nthe text\n" +
		"--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=one.bin\nContent-Transfer-Encoding: base64\n\n" +
		base64.StdEncoding.EncodeToString(one) + "\n" +
		"--b\nContent-Type: message/rfc822\n\n" + inner +
		"--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=two.bin\nContent-Transfer-Encoding: base64\n\n" +
		base64.StdEncoding.EncodeToString(two) + "\n--b--\n")
	for range 3 { // the buffer also comes back from the pool between messages
		m := Parse(raw, Options{})
		if len(m.GetAttachments()) != 3 {
			t.Fatalf("attachments: %v", m.GetAttachments())
		}
		a, nested, b := m.Attachments[0], m.Attachments[1], m.Attachments[2]
		if !bytes.Equal(a.GetData(), one) || !bytes.Equal(b.GetData(), two) {
			t.Errorf("attachment data changed: %.40q / %.40q", a.GetData(), b.GetData())
		}
		if nested.GetMessage().GetEnvelope().GetSubject() != "inner" || !strings.Contains(nested.GetMessage().GetTextBody(), "inner body") {
			t.Errorf("nested message = %v", nested.GetMessage())
		}
		if strings.TrimSpace(m.GetTextBody()) != "the text" {
			t.Errorf("text body = %q", m.GetTextBody())
		}
	}
}

// An attachment that is sent whole is decoded into a buffer of its own, sized from its encoded
// size: its data is exactly the decoded bytes, of any encoding and through junk, and the
// buffer it keeps is not much larger than them (a body of mostly junk characters is copied
// out at its size).
func TestAttachmentDataInItsOwnBuffer(t *testing.T) {
	blob := bytes.Repeat([]byte("attachment bytes \x00\xff "), 5000)
	junk := strings.Repeat("!*!*\r\n", 40000) + "QUJD\r\n" // 240 KB that decode to "ABC"
	raw := []byte("From: a@example.net\r\nSubject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nsee the files\r\n" +
		"--b\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + testutil.Base64Lines(blob) +
		"--b\r\nContent-Type: application/octet-stream; name=\"b.bin\"\r\nContent-Transfer-Encoding: binary\r\n\r\n" + string(blob) + "\r\n" +
		"--b\r\nContent-Type: application/octet-stream; name=\"c.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + junk +
		"--b--\r\n")
	msg := Parse(raw, Options{})
	want := map[string][]byte{"a.pdf": blob, "b.bin": blob, "c.bin": []byte("ABC")}
	if len(msg.Attachments) != 3 {
		t.Fatalf("%d attachments: %v", len(msg.Attachments), msg.Problems)
	}
	for _, a := range msg.Attachments {
		if !bytes.Equal(a.Data, want[a.Filename]) || int(a.Size) != len(want[a.Filename]) {
			t.Errorf("%s: %d bytes (size %d), want %d", a.Filename, len(a.Data), a.Size, len(want[a.Filename]))
		}
		if c := cap(a.Data); c > len(a.Data)+len(a.Data)/8+4096 {
			t.Errorf("%s: %d bytes kept in a buffer of %d", a.Filename, len(a.Data), c)
		}
	}
}
