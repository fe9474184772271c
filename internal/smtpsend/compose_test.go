package smtpsend

import (
	"bytes"
	"io"
	"mime"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"github.com/mailintake/mailintake/internal/parse"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// structure renders a message's MIME tree as "multipart/mixed(multipart/alternative(text/plain
// text/html) application/pdf)".
func structure(t *testing.T, e *message.Entity) string {
	t.Helper()
	mt, _, _ := e.Header.ContentType()
	mr := e.MultipartReader()
	if mr == nil {
		io.Copy(io.Discard, e.Body)
		return mt
	}
	var parts []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, structure(t, p))
	}
	return mt + "(" + strings.Join(parts, " ") + ")"
}

func readMessage(t *testing.T, b []byte) *message.Entity {
	t.Helper()
	e, err := message.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestComposeStructure(t *testing.T) {
	pdf := Attachment{Filename: "Rechnung März.pdf", Data: bytes.Repeat([]byte("%PDF"), 100)}
	logo := Attachment{Filename: "logo.png", ContentID: "logo@desk", Data: []byte{0x89, 'P', 'N', 'G'}}
	for _, c := range []struct {
		d    Draft
		want string
	}{
		{Draft{Text: "hi"}, "text/plain"},
		{Draft{HTML: "<p>hi</p>"}, "text/html"},
		{Draft{}, "text/plain"},
		{Draft{Text: "hi", HTML: "<p>hi</p>"}, "multipart/alternative(text/plain text/html)"},
		{Draft{Text: "hi", Attachments: []Attachment{pdf}}, "multipart/mixed(text/plain application/pdf)"},
		{Draft{Attachments: []Attachment{pdf}}, "multipart/mixed(application/pdf)"},
		{Draft{Text: "hi", HTML: `<img src="cid:logo@desk">`, Attachments: []Attachment{logo, pdf}},
			"multipart/mixed(multipart/alternative(text/plain multipart/related(text/html image/png)) application/pdf)"},
		// Without HTML, an image with a Content-ID is an ordinary attachment.
		{Draft{Text: "hi", Attachments: []Attachment{logo}}, "multipart/mixed(text/plain image/png)"},
	} {
		c.d.From, c.d.To, c.d.Subject = "support@example.com", []string{"a@example.org"}, "s"
		o, err := Compose(c.d)
		if err != nil {
			t.Fatal(err)
		}
		if got := structure(t, readMessage(t, o.Bytes)); got != c.want {
			t.Errorf("got %s, want %s", got, c.want)
		}
	}
}

func TestComposeContent(t *testing.T) {
	text := "Grüße,\nline two with a = sign\n" + strings.Repeat("long ", 400) + "\n"
	html := "<p>Grüße</p>"
	data := bytes.Repeat([]byte{0, 1, 2, 0xff}, 3000)
	o, err := Compose(Draft{From: "Service Désk <desk@example.com>", To: []string{"Jürgen Müller <j@example.org>"}, Subject: "Grüße",
		Text: text, HTML: html, Attachments: []Attachment{{Filename: "Rechnung März.pdf", Data: data}, {Filename: "notes.txt", ContentType: "text/plain; charset=iso-8859-1", Data: []byte("caf\xe9")}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(o.Bytes), "\r\n") {
		if len(l) > 998 {
			t.Errorf("line %d is %d octets", i+1, len(l))
		}
		if strings.ContainsAny(l, "\r\n") {
			t.Errorf("line %d has a bare CR or LF", i+1)
		}
	}
	var bodies []string
	var names []string
	mr, err := mail.CreateReader(bytes.NewReader(o.Bytes))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := mr.Header.Subject(); s != "Grüße" {
		t.Errorf("subject %q", s)
	}
	if from, _ := mr.Header.AddressList("From"); len(from) != 1 || from[0].Name != "Service Désk" {
		t.Errorf("from %v", from)
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p.Body)
		switch h := p.Header.(type) {
		case *mail.InlineHeader:
			bodies = append(bodies, string(b))
		case *mail.AttachmentHeader:
			name, _ := h.Filename()
			names = append(names, name)
			if name == "Rechnung März.pdf" && !bytes.Equal(b, data) {
				t.Error("the PDF did not survive")
			}
			if name == "notes.txt" {
				if _, params, _ := h.ContentType(); params["charset"] != "iso-8859-1" {
					t.Errorf("notes.txt charset %q", params["charset"])
				}
			}
		}
	}
	if len(bodies) != 2 || bodies[0] != strings.ReplaceAll(text, "\n", "\r\n") || bodies[1] != html {
		t.Errorf("bodies %q", bodies)
	}
	if strings.Join(names, ",") != "Rechnung März.pdf,notes.txt" {
		t.Errorf("attachments %q", names)
	}
}

func TestComposeHeader(t *testing.T) {
	date := time.Date(2026, 3, 3, 10, 15, 0, 0, time.UTC)
	o, err := Compose(Draft{From: "Support <support@Example.COM>", Sender: "agent@example.com", ReplyTo: []string{"tickets@example.com"},
		To: []string{"a@example.org, B <b@example.org>"}, Bcc: []string{"hidden@example.net"}, Subject: strings.Repeat("Grüße aus dem Helpdesk ", 8),
		AutoSubmitted: "auto-replied", Headers: []Field{{"X-Ticket-ID", "4711"}}, Date: date})
	if err != nil {
		t.Fatal(err)
	}
	h := headerOf(o.Bytes)
	for _, want := range []string{"Date: Tue, 03 Mar 2026 10:15:00 +0000\r\n", "From: \"Support\" <support@Example.COM>\r\n", "Sender: <agent@example.com>\r\n",
		"Reply-To: <tickets@example.com>\r\n", "To: <a@example.org>, \"B\" <b@example.org>\r\n", "Auto-Submitted: auto-replied\r\n",
		"X-Ticket-ID: 4711\r\n", "MIME-Version: 1.0\r\n", "Message-ID: <" + o.MessageID + ">\r\n"} {
		wantContains(t, "header", h, want)
	}
	if strings.Contains(h, "hidden") || strings.Contains(h, "Bcc") {
		t.Error("Bcc in the header")
	}
	for _, l := range strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n") {
		if len(l) > foldLimit {
			t.Errorf("header line of %d characters: %q", len(l), l)
		}
	}
	if !regexp.MustCompile(`^[a-z2-7]{26}@example\.com$`).MatchString(o.MessageID) {
		t.Errorf("Message-ID %q", o.MessageID)
	}
	if o.From != "support@Example.COM" || strings.Join(o.Recipients, " ") != "a@example.org b@example.org hidden@example.net" {
		t.Errorf("envelope %q → %q", o.From, o.Recipients)
	}
	var dec mime.WordDecoder
	subject := regexp.MustCompile(`(?s)Subject:(.*?)\r\n[^ ]`).FindStringSubmatch(h)[1]
	if s, _ := dec.DecodeHeader(strings.ReplaceAll(subject, "\r\n", "")); strings.TrimSpace(s) != strings.TrimSpace(strings.Repeat("Grüße aus dem Helpdesk ", 8)) {
		t.Errorf("subject decodes to %q", s)
	}
}

func TestComposeRefuses(t *testing.T) {
	for name, d := range map[string]Draft{
		"no from":         {To: []string{"a@example.org"}},
		"two froms":       {From: "a@example.com, b@example.com", To: []string{"a@example.org"}},
		"no recipients":   {From: "a@example.com"},
		"bad address":     {From: "a@example.com", To: []string{"not an address"}},
		"no domain":       {From: "a@example.com", To: []string{"postmaster"}},
		"managed header":  {From: "a@example.com", To: []string{"a@example.org"}, Headers: []Field{{"Message-ID", "<x@y>"}}},
		"content header":  {From: "a@example.com", To: []string{"a@example.org"}, Headers: []Field{{"Content-Foo", "x"}}},
		"bad field name":  {From: "a@example.com", To: []string{"a@example.org"}, Headers: []Field{{"X Bad", "x"}}},
		"bad message id":  {From: "a@example.com", To: []string{"a@example.org"}, MessageID: "no at sign"},
		"line break name": {From: "a@example.com", To: []string{"a@example.org"}, Attachments: []Attachment{{Filename: "a\r\nb"}}},
	} {
		if _, err := Compose(d); err == nil {
			t.Errorf("%s: composed", name)
		}
	}
}

func TestComposeSameMessageIDAgain(t *testing.T) {
	d := Draft{From: "a@example.com", To: []string{"b@example.org"}, Text: "x", MessageID: "<fixed@example.com>"}
	o, err := Compose(d)
	if err != nil {
		t.Fatal(err)
	}
	if o.MessageID != "fixed@example.com" {
		t.Errorf("Message-ID %q", o.MessageID)
	}
}

func TestMessageIDDomain(t *testing.T) {
	for addr, want := range map[string]string{"a@Example.COM": "example.com", "a@bücher.example": "xn--bcher-kva.example", "a@[192.0.2.1]": "192.0.2.1", "nodomain": ""} {
		if got := domainOf(addr); got != want {
			t.Errorf("domainOf(%q) = %q", addr, got)
		}
	}
	if id := NewMessageID(""); !strings.HasSuffix(id, "@"+fallbackDomain) {
		t.Errorf("NewMessageID(\"\") = %q", id)
	}
	if a, b := NewMessageID("example.com"), NewMessageID("example.com"); a == b {
		t.Errorf("two equal Message-IDs: %s", a)
	}
}

// A reply to a delivered message, parsed back by the parser, belongs to the same thread.
func TestReplyParsesBackIntoTheSameThread(t *testing.T) {
	raw, err := os.ReadFile("../parse/testdata/mail/outlook-reply-de.eml")
	if err != nil {
		t.Fatal(err)
	}
	orig := parse.Parse(raw, parse.Options{}).GetEnvelope()
	o, err := Compose(Draft{From: "Helpdesk <support@helpdesk.example>", To: []string{"juergen.mueller@kunde.example"}, Text: "Gern geschehen.",
		Reply: &Original{MessageID: orig.GetMessageId(), References: orig.GetReferences(), InReplyTo: orig.GetInReplyTo(), Subject: orig.GetSubject()}})
	if err != nil {
		t.Fatal(err)
	}
	reply := parse.Parse(o.Bytes, parse.Options{})
	env := reply.GetEnvelope()
	if env.GetMessageId() != o.MessageID {
		t.Errorf("Message-ID %q, composed %q", env.GetMessageId(), o.MessageID)
	}
	if got := strings.Join(env.GetInReplyTo(), " "); got != "AM0PR01MB1234@eurprd01.prod.outlook.example" {
		t.Errorf("In-Reply-To %q", got)
	}
	want := "ticket-4711-1@helpdesk.example ticket-4711-3@helpdesk.example AM0PR01MB1234@eurprd01.prod.outlook.example"
	if got := strings.Join(env.GetReferences(), " "); got != want {
		t.Errorf("References %q, want %q", got, want)
	}
	if env.GetSubject() != "Re: [#4711] Drucker im 2. OG druckt nicht" {
		t.Errorf("subject %q", env.GetSubject())
	}
	// The thread candidates a service desk matches on name the original first, then the rest
	// of the chain.
	var irt []string
	refs := map[string]bool{}
	for _, c := range reply.GetThread() {
		switch c.GetMethod() {
		case mailintakev1.ThreadMethod_THREAD_METHOD_IN_REPLY_TO:
			irt = append(irt, c.GetValue())
		case mailintakev1.ThreadMethod_THREAD_METHOD_REFERENCES:
			refs[c.GetValue()] = true
		}
	}
	if strings.Join(irt, " ") != "AM0PR01MB1234@eurprd01.prod.outlook.example" || !refs["ticket-4711-1@helpdesk.example"] || !refs["ticket-4711-3@helpdesk.example"] {
		t.Errorf("thread candidates: In-Reply-To %q, References %v", irt, refs)
	}
	if len(reply.GetProblems()) != 0 {
		t.Errorf("the parser found problems: %v", reply.GetProblems())
	}
}
