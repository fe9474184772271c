package smtpsend

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	nettextproto "net/textproto"
)

// Draft is a message to compose. Addresses are "Name <a@example.com>" or "a@example.com"; an
// entry may hold several separated by commas.
type Draft struct {
	// From is the author: the mailbox's address, or the send-as address (a shared mailbox).
	From string
	// Sender, when set, is the Sender field: who sends on behalf of From (Exchange's "Send on
	// Behalf"). It does not change the envelope sender.
	Sender  string
	ReplyTo []string
	To, Cc  []string
	// Bcc are recipients of the envelope only: they never appear in the header.
	Bcc     []string
	Subject string
	// Text and HTML are the bodies; with both, the message is multipart/alternative.
	Text, HTML  string
	Attachments []Attachment
	// Reply, when set, threads the message as a reply: In-Reply-To and References come from
	// it (ThreadIDs), and an empty Subject becomes ReplySubject(Reply.Subject).
	Reply *Original
	// AutoSubmitted, when set, is the Auto-Submitted field (RFC 3834: "auto-replied" for an
	// automatic answer, so the other side's autoresponder does not answer back).
	AutoSubmitted string
	// Headers are further fields (X-…); the fields this package writes are refused.
	Headers []Field
	// MessageID is the Message-ID without angle brackets; empty: NewMessageID with the From
	// address's domain. Set it to compose the same message again (a retried send).
	MessageID string
	// Date is the Date field; zero: now.
	Date time.Time
	// EnvelopeFrom is MAIL FROM; empty: From's address (so bounces return to the mailbox
	// that sent, a shared one included).
	EnvelopeFrom string
}

// Field is one header field.
type Field struct{ Name, Value string }

// Attachment is a file sent with the message.
type Attachment struct {
	// Filename is the name the recipient sees (any characters: RFC 2231 encodes it).
	Filename string
	// ContentType is its media type; empty: guessed from Filename's extension, else
	// application/octet-stream.
	ContentType string
	// ContentID, when set, makes it an inline part the HTML body shows as cid:<ContentID>
	// (multipart/related); without an HTML body it is an ordinary attachment.
	ContentID string
	Data      []byte
}

// Outgoing is a message ready to send.
type Outgoing struct {
	// Bytes is the whole message, lines ending in CRLF for a composed one.
	Bytes []byte
	// MessageID is its Message-ID without angle brackets ("" only for a raw message whose
	// Message-ID field cannot be read).
	MessageID string
	// From is the envelope sender (MAIL FROM).
	From string
	// Recipients is every recipient (To, Cc and Bcc), each once.
	Recipients []string
	// Warnings says what was left out or changed, e.g. an unusable id of the original.
	Warnings []string
}

// Envelope returns the envelope to send the message with, id being the outbound id (ENVID).
func (o *Outgoing) Envelope(id string) Envelope {
	return Envelope{From: o.From, To: o.Recipients, ID: id}
}

// managedFields are written by Compose and cannot be given as Draft.Headers.
var managedFields = map[string]bool{
	"Date": true, "From": true, "Sender": true, "Reply-To": true, "To": true, "Cc": true, "Bcc": true,
	"Subject": true, "Message-Id": true, "In-Reply-To": true, "References": true, "Auto-Submitted": true,
	"Mime-Version": true, "Content-Type": true, "Content-Transfer-Encoding": true, "Content-Disposition": true,
	"Content-Id": true, "Return-Path": true, "Received": true,
}

// Compose writes a draft as an RFC 5322 message: the fields RFC 2047-encoded where they are not
// ASCII and folded under 78 characters, the bodies quoted-printable and the attachments base64 (so
// no line is longer than 998 octets), text and HTML as multipart/alternative, inline images in
// multipart/related, attachments in multipart/mixed.
func Compose(d Draft) (*Outgoing, error) {
	from, err := parseAddress("from", d.From)
	if err != nil {
		return nil, err
	}
	fields := []string{"Date", "From"}
	h := map[string]string{}
	set := func(name, value string) {
		if _, ok := h[name]; !ok {
			fields = append(fields, name)
		}
		h[name] = value
	}
	date := d.Date
	if date.IsZero() {
		date = time.Now()
	}
	h["Date"] = formatDate(date)
	h["From"] = formatAddresses([]*mail.Address{from})
	if d.Sender != "" {
		sender, err := parseAddress("sender", d.Sender)
		if err != nil {
			return nil, err
		}
		set("Sender", formatAddresses([]*mail.Address{sender}))
	}
	lists := map[string][]*mail.Address{}
	for _, l := range []struct {
		name    string
		entries []string
	}{{"Reply-To", d.ReplyTo}, {"To", d.To}, {"Cc", d.Cc}, {"Bcc", d.Bcc}} {
		if lists[l.name], err = parseAddresses(strings.ToLower(l.name), l.entries); err != nil {
			return nil, err
		}
		if len(lists[l.name]) > 0 && l.name != "Bcc" {
			set(l.name, formatAddresses(lists[l.name]))
		}
	}
	recipients := uniqueAddresses(lists["To"], lists["Cc"], lists["Bcc"])
	if len(recipients) == 0 {
		return nil, errors.New("the message has no recipients (To, Cc or Bcc)")
	}

	out := &Outgoing{From: from.Address, Recipients: recipients}
	if d.EnvelopeFrom != "" {
		if err := checkEnvelopeAddress(d.EnvelopeFrom); err != nil {
			return nil, fmt.Errorf("envelope_from: the address %v", err)
		}
		out.From = d.EnvelopeFrom
	}
	subject := d.Subject
	if subject == "" && d.Reply != nil {
		subject = ReplySubject(d.Reply.Subject)
	}
	set("Subject", mime.QEncoding.Encode("utf-8", oneLineText(subject)))

	out.MessageID = strings.Trim(strings.TrimSpace(d.MessageID), "<>")
	if out.MessageID == "" {
		out.MessageID = NewMessageID(domainOf(from.Address))
	} else if !validMessageID(out.MessageID) {
		return nil, fmt.Errorf("message_id: %q cannot be a Message-ID (want local@domain, no spaces or brackets)", d.MessageID)
	}
	set("Message-ID", "<"+out.MessageID+">")
	if d.Reply != nil {
		irt, refs := ThreadIDs(*d.Reply)
		if irt == "" {
			out.Warnings = append(out.Warnings, fmt.Sprintf("the original's Message-ID %q is unusable: the reply has no In-Reply-To", d.Reply.MessageID))
		} else {
			set("In-Reply-To", "<"+irt+">")
		}
		if len(refs) > 0 {
			set("References", "<"+strings.Join(refs, "> <")+">")
		}
	}
	if d.AutoSubmitted != "" {
		set("Auto-Submitted", oneLineText(d.AutoSubmitted))
	}
	for _, f := range d.Headers {
		key := nettextproto.CanonicalMIMEHeaderKey(f.Name)
		if !validFieldName(f.Name) || managedFields[key] || strings.HasPrefix(key, "Content-") {
			return nil, fmt.Errorf("headers: %q cannot be set as an extra field", f.Name)
		}
		set(f.Name, mime.QEncoding.Encode("utf-8", oneLineText(f.Value)))
	}
	root, err := bodyEntity(d)
	if err != nil {
		return nil, err
	}
	h["Content-Type"] = root.header.Get("Content-Type")
	fields = append(fields, "Content-Type")
	if cte := root.header.Get("Content-Transfer-Encoding"); cte != "" {
		h["Content-Transfer-Encoding"] = cte
		fields = append(fields, "Content-Transfer-Encoding")
	}

	var hdr textproto.Header
	// go-message writes the field added last first: add them backwards.
	for i := len(fields) - 1; i >= 0; i-- {
		name := fields[i]
		hdr.AddRaw([]byte(foldField(name, h[name])))
		if name == "Content-Type" {
			hdr.AddRaw([]byte("MIME-Version: 1.0\r\n"))
		}
	}
	var buf bytes.Buffer
	if err := textproto.WriteHeader(&buf, hdr); err != nil {
		return nil, err
	}
	if err := root.writeBody(&buf); err != nil {
		return nil, err
	}
	out.Bytes = buf.Bytes()
	return out, nil
}

// bodyEntity builds the MIME structure of the draft's bodies and attachments.
func bodyEntity(d Draft) (*entity, error) {
	var text, html *entity
	if d.Text != "" {
		text = textEntity("plain", d.Text)
	}
	if d.HTML != "" {
		html = textEntity("html", d.HTML)
	}
	var inline, files []*entity
	for i, a := range d.Attachments {
		if strings.ContainsAny(a.Filename, "\r\n") || strings.ContainsAny(a.ContentType, "\r\n") {
			return nil, fmt.Errorf("attachments[%d]: a line break in its name or type", i)
		}
		if a.ContentID = strings.Trim(strings.TrimSpace(a.ContentID), "<>"); a.ContentID != "" && !validContentID(a.ContentID) {
			return nil, fmt.Errorf("attachments[%d]: %q cannot be a Content-ID", i, a.ContentID)
		}
		if a.ContentID != "" && html != nil {
			inline = append(inline, attachmentEntity(a))
			continue
		}
		a.ContentID = ""
		files = append(files, attachmentEntity(a))
	}
	if len(inline) > 0 {
		html = multipartEntity("related", append([]*entity{html}, inline...)...)
	}
	var main *entity
	switch {
	case text != nil && html != nil:
		main = multipartEntity("alternative", text, html)
	case html != nil:
		main = html
	case text != nil:
		main = text
	case len(files) == 0:
		main = textEntity("plain", "")
	}
	if len(files) == 0 {
		return main, nil
	}
	if main != nil {
		files = append([]*entity{main}, files...)
	}
	return multipartEntity("mixed", files...), nil
}

// formatAddresses writes an address list, display names RFC 2047-encoded where needed.
func formatAddresses(l []*mail.Address) string {
	s := make([]string, len(l))
	for i, a := range l {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// oneLineText replaces line breaks, which would end a header field, with spaces.
func oneLineText(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' }), " ")
}

// validFieldName reports whether s is a header field name (RFC 5322: printable ASCII but ':').
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

func validContentID(id string) bool {
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c == '<' || c == '>' || c >= 0x7f {
			return false
		}
	}
	return len(id) <= 250
}
