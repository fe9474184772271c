package parse

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// checkBounce fails on a bounce report that breaks the API's promises.
func checkBounce(t *testing.T, m *mailintakev1.Message) {
	t.Helper()
	for _, p := range m.Problems {
		if p.Code == "internal" {
			t.Fatalf("parser failure: %v", p)
		}
	}
	s := m.Signals
	if !s.Bounce {
		if s.BounceReport != nil || len(s.BounceRecipients) > 0 {
			t.Fatalf("a bounce report without bounce: %v", s)
		}
		return
	}
	b := s.BounceReport
	if b == nil || b.Kind == mailintakev1.BounceKind_BOUNCE_KIND_UNSPECIFIED || b.Format == "" || s.Feedback != nil {
		t.Fatalf("bounce report = %v", s)
	}
	if len(s.BounceRecipients) != len(b.Recipients) {
		t.Fatalf("bounce_recipients differ from the report's")
	}
	for i, r := range b.Recipients {
		if s.BounceRecipients[i] != r || r.Address == "" || r.Reason == mailintakev1.BounceReason_BOUNCE_REASON_UNSPECIFIED ||
			r.Action == "" || (r.Status != "" && !validStatus(r.Status)) || (r.SmtpCode != 0 && (r.SmtpCode < 200 || r.SmtpCode > 559)) {
			t.Fatalf("recipient %d = %v", i, r)
		}
	}
	evidence := false
	for _, e := range s.Evidence {
		evidence = evidence || e.Signal == "bounce"
	}
	if !evidence {
		t.Fatalf("a bounce without evidence: %v", s.Evidence)
	}
}

// FuzzBounceNotice runs the text heuristics on any notice text under a mail system's sender
// and any subject.
func FuzzBounceNotice(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "bounce", "*.eml"))
	for _, file := range files {
		if raw, err := os.ReadFile(file); err == nil {
			_, body, _ := strings.Cut(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n\n")
			f.Add("Undeliverable: x", body)
		}
	}
	f.Add("Mail delivery failed", "  <a@b.c>: 550 5.1.1 x\n\n--- Below this line is a copy of the message.\nMessage-ID: <x@y>\n")
	f.Add("Re: failure notice", "> quoted\nRCPT TO:<a@b.c>\n<<< 452 4.2.2 full\nSMTP=x@y.z; on Mon")
	f.Fuzz(func(t *testing.T, subject, body string) {
		for _, r := range subject {
			if r == '\r' || r == '\n' {
				return
			}
		}
		raw := "From: MAILER-DAEMON@mx.example.org\r\nTo: help@desk.example\r\nSubject: " + subject +
			"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
		checkBounce(t, Parse([]byte(raw), Options{MaxParts: 50, MaxDepth: 8, MaxDecodedBytes: 1 << 20}))
	})
}

// FuzzReportFields runs the delivery-status and feedback-report readers on any part body, and
// the whole parser on it as a report's part.
func FuzzReportFields(f *testing.F) {
	f.Add([]byte("Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; a@b.c\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 x\r\n"))
	f.Add([]byte("Original-Recipient: rfc822;a@b.c\nFinal-Recipient: x400; /S=a/\n  folded\nStatus: 550\nFinal-Recipient: rfc822;d@e.f\n"))
	f.Add([]byte("Feedback-Type: abuse\nUser-Agent: x/1\nVersion: 1\nOriginal-Rcpt-To: <a@b.c>\nSource-IP: [192.0.2.1]\nReported-Domain: b.c\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, rs := deliveryStatus(body)
		for _, r := range rs {
			if r.Address == "" || (r.Status != "" && !validStatus(r.Status)) {
				t.Fatalf("recipient = %v", r)
			}
		}
		feedbackReport(body)
		for _, ct := range []string{"delivery-status", "feedback-report"} {
			raw := "From: postmaster@mx.example.org\r\nContent-Type: multipart/report; report-type=" + ct + "; boundary=r\r\n\r\n" +
				"--r\r\nContent-Type: text/plain\r\n\r\nnotice\r\n--r\r\nContent-Type: message/" + ct + "\r\n\r\n" + string(body) + "\r\n--r--\r\n"
			checkBounce(t, Parse([]byte(raw), Options{MaxParts: 50, MaxDepth: 8, MaxDecodedBytes: 1 << 20}))
		}
	})
}
