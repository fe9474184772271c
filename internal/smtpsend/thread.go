package smtpsend

import (
	"regexp"
	"strings"
)

// Original is the message a reply answers, with ids without angle brackets as the parser gives
// them (mailintake.v1.Envelope's message_id, references, in_reply_to, subject).
type Original struct {
	MessageID  string
	References []string
	InReplyTo  []string
	Subject    string
}

// MaxReferences bounds a reply's References: a longer chain keeps its first id (the thread's
// root) and the newest ones, dropping the middle, as RFC 5322 section 3.6.4 allows.
const MaxReferences = 20

// ThreadIDs returns a reply's In-Reply-To and References (RFC 5322 section 3.6.4): In-Reply-To
// is the original's Message-ID; References is the original's References (or, without them, its
// single In-Reply-To) followed by its Message-ID, each id once, unusable ids left out, at most
// MaxReferences. inReplyTo is "" when the original's Message-ID is unusable.
func ThreadIDs(o Original) (inReplyTo string, references []string) {
	parent := strings.Trim(strings.TrimSpace(o.MessageID), "<>")
	chain := o.References
	if len(chain) == 0 && len(o.InReplyTo) == 1 {
		chain = o.InReplyTo
	}
	seen := map[string]bool{}
	for _, id := range append(append([]string(nil), chain...), parent) {
		id = strings.Trim(strings.TrimSpace(id), "<>")
		if !validMessageID(id) || seen[id] {
			continue
		}
		seen[id] = true
		references = append(references, id)
	}
	if len(references) > MaxReferences {
		references = append(references[:1], references[len(references)-(MaxReferences-1):]...)
	}
	if validMessageID(parent) {
		inReplyTo = parent
	}
	return inReplyTo, references
}

// replyPrefix matches one reply prefix as mail clients in many languages write it: "Re:",
// "RE :", "Re[2]:", "Re(2):", "AW:" (German), "SV:" (Nordic), "VS:" (Finnish), "Antw:" (Dutch),
// "Réf:", "RIF:" (Italian), "Odp:" (Polish), "YNT:" (Turkish), "Ynt:", "回复:", "回覆:", "答复:".
// Forward prefixes ("Fwd:", "WG:", "TR:") are left alone: a reply to a forward keeps them.
var replyPrefix = regexp.MustCompile(`^(?i)\s*(re|aw|sv|vs|antw|antwort|r[ée]f|rif|odp|ynt|回复|回覆|答复)\s*(\[\d+\]|\(\d+\))?\s*[:：]\s*`)

// ticketTag matches a leading bracketed tag, such as a service desk's "[Ticket#123]".
var ticketTag = regexp.MustCompile(`^\s*\[[^\]]{1,80}\]\s*`)

// ReplySubject returns the subject of a reply: the original's with exactly one "Re: " in front,
// every reply prefix it had (also after a leading tag such as "[Ticket#123]") taken away, so
// "AW: Re: [Ticket#1] RE: Printer" becomes "Re: [Ticket#1] Printer".
func ReplySubject(subject string) string {
	s := stripReplyPrefixes(strings.TrimSpace(subject))
	if tag := ticketTag.FindString(s); tag != "" {
		s = strings.TrimSpace(tag) + " " + stripReplyPrefixes(s[len(tag):])
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "Re:"
	}
	return "Re: " + s
}

func stripReplyPrefixes(s string) string {
	for {
		loc := replyPrefix.FindStringIndex(s)
		if loc == nil {
			return s
		}
		s = s[loc[1]:]
	}
}
