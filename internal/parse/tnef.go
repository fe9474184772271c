package parse

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/emersion/go-message/charset"

	"github.com/mailintake/mailintake/internal/tnef"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// isTNEF reports whether a part is a TNEF winmail.dat.
func isTNEF(ct, filename string, body []byte) bool {
	if ct == "application/ms-tnef" || ct == "application/vnd.ms-tnef" || strings.EqualFold(filename, "winmail.dat") {
		return len(body) >= 4 && bytes.HasPrefix(body, []byte{0x78, 0x9F, 0x3E, 0x22})
	}
	return false
}

// tnefID is the attachment id of the n-th file (from 1) unpacked from the TNEF part at partID.
func tnefID(partID string, n int) string { return partID + ":" + strconv.Itoa(n) }

// unpackTNEF adds what a winmail.dat part carries to msg: its files as attachments (ids
// "PART:N"), and its body where the MIME message has none. It reports whether anything was
// found; if not, the caller keeps the winmail.dat itself.
func (p *parser) unpackTNEF(msg *mailintakev1.Message, partID, where string, body []byte) bool {
	t, err := tnef.Decode(body)
	if err != nil {
		msg.Problems = append(msg.Problems, problem(where, "tnef", "winmail.dat: "+err.Error()))
		return false
	}
	for _, pr := range t.Problems {
		msg.Problems = append(msg.Problems, problem(where, "tnef", "winmail.dat: "+pr))
	}
	found := p.tnefBody(msg, t)
	for i, ta := range t.Attachments {
		p.parts++
		msg.Attachments = append(msg.Attachments, p.tnefAttachment(ta, tnefID(partID, i+1), where))
		found = true
	}
	if m := calendarClass(t.MessageClass); m != "" && msg.Signals.CalendarMethod == "" {
		msg.Signals.CalendarMethod = m
		found = true
	}
	return found
}

// tnefBody fills the message's empty bodies from the TNEF ones.
func (p *parser) tnefBody(msg *mailintakev1.Message, t *tnef.Message) bool {
	html, text := "", t.Text
	switch {
	case len(t.HTML) > 0:
		html = decodeCharset(t.HTML, t.HTMLCharset)
	case len(t.RTF) > 0:
		h, txt := tnef.RTFBody(t.RTF)
		html = h
		if text == "" {
			text = strings.TrimSpace(txt)
		}
	}
	found := false
	if msg.HtmlBody == "" && html != "" {
		msg.HtmlBody = html
		found = true
	}
	if msg.TextBody == "" && text != "" {
		msg.TextBody = text
		found = true
	}
	return found
}

func (p *parser) tnefAttachment(ta *tnef.Attachment, id, where string) *mailintakev1.Attachment {
	ct := ta.ContentType
	if ct == "" {
		ct = typeByExtension(ta.Filename)
	}
	a := &mailintakev1.Attachment{
		Id: id, Filename: ta.Filename, ContentType: ct, Size: uint64(len(ta.Data)), ContentId: ta.ContentID,
		Disposition: mailintakev1.Disposition_DISPOSITION_ATTACHMENT,
	}
	if ta.ContentID != "" {
		a.Disposition = mailintakev1.Disposition_DISPOSITION_INLINE
	}
	if int64(len(ta.Data)) > p.opts.MaxInlineAttachment {
		a.DataOmitted = true // and not hashed, as any attachment that is not sent
	} else {
		sum := sha256.Sum256(ta.Data)
		a.Sha256 = hex.EncodeToString(sum[:])
		a.Data = ta.Data
	}
	if ta.Message != nil {
		a.ContentType = "application/vnd.ms-outlook"
		a.Message = p.fromTNEF(ta.Message, where)
	}
	return a
}

// fromTNEF turns an Outlook item embedded in a winmail.dat into a message.
func (p *parser) fromTNEF(t *tnef.Message, where string) *mailintakev1.Message {
	m := &mailintakev1.Message{Envelope: &mailintakev1.Envelope{Subject: t.Subject}, Signals: &mailintakev1.Signals{}}
	p.tnefBody(m, t)
	for _, pr := range t.Problems {
		m.Problems = append(m.Problems, problem(where, "tnef", pr))
	}
	for i, ta := range t.Attachments {
		m.Attachments = append(m.Attachments, p.tnefAttachment(ta, strconv.Itoa(i+1), where))
	}
	m.Signals.CalendarMethod = calendarClass(t.MessageClass)
	if m.TextBody == "" && m.HtmlBody != "" {
		m.TextBody = HTMLToText(m.HtmlBody)
		m.TextFromHtml = true
	}
	if m.HtmlBody != "" {
		m.HtmlBody = SanitizeHTML(m.HtmlBody)
	}
	return m
}

// calendarClass maps the message class of an Outlook meeting item to its iTIP method.
func calendarClass(class string) string {
	c := strings.ToLower(class)
	switch {
	case strings.HasPrefix(c, "ipm.microsoft schedule.mtgreq"), strings.HasPrefix(c, "ipm.schedule.meeting.request"):
		return "REQUEST"
	case strings.HasPrefix(c, "ipm.microsoft schedule.mtgcncl"), strings.HasPrefix(c, "ipm.schedule.meeting.canceled"):
		return "CANCEL"
	case strings.HasPrefix(c, "ipm.microsoft schedule.mtgresp"), strings.HasPrefix(c, "ipm.schedule.meeting.resp"):
		return "REPLY"
	}
	return ""
}

// decodeCharset converts bytes in a named charset to UTF-8 (unknown charsets: left as they are,
// and fixUTF8 repairs what is not UTF-8).
func decodeCharset(b []byte, cs string) string {
	if cs == "" || strings.EqualFold(cs, "utf-8") {
		return string(b)
	}
	r, err := charset.Reader(cs, bytes.NewReader(b))
	if err != nil {
		return string(b)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return string(b)
	}
	return string(out)
}

// extensionTypes maps the file extensions of files that travel in winmail.dat without a MIME
// type. A fixed table, not the system's mime.types, so a message parses the same everywhere.
var extensionTypes = map[string]string{
	".pdf": "application/pdf", ".doc": "application/msword", ".dot": "application/msword",
	".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
	".xls":  "application/vnd.ms-excel",
	".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	".ppt":  "application/vnd.ms-powerpoint",
	".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
	".rtf":  "application/rtf", ".zip": "application/zip", ".txt": "text/plain", ".csv": "text/csv",
	".htm": "text/html", ".html": "text/html", ".xml": "application/xml", ".jpg": "image/jpeg",
	".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif", ".bmp": "image/bmp",
	".tif": "image/tiff", ".tiff": "image/tiff", ".mp3": "audio/mpeg", ".wav": "audio/wav",
	".ics": "text/calendar", ".eml": "message/rfc822", ".msg": "application/vnd.ms-outlook",
}

func typeByExtension(name string) string {
	if t, ok := extensionTypes[strings.ToLower(path.Ext(name))]; ok {
		return t
	}
	return "application/octet-stream"
}

// openTNEFPart returns the n-th file of a winmail.dat read from r.
func openTNEFPart(r io.Reader, id string, n int) (*mailintakev1.Attachment, io.Reader, error) {
	body, err := io.ReadAll(io.LimitReader(r, DefaultMaxDecodedBytes))
	if err != nil {
		return nil, nil, err
	}
	t, err := tnef.Decode(body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNoSuchPart, err)
	}
	if n < 1 || n > len(t.Attachments) {
		return nil, nil, ErrNoSuchPart
	}
	p := &parser{opts: Options{MaxInlineAttachment: 0}}
	p.opts.defaults()
	a := p.tnefAttachment(t.Attachments[n-1], id, "")
	a.Data, a.DataOmitted = nil, false
	return a, bytes.NewReader(t.Attachments[n-1].Data), nil
}
