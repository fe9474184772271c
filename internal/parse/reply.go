package parse

import (
	"regexp"
	"strings"
)

// Reply is a reply's text split into what the sender wrote, the quoted history and the signature.
// Nothing is dropped: NewText + Signature + Quoted hold every line of the input.
type Reply struct {
	NewText   string
	Quoted    string
	Signature string
}

// No library does this well for the mail a service desk receives (several languages, Outlook's
// header blocks, inline answers), so the heuristics live here, each with the client it comes from.
var (
	// "On Tue, 3 Mar 2026 at 10:15, Alice <a@example.com> wrote:" and its translations; the
	// header may wrap over up to three lines, so it is matched on a joined window.
	onWrote = regexp.MustCompile(`(?is)^\s*(` +
		`on\b.{0,300}\bwrote\s*:` + // English (Gmail, Apple Mail, Thunderbird)
		`|am\b.{0,300}\bschrieb\b.{0,100}:` + // German
		`|le\b.{0,300}\ba\s+écrit\s*:` + // French
		`|el\b.{0,300}\bescribió\s*:` + // Spanish
		`|op\b.{0,300}\bschreef\b.{0,100}:` + // Dutch
		`|il\b.{0,300}\bha\s+scritto\s*:` + // Italian
		`|em\b.{0,300}\bescreveu\s*:` + // Portuguese
		`|den\b.{0,300}\bskrev\b.{0,100}:` + // Swedish, Danish, Norwegian
		`|w\s+dniu\b.{0,300}\bnapisał.{0,30}:` + // Polish
		`|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}.{0,200}\b(wrote|schrieb|a écrit|escribió)\s*:` + // dates first
		`)\s*$`)
	// "---- John Smith wrote ----" (Android).
	androidWrote = regexp.MustCompile(`(?i)^-{2,}\s*.{1,200}\s(wrote|schrieb|a écrit|escribió)\s*-{2,}\s*$`)
	// Outlook's and others' separators.
	originalMessage = regexp.MustCompile(`(?i)^\s*[-_*=]{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original|messaggio originale|oorspronkelijk bericht|mensagem original|forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado)\s*[-_*=]{2,}\s*$`)
	underscores     = regexp.MustCompile(`^\s*_{20,}\s*$`)
	// The first line of an Outlook header block: "From: …", "Von: …", "De : …", "De: …".
	headerFrom = regexp.MustCompile(`(?i)^\s*\*?(from|von|de|da|van|från|od)\s*:\*?\s*\S`)
	// The other lines of such a block.
	headerField = regexp.MustCompile(`(?i)^\s*\*?(sent|date|to|cc|subject|gesendet|datum|an|betreff|envoyé|date|à|objet|enviado|fecha|para|asunto|inviato|oggetto|a|verzonden|aan|onderwerp|skickat|till|ämne)\s*:\*?`)
	// Signatures: the "-- " delimiter (RFC 3676 4.3), and what mobile clients append.
	sigDelimiter = regexp.MustCompile(`^--\s*$`)
	mobileSig    = regexp.MustCompile(`(?i)^\s*(sent from my (iphone|ipad|blackberry|android|mobile device|samsung|galaxy|windows phone)\b.*` +
		`|sent from (outlook|mail) for (ios|android|windows).*|get outlook for (ios|android).*` +
		`|von meinem (iphone|ipad|smartphone|samsung).*gesendet.*|envoyé de mon (iphone|ipad|smartphone).*|enviado desde mi (iphone|ipad|smartphone).*` +
		`|sent (with|via|using) .{1,40}$|sent from .{1,40}\bmobile\b.*)$`)
)

// SplitReply splits a plain-text reply. The new text ends at the first line that starts the
// quoted history: an "On … wrote:" header (in several languages, possibly wrapped), an Outlook
// separator or header block, an Android "---- X wrote ----" line, or a block of "> " lines.
// Everything from there on, including answers written inline between quoted lines, is Quoted.
func SplitReply(text string) Reply {
	text = strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\r", "\n")
	lines := strings.Split(text, "\n")
	cut := len(lines)
	for i := 0; i < len(lines); i++ {
		if quoteStart(lines, i) {
			cut = i
			break
		}
	}
	newLines := lines[:cut]
	quoted := strings.Join(lines[cut:], "\n")
	body, sig := splitSignature(newLines)
	return Reply{NewText: strings.TrimSpace(strings.Join(body, "\n")), Quoted: strings.TrimSpace(quoted), Signature: strings.TrimSpace(strings.Join(sig, "\n"))}
}

// quoteStart reports whether line i starts the quoted history.
func quoteStart(lines []string, i int) bool {
	l := strings.TrimSpace(lines[i])
	if l == "" {
		return false
	}
	if strings.HasPrefix(l, ">") {
		// A quote block: this line and the next non-empty one are quoted, or it ends the text.
		for j := i + 1; j < len(lines); j++ {
			n := strings.TrimSpace(lines[j])
			if n == "" {
				continue
			}
			return strings.HasPrefix(n, ">")
		}
		return true
	}
	if originalMessage.MatchString(l) || androidWrote.MatchString(l) {
		return true
	}
	if underscores.MatchString(l) {
		for j := i + 1; j < len(lines) && j <= i+3; j++ {
			if headerFrom.MatchString(lines[j]) {
				return true
			}
		}
	}
	if headerFrom.MatchString(l) {
		// An Outlook header block: From: followed by two more header fields.
		n := 0
		for j := i + 1; j < len(lines) && j <= i+6; j++ {
			if headerField.MatchString(lines[j]) {
				n++
			}
		}
		if n >= 2 {
			return true
		}
	}
	// "On … wrote:" on this line, or wrapped over the next two.
	window := l
	for j := i; j < len(lines) && j < i+3; j++ {
		if j > i {
			window += " " + strings.TrimSpace(lines[j])
		}
		if len(window) > 400 {
			break
		}
		if onWrote.MatchString(window) {
			// The header must end on a line of its own: "wrote:" at the end of line j.
			if strings.HasSuffix(strings.TrimSpace(lines[j]), ":") {
				return true
			}
		}
	}
	return false
}

// splitSignature separates a trailing signature from the new text.
func splitSignature(lines []string) (body, sig []string) {
	// Trailing empty lines belong to nothing.
	end := len(lines)
	for end > 0 && strings.TrimSpace(lines[end-1]) == "" {
		end--
	}
	lines = lines[:end]
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if sigDelimiter.MatchString(l) && len(lines)-i <= 15 {
			return lines[:i], lines[i:]
		}
		if mobileSig.MatchString(l) && len(lines)-i <= 3 {
			return lines[:i], lines[i:]
		}
	}
	return lines, nil
}
