package parse

import (
	"bufio"
	"bytes"
	"net/textproto"
	"regexp"
	"strings"

	"github.com/emersion/go-message/mail"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// signals sets the message's signals from its header and what the walk found.
func signals(h mail.Header, msg *mailintakev1.Message, ticket *regexp.Regexp) {
	s := msg.Signals
	auto := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted")))
	prec := strings.ToLower(strings.TrimSpace(h.Get("Precedence")))
	suppress := strings.ToLower(h.Get("X-Auto-Response-Suppress"))
	subject := ""
	if msg.Envelope != nil {
		subject = msg.Envelope.Subject
	}
	switch {
	case outOfOffice.MatchString(subject), h.Has("X-Autoreply") && outOfOffice.MatchString(subject):
		s.AutoReply = mailintakev1.AutoReplyKind_AUTO_REPLY_KIND_OUT_OF_OFFICE
	case h.Has("X-Autoreply"), h.Has("X-Autorespond"), h.Has("X-Auto-Reply"), auto == "auto-replied", prec == "auto_reply",
		strings.Contains(suppress, "all") || strings.Contains(suppress, "oof") && strings.Contains(suppress, "autoreply"):
		// RFC 3834 and the vendor headers of Exchange, cPanel and others.
		s.AutoReply = mailintakev1.AutoReplyKind_AUTO_REPLY_KIND_AUTO_GENERATED
	case auto != "" && auto != "no":
		s.AutoReply = mailintakev1.AutoReplyKind_AUTO_REPLY_KIND_AUTO_GENERATED
	}
	if ct := strings.ToLower(h.Get("Content-Type")); strings.HasPrefix(ct, "multipart/report") && strings.Contains(ct, "delivery-status") {
		s.Bounce = true
	}
	s.MailingList = h.Has("List-Id") || h.Has("List-Unsubscribe") || h.Has("List-Post")
	s.Bulk = prec == "bulk" || prec == "list" || prec == "junk"
	if ticket != nil && msg.Envelope != nil {
		if m := ticket.FindStringSubmatch(msg.Envelope.Subject); m != nil {
			s.TicketReference = m[0]
			if len(m) > 1 {
				s.TicketReference = m[1]
			}
		}
	}
}

// reportPart notes a part of a delivery or feedback report found by the walk.
func reportPart(msg *mailintakev1.Message, ct string, ctParams map[string]string, body []byte) {
	switch ct {
	case "message/delivery-status", "message/global-delivery-status":
		msg.Signals.Bounce = true
		msg.Signals.BounceRecipients = append(msg.Signals.BounceRecipients, deliveryStatus(body)...)
	}
}

// calendarMethod finds the iTIP method in a text/calendar body (RFC 5546).
var calendarMethod = regexp.MustCompile(`(?im)^METHOD:\s*([A-Z-]+)\s*$`)

// deliveryStatus reads the per-recipient fields of a message/delivery-status part (RFC 3464
// section 2.3): blocks of header fields separated by blank lines, the first one per message.
func deliveryStatus(body []byte) []*mailintakev1.BounceRecipient {
	body = bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))
	var out []*mailintakev1.BounceRecipient
	blocks := strings.Split(string(body), "\n\n")
	for i, b := range blocks {
		b = strings.TrimSpace(b)
		if b == "" || (i == 0 && !strings.Contains(strings.ToLower(b), "final-recipient")) {
			continue
		}
		h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(b + "\n\n"))).ReadMIMEHeader()
		if err != nil && len(h) == 0 {
			continue
		}
		addr := afterType(h.Get("Final-Recipient"))
		if addr == "" {
			addr = afterType(h.Get("Original-Recipient"))
		}
		if addr == "" {
			continue
		}
		status, _, _ := strings.Cut(strings.TrimSpace(h.Get("Status")), " ")
		out = append(out, &mailintakev1.BounceRecipient{
			Address: addr, Action: strings.ToLower(strings.TrimSpace(h.Get("Action"))), Status: status,
			Diagnostic: afterType(h.Get("Diagnostic-Code")),
		})
	}
	return out
}

// afterType strips the address-type or diagnostic-type prefix: "rfc822;a@b" → "a@b".
func afterType(v string) string {
	v = strings.TrimSpace(v)
	if _, after, ok := strings.Cut(v, ";"); ok {
		return strings.TrimSpace(after)
	}
	return v
}
