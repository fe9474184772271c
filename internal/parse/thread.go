package parse

import (
	"encoding/base64"
	"regexp"
	"strings"

	"github.com/emersion/go-message/mail"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Sources of thread candidates that are not a header or an address.
const (
	threadSourceBounce   = "bounce_report" // Signals.bounce_report.original_message_id
	threadSourceFeedback = "feedback"      // Signals.feedback.original_message_id
	threadSourceBody     = "body"          // the text body
)

// maxBodyReferenceScan bounds the text searched for a ticket reference: a reference in a quoted
// footer comes within the first screens of a reply, and the search stays cheap on a huge body.
const maxBodyReferenceScan = 256 << 10

// maxSubjectReferences bounds the ticket references taken from one subject.
const maxSubjectReferences = 8

// threadCandidates lists the values a service desk matches the message to a ticket on,
// strongest first, each with how and where it was found:
//
//   - IN_REPLY_TO: each In-Reply-To id;
//   - REFERENCES: the References ids, newest first, without those In-Reply-To gave;
//   - ORIGINAL_MESSAGE: the original Message-ID of a bounce (Signals.bounce_report) or of a
//     feedback report (Signals.feedback), so signals must have run;
//   - SUBJECT_REFERENCE: every match of the ticket pattern in the subject (its first group, or
//     the whole match), as Signals.ticket_reference;
//   - BODY_REFERENCE: the first match in the text body, searched only when the subject gave
//     none (a reply whose subject lost the reference, a forward with it in the quoted footer):
//     the subject is the stronger evidence, a second reference from a long quoted history is
//     more likely an older ticket's than this one's, and most messages cost no body search;
//   - PLUS_ADDRESS: the tag of every plus address (support+T1234@…) among To, Cc, Delivered-To
//     and X-Original-To, its address as the source. The parser does not know the mailbox's own
//     address, so every one is listed;
//   - THREAD_INDEX: the conversation root of Outlook's Thread-Index;
//   - THREAD_TOPIC: Outlook's Thread-Topic.
func threadCandidates(h mail.Header, msg *mailintakev1.Message, ticket *regexp.Regexp) []*mailintakev1.ThreadCandidate {
	var out []*mailintakev1.ThreadCandidate
	add := func(m mailintakev1.ThreadMethod, value, source string) {
		out = append(out, &mailintakev1.ThreadCandidate{Method: m, Value: value, Source: source})
	}
	env := msg.GetEnvelope()
	ids := map[string]bool{}
	for _, id := range env.GetInReplyTo() {
		if id != "" && !ids[id] {
			ids[id] = true
			add(mailintakev1.ThreadMethod_THREAD_METHOD_IN_REPLY_TO, id, "In-Reply-To")
		}
	}
	refs := env.GetReferences()
	for i := len(refs) - 1; i >= 0; i-- {
		if id := refs[i]; id != "" && !ids[id] {
			ids[id] = true
			add(mailintakev1.ThreadMethod_THREAD_METHOD_REFERENCES, id, "References")
		}
	}
	// The original Message-ID of a bounce or feedback report, as signals found it.
	for _, o := range []struct{ id, source string }{
		{msg.GetSignals().GetBounceReport().GetOriginalMessageId(), threadSourceBounce},
		{msg.GetSignals().GetFeedback().GetOriginalMessageId(), threadSourceFeedback},
	} {
		if id := strings.Trim(strings.TrimSpace(o.id), "<>"); id != "" {
			add(mailintakev1.ThreadMethod_THREAD_METHOD_ORIGINAL_MESSAGE, id, o.source)
		}
	}
	if ticket != nil {
		found := false
		seen := map[string]bool{}
		for _, m := range ticket.FindAllStringSubmatch(env.GetSubject(), maxSubjectReferences) {
			if ref := ticketRef(m); ref != "" && !seen[ref] {
				seen[ref], found = true, true
				add(mailintakev1.ThreadMethod_THREAD_METHOD_SUBJECT_REFERENCE, ref, "Subject")
			}
		}
		if !found && msg.GetTextBody() != "" {
			body := msg.GetTextBody()
			if len(body) > maxBodyReferenceScan {
				body = body[:maxBodyReferenceScan]
			}
			if m := ticket.FindStringSubmatch(body); m != nil {
				if ref := ticketRef(m); ref != "" {
					add(mailintakev1.ThreadMethod_THREAD_METHOD_BODY_REFERENCE, ref, threadSourceBody)
				}
			}
		}
	}
	for _, a := range plusAddresses(h, env) {
		add(mailintakev1.ThreadMethod_THREAD_METHOD_PLUS_ADDRESS, a.tag, a.address)
	}
	if root, ok := threadIndexRoot(h.Get("Thread-Index")); ok {
		add(mailintakev1.ThreadMethod_THREAD_METHOD_THREAD_INDEX, root, "Thread-Index")
	}
	if h.Has("Thread-Topic") {
		if topic, _ := decodeText(h.Get("Thread-Topic")); strings.TrimSpace(topic) != "" {
			add(mailintakev1.ThreadMethod_THREAD_METHOD_THREAD_TOPIC, strings.TrimSpace(topic), "Thread-Topic")
		}
	}
	return out
}

// ticketRef is a ticket pattern match's reference: its first group, or the whole match.
func ticketRef(m []string) string {
	if len(m) > 1 && m[1] != "" {
		return m[1]
	}
	return m[0]
}

type plusAddress struct{ address, tag string }

// plusAddresses finds the recipients with a "+tag" local part, in To, Cc, Delivered-To and
// X-Original-To order, each address once.
func plusAddresses(h mail.Header, env *mailintakev1.Envelope) []plusAddress {
	var out []plusAddress
	seen := map[string]bool{}
	try := func(addr string) {
		addr = strings.Trim(strings.TrimSpace(addr), "<>")
		at := strings.LastIndexByte(addr, '@')
		if at <= 0 {
			return
		}
		local := addr[:at]
		plus := strings.IndexByte(local, '+')
		if plus <= 0 || plus == len(local)-1 {
			return
		}
		if key := strings.ToLower(addr); !seen[key] {
			seen[key] = true
			out = append(out, plusAddress{address: addr, tag: local[plus+1:]})
		}
	}
	for _, list := range [][]*mailintakev1.Address{env.GetTo(), env.GetCc()} {
		for _, a := range list {
			if strings.IndexByte(a.GetAddress(), '+') >= 0 {
				try(a.GetAddress())
			}
		}
	}
	for _, key := range []string{"Delivered-To", "X-Original-To"} {
		for _, v := range h.Values(key) {
			if strings.IndexByte(v, '+') < 0 {
				continue
			}
			// One address as a rule; a list now and then (X-Original-To of some MTAs).
			for _, a := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
				try(a)
			}
		}
	}
	return out
}

// Outlook's Thread-Index header is the base64 of PidTagConversationIndex ([MS-OXOMSG] 2.2.1.3):
// a 22-byte header block (a reserved byte 0x01, 5 bytes of a FILETIME, the conversation's
// 16-byte GUID) that every message of a conversation shares, then a 5-byte response level per
// reply or forward. The first 22 bytes identify the conversation.
const (
	threadIndexRootLen  = 22
	threadIndexChildLen = 5
)

// threadIndexRoot returns the conversation root of a Thread-Index value: the unpadded base64 of
// its first 22 bytes, 30 characters. It is encoded again from the decoded bytes, not cut from
// the header: a reply's 30th character also carries 4 bits of its first response level. A value
// that is not base64, or whose length is not 22 bytes plus whole 5-byte levels, is not one.
func threadIndexRoot(v string) (string, bool) {
	v = strings.Join(strings.Fields(v), "")
	if v == "" {
		return "", false
	}
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(v, "="))
	if err != nil || len(b) < threadIndexRootLen || (len(b)-threadIndexRootLen)%threadIndexChildLen != 0 {
		return "", false
	}
	return base64.RawStdEncoding.EncodeToString(b[:threadIndexRootLen]), true
}
