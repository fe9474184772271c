package smtpsend

import "strings"

// foldLimit is the line length header fields are folded to (RFC 5322's 78 less room; RFC 2047
// wants lines with encoded words within 76).
const foldLimit = 76

// foldField writes "Name: value" CRLF, folded before whitespace so lines stay within foldLimit
// wherever a word allows (a word longer than a line stays whole: encoded words must not be
// split, and Compose keeps every word under 998 octets). Folding inserts CRLF only before
// whitespace that is there, so unfolding gives the value back unchanged.
func foldField(name, value string) string {
	var b strings.Builder
	b.WriteString(name + ":")
	n := len(name) + 1
	rest := " " + value
	for rest != "" {
		// The next segment: its leading whitespace and the word after it.
		i := 0
		for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
			i++
		}
		j := strings.IndexAny(rest[i:], " \t")
		if j < 0 {
			j = len(rest)
		} else {
			j += i
		}
		seg := rest[:j]
		rest = rest[j:]
		// A fold goes before whitespace only, never leaves a line of whitespace alone.
		if i > 0 && j > i && n > 0 && n+len(seg) > foldLimit {
			b.WriteString("\r\n")
			n = 0
		}
		b.WriteString(seg)
		n += len(seg)
	}
	b.WriteString("\r\n")
	return b.String()
}
