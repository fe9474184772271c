package parse

import (
	"regexp"
	"slices"
	"strings"
)

// Reply is a reply's text split into what the sender wrote, the quoted history and the signature.
// Nothing is dropped: Body (NewText and Signature as written) and Quoted hold every line.
type Reply struct {
	NewText   string // the new text without the signature
	Signature string // the sender's signature
	Quoted    string // the quoted history, with any answers written inline between quoted lines
	Body      string // the text before the quoted history, signature included, as written
}

// No library does this well for the mail a service desk receives (many languages, Outlook's header
// blocks, mobile clients), so the heuristics live here, each with the clients it comes from.
var (
	// Verbs of "… wrote:" headers: English, German, French, Spanish, Portuguese, Italian, Dutch,
	// Scandinavian, Finnish, Polish, Russian, Vietnamese, Czech, Turkish.
	wroteVerb = `(wrote|sent|schrieb|a écrit|escribió|escreveu|ha scritto|schreef|het volgende geschreven|skrev|kirjoitti|napisał\(a\)|napisał|napisała|написал\(а\)|написал|написала|đã viết|napsal|yazdı)`
	// A header that ends with the verb, with or without a colon.
	endsWithVerb = regexp.MustCompile(`(?i)\b` + wroteVerb + `\s*:?\s*$`)
	// A header line that names the verb anywhere: "tir. 18. apr. 2017 kl. 13:09 skrev Test <t@e.com".
	hasVerb = regexp.MustCompile(`(?i)(^|\s)` + wroteVerb + `(\s|:|$)`)
	// "2011/4/7 Nathan <support@example.com>" (Gmail in some locales).
	startsWithDate = regexp.MustCompile(`^\s*\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b`)
	// "---- John Smith wrote ----" (Android).
	androidWrote = regexp.MustCompile(`(?i)^-{2,}.{1,200}\s` + wroteVerb + `\s*-{2,}\s*$`)
	// Outlook's and other clients' separators before the quoted message.
	originalMessage = regexp.MustCompile(`(?i)^\s*[-_*=]{2,}\s*(original message|ursprüngliche nachricht|originalnachricht|message d'origine|mensaje original|messaggio originale|oorspronkelijk bericht|mensagem original|oprindelig besked|opprinnelig melding|ursprungligt meddelande|alkuperäinen viesti|wiadomość oryginalna)\s*[-_*=]{2,}\s*$`)
	// Forwarded messages are content, not history: nothing after the marker is cut.
	forwarded     = regexp.MustCompile(`(?i)^\s*[-_*=>]{2,}\s*(forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado|messaggio inoltrato|doorgestuurd bericht|videresendt meddelelse|vidarebefordrat meddelande|begin forwarded message)\s*:?\s*[-_*=]*\s*$|^\s*begin forwarded message:\s*$`)
	separatorOnly = regexp.MustCompile(`^\s*[-_=*~]{3,}\s*$`)
	// The first line of an Outlook-style header block and its other lines, in several languages.
	headerStart = regexp.MustCompile(`(?i)^\s*\*?(from|date|sent|von|datum|gesendet|de|envoyé|message du|da|data|fecha|enviado|van|verzonden|fra|dato|sendt|från|skickat|od|lähettäjä|päivämäärä|от|отправлено)\s*:\*?\s*\S`)
	headerField = regexp.MustCompile(`(?i)^\s*\*?(from|sent|date|to|cc|bcc|subject|reply-to|von|gesendet|datum|an|betreff|envoyé|à|a|objet|copie à|sujet|de|enviado|fecha|para|asunto|inviato|oggetto|da|verzonden|aan|onderwerp|van|fra|sendt|dato|til|emne|kopi|skickat|till|ämne|från|lähettäjä|vastaanottaja|aihe|od|do|temat|от|кому|тема|отправлено|message du)\s*:\*?`)
	// "reply On Wed, Apr 4, 2012 at 3:59 PM, bob@example.com wrote:" on one line.
	sharedLine = regexp.MustCompile(`(?i)^(.*?\S)(?:\s+|\s*-{2,}\s*)(on\s.{5,250}\s` + wroteVerb + `\s*:)\s*$`)
	// Signatures: the "-- " delimiter (RFC 3676 4.3) and mailing-list footers ("__").
	sigDelimiter = regexp.MustCompile(`^(--|__+)\s*$`)
	// What mobile clients append: "Sent from my iPhone", "Gesendet von Outlook für Android".
	mobileSig = regexp.MustCompile(`(?i)^\s*(sent (from|with|via|using)|get outlook for|gesendet (von|mit|vom)|von meinem|envoyé (de|depuis|à partir de|avec)|enviado (desde|de|con)|inviato da|verzonden (met|vanaf|van)|skickat från|sendt fra)\s.{1,70}$`)
	// Valedictions that start a signature block at the end of the new text.
	valedictions = `(regards|best regards|kind regards|warm regards|many thanks|thanks|thank you|cheers|best|sincerely|yours sincerely|mit freundlichen grüßen|viele grüße|beste grüße|liebe grüße|grüße|cordialement|bien cordialement|salutations|saludos|un saludo|atentamente|cordiali saluti|saluti|met vriendelijke groet|groeten|med venlig hilsen|vennlig hilsen|med vänliga hälsningar|ystävällisin terveisin)`
	valediction  = regexp.MustCompile(`(?i)^\s*` + valedictions + `\s*[,.!]?\s*(\S.{0,40})?$`)
)

// SplitReply splits a plain-text reply. The new text ends at the first line that starts the
// quoted history: an "… wrote:" header (in many languages, possibly wrapped over several lines),
// an Outlook separator or header block, an Android "---- X wrote ----" line, a mobile client's
// "Sent from …" line followed by more text, or a block of "> " lines. A reply that starts with
// the quote (bottom-posting, inline answers) has the unquoted lines as its new text.
func SplitReply(text string) Reply {
	text = normalizeNewlines(text)
	lines := splitSharedLine(strings.Split(text, "\n"))
	cut := len(lines)
	for i := 0; i < len(lines); i++ {
		if mayBeForwardLine(lines[i]) && forwarded.MatchString(lines[i]) {
			break // a forward: what follows is the content
		}
		if quoteStart(lines, i) {
			cut = i
			break
		}
	}
	// Blank and separator-only lines just before the history belong to it.
	for cut > 0 && cut < len(lines) && (strings.TrimSpace(lines[cut-1]) == "" || separatorOnly.MatchString(lines[cut-1])) {
		cut--
	}
	before := lines[:cut]
	quoted := strings.TrimSpace(strings.Join(lines[cut:], "\n"))
	if strings.TrimSpace(strings.Join(before, "\n")) == "" && quoted != "" {
		// The reply starts with the quote: the new text is what is not quoted.
		var own []string
		for _, l := range lines {
			if !strings.HasPrefix(strings.TrimSpace(l), ">") && !quoteHeaderAt(lines, l) {
				own = append(own, l)
			}
		}
		before = own
	}
	body, sig := splitSignature(before)
	return Reply{
		NewText:   strings.TrimSpace(strings.Join(body, "\n")),
		Signature: strings.TrimSpace(strings.Join(sig, "\n")),
		Quoted:    quoted,
		Body:      strings.TrimSpace(strings.Join(before, "\n")),
	}
}

// quoteHeaderAt reports whether l is an "… wrote:" header line.
func quoteHeaderAt(lines []string, l string) bool {
	t := strings.TrimSpace(l)
	return t != "" && (endsWithVerb.MatchString(t) && (hasEmail(t) || hasDigit(t)))
}

// splitSharedLine breaks "reply On … wrote:" into the reply and the header.
func splitSharedLine(lines []string) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if !endsWithColon(l) || !endsWithWroteVerb(l) || !mayBeSharedLine(l) {
			// The pattern ends with "wrote:"; checking that first spares the regexp most lines.
			out = append(out, l)
			continue
		}
		if m := sharedLine.FindStringSubmatch(l); m != nil && !strings.HasPrefix(strings.TrimSpace(l), ">") &&
			!strings.EqualFold(strings.TrimSpace(m[1]), "") && len(strings.Fields(m[1])) <= 12 && (hasEmail(m[2]) || hasDigit(m[2])) {
			out = append(out, m[1], m[2])
			continue
		}
		out = append(out, l)
	}
	return out
}

// quoteStart reports whether line i starts the quoted history.
func quoteStart(lines []string, i int) bool {
	l := strings.TrimSpace(lines[i])
	if l == "" {
		return false
	}
	if strings.HasPrefix(l, ">") {
		// A quote block: this line and the next non-empty one are quoted, or it ends the text,
		// or the text starts with it (answers written below or between quoted lines).
		if firstNonBlank(lines) == i {
			return true
		}
		for j := i + 1; j < len(lines); j++ {
			if n := strings.TrimSpace(lines[j]); n != "" {
				return strings.HasPrefix(n, ">")
			}
		}
		return true
	}
	if strings.ContainsRune("-_*=", rune(l[0])) && (originalMessage.MatchString(l) || androidWrote.MatchString(l)) {
		return true
	}
	if mayBeMobileSig(l) && mobileSig.MatchString(l) && !strings.Contains(l, ",") {
		// "Sent from my phone" followed by more text: the rest is the history.
		for j := i + 1; j < len(lines); j++ {
			if strings.TrimSpace(lines[j]) != "" {
				return true
			}
		}
		return false
	}
	if strings.Contains(l, ":") && headerStart.MatchString(l) {
		// An Outlook-style header block: From:/Date: and at least one more field right after.
		n := 0
		for j := i + 1; j < len(lines) && j <= i+6; j++ {
			if headerField.MatchString(lines[j]) {
				n++
			}
		}
		if n >= 1 && (n >= 2 || headerField.MatchString(lines[min(i+1, len(lines)-1)])) {
			return true
		}
	}
	// Cheap tests first: the patterns below need an "@" (hasEmail) and a digit.
	at := strings.Contains(l, "@")
	if at && len(l) < 200 && startsWithDate.MatchString(l) && hasEmail(l) {
		return true
	}
	if at && len(l) < 250 && hasDigit(l) && hasEmail(l) && containsWroteVerb(l) && hasVerb.MatchString(l) {
		return true
	}
	// "… wrote:" on this line, or wrapped over the next few (blank lines and a split <address>
	// included). Such a header starts with a date, a time or an address.
	if !hasDigit(l) && !at && strings.IndexByte(l, '<') < 0 {
		return false
	}
	window := ""
	for j, used := i, 0; j < len(lines) && used < 6; j++ {
		t := strings.TrimSpace(lines[j])
		if t == "" {
			continue
		}
		if len(t) > 250 || strings.HasSuffix(t, ".") || strings.HasSuffix(t, "!") || strings.HasSuffix(t, "?") {
			break // a sentence, not part of a header
		}
		used++
		if window != "" {
			window += " "
		}
		window += t
		if len(window) > 500 {
			break
		}
		if endsWithWroteVerb(t) && endsWithVerb.MatchString(t) && (hasEmail(window) || hasDigit(window)) {
			return true
		}
		if strings.HasSuffix(t, ":") && hasEmail(window) && hasDigit(window) {
			return true
		}
	}
	return false
}

// endsWithColon reports whether a line ends with a colon and white space (as \s means it):
// sharedLine's end.
func endsWithColon(l string) bool {
	return strings.HasSuffix(strings.TrimRight(l, " \t\n\f\r"), ":")
}

// mayBeSharedLine: sharedLine needs an "on" (in any case) followed by white space and preceded by
// white space or a dash, after a character that is not white space. The "On … wrote:" header
// alone, the usual line that ends with a verb and a colon, has its "On" first.
func mayBeSharedLine(l string) bool {
	seen := false // a character that is not white space, before i-1
	for i := 1; i+2 < len(l); i++ {
		if !seen && !isSpaceRE(l[i-1]) {
			seen = true
			continue // l[i-1] is the non-space character: the separator must come after it
		}
		if seen && l[i]|0x20 == 'o' && l[i+1]|0x20 == 'n' && isSpaceRE(l[i+2]) && (isSpaceRE(l[i-1]) || l[i-1] == '-') {
			return true
		}
	}
	return false
}

// isSpaceRE reports whether c is white space as the regexp \s means it: tab, LF, form feed, CR
// or space.
func isSpaceRE(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

// wroteVerbs are wroteVerb's alternatives, for a cheap test before the regexp.
var wroteVerbs = strings.Split(strings.NewReplacer(`\(`, "(", `\)`, ")").Replace(strings.Trim(wroteVerb, "()")), "|")

// endsWithWroteVerb reports whether a line ends with one of the verbs (and an optional colon):
// a necessary condition of endsWithVerb and sharedLine that costs no regexp. Case folding
// matches two letters that strings.ToLower does not lower to the verbs' (ſ to s, ᲃ to с): a
// line with either is let through.
func endsWithWroteVerb(t string) bool {
	return wroteVerbIn(strings.TrimRight(t, " \t\n\f\r:"), strings.HasSuffix)
}

// containsWroteVerb reports whether a line has one of the verbs anywhere: a necessary condition
// of hasVerb (with endsWithWroteVerb's allowance for case folding).
func containsWroteVerb(t string) bool {
	return wroteVerbIn(t, strings.Contains)
}

// wroteVerbIn reports whether at(t in lower case, verb) holds for one of the verbs, or t has a
// letter that case folding matches to a verb's but strings.ToLower does not lower to it.
func wroteVerbIn(t string, at func(s, verb string) bool) bool {
	l := strings.ToLower(t)
	for _, v := range wroteVerbs {
		if at(l, v) {
			return true
		}
	}
	return strings.Contains(t, "ſ") || strings.Contains(t, "ᲃ")
}

// splitSignature separates a trailing signature from the new text.
func splitSignature(lines []string) (body, sig []string) {
	end := len(lines)
	for end > 0 && strings.TrimSpace(lines[end-1]) == "" {
		end--
	}
	lines = lines[:end]
	for i := len(lines) - 1; i >= 0 && len(lines)-i <= 15; i-- {
		l := lines[i]
		switch {
		case sigDelimiter.MatchString(l):
			return lines[:i], lines[i:]
		case mayBeMobileSig(l) && mobileSig.MatchString(l) && !strings.Contains(l, ",") && len(lines)-i <= 2:
			return lines[:i], lines[i:]
		case len(lines)-i <= 5 && i > 0 && mayBeValediction(l) && valediction.MatchString(l):
			return lines[:i], lines[i:]
		}
	}
	return lines, nil
}

// firstNonBlank returns the index of the first line with text, or -1.
func firstNonBlank(lines []string) int {
	for i, l := range lines {
		if strings.TrimSpace(l) != "" {
			return i
		}
	}
	return -1
}

// The tests below are necessary conditions of the regexps they guard, checked first because
// the regexps are run on every line of every reply and cost far more.

// hasDigit reports whether s has an ASCII digit (the regexp \d).
func hasDigit(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i]-'0' < 10 {
			return true
		}
	}
	return false
}

// hasEmail reports whether s has something like an address: an "@" with a character before
// and after it that is neither white space nor one of <>()" (the regexp
// [^\s<>()"]+@[^\s<>()"]+, whose every match has such an "@", and which matches at every
// such "@").
func hasEmail(s string) bool {
	for i := 0; ; i++ {
		j := strings.IndexByte(s[i:], '@')
		if j < 0 {
			return false
		}
		i += j
		if i > 0 && i+1 < len(s) && !notInAddress[s[i-1]] && !notInAddress[s[i+1]] {
			return true
		}
	}
}

// notInAddress marks the bytes hasEmail does not take around an "@": \s (tab, LF, form feed,
// CR, space) and <>()".
var notInAddress = func() (t [256]bool) {
	for _, c := range "\t\n\f\r <>()\"" {
		t[c] = true
	}
	return t
}()

// normalizeNewlines turns CRLF and lone CRs into LF.
func normalizeNewlines(s string) string {
	i := strings.IndexByte(s, '\r')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i >= 0 {
		b.WriteString(s[:i])
		b.WriteByte('\n')
		s = s[i+1:]
		if s != "" && s[0] == '\n' {
			s = s[1:]
		}
		i = strings.IndexByte(s, '\r')
	}
	b.WriteString(s)
	return b.String()
}

// mayBeForwardLine: forwarded matches only lines whose first character after the white space
// \s skips is one of its separator characters or the "b" of "begin forwarded message".
func mayBeForwardLine(l string) bool {
	l = strings.TrimLeft(l, " \t\r\n\f")
	return l != "" && strings.IndexByte("-_*=>bB", l[0]) >= 0
}

// mayBeMobileSig: mobileSig's alternatives start with one of mobileSigStarts (in any case; a
// line whose first three bytes are not all ASCII is let through, as case folding maps some
// letters outside ASCII: ſ to s, the Kelvin sign to k).
func mayBeMobileSig(l string) bool {
	return startsWithFolded(l, mobileSigStarts)
}

// mobileSigStarts are the first three letters of mobileSig's alternatives.
var mobileSigStarts = []string{"sen", "get", "ges", "von", "env", "inv", "ver", "ski"}

// valedictionStarts are the first three bytes of valediction's alternatives.
var valedictionStarts = func() (starts []string) {
	for _, v := range strings.Split(strings.Trim(valedictions, "()"), "|") {
		if !slices.Contains(starts, v[:3]) {
			starts = append(starts, v[:3])
		}
	}
	return starts
}()

// mayBeValediction: valediction's alternatives start with one of valedictionStarts (in any
// case; a line whose first three bytes are not all ASCII is let through, as case folding maps
// some letters outside ASCII, the Kelvin sign to k).
func mayBeValediction(l string) bool {
	return startsWithFolded(l, valedictionStarts)
}

// startsWithFolded reports whether l, after the white space \s skips, starts with one of starts
// (three ASCII bytes each, lower case), in any case, or may: a line whose first three bytes are
// not all ASCII is let through. A line of fewer than three bytes is not (no case folding makes
// a letter of fewer bytes). Setting bit 0x20 lowers an ASCII letter and makes no letter of
// another byte.
func startsWithFolded(l string, starts []string) bool {
	l = strings.TrimLeft(l, " \t\r\n\f")
	if len(l) < 3 {
		return false
	}
	if l[0]|l[1]|l[2] >= 0x80 {
		return true
	}
	for _, p := range starts {
		if l[0]|0x20 == p[0] && l[1]|0x20 == p[1] && l[2]|0x20 == p[2] {
			return true
		}
	}
	return false
}
