package parse

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// wantRecipient is what a bounce sample must give for one recipient. Zero fields are not
// checked, except permanent, which always is.
type wantRecipient struct {
	addr, action, status string
	code                 uint32
	reason               mailintakev1.BounceReason
	permanent            bool
	diagnostic           string // contained in the diagnostic
	remoteMTA            string
}

type wantBounce struct {
	file       string
	kind       mailintakev1.BounceKind
	format     string
	origID     string
	reporting  string
	recipients []wantRecipient
	// evidence: "source:detail" entries the bounce's evidence must include (detail may be a
	// prefix).
	evidence []string
}

const (
	failure       = mailintakev1.BounceKind_BOUNCE_KIND_FAILURE
	delay         = mailintakev1.BounceKind_BOUNCE_KIND_DELAY
	unknownUser   = mailintakev1.BounceReason_BOUNCE_REASON_UNKNOWN_USER
	mailboxFull   = mailintakev1.BounceReason_BOUNCE_REASON_MAILBOX_FULL
	tooLarge      = mailintakev1.BounceReason_BOUNCE_REASON_MESSAGE_TOO_LARGE
	blocked       = mailintakev1.BounceReason_BOUNCE_REASON_BLOCKED
	expired       = mailintakev1.BounceReason_BOUNCE_REASON_EXPIRED
	policy        = mailintakev1.BounceReason_BOUNCE_REASON_POLICY
	reasonUnknown = mailintakev1.BounceReason_BOUNCE_REASON_UNSPECIFIED
)

// The samples in testdata/bounce are written for these tests, each in the shape of a server's
// notice (the phrases, layout and codes those servers use), addressed to a service desk whose
// reply bounced.
var bounceSamples = []wantBounce{
	{file: "exim.eml", kind: failure, format: "exim", origID: "ticket-42-reply-1@desk.example",
		recipients: []wantRecipient{{addr: "nobody@example.net", action: "failed", status: "5.1.1", code: 550, reason: unknownUser, permanent: true,
			diagnostic: "550 5.1.1 <nobody@example.net>: Recipient address rejected", remoteMTA: "mx.example.net"}},
		evidence: []string{"header:X-Failed-Recipients", "sender:Mailer-Daemon@mx.example.org", "subject:Mail delivery failed", "body:This message was created automatically by mail delivery software"}},
	{file: "exim-delay.eml", kind: delay, format: "exim",
		recipients: []wantRecipient{{addr: "slow@example.net", action: "delayed", status: "4.7.1", code: 451, diagnostic: "Greylisted"}},
		evidence:   []string{"sender:Mailer-Daemon@mx.example.org"}},
	{file: "qmail.eml", kind: failure, format: "qmail", origID: "ticket-42-reply-2@desk.example", reporting: "mail.example.org",
		recipients: []wantRecipient{{addr: "full@example.net", status: "5.2.2", code: 552, reason: mailboxFull, permanent: true, diagnostic: "Mailbox full"}},
		evidence:   []string{"body:This is the qmail-send program"}},
	{file: "postfix.eml", kind: failure, format: "rfc3464", origID: "ticket-42-reply-3@desk.example", reporting: "mail.example.org",
		recipients: []wantRecipient{{addr: "big@example.net", action: "failed", status: "5.3.4", code: 552, reason: tooLarge, permanent: true,
			diagnostic: "552 5.3.4 Message size exceeds fixed maximum message size", remoteMTA: "mx.example.net"}},
		evidence: []string{"structure:multipart/report; report-type=delivery-status", "subject:Undelivered Mail Returned to Sender", "body:I'm sorry to have to inform you", "structure:text/rfc822-headers"}},
	{file: "sendmail.eml", kind: failure, format: "sendmail", origID: "ticket-42-reply-4@desk.example",
		recipients: []wantRecipient{{addr: "nobody@example.net", status: "5.1.1", code: 550, reason: unknownUser, permanent: true, diagnostic: "User unknown"}},
		evidence:   []string{"body:----- Transcript of session follows -----"}},
	{file: "sendmail-delay.eml", kind: delay, format: "sendmail",
		recipients: []wantRecipient{{addr: "slow@example.net", action: "delayed", reason: expired, diagnostic: "Deferred: Connection timed out"}}},
	{file: "exchange2003.eml", kind: failure, format: "exchange", origID: "ticket-42-reply-5@desk.example",
		recipients: []wantRecipient{{addr: "bob.nobody@corp.example.net", status: "5.1.1", reason: unknownUser, permanent: true, diagnostic: "does not exist"}},
		evidence:   []string{"subject:Undeliverable: Re: [T-42]", "structure:message/rfc822"}},
	{file: "o365.eml", kind: failure, format: "exchange", origID: "ticket-42-reply-16@desk.example", reporting: "MW4PR00MB0001.namprd00.prod.outlook.com",
		recipients: []wantRecipient{{addr: "bob.gone@corp.example.net", status: "5.1.10", code: 550, reason: unknownUser, permanent: true, diagnostic: "RecipientNotFound"}},
		evidence:   []string{"sender:MicrosoftExchange", "subject:Undeliverable:"}},
	{file: "exchange-delay.eml", kind: delay, format: "exchange",
		recipients: []wantRecipient{{addr: "slow@corp.example.net", reason: expired}},
		evidence:   []string{"subject:Delayed:", "body:Delivery is delayed to these recipients"}},
	{file: "domino.eml", kind: failure, format: "domino",
		recipients: []wantRecipient{{addr: "bob@notes.example.net", reason: unknownUser, permanent: true, diagnostic: "not listed in Domino Directory"}}},
	{file: "gmail.eml", kind: failure, format: "gmail", origID: "ticket-42-reply-6@desk.example",
		recipients: []wantRecipient{{addr: "nobody@example.net", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "gmail-delay.eml", kind: delay, format: "gmail",
		recipients: []wantRecipient{{addr: "slow@example.net", action: "delayed", reason: expired}}},
	{file: "google-groups.eml", kind: failure, format: "google-groups"},
	{file: "yahoo.eml", kind: failure, format: "yahoo", origID: "ticket-42-reply-7@desk.example",
		recipients: []wantRecipient{{addr: "nobody@example.net", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "ses.eml", kind: failure, format: "rfc3464", origID: "ticket-42-reply-8@desk.example", reporting: "a8-33.smtp-out.amazonses.com",
		recipients: []wantRecipient{{addr: "nobody@example.net", action: "failed", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "gmx.eml", kind: failure, format: "exim", origID: "ticket-42-reply-9@desk.example",
		recipients: []wantRecipient{{addr: "nobody@example.net", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "opensmtpd.eml", kind: failure, format: "opensmtpd", origID: "ticket-42-reply-10@desk.example",
		recipients: []wantRecipient{{addr: "nobody@example.net", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "james.eml", kind: failure, format: "james", origID: "ticket-42-reply-11@desk.example", reporting: "mail.example.org",
		recipients: []wantRecipient{{addr: "nobody@example.net", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "interscan.eml", kind: failure, format: "interscan", origID: "ticket-42-reply-12@desk.example",
		recipients: []wantRecipient{{addr: "nobody@example.net", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "mxlogic.eml", kind: failure, format: "exim", origID: "ticket-42-reply-13@desk.example",
		recipients: []wantRecipient{{addr: "nobody@example.net", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "mailfoundry.eml", kind: failure, origID: "ticket-42-reply-14@desk.example",
		recipients: []wantRecipient{{addr: "nobody@example.net", status: "5.7.1", code: 550, reason: blocked, permanent: true}}},
	{file: "mailru.eml", kind: failure, format: "mail.ru",
		recipients: []wantRecipient{{addr: "nobody@mail.ru", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}},
		evidence:   []string{"header:X-Failed-Recipients", "body:Это письмо создано автоматически"}},
	{file: "verizon.eml", kind: failure,
		recipients: []wantRecipient{{addr: "15555550100@vzwpix.com", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "japanese.eml", kind: failure,
		recipients: []wantRecipient{{addr: "nobody@docomo.ne.jp", code: 550, reason: unknownUser, permanent: true}},
		evidence:   []string{"subject:メール配信エラー", "body:配信できませんでした"}},
	{file: "german.eml", kind: failure,
		recipients: []wantRecipient{{addr: "niemand@example.de", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "french.eml", kind: failure, format: "exchange",
		recipients: []wantRecipient{{addr: "personne@example.fr", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "spanish.eml", kind: failure,
		recipients: []wantRecipient{{addr: "nadie@example.es", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "italian.eml", kind: failure, format: "exchange",
		recipients: []wantRecipient{{addr: "nessuno@example.it", status: "5.2.2", code: 552, reason: mailboxFull, permanent: true}}},
	{file: "portuguese.eml", kind: failure,
		recipients: []wantRecipient{{addr: "ninguem@example.com.br", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "dutch.eml", kind: failure,
		recipients: []wantRecipient{{addr: "niemand@example.nl", status: "5.1.1", code: 550, reason: unknownUser, permanent: true}}},
	{file: "wrapped.eml", kind: failure, format: "rfc3464", origID: "ticket-42-reply-15@desk.example",
		recipients: []wantRecipient{{addr: "gone@corp.example.net", status: "5.1.1", reason: unknownUser, permanent: true}},
		evidence:   []string{"structure:message/rfc822 (a notice wrapped"}},
}

func readSample(t *testing.T, name string) *mailintakev1.Message {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "bounce", name))
	if err != nil {
		t.Fatal(err)
	}
	return Parse(raw, Options{})
}

func TestBounceFormats(t *testing.T) {
	for _, w := range bounceSamples {
		t.Run(w.file, func(t *testing.T) {
			m := readSample(t, w.file)
			s := m.Signals
			if !s.Bounce || s.BounceReport == nil {
				t.Fatalf("not a bounce: %v", s)
			}
			b := s.BounceReport
			if b.Kind != w.kind {
				t.Errorf("kind = %v, want %v", b.Kind, w.kind)
			}
			if w.format != "" && b.Format != w.format {
				t.Errorf("format = %q, want %q", b.Format, w.format)
			}
			if b.OriginalMessageId != w.origID {
				t.Errorf("original Message-ID = %q, want %q", b.OriginalMessageId, w.origID)
			}
			if w.reporting != "" && b.ReportingMta != w.reporting {
				t.Errorf("reporting MTA = %q, want %q", b.ReportingMta, w.reporting)
			}
			if len(s.BounceRecipients) != len(b.Recipients) {
				t.Errorf("bounce_recipients (%d) differ from bounce_report.recipients (%d)", len(s.BounceRecipients), len(b.Recipients))
			}
			if len(b.Recipients) != len(w.recipients) {
				t.Fatalf("recipients = %v, want %d", b.Recipients, len(w.recipients))
			}
			for i, wr := range w.recipients {
				r := b.Recipients[i]
				if r.Address != wr.addr {
					t.Errorf("address = %q, want %q", r.Address, wr.addr)
				}
				if wr.action == "" {
					wr.action = map[mailintakev1.BounceKind]string{failure: "failed", delay: "delayed"}[w.kind]
				}
				if r.Action != wr.action {
					t.Errorf("action = %q, want %q", r.Action, wr.action)
				}
				if wr.status != "" && r.Status != wr.status {
					t.Errorf("status = %q, want %q", r.Status, wr.status)
				}
				if wr.code != 0 && r.SmtpCode != wr.code {
					t.Errorf("SMTP code = %d, want %d", r.SmtpCode, wr.code)
				}
				if wr.reason != reasonUnknown && r.Reason != wr.reason {
					t.Errorf("reason = %v, want %v", r.Reason, wr.reason)
				}
				if r.Reason == reasonUnknown {
					t.Errorf("reason left unspecified")
				}
				if r.Permanent != wr.permanent {
					t.Errorf("permanent = %v, want %v", r.Permanent, wr.permanent)
				}
				if !strings.Contains(r.Diagnostic, wr.diagnostic) {
					t.Errorf("diagnostic = %q, want it to contain %q", r.Diagnostic, wr.diagnostic)
				}
				if wr.remoteMTA != "" && r.RemoteMta != wr.remoteMTA {
					t.Errorf("remote MTA = %q, want %q", r.RemoteMta, wr.remoteMTA)
				}
			}
			for _, e := range w.evidence {
				source, detail, _ := strings.Cut(e, ":")
				if !slices.ContainsFunc(s.Evidence, func(ev *mailintakev1.SignalEvidence) bool {
					return ev.Signal == "bounce" && ev.Source == source && strings.HasPrefix(ev.Detail, detail)
				}) {
					t.Errorf("no evidence %q in %v", e, s.Evidence)
				}
			}
			if !slices.ContainsFunc(s.Evidence, func(ev *mailintakev1.SignalEvidence) bool { return ev.Signal == "bounce" }) {
				t.Errorf("a bounce without evidence")
			}
		})
	}
}

// TestNotBounces: mail about bounces, replies and success reports are not bounces.
func TestNotBounces(t *testing.T) {
	for file, why := range map[string]string{
		"normal.eml":        "a customer's mail that says a mail could not be delivered",
		"complaint.eml":     "a customer quoting a notice under their own subject",
		"forwarded.eml":     "a notice forwarded by a customer",
		"out-of-office.eml": "an out-of-office reply",
		"success-dsn.eml":   "a delivery report of success",
		"arf.eml":           "an ARF feedback report",
	} {
		m := readSample(t, file)
		if m.Signals.Bounce || m.Signals.BounceReport != nil || len(m.Signals.BounceRecipients) > 0 {
			t.Errorf("%s (%s) taken for a bounce: %v", file, why, m.Signals)
		}
	}
	ooo := readSample(t, "out-of-office.eml").Signals
	if ooo.AutoReply != mailintakev1.AutoReplyKind_AUTO_REPLY_KIND_OUT_OF_OFFICE ||
		!slices.ContainsFunc(ooo.Evidence, func(e *mailintakev1.SignalEvidence) bool {
			return e.Signal == "auto_reply" && e.Source == "subject" && e.Detail == "Automatic reply"
		}) {
		t.Errorf("out-of-office signals = %v", ooo)
	}
}

func TestFeedbackReport(t *testing.T) {
	s := readSample(t, "arf.eml").Signals
	f := s.Feedback
	if f == nil {
		t.Fatalf("no feedback report: %v", s)
	}
	if f.FeedbackType != "abuse" || f.UserAgent != "SomeGenerator/1.0" || f.OriginalMailFrom != "help@desk.example" ||
		!slices.Equal(f.OriginalRcptTo, []string{"user@mail.example.com"}) || f.SourceIp != "198.51.100.7" ||
		!slices.Equal(f.ReportedDomains, []string{"desk.example"}) || f.OriginalMessageId != "offer-7@desk.example" {
		t.Errorf("feedback = %v", f)
	}
	if s.Bounce {
		t.Errorf("a feedback report taken for a bounce")
	}
	if !slices.ContainsFunc(s.Evidence, func(e *mailintakev1.SignalEvidence) bool {
		return e.Signal == "feedback" && e.Source == "structure" && strings.Contains(e.Detail, "feedback-report")
	}) {
		t.Errorf("evidence = %v", s.Evidence)
	}
}

// TestDeliveryStatusFields covers the RFC 3464 reading: the original recipient preferred, an
// X.400 final recipient passed over, folded fields, a missing blank line between recipients,
// the status from the diagnostic when the Status field is not one, and a delayed-only report.
func TestDeliveryStatusFields(t *testing.T) {
	mta, rs := deliveryStatus([]byte("Reporting-MTA: dns; mx.example.org\r\n\r\n" +
		"Original-Recipient: rfc822; first@example.net\r\nFinal-Recipient: x400; /S=first/O=example/\r\nAction: failed\r\nStatus: 5.0.0\r\n" +
		"Diagnostic-Code: smtp; 550 5.1.1 <first@example.net>: user\r\n  unknown\r\n\r\n" +
		"Final-Recipient: rfc822; <second@example.net>\r\nAction: delayed\r\nStatus: 4.4.7 (delivery time expired)\r\nRemote-MTA: dns; mx2.example.net\r\n" +
		"Final-Recipient: rfc822;third@example.net\r\nAction: failed\r\nStatus: 550\r\nDiagnostic-Code: smtp; 552 5.2.2 mailbox full\r\n"))
	if mta != "mx.example.org" || len(rs) != 3 {
		t.Fatalf("mta = %q, recipients = %v", mta, rs)
	}
	if r := rs[0]; r.Address != "first@example.net" || r.Status != "5.0.0" || r.SmtpCode != 550 || r.Diagnostic != "550 5.1.1 <first@example.net>: user unknown" {
		t.Errorf("first = %v", r)
	}
	if r := rs[1]; r.Address != "second@example.net" || r.Action != "delayed" || r.Status != "4.4.7" || r.RemoteMta != "mx2.example.net" {
		t.Errorf("second = %v", r)
	}
	if r := rs[2]; r.Address != "third@example.net" || r.Status != "5.2.2" || r.SmtpCode != 552 {
		t.Errorf("third = %v", r)
	}

	m := Parse([]byte("From: MAILER-DAEMON@example.org\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"+
		"--r\r\nContent-Type: text/plain\r\n\r\nStill trying.\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"+
		"Final-Recipient: rfc822; slow@example.net\r\nAction: delayed\r\nStatus: 4.4.1\r\nDiagnostic-Code: smtp; 421 4.4.1 connection timed out\r\n--r--\r\n"), Options{})
	b := m.Signals.BounceReport
	if !m.Signals.Bounce || b.GetKind() != delay || len(b.GetRecipients()) != 1 {
		t.Fatalf("delayed report = %v", m.Signals)
	}
	if r := b.Recipients[0]; r.Permanent || r.SmtpCode != 421 || r.Reason != mailintakev1.BounceReason_BOUNCE_REASON_HOST_UNKNOWN {
		t.Errorf("delayed recipient = %v", r)
	}
}

func TestReasonClasses(t *testing.T) {
	for _, c := range []struct {
		status, diagnostic string
		want               mailintakev1.BounceReason
	}{
		{"5.1.1", "550 5.1.1 no such user", unknownUser},
		{"5.7.1", "550 5.7.1 No such user here", unknownUser},        // the words beat a policy class
		{"5.7.1", "554 5.7.1 Message rejected as spam", blocked},     // …
		{"5.7.1", "550 5.7.1 Relaying denied", policy},               // …
		{"5.7.26", "550 5.7.26 unauthenticated mail, DMARC", policy}, // a policy code without other words
		{"5.0.0", "552 Requested mail action aborted: exceeded storage", mailboxFull},
		{"4.2.2", "452 4.2.2 Mailbox size limit exceeded", mailboxFull},
		{"5.3.4", "", tooLarge},
		{"5.4.4", "", mailintakev1.BounceReason_BOUNCE_REASON_HOST_UNKNOWN},
		{"4.4.7", "", expired},
		{"", "Host or domain name not found", mailintakev1.BounceReason_BOUNCE_REASON_HOST_UNKNOWN},
		{"", "looping: received too many times", mailintakev1.BounceReason_BOUNCE_REASON_OTHER},
	} {
		r := &mailintakev1.BounceRecipient{Status: c.status, Diagnostic: c.diagnostic, SmtpCode: smtpCode(c.diagnostic)}
		classify(r, "", false)
		if r.Reason != c.want {
			t.Errorf("%s %q: reason %v, want %v", c.status, c.diagnostic, r.Reason, c.want)
		}
		if wantPerm := c.status == "" || c.status[0] == '5'; r.Permanent != wantPerm {
			t.Errorf("%s %q: permanent %v", c.status, c.diagnostic, r.Permanent)
		}
	}
}

func TestCodes(t *testing.T) {
	for in, want := range map[string]uint32{
		"550 5.1.1 user unknown":                   550,
		"host 192.0.2.25 said: 452 try later":      452,
		"550-5.7.1 first line":                     550,
		"Error 01373: User's Disk Quota Exceeded":  0,
		"Mon, 2 Mar 2026 10:55:00 +0000":           0,
		"relay=[205.208.202.10] 553 5.3.0 unknown": 553,
		"550: 5.1.1 <a@b.c>: rejected":             550,
		"(#5.1.1)":                                 0,
	} {
		if got := smtpCode(in); got != want {
			t.Errorf("smtpCode(%q) = %d, want %d", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"550 5.1.1 user unknown":          "5.1.1",
		"no mailbox here (#5.1.1)":        "5.1.1",
		"from 192.0.2.25 (version 5.1.1)": "5.1.1",
		"IP 4.2.2.1 refused":              "",
		"5.7.26 DMARC":                    "5.7.26",
		"v5.1.10.2":                       "",
	} {
		if got := enhancedStatus(in); got != want {
			t.Errorf("enhancedStatus(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSignalEvidence: every signal that is set says what set it.
func TestSignalEvidence(t *testing.T) {
	m := Parse(crlf(`From: list@example.org
Subject: [T-77] Meeting
Precedence: bulk
List-Id: <team.example.org>
Auto-Submitted: auto-generated
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain

Hi
--b
Content-Type: text/calendar; method=REQUEST

BEGIN:VCALENDAR
END:VCALENDAR
--b--
`), Options{TicketPattern: regexp.MustCompile(`\[(T-\d+)\]`)})
	want := []string{"auto_reply/header/Auto-Submitted: auto-generated", "mailing_list/header/List-Id", "bulk/header/Precedence: bulk",
		"ticket_reference/subject/[T-77]", "calendar_method/structure/text/calendar; method=REQUEST"}
	var got []string
	for _, e := range m.Signals.Evidence {
		got = append(got, e.Signal+"/"+e.Source+"/"+e.Detail)
	}
	if !slices.Equal(got, want) {
		t.Errorf("evidence = %q, want %q", got, want)
	}
	if normal := readSample(t, "normal.eml"); len(normal.Signals.Evidence) != 0 {
		t.Errorf("normal mail has evidence: %v", normal.Signals.Evidence)
	}
}

// TestOriginalEnvelopeID covers the report's Original-Envelope-Id (RFC 3464 2.2.1): read from the
// per-message block, an xtext escape decoded, and absent from a report without one.
func TestOriginalEnvelopeID(t *testing.T) {
	report := func(perMessage string) *mailintakev1.Message {
		return Parse([]byte("From: MAILER-DAEMON@example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n"+
			"Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"+
			"--r\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\n"+
			perMessage+"Reporting-MTA: dns; mx.example.org\r\n\r\n"+
			"Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\r\n--r--\r\n"), Options{})
	}
	for _, c := range []struct{ field, want string }{
		{"Original-Envelope-Id: 0190a8c2-7f3e-7b1a-9c4d-2e5f6a7b8c9d\r\n", "0190a8c2-7f3e-7b1a-9c4d-2e5f6a7b8c9d"},
		{"Original-Envelope-Id: id+2Bone\r\n", "id+one"},
		{"original-envelope-id:  plain+zz \r\n", "plain+zz"},
		{"", ""},
	} {
		b := report(c.field).GetSignals().GetBounceReport()
		if b.GetKind() != mailintakev1.BounceKind_BOUNCE_KIND_FAILURE || b.GetOriginalEnvelopeId() != c.want {
			t.Errorf("%q: kind %v, envelope id %q, want %q", c.field, b.GetKind(), b.GetOriginalEnvelopeId(), c.want)
		}
	}
}
