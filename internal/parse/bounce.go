package parse

import (
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"
	"google.golang.org/protobuf/proto"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// How much of a notice's text the bounce heuristics read: notices are short; what follows is
// the returned original.
const (
	maxNoticeText = 64 << 10
	maxNoticeScan = 16 << 10
)

// bounceCues are the cheap facts that make a message worth reading as a bounce. Mail with
// none of them (nearly all mail) costs the bounce detection a few header look-ups.
type bounceCues struct {
	report       bool   // Content-Type multipart/report
	failed       string // X-Failed-Recipients
	sender       string // a mail system's From ("MAILER-DAEMON@…", "Mail Delivery System")
	subject      string // the subject's words of a notice
	subjectWait  bool   // … of a delay warning
	replySubject bool   // such words after "Re:"
	nullSender   bool   // Return-Path: <> or From: <>
	auto         bool   // Auto-Submitted other than "no"
	original     *mailintakev1.Attachment
}

func (c *bounceCues) any() bool {
	return c.report || c.failed != "" || c.sender != "" || c.subject != "" || c.replySubject || c.nullSender || c.original != nil
}

// readCues reads the cues of msg's header and structure.
func readCues(h mail.Header, msg *mailintakev1.Message, subject string) bounceCues {
	var c bounceCues
	ct := strings.TrimSpace(h.Get("Content-Type"))
	c.report = len(ct) >= 16 && strings.EqualFold(ct[:16], "multipart/report")
	c.failed = strings.TrimSpace(h.Get("X-Failed-Recipients"))
	fromRaw := h.Get("From")
	switch from := msg.GetEnvelope().GetFrom(); {
	case len(from) > 0 && isDaemon(from[0].GetAddress()):
		c.sender = from[0].GetAddress()
	case len(from) > 0 && from[0].GetAddress() != "" && daemonSender(from[0].GetName()), len(from) == 0 && daemonSender(fromRaw):
		// "Mail Delivery System <mail.delivery.system@…>", or a From without an address
		// ("MAILER-DAEMON", "Microsoft Outlook")
		c.sender = strings.TrimSpace(fromRaw)
	}
	if rp := strings.TrimSpace(h.Get("Return-Path")); rp == "<>" || strings.TrimSpace(fromRaw) == "<>" || strings.HasSuffix(strings.TrimSpace(fromRaw), "<>") {
		c.nullSender = true
	}
	if a := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted"))); a != "" && a != "no" {
		c.auto = true
	}
	if lower := strings.ToLower(subject); subject != "" && !forwardSubject(lower) {
		for i := 0; i < len(lower); i++ {
			for _, k := range subjectIndex[lower[i]] {
				if w := subjectWords[k]; strings.HasPrefix(lower[i:], w.word) {
					if c.subject == "" {
						c.subject = w.word
					}
					c.subjectWait = c.subjectWait || w.delay
				}
			}
		}
		if strings.HasPrefix(lower, "re:") && c.subject != "" {
			// A reply about a notice, or a gateway's "RE:": worth reading, but the body decides.
			c.subject, c.subjectWait, c.replySubject = "", false, true
		}
	}
	for _, a := range msg.GetAttachments() {
		switch a.GetContentType() {
		case "message/rfc822", "message/global", "text/rfc822-headers", "text/rfc822-header", "message/global-headers", "text/rfc822":
			if c.original == nil {
				c.original = a
			}
		}
	}
	return c
}

// detectBounce decides whether msg is a bounce (a delivery failure or delay notice, in any
// common format) and fills Signals.bounce, bounce_report and bounce_recipients, and the
// evidence. A message/delivery-status part has already been read into bounce_report by
// reportPart; the text heuristics run only when the cues suspect a notice.
func detectBounce(h mail.Header, msg *mailintakev1.Message, subject string, ev *[]*mailintakev1.SignalEvidence) {
	s := msg.Signals
	rep := s.BounceReport
	s.BounceReport, s.BounceRecipients, s.Bounce = nil, nil, false
	c := readCues(h, msg, subject)
	if rep == nil && !c.any() {
		return
	}
	var dsnFailed, dsnDelayed, dsnSuccess bool
	if rep != nil {
		kept := rep.Recipients[:0]
		for _, r := range rep.Recipients {
			switch {
			case r.Action == "delivered" || r.Action == "relayed" || r.Action == "expanded":
				dsnSuccess = true // a success report's recipient is not a bounce's
				continue
			case r.Action == "failed" || strings.HasPrefix(r.Status, "5."):
				dsnFailed = true
			case r.Action == "delayed" || strings.HasPrefix(r.Status, "4."):
				dsnDelayed = true
			default:
				dsnFailed = true // a report that does not say: a notice is sent for failures
			}
			kept = append(kept, r)
		}
		rep.Recipients = kept
		if dsnSuccess && !dsnFailed && !dsnDelayed {
			return // a delivery report of success (RFC 3464 "delivered", "relayed", "expanded")
		}
	}
	text := clip(msg.GetTextBody(), maxNoticeText)
	cut := originalStart(text)
	notice := text[:cut]
	if strings.TrimSpace(notice) == "" {
		notice, cut = text, len(text)
	}
	scan := clip(notice, maxNoticeScan)
	lines := strings.Split(strings.ReplaceAll(scan, "\r\n", "\n"), "\n")
	lower, quoted := flatten(lines)
	sig := signature{}
	for _, sg := range signatures {
		if strings.Contains(lower, sg.phrase) {
			sig = sg
			break
		}
	}
	weak := anyOf(lower, bodyWords)
	exclude := excluder(msg, c.original)
	cands := noticeAddresses(lines, exclude)

	// system: sent by a mail system, not by a person (who may write about a bounce, quote
	// one or paste one into a new message).
	system := c.sender != "" || c.nullSender || c.auto
	inline := cut < len(text) // the original quoted in the text
	switch {
	case dsnFailed || dsnDelayed, c.failed != "":
	case forwardSubject(strings.ToLower(subject)):
		return // a notice forwarded by a person is that person's message
	case s.AutoReply == mailintakev1.AutoReplyKind_AUTO_REPLY_KIND_OUT_OF_OFFICE && sig.phrase == "":
		return
	case c.replySubject && !system && (quoted || sig.phrase == ""):
		return // a person's reply about a notice
	case sig.phrase != "" && (system || c.subject != "" || c.replySubject || c.original != nil || c.report):
	case c.sender != "" && c.subject != "":
	case c.subject != "" && (c.original != nil || c.report):
	case system && (c.original != nil || c.report || inline) && (c.subject != "" || c.sender != "" || weak != ""):
	case system && weak != "" && slices.ContainsFunc(cands, func(cd candidate) bool { return cd.strong }):
	default:
		return
	}

	b := &mailintakev1.Bounce{Format: sig.format}
	if rep != nil {
		b.ReportingMta = rep.ReportingMta
		b.OriginalEnvelopeId = rep.OriginalEnvelopeId
	}
	delay := false
	if dsnFailed || dsnDelayed {
		b.Format = "rfc3464"
		b.Recipients = rep.Recipients
		delay = !dsnFailed
		// A report without a Diagnostic-Code often has the server's reply in its text part.
		starts := map[int]bool{}
		for _, cd := range cands {
			if cd.strong {
				starts[cd.line] = true
			}
		}
		for _, r := range b.Recipients {
			if r.Diagnostic != "" {
				continue
			}
			for _, cd := range cands {
				if strings.EqualFold(cd.addr, r.Address) {
					r.Diagnostic = block(lines, cd.line, starts)
				}
			}
			if r.Diagnostic == "" {
				r.Diagnostic = globalDiagnostic(lines)
			}
		}
	} else {
		delay = (c.subjectWait || anyOf(lower, delayWords) != "") && anyOf(lower, permanentWords) == ""
		b.Recipients = textRecipients(msg, c, lines, cands, delay)
		if b.Format == "" {
			switch {
			case c.failed != "":
				b.Format = "x-failed-recipients"
			default:
				b.Format = "text"
			}
		}
		if b.ReportingMta == "" {
			b.ReportingMta = hostAfter(scan, "program at ", "mail system at host ", "mail server at ", "generating server:", "reporting-mta: dns;")
		}
	}
	b.Kind = mailintakev1.BounceKind_BOUNCE_KIND_FAILURE
	if delay {
		b.Kind = mailintakev1.BounceKind_BOUNCE_KIND_DELAY
	}
	for _, r := range b.Recipients {
		if r.Action == "" {
			r.Action = "failed"
			if delay {
				r.Action = "delayed"
			}
		}
		if r.SmtpCode == 0 {
			r.SmtpCode = smtpCode(r.Diagnostic)
		}
		if r.RemoteMta == "" {
			r.RemoteMta = hostAfter(r.Diagnostic, "host ", "while talking to ")
		}
		classify(r, lower, delay || r.Action == "delayed")
	}
	b.OriginalMessageId = originalMessageID(msg, text[cut:])
	wrapped := false
	if len(b.Recipients) == 0 {
		// A gateway that wraps the notice it received in a notice of its own: the inner one
		// has the recipients.
		if inner := c.original.GetMessage().GetSignals().GetBounceReport(); inner != nil && len(inner.Recipients) > 0 {
			b = proto.Clone(inner).(*mailintakev1.Bounce)
			wrapped = true
		}
	}
	s.Bounce = true
	s.BounceReport = b
	s.BounceRecipients = b.Recipients

	add := func(source, detail string) {
		*ev = append(*ev, &mailintakev1.SignalEvidence{Signal: "bounce", Source: source, Detail: detail})
	}
	switch rt := reportType(h); {
	case c.report && rt != "":
		add("structure", "multipart/report; report-type="+rt)
	case rep != nil:
		add("structure", "message/delivery-status")
	case c.report:
		add("structure", "multipart/report")
	}
	if c.failed != "" {
		add("header", "X-Failed-Recipients")
	}
	if c.sender != "" {
		add("sender", c.sender)
	}
	if c.subject != "" {
		add("subject", clip(subject, 120))
	}
	if sig.phrase != "" {
		add("body", phraseIn(scan, sig.phrase))
	} else if weak != "" {
		add("body", phraseIn(scan, weak))
	}
	switch {
	case wrapped:
		add("structure", c.original.GetContentType()+" (a notice wrapped in this one)")
	case c.original != nil:
		add("structure", c.original.GetContentType()+" (the returned original)")
	}
}

// reportType returns the report-type parameter of a multipart/report Content-Type, lower case.
func reportType(h mail.Header) string {
	ct := strings.ToLower(h.Get("Content-Type"))
	i := strings.Index(ct, "report-type=")
	if i < 0 {
		return ""
	}
	v := strings.TrimLeft(ct[i+len("report-type="):], "\"")
	if j := strings.IndexAny(v, "\"; \t\r\n"); j >= 0 {
		v = v[:j]
	}
	return v
}

// excluder returns the test for addresses that are not failed recipients: mail systems'
// (MAILER-DAEMON, postmaster), the notice's own sender, and the returned original's sender.
// The notice's own recipients and the original's sender are left out only where the notice
// does not name them as the failed recipients (some servers address the notice to the
// recipient that failed; a test message to oneself bounces with its sender as the recipient).
func excluder(msg *mailintakev1.Message, original *mailintakev1.Attachment) func(string, bool) bool {
	always := map[string]bool{}
	weakOnly := map[string]bool{}
	add := func(set map[string]bool, list ...*mailintakev1.Address) {
		for _, a := range list {
			if a.GetAddress() != "" {
				set[strings.ToLower(a.GetAddress())] = true
			}
		}
	}
	env := msg.GetEnvelope()
	add(always, env.GetFrom()...)
	add(always, env.GetSender())
	add(weakOnly, env.GetTo()...)
	add(weakOnly, env.GetCc()...)
	add(weakOnly, env.GetReplyTo()...)
	if o := original.GetMessage().GetEnvelope(); o != nil {
		// A test message to oneself bounces with its sender as the recipient.
		add(weakOnly, o.GetFrom()...)
		add(weakOnly, o.GetSender())
		add(weakOnly, o.GetReplyTo()...)
	}
	return func(addr string, strong bool) bool {
		a := strings.ToLower(addr)
		return isDaemon(a) || always[a] || !strong && weakOnly[a]
	}
}

// textRecipients finds the failed recipients of a notice without a delivery-status part:
// X-Failed-Recipients, delivery-status fields quoted in the text, the addresses the notice
// names as recipients (or, if it names none so, the addresses it mentions), or a bare name
// under "the following recipients" with the sender's domain. Each gets the notice's lines about
// it as its diagnostic.
func textRecipients(msg *mailintakev1.Message, c bounceCues, lines []string, cands []candidate, delay bool) []*mailintakev1.BounceRecipient {
	var out []*mailintakev1.BounceRecipient
	seen := map[string]bool{}
	lineOf := map[string]int{}
	var strong, weak []candidate
	for _, cd := range cands {
		lineOf[strings.ToLower(cd.addr)] = cd.line
		if cd.strong {
			strong = append(strong, cd)
		} else {
			weak = append(weak, cd)
		}
	}
	starts := map[int]bool{}
	for _, cd := range cands {
		if cd.strong {
			starts[cd.line] = true
		}
	}
	addRecipient := func(addr string) *mailintakev1.BounceRecipient {
		key := strings.ToLower(addr)
		if seen[key] || addr == "" {
			return nil
		}
		seen[key] = true
		r := &mailintakev1.BounceRecipient{Address: addr}
		if n, ok := lineOf[key]; ok {
			r.Diagnostic = block(lines, n, starts)
		}
		if r.Diagnostic == "" {
			r.Diagnostic = globalDiagnostic(lines)
		}
		r.Status = failureStatus(r.Diagnostic)
		r.SmtpCode = failureCode(r.Diagnostic)
		out = append(out, r)
		return r
	}
	if c.failed != "" {
		for _, a := range strings.FieldsFunc(c.failed, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == ';' }) {
			addRecipient(strings.Trim(a, "<>\"'"))
		}
		if len(out) > 0 {
			return out
		}
	}
	joined := strings.Join(lines, "\n")
	if i := strings.Index(strings.ToLower(joined), "final-recipient:"); i >= 0 {
		// A notice that quotes the delivery-status fields in its text (Amazon WorkMail).
		start := strings.LastIndex(joined[:i], "\n\n")
		if start < 0 {
			start = 0
		}
		if _, rs := deliveryStatus([]byte(joined[start:])); len(rs) > 0 {
			for _, r := range rs {
				if !seen[strings.ToLower(r.Address)] {
					seen[strings.ToLower(r.Address)] = true
					out = append(out, r)
				}
			}
			return out
		}
	}
	pick := strong
	if len(pick) == 0 {
		pick = weak
	}
	for _, cd := range pick {
		addRecipient(cd.addr)
	}
	if len(out) == 0 {
		if name := bareRecipient(lines); name != "" {
			if from := msg.GetEnvelope().GetFrom(); len(from) > 0 {
				if _, domain, ok := strings.Cut(from[0].GetAddress(), "@"); ok {
					addRecipient(name + "@" + domain)
				}
			}
		}
	}
	return out
}

// block returns what a notice says about the recipient named on line n: that line and the
// following ones, up to the next recipient's line, at most a dozen lines, white space
// collapsed.
func block(lines []string, n int, starts map[int]bool) string {
	var parts []string
	nonBlank := 0
	for i := n; i < len(lines) && nonBlank < 12; i++ {
		if i > n && starts[i] {
			break
		}
		t := strings.TrimSpace(lines[i])
		if t == "" {
			continue
		}
		if strings.HasPrefix(t, "---") || strings.HasPrefix(t, "===") || strings.HasPrefix(t, "***") {
			if i > n+1 {
				break
			}
			continue
		}
		nonBlank++
		parts = append(parts, t)
	}
	d := strings.Join(strings.Fields(strings.Join(parts, " ")), " ")
	// The address alone says nothing: without more, the notice's general diagnostic serves.
	letters := 0
	for _, f := range strings.Fields(d) {
		if !strings.Contains(f, "@") {
			letters += len(f)
		}
	}
	if letters < 4 {
		return ""
	}
	return clip(d, 1000)
}

// globalDiagnostic returns the notice's first line that carries an SMTP reply (with the lines
// that continue it), or the one after "because:" / "reason:" and the like, or "".
func globalDiagnostic(lines []string) string {
	for i, l := range lines {
		if failureCode(l) == 0 && failureStatus(l) == "" {
			continue
		}
		parts := []string{strings.TrimSpace(l)}
		for _, next := range lines[i+1 : min(len(lines), i+4)] {
			if next == "" || (next[0] != ' ' && next[0] != '\t') {
				break
			}
			parts = append(parts, strings.TrimSpace(next))
		}
		return clip(strings.Join(strings.Fields(strings.Join(parts, " ")), " "), 1000)
	}
	for i, l := range lines {
		lower := strings.ToLower(strings.TrimSpace(l))
		if lower == "because:" || lower == "reason:" || strings.HasPrefix(lower, "technical details") {
			for _, next := range lines[i+1 : min(len(lines), i+5)] {
				if t := strings.TrimSpace(next); t != "" {
					return clip(t, 1000)
				}
			}
		}
	}
	return ""
}

// failureCode is smtpCode for the codes of a failure or delay (4xx, 5xx): a transcript's 2xx
// replies are passed over.
func failureCode(text string) uint32 {
	for len(text) > 0 {
		c := smtpCode(text)
		if c == 0 || c >= 400 {
			return c
		}
		i := strings.Index(text, uitoa(c))
		if i < 0 {
			return 0
		}
		text = text[i+3:]
	}
	return 0
}

// failureStatus is enhancedStatus for 4.x.x and 5.x.x codes.
func failureStatus(text string) string {
	for len(text) > 0 {
		s := enhancedStatus(text)
		if s == "" || s[0] != '2' {
			return s
		}
		i := strings.Index(text, s)
		text = text[i+len(s):]
	}
	return ""
}

func uitoa(v uint32) string {
	return string([]byte{byte('0' + v/100), byte('0' + v/10%10), byte('0' + v%10)})
}

// originalMessageID returns the Message-ID of the message that bounced: the returned
// message/rfc822 original's, a text/rfc822-headers part's, or one quoted in the text after
// the notice.
func originalMessageID(msg *mailintakev1.Message, returned string) string {
	for _, a := range msg.GetAttachments() {
		switch a.GetContentType() {
		case "message/rfc822", "message/global":
			if id := a.GetMessage().GetEnvelope().GetMessageId(); id != "" {
				return id
			}
			if id := messageIDLine(headerPart(a.GetData())); id != "" {
				return id
			}
		case "text/rfc822-headers", "text/rfc822-header", "message/global-headers", "text/rfc822":
			if id := messageIDLine(headerPart(a.GetData())); id != "" {
				return id
			}
		}
	}
	return messageIDLine(returned)
}

// headerPart returns the header of a raw message (up to the first blank line), as text.
func headerPart(raw []byte) string {
	s := string(raw[:min(len(raw), 64<<10)])
	if i := strings.Index(s, "\n\n"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}

// phraseIn returns a phrase (lower case, single spaces) as text writes it when text has it on
// one line and lower-casing keeps its length; else the phrase as listed.
func phraseIn(text, phrase string) string {
	if lower := strings.ToLower(text); len(lower) == len(text) {
		if i := strings.Index(lower, phrase); i >= 0 {
			return text[i : i+len(phrase)]
		}
	}
	return phrase
}

// flatten returns a notice's lines lower-cased and joined with single spaces (a phrase a
// server wraps over two lines is found whole), without the lines quoted with ">", and
// whether there were such lines.
func flatten(lines []string) (string, bool) {
	var b strings.Builder
	quoted := false
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, ">") && !strings.Contains(t, "@") {
			quoted = true
			continue
		}
		for _, f := range strings.Fields(t) {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(f)
		}
	}
	return strings.ToLower(b.String()), quoted
}

// clip shortens s to at most n bytes, on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
