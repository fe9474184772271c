package parse

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-message/mail"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

var ticketPattern = regexp.MustCompile(`\[#(\d+)\]`)

func candidates(list []*mailintakev1.ThreadCandidate) string {
	var out []string
	for _, c := range list {
		out = append(out, fmt.Sprintf("%s %s (%s)", strings.TrimPrefix(c.Method.String(), "THREAD_METHOD_"), c.Value, c.Source))
	}
	return strings.Join(out, "\n")
}

// conversationIndex builds an Outlook conversation index: the 22-byte header block (0x01, five
// bytes of FILETIME, a GUID) and a 5-byte response level per reply ([MS-OXOMSG] 2.2.1.3).
func conversationIndex(replies int) []byte {
	b := []byte{0x01, 0x01, 0xd8, 0x3a, 0x5b, 0x7c}
	for i := range 16 {
		b = append(b, byte(0xf0+i)) // the GUID; its last byte's low bits show in the 30th character
	}
	for i := range replies {
		b = append(b, 0xff, 0x00, 0x10, 0x20, byte(i))
	}
	return b
}

func TestThreadCandidates(t *testing.T) {
	root := conversationIndex(0)
	reply := conversationIndex(2)
	raw := crlf("From: c@customer.example\n" +
		"To: Support <support+T1234@desk.example>, other@desk.example\n" +
		"Cc: sales+@desk.example, SUPPORT+T1234@desk.example\n" +
		"Delivered-To: help+abc@desk.example\n" +
		"X-Original-To: support+T1234@desk.example, x+y@desk.example\n" +
		"Subject: Re: [#42] printer and [#43]\n" +
		"In-Reply-To: <a@desk.example> <b@desk.example>\n" +
		"References: <r1@desk.example> <r2@desk.example>\n <a@desk.example>\n" +
		"Thread-Index: " + base64.StdEncoding.EncodeToString(reply) + "\n" +
		"Thread-Topic: =?utf-8?Q?printer_in_B=C3=BCro?=\n" +
		"\nsee [#44]\n")
	m := Parse(raw, Options{TicketPattern: ticketPattern})
	want := `IN_REPLY_TO a@desk.example (In-Reply-To)
IN_REPLY_TO b@desk.example (In-Reply-To)
REFERENCES r2@desk.example (References)
REFERENCES r1@desk.example (References)
SUBJECT_REFERENCE 42 (Subject)
SUBJECT_REFERENCE 43 (Subject)
PLUS_ADDRESS T1234 (support+T1234@desk.example)
PLUS_ADDRESS abc (help+abc@desk.example)
PLUS_ADDRESS y (x+y@desk.example)
THREAD_INDEX ` + base64.RawStdEncoding.EncodeToString(root) + ` (Thread-Index)
THREAD_TOPIC printer in Büro (Thread-Topic)`
	if got := candidates(m.Thread); got != want {
		t.Errorf("thread:\n%s\nwant\n%s", got, want)
	}
	// The conversation's first message and a reply give the same root, the first message's
	// header's first 30 characters (the reply's 30th differs: it carries response-level bits).
	first, _ := threadIndexRoot(base64.StdEncoding.EncodeToString(root))
	second, _ := threadIndexRoot(base64.StdEncoding.EncodeToString(reply))
	if first != second || len(first) != 30 || first != base64.StdEncoding.EncodeToString(root)[:30] || base64.StdEncoding.EncodeToString(reply)[29] == first[29] {
		t.Errorf("roots %q %q", first, second)
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(root[:21]), base64.StdEncoding.EncodeToString(append(root, 1, 2))} {
		if v, ok := threadIndexRoot(bad); ok {
			t.Errorf("threadIndexRoot(%q) = %q", bad, v)
		}
	}
}

func TestThreadBodyReferenceAndOriginal(t *testing.T) {
	// The body is searched when the subject has no reference: its first match.
	m := Parse(crlf("From: c@customer.example\nSubject: Re: your request\n\nthanks\n\n> Ticket [#4711] was updated\n> see also [#1]\n"), Options{TicketPattern: ticketPattern})
	if got := candidates(m.Thread); got != "BODY_REFERENCE 4711 (body)" {
		t.Errorf("thread = %s", got)
	}
	// No pattern, no references.
	m = Parse(crlf("Subject: [#4711]\n\n[#4711]\n"), Options{})
	if len(m.Thread) != 0 {
		t.Errorf("thread = %s", candidates(m.Thread))
	}
	// A bounce's and a feedback report's original Message-ID, as signals set them, come after
	// In-Reply-To and References and before the ticket reference.
	msg := &mailintakev1.Message{
		Envelope: &mailintakev1.Envelope{Subject: "Undelivered: [#7]", References: []string{"r@x"}},
		Signals: &mailintakev1.Signals{
			BounceReport: &mailintakev1.Bounce{OriginalMessageId: "sent-1@desk.example"},
			Feedback:     &mailintakev1.FeedbackReport{OriginalMessageId: "<sent-2@desk.example>"},
		},
	}
	got := candidates(threadCandidates(mail.Header{}, msg, ticketPattern))
	want := "REFERENCES r@x (References)\nORIGINAL_MESSAGE sent-1@desk.example (bounce_report)\nORIGINAL_MESSAGE sent-2@desk.example (feedback)\nSUBJECT_REFERENCE 7 (Subject)"
	if got != want {
		t.Errorf("thread:\n%s\nwant\n%s", got, want)
	}
}
