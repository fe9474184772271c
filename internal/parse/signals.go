package parse

import (
	"regexp"
	"strings"

	"github.com/emersion/go-message/mail"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// signals sets the message's signals from its header and what the walk found, each with the
// evidence that decided it.
func signals(h mail.Header, msg *mailintakev1.Message, ticket *regexp.Regexp) {
	s := msg.Signals
	var ev []*mailintakev1.SignalEvidence
	add := func(signal, source, detail string) {
		ev = append(ev, &mailintakev1.SignalEvidence{Signal: signal, Source: source, Detail: detail})
	}
	auto := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted")))
	prec := strings.ToLower(strings.TrimSpace(h.Get("Precedence")))
	suppress := strings.ToLower(h.Get("X-Auto-Response-Suppress"))
	subject := msg.GetEnvelope().GetSubject()
	if oof := outOfOffice.FindString(subject); oof != "" {
		s.AutoReply = mailintakev1.AutoReplyKind_AUTO_REPLY_KIND_OUT_OF_OFFICE
		add("auto_reply", "subject", strings.TrimSpace(oof))
	} else {
		// RFC 3834 and the vendor headers of Exchange, cPanel and others.
		for _, name := range []string{"X-Autoreply", "X-Autorespond", "X-Auto-Reply"} {
			if h.Has(name) && s.AutoReply == 0 {
				s.AutoReply = mailintakev1.AutoReplyKind_AUTO_REPLY_KIND_AUTO_GENERATED
				add("auto_reply", "header", name)
			}
		}
		switch {
		case s.AutoReply != 0:
		case auto != "" && auto != "no":
			s.AutoReply = mailintakev1.AutoReplyKind_AUTO_REPLY_KIND_AUTO_GENERATED
			add("auto_reply", "header", "Auto-Submitted: "+auto)
		case prec == "auto_reply":
			s.AutoReply = mailintakev1.AutoReplyKind_AUTO_REPLY_KIND_AUTO_GENERATED
			add("auto_reply", "header", "Precedence: auto_reply")
		case strings.Contains(suppress, "all") || strings.Contains(suppress, "oof") && strings.Contains(suppress, "autoreply"):
			s.AutoReply = mailintakev1.AutoReplyKind_AUTO_REPLY_KIND_AUTO_GENERATED
			add("auto_reply", "header", "X-Auto-Response-Suppress: "+strings.TrimSpace(h.Get("X-Auto-Response-Suppress")))
		}
	}
	if s.Feedback != nil || isFeedbackReport(h) {
		// An ARF report (RFC 5965) is a complaint about a message, not a bounce.
		if s.Feedback == nil {
			s.Feedback = &mailintakev1.FeedbackReport{}
		}
		if s.Feedback.OriginalMessageId == "" {
			s.Feedback.OriginalMessageId = originalMessageID(msg, "")
		}
		s.Bounce, s.BounceReport, s.BounceRecipients = false, nil, nil
		if reportType(h) == "feedback-report" {
			add("feedback", "structure", "multipart/report; report-type=feedback-report")
		} else {
			add("feedback", "structure", "message/feedback-report")
		}
	} else {
		detectBounce(h, msg, subject, &ev)
	}
	for _, name := range []string{"List-Id", "List-Unsubscribe", "List-Post"} {
		if h.Has(name) {
			s.MailingList = true
			add("mailing_list", "header", name)
		}
	}
	if prec == "bulk" || prec == "list" || prec == "junk" {
		s.Bulk = true
		add("bulk", "header", "Precedence: "+prec)
	}
	if ticket != nil && subject != "" {
		if m := ticket.FindStringSubmatch(subject); m != nil {
			s.TicketReference = m[0]
			if len(m) > 1 {
				s.TicketReference = m[1]
			}
			add("ticket_reference", "subject", m[0])
		}
	}
	if s.CalendarMethod != "" {
		add("calendar_method", "structure", "text/calendar; method="+s.CalendarMethod)
	}
	s.Evidence = ev
}

// isFeedbackReport reports whether the header announces an ARF report (RFC 5965).
func isFeedbackReport(h mail.Header) bool {
	ct := strings.ToLower(strings.TrimSpace(h.Get("Content-Type")))
	return strings.HasPrefix(ct, "multipart/report") && reportType(h) == "feedback-report"
}

// reportPart notes a part of a delivery or feedback report found by the walk: a
// message/delivery-status part's recipients go into the bounce report (which signals then
// confirms or drops), a message/feedback-report part's fields into the feedback report.
func reportPart(msg *mailintakev1.Message, ct string, ctParams map[string]string, body []byte) {
	switch ct {
	case "message/delivery-status", "message/global-delivery-status":
		mta, rs := deliveryStatus(body)
		b := msg.Signals.BounceReport
		if b == nil {
			b = &mailintakev1.Bounce{Format: "rfc3464"}
			msg.Signals.BounceReport = b
		}
		if b.ReportingMta == "" {
			b.ReportingMta = mta
		}
		if b.OriginalEnvelopeId == "" {
			b.OriginalEnvelopeId = envelopeID(body)
		}
		b.Recipients = append(b.Recipients, rs...)
	case "message/feedback-report":
		if msg.Signals.Feedback == nil {
			msg.Signals.Feedback = feedbackReport(body)
		}
	}
}

// calendarMethod finds the iTIP method in a text/calendar body (RFC 5546).
var calendarMethod = regexp.MustCompile(`(?im)^METHOD:\s*([A-Z-]+)\s*$`)
