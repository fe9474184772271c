package parse

import (
	"regexp"
	"strings"
)

// The words bounces are recognised by. Every list is lower case and is matched with
// strings.Contains on the notice's text lower-cased, its white space collapsed (see flatten),
// and only for a message the cheap checks (sender, subject, header fields, structure) already
// suspect: normal mail never reaches them.

// signature is a phrase only a mail server's notice uses, with the format it names.
type signature struct{ phrase, format string }

// signatures are the phrases of the notices of common mail servers and providers, most
// specific first.
var signatures = []signature{
	{"this message was created automatically by mail delivery software", "exim"},
	{"a message that you sent could not be delivered to one or more of", "exim"},
	{"a message that you sent has not yet been delivered to", "exim"},
	{"this is the qmail-send program", "qmail"},
	{"this is the james mail server", "james"},
	{"i'm afraid i wasn't able to deliver your message to the following addresses", "qmail"},
	{"i'm sorry to have to inform you that your message could not", "postfix"},
	{"this is the mail system at host", "postfix"},
	{"----- transcript of session follows -----", "sendmail"},
	{"the following addresses had permanent fatal errors", "sendmail"},
	{"the original message was received at", "sendmail"},
	{"warning: could not send message for past", "sendmail"},
	{"delivery to the following recipient failed permanently", "gmail"},
	{"delivery to the following recipients failed permanently", "gmail"},
	{"delivery to the following recipient has been delayed", "gmail"},
	{"technical details of permanent failure", "gmail"},
	{"technical details of temporary failure", "gmail"},
	{"the response from the remote server was", "gmail"},
	{"the recipient server did not accept our requests to connect", "gmail"},
	{"your message wasn't delivered to", "gmail"},
	{"we're writing to let you know that the group you tried to contact", "google-groups"},
	{"your message did not reach some or all of the intended recipients", "exchange"},
	{"did not reach the following recipient", "exchange"},
	{"delivery has failed to these recipients", "exchange"},
	{"delivery is delayed to these recipients", "exchange"},
	{"the following recipient(s) cannot be reached", "exchange"},
	{"the following recipient(s) could not be reached", "exchange"},
	{"your message couldn't be delivered", "exchange"},
	{"diagnostic information for administrators", "exchange"},
	{"delivery failure report", "domino"},
	{"was not delivered to:", "domino"},
	{"sorry, we were unable to deliver your message to the following address", "yahoo"},
	{"unable to deliver message to the following address", "yahoo"},
	{"an error occurred while trying to deliver the mail to the following recipients", "amazon-ses"},
	{"message from interscan", "interscan"},
	{"running the courier mail server", "courier"},
	{"had permanent fatal delivery errors", "mdaemon"},
	{"this report relates to a message you sent", "text"},
	{"your message was not delivered to the following", "text"},
	{"this is the mailer-daemon, please do not reply to this email", "opensmtpd"},
	{"an error has occurred while attempting to deliver a message for the following list of recipients", "opensmtpd"},
	{"this is an automatically generated delivery status notification", "text"},
	{"the following message to <", "text"},
	{"delivery failed for the following recipient", "text"},
	{"could not be delivered to the following", "text"},
	{"could not deliver message to the following", "text"},
	{"non-delivery report", "text"},
	{"failed recipients ---", "text"},
	{"hat einige oder alle empfänger nicht erreicht", "exchange"},
	{"à certains ou à l'ensemble des destinataires", "exchange"},
	{"no llegó a algunos o a todos los destinatarios", "exchange"},
	{"non è stato recapitato ad alcuni o a tutti i destinatari", "exchange"},
	{"não chegou a alguns ou a todos os destinatários", "exchange"},
	{"heeft sommige of alle geadresseerden niet bereikt", "exchange"},
	{"your mail to the following recipients could not be delivered", "text"},
	{"the message that you sent was undeliverable", "text"},
	{"the following addresses failed", "text"},
	{"message could not be delivered", "text"},
	{"это письмо создано автоматически", "mail.ru"},
	{"не может быть доставлено", "mail.ru"},
	{"diese nachricht wurde automatisch", "text"},
	{"konnte nicht zugestellt werden", "text"},
	{"konnte nicht ausgeliefert werden", "text"},
	{"n'a pas pu être remis", "text"},
	{"n'a pas pu etre remis", "text"},
	{"n'a pas pu etre delivre", "text"},
	{"n'a pas pu être délivré", "text"},
	{"n'a pas pu être distribué", "text"},
	{"no pudo ser entregado", "text"},
	{"no se ha podido entregar", "text"},
	{"no se pudo entregar", "text"},
	{"non è stato possibile recapitare", "text"},
	{"non è stato possibile consegnare", "text"},
	{"impossibile recapitare", "text"},
	{"não pôde ser entregue", "text"},
	{"nao pode ser enviada", "text"},
	{"não foi possível entregar", "text"},
	{"kon niet worden afgeleverd", "text"},
	{"kon niet worden bezorgd", "text"},
	{"配信できませんでした", "text"},
	{"送信できませんでした", "text"},
	{"届きませんでした", "text"},
	{"邮件无法发送", "text"},
	{"無法傳遞", "text"},
}

// bodyWords are what a notice says without naming its server; with a suspicious sender or
// subject they make a bounce.
var bodyWords = []string{
	"could not be delivered", "couldn't be delivered", "cannot be delivered", "can't be delivered",
	"undeliverable", "undelivered", "not delivered", "not be delivered", "delivery failed", "delivery failure",
	"failed to deliver", "unable to deliver", "could not deliver", "permanent error", "permanent failure",
	"user unknown", "no such user", "mailbox unavailable", "delivery has failed", "wasn't delivered",
	"delivery problem", "returned to sender", "did not reach", "was rejected", "automatically rejected",
	"has not yet been delivered", "has been delayed", "not yet been delivered", "delivery attempts", "delivery status",
	"encountered delivery problems", "returned mail", "has been returned", "not a valid user", "no such mailbox", "does not exist", "quota exceeded", "address rejected",
	"zugestellt", "non remis", "n'a pas pu", "entregado", "entregue", "recapitat", "consegnat", "afgeleverd",
	"bezorgd", "доставлен", "配信", "送達",
}

// subjectWords are the subjects of notices (lower case). delay marks a delay warning's.
var subjectWords = []struct {
	word  string
	delay bool
}{
	{"undeliver", false}, {"delivery fail", false}, {"delivery status notification", false},
	{"returned mail", false}, {"returning message", false}, {"failure notice", false}, {"failure delivery", false},
	{"mail delivery", false}, {"delivery problem", false}, {"not delivered", false}, {"could not be delivered", false},
	{"couldn't be delivered", false}, {"delivery report", false}, {"delivery notification", false},
	{"non-delivery", false}, {"non delivery", false}, {"no se puede entregar", false}, {"não é possível entregar", false}, {"nondelivery", false}, {"failed mail", false},
	{"mail failed", false}, {"mail error", false}, {"mail system error", false}, {"rejected mail", false},
	{"delivery error", false}, {"error during delivery", false}, {"delivery failure", false},
	{"address not found", false}, {"message blocked", false}, {"non remis", false}, {"non recapitabile", false},
	{"non consegnat", false}, {"unzustellbar", false}, {"nicht zustellbar", false}, {"zustellung", false},
	{"no entregado", false}, {"no se pudo entregar", false}, {"não entregue", false}, {"onbestelbaar", false},
	{"niet afgeleverd", false}, {"kohaletoimetamatu", false}, {"niedostarczalna", false}, {"недостав", false},
	{"не доставлено", false}, {"退信", false}, {"系统退信", false}, {"配信エラー", false}, {"返送", false},
	{"delivery delayed", true}, {"delayed mail", true}, {"delayed:", true}, {"message delayed", true}, {"delivery delay", true},
	{"(delay)", true}, {"still being retried", true}, {"not yet been delivered", true}, {"not yet delivered", true},
	{"could not send message for past", true}, {"delivery warning", true}, {"verzögert", true},
	{"retardé", true}, {"retrasad", true}, {"ritardat", true},
}

// subjectIndex lists the subjectWords by their first byte, so a subject is read once.
var subjectIndex = func() (index [256][]int) {
	for i, w := range subjectWords {
		index[w.word[0]] = append(index[w.word[0]], i)
	}
	return index
}()

// delayWords say the server is still trying: a warning, not a failure.
var delayWords = []string{
	"has not yet been delivered", "has not been delivered yet", "not yet been delivered", "has been delayed",
	"will continue to try", "will continue to attempt", "delivery attempts will continue", "will be retried",
	"still being retried", "warning message only", "you do not need to resend", "this is a warning", "just a warning",
	"advisory-only", "has been postponed", "will keep trying", "will try to deliver", "will retry",
	"could not be delivered for", "not been delivered for", "is delayed", "delivery is delayed", "wird weiter versucht", "verzögert",
	"retardé", "retrasad", "ritardat",
}

// permanentWords say the server gave up.
var permanentWords = []string{
	"permanent", "given up", "giving up", "gave up", "fatal error", "will not be retried", "not going to try again",
	"failed permanently", "dauerhaft", "définitif",
}

// separators start the returned original inside a notice's text (lower case).
var separators = []string{
	"original message", "returned message", "returned mail", "message text follows", "copy of the message",
	"copy of your message", "copy of the original", "header of the original", "headers of the original",
	"below this line is a copy", "below the next line is a copy", "unsent message below", "message header follows",
	"message headers follow", "message follows", "start of returned message", "your message reads",
	"summary of the undelivered message", "included is a copy", "the header and top", "lines of your original message",
	"forwarded message", "old message:", "header of the source mail", "body suppressed", "mensaje original",
	"original-nachricht", "ursprüngliche nachricht", "message d'origine", "message original", "messaggio originale",
	"mensagem original", "oorspronkelijk bericht", "原始邮件", "元のメッセージ",
}

// anyOf returns the first of words that text contains.
func anyOf(text string, words []string) string {
	for _, w := range words {
		if strings.Contains(text, w) {
			return w
		}
	}
	return ""
}

// originalStart finds where the returned original begins in a notice's text: a separator line
// ("------ This is a copy of the message …", "--- Below this line is a copy of the message.")
// or a block of header fields (three field lines in a row, one of them a field only a message
// header has). It returns len(text) when there is none.
func originalStart(text string) int {
	pos, run, strong, runStart := 0, 0, false, 0
	for pos < len(text) {
		end := strings.IndexByte(text[pos:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += pos
		}
		line := strings.TrimRight(text[pos:end], "\r")
		if pos > 0 && len(line) < 160 {
			lower := strings.ToLower(line)
			for _, w := range separators {
				if strings.Contains(lower, w) && separatorLine(lower, w) {
					return pos
				}
			}
		}
		switch name, ok := fieldName(line); {
		case ok:
			if run == 0 {
				runStart, strong = pos, false
			}
			run++
			strong = strong || messageOnlyField(name)
			if run >= 3 && strong {
				return runStart
			}
		case run > 0 && line != "" && (line[0] == ' ' || line[0] == '\t'):
			// a folded field continues the run
		default:
			run = 0
		}
		pos = end + 1
	}
	return len(text)
}

// separatorLine reports whether a line that contains a separator phrase introduces the
// original: set off by dashes or stars, starting with the phrase, or saying that the message
// follows or is below ("The following addresses did not receive a copy of your message:" does
// not).
func separatorLine(lower, phrase string) bool {
	t := strings.TrimSpace(lower)
	u := strings.TrimLeft(t, "-=*|_>#~ \t")
	return u != t || strings.HasPrefix(u, phrase) || strings.Contains(t, "follows") || strings.Contains(t, "follow:") ||
		strings.Contains(t, "is following") || strings.Contains(t, "below")
}

// fieldName returns the name of a header field line ("Received: …", or quoted "> Received: …").
func fieldName(line string) (string, bool) {
	line = strings.TrimPrefix(strings.TrimPrefix(line, ">"), " ")
	i := strings.IndexByte(line, ':')
	if i < 2 || i > 40 {
		return "", false
	}
	for j := 0; j < i; j++ {
		c := line[j]
		if !(isLetter(c) || isDigit(c) || c == '-' || c == '_') {
			return "", false
		}
	}
	return strings.ToLower(line[:i]), true
}

// messageOnlyField reports whether a field belongs to a message header, not to a notice's
// own summary ("To:", "Subject:" and "Date:" appear in both).
func messageOnlyField(name string) bool {
	switch name {
	case "received", "return-path", "message-id", "mime-version", "content-type", "delivered-to", "dkim-signature",
		"authentication-results", "received-spf", "errors-to", "precedence", "in-reply-to", "references", "list-id",
		"content-transfer-encoding", "thread-index", "thread-topic", "user-agent", "x-mailer", "arc-seal", "path":
		return true
	}
	return strings.HasPrefix(name, "x-")
}

// addressPattern finds e-mail addresses in a notice.
var addressPattern = regexp.MustCompile(`[A-Za-z0-9!#$%&'*+/=?^_{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+`)

// skipLabel reports whether a field's addresses are not failed recipients when a notice quotes
// the field (the original's sender, the notice's own summary of it).
func skipLabel(name string) bool {
	switch name {
	case "to", "cc", "bcc", "from", "sender", "reply-to", "return-path", "subject", "date", "sent", "message-id",
		"received", "errors-to", "in-reply-to", "references", "delivered-to", "envelope-from", "reporting-mta",
		"received-from-mta", "arrival-date", "original-message-id", "x-postfix-sender":
		return true
	}
	return strings.HasPrefix(name, "x-")
}

// lead says what the text before an address on its line makes of it.
type lead int

const (
	mentioned lead = iota // just mentioned
	named                 // named as a recipient
	fromLead              // named as a sender ("MAIL FROM:<…>", "not accepting mail from …")
)

// recipientLead reads the text before an address on its line: nothing but decoration (the
// address starts the line), a label ending in a colon ("Unknown user:", "RCPT TO:<", "Failed
// Recipient:") or words that name a recipient make it named; "from" makes it a sender.
func recipientLead(before string) lead {
	t := strings.TrimRight(before, " \t<\"'([*")
	if strings.Trim(t, " \t>*-•·|") == "" {
		return named
	}
	lower := strings.ToLower(t)
	for _, w := range []string{"expanded from:", "expanded from", "generated from", "addressed to", "addressed,",
		"delivered to", "deliver your message to", "deliver to", "message to", "mail to", "recipient", "mailbox", "smtp=", "rfc822;"} {
		if strings.HasSuffix(lower, w) {
			return named
		}
	}
	if strings.HasSuffix(lower, "from:") || strings.HasSuffix(lower, " from") || strings.HasSuffix(lower, "envelope-from") ||
		strings.HasSuffix(lower, "sender:") {
		return fromLead
	}
	if strings.HasSuffix(lower, ":") {
		if strings.HasSuffix(lower, "said:") || strings.HasSuffix(lower, "replied:") || strings.HasSuffix(lower, "error:") {
			return mentioned
		}
		return named
	}
	return mentioned
}

// candidate is an address found in a notice.
type candidate struct {
	addr   string
	strong bool // named as a recipient (see recipientLead)
	line   int  // the line it was first found on
}

// noticeAddresses lists the addresses a notice names, in order, each once (compared without
// case), with the line each is first (strongly) found on. Addresses in quoted header fields are
// left out, as are those excluded.
func noticeAddresses(lines []string, exclude func(addr string, strong bool) bool) []candidate {
	var out []candidate
	index := map[string]int{}
	for n, line := range lines {
		if name, ok := fieldName(strings.TrimSpace(line)); ok && skipLabel(name) {
			continue
		}
		if strings.IndexByte(line, '@') < 0 {
			continue
		}
		for _, loc := range addressPattern.FindAllStringIndex(line, -1) {
			addr := strings.Trim(line[loc[0]:loc[1]], ".-'")
			start := loc[0]
			if i := strings.Index(strings.ToLower(addr), "smtp="); i >= 0 {
				addr, start = addr[i+5:], start+i+5
			}
			if addr == "" || addr[0] == '@' {
				continue
			}
			l := recipientLead(line[:start])
			if l == fromLead {
				continue
			}
			strong := l == named
			if exclude(addr, strong) {
				continue
			}
			key := strings.ToLower(addr)
			if i, ok := index[key]; ok {
				if strong && !out[i].strong {
					out[i].strong, out[i].line = true, n
				}
				continue
			}
			index[key] = len(out)
			out = append(out, candidate{addr: addr, strong: strong, line: n})
		}
	}
	return out
}

// isDaemon reports whether an address's local part is a mail system's.
func isDaemon(addr string) bool {
	local, _, _ := strings.Cut(strings.ToLower(addr), "@")
	switch local {
	case "mailer-daemon", "mailer_daemon", "mailerdaemon", "mail-daemon", "maildaemon", "postmaster", "mdaemon",
		"mail.delivery.system", "mail-delivery-system", "maildelivery", "mail-delivery":
		return true
	}
	return strings.HasPrefix(local, "mailer-daemon") || strings.HasPrefix(local, "postmaster") || strings.HasPrefix(local, "microsoftexchange")
}

// daemonSender reports whether a From field's text or display name names a mail system.
func daemonSender(from string) bool {
	lower := strings.ToLower(from)
	for _, w := range []string{"mailer-daemon", "mailer_daemon", "mailerdaemon", "mail-daemon", "postmaster", "mail delivery",
		"mail administrator", "mail system", "mdaemon", "mail.delivery.system", "delivery subsystem", "microsoftexchange",
		"microsoft outlook"} {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}

// forwardSubject reports whether a subject (lower case) is a forward's, whose quoted notice is
// not the message's own.
func forwardSubject(subject string) bool {
	s := strings.TrimSpace(subject)
	for _, p := range []string{"fwd:", "fw:", "wg:", "tr:", "rv:", "doorst:", "enc:", "i:"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// bareRecipient finds a recipient a notice names without its domain (AOL: "Your mail to the
// following recipients could not be delivered …:\n\tscreenname"): the one word on the line after
// the announcement.
func bareRecipient(lines []string) string {
	for i, line := range lines {
		lower := strings.ToLower(line)
		if !strings.Contains(lower, "following recipient") && !strings.Contains(lower, "following address") {
			continue
		}
		for _, next := range lines[i+1 : min(len(lines), i+4)] {
			t := strings.TrimSpace(next)
			if t == "" {
				continue
			}
			for j := 0; j < len(t); j++ {
				c := t[j]
				if !(isLetter(c) || isDigit(c) || c == '.' || c == '_' || c == '-') {
					return ""
				}
			}
			return t
		}
		return ""
	}
	return ""
}

// hostAfter returns the host name that follows one of the markers in text ("host mx.example.com[…]",
// "qmail-send program at mail.example.com."), or "".
func hostAfter(text string, markers ...string) string {
	lower := strings.ToLower(text)
	for _, m := range markers {
		i := strings.Index(lower, m)
		if i < 0 {
			continue
		}
		rest := strings.TrimLeft(text[i+len(m):], " \t")
		if strings.HasPrefix(strings.ToLower(rest), "host ") {
			rest = strings.TrimLeft(rest[5:], " \t") // "the Postfix program at host mx.example.org"
		}
		j := 0
		for j < len(rest) && (isLetter(rest[j]) || isDigit(rest[j]) || rest[j] == '.' || rest[j] == '-' || rest[j] == '_') {
			j++
		}
		h := strings.TrimRight(rest[:j], ".-")
		if strings.Contains(h, ".") {
			return h
		}
	}
	return ""
}

// messageIDLine finds a Message-ID field in text (a returned original's header quoted in the
// notice) and returns its value without angle brackets.
func messageIDLine(text string) string {
	lower := strings.ToLower(text)
	for from := 0; ; {
		i := strings.Index(lower[from:], "message-id:")
		if i < 0 {
			return ""
		}
		i += from
		from = i + 11
		if i > 0 {
			// at the start of a line (possibly quoted with ">"), not "Original-Message-ID:"
			p := strings.TrimRight(text[max(0, i-2):i], " >")
			if p != "" && p[len(p)-1] != '\n' {
				continue
			}
		}
		v := text[from:]
		if e := strings.IndexByte(v, '\n'); e >= 0 {
			v = v[:e]
		}
		v = strings.TrimSpace(v)
		if l, r := strings.IndexByte(v, '<'), strings.IndexByte(v, '>'); l >= 0 && r > l+1 {
			return v[l+1 : r]
		}
		if v != "" && strings.Contains(v, "@") && !strings.ContainsAny(v, " \t") {
			return v
		}
	}
}
