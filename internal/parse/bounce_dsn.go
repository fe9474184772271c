package parse

import (
	"bytes"
	"strings"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// dsnField is one header field of a delivery-status body, unfolded.
type dsnField struct{ name, value string }

// dsnBlocks splits a message/delivery-status body (RFC 3464 section 2.1) into its blocks of
// fields: the per-message block, then one per recipient. Blocks are separated by blank lines
// (or lines of white space only); a Final-Recipient that repeats inside a block starts another
// (some servers leave out the blank line). Folded lines are unfolded.
func dsnBlocks(body []byte) [][]dsnField {
	var blocks [][]dsnField
	var cur []dsnField
	flush := func() {
		if len(cur) > 0 {
			blocks = append(blocks, cur)
			cur = nil
		}
	}
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			flush()
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(cur) > 0 {
			cur[len(cur)-1].value += " " + string(bytes.TrimSpace(line))
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		f := dsnField{strings.ToLower(string(bytes.TrimSpace(name))), string(bytes.TrimSpace(value))}
		if f.name == "final-recipient" || f.name == "original-recipient" {
			for _, c := range cur {
				if c.name == f.name {
					flush()
					break
				}
			}
		}
		cur = append(cur, f)
	}
	flush()
	return blocks
}

func fieldOf(block []dsnField, name string) string {
	for _, f := range block {
		if f.name == name {
			return f.value
		}
	}
	return ""
}

// deliveryStatus reads a message/delivery-status part: the reporting MTA and, for each
// recipient block, the address (Final-Recipient, else Original-Recipient), action, status,
// diagnostic (Diagnostic-Code without its type), SMTP code, remote MTA, reason and permanence.
func deliveryStatus(body []byte) (reportingMTA string, out []*mailintakev1.BounceRecipient) {
	for _, b := range dsnBlocks(body) {
		if v := fieldOf(b, "reporting-mta"); v != "" && reportingMTA == "" {
			reportingMTA = afterType(v)
		}
		// The address the sender gave (Original-Recipient) is the one to match with what was
		// sent; the address the server last tried (Final-Recipient) may be an alias's target or
		// an X.400 name. Final-Recipient serves when there is no usable original.
		addr := rfc822Address(fieldOf(b, "original-recipient"))
		if addr == "" {
			addr = cleanAddress(afterType(fieldOf(b, "final-recipient")))
		}
		if addr == "" {
			addr = cleanAddress(afterType(fieldOf(b, "original-recipient")))
		}
		if addr == "" {
			continue
		}
		status, _, _ := strings.Cut(strings.TrimSpace(fieldOf(b, "status")), " ")
		r := &mailintakev1.BounceRecipient{
			Address:    addr,
			Action:     strings.ToLower(strings.TrimSpace(fieldOf(b, "action"))),
			Status:     status,
			Diagnostic: afterType(fieldOf(b, "diagnostic-code")),
			RemoteMta:  afterType(fieldOf(b, "remote-mta")),
		}
		if r.Diagnostic == "" {
			// Some servers give the text only in a field of their own (Exchange, Zimbra).
			r.Diagnostic = strings.TrimSpace(fieldOf(b, "x-supplementary-info"))
		}
		if !validStatus(r.Status) {
			r.Status = enhancedStatus(r.Diagnostic)
		}
		r.SmtpCode = smtpCode(r.Diagnostic)
		out = append(out, r)
	}
	return reportingMTA, out
}

// envelopeID returns the Original-Envelope-Id of a delivery-status body's per-message block
// (RFC 3464 section 2.2.1): the ENVID the sender gave with MAIL FROM (RFC 3461 section 4.4).
// The field should carry it decoded, but some servers copy the xtext form: "+XX" hex escapes
// are decoded. Empty when there is none, or it is not printable ASCII.
func envelopeID(body []byte) string {
	blocks := dsnBlocks(body)
	if len(blocks) == 0 {
		return ""
	}
	return decodeXtext(strings.TrimSpace(fieldOf(blocks[0], "original-envelope-id")))
}

// decodeXtext decodes RFC 3461 xtext ("+" and two upper-case hex digits for a byte); text
// without a valid escape is returned as it is. Anything not printable ASCII gives "".
func decodeXtext(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '!' || c > '~' {
			return ""
		}
		if c == '+' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]) {
			n := unhex(v[i+1])<<4 | unhex(v[i+2])
			if n >= '!' && n <= '~' {
				b.WriteByte(n)
				i += 2
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// rfc822Address returns the address of an "rfc822; a@b.c" recipient field, or "" when the
// field is of another type or the address has no domain with a dot.
func rfc822Address(v string) string {
	typ, _, ok := strings.Cut(v, ";")
	if !ok || !strings.EqualFold(strings.TrimSpace(typ), "rfc822") {
		return ""
	}
	a := cleanAddress(afterType(v))
	if _, domain, ok := strings.Cut(a, "@"); !ok || !strings.Contains(domain, ".") {
		return ""
	}
	return a
}

// afterType strips the address-type or diagnostic-type prefix: "rfc822;a@b" → "a@b".
func afterType(v string) string {
	v = strings.TrimSpace(v)
	if _, after, ok := strings.Cut(v, ";"); ok {
		return strings.TrimSpace(after)
	}
	return v
}

// cleanAddress trims the brackets, quotes and comment a DSN address may carry.
func cleanAddress(a string) string {
	a = strings.TrimSpace(a)
	if i := strings.IndexAny(a, " \t("); i > 0 && strings.Contains(a[:i], "@") {
		a = a[:i]
	}
	return strings.Trim(a, "<>\"' ")
}

// validStatus reports whether s is an enhanced status code (RFC 3463): class.subject.detail.
func validStatus(s string) bool {
	return len(s) >= 5 && (s[0] == '2' || s[0] == '4' || s[0] == '5') && enhancedStatus(s) == s
}

// enhancedStatus finds the first enhanced status code (e.g. "5.1.1") in text, not part of a
// longer dotted number (an IP address, a version).
func enhancedStatus(text string) string {
	for i := 0; i+5 <= len(text); i++ {
		c := text[i]
		if (c != '2' && c != '4' && c != '5') || text[i+1] != '.' {
			continue
		}
		if i > 0 && (isDigit(text[i-1]) || text[i-1] == '.') {
			continue
		}
		j := i + 2
		k := j
		for k < len(text) && k-j < 3 && isDigit(text[k]) {
			k++
		}
		if k == j || k >= len(text) || text[k] != '.' {
			continue
		}
		l := k + 1
		m := l
		for m < len(text) && m-l < 3 && isDigit(text[m]) {
			m++
		}
		if m == l || (m < len(text) && (isDigit(text[m]) || (text[m] == '.' && m+1 < len(text) && isDigit(text[m+1])))) {
			continue
		}
		return text[i:m]
	}
	return ""
}

// smtpCode finds the first basic SMTP reply code (RFC 5321: 2xx, 4xx, 5xx) in text: three
// digits standing alone (not part of a longer number, a dotted address or a date), followed by
// a space, a hyphen, a colon or the end.
func smtpCode(text string) uint32 {
	for i := 0; i+3 <= len(text); i++ {
		c := text[i]
		if (c != '2' && c != '4' && c != '5') || !isDigit(text[i+1]) || !isDigit(text[i+2]) {
			continue
		}
		if i > 0 {
			p := text[i-1]
			if isDigit(p) || p == '.' || p == '#' || p == '-' || p == ':' || p == '/' || p == '[' || isLetter(p) {
				continue
			}
		}
		if e := i + 3; e < len(text) {
			n := text[e]
			if !(n == ' ' || n == '-' || n == ':' || n == '\t' || n == '\r' || n == '\n' || n == ')' || n == ',' || n == ';') {
				continue
			}
			if n == ':' && e+1 < len(text) && isDigit(text[e+1]) {
				continue // a time of day
			}
		}
		code := uint32(c-'0')*100 + uint32(text[i+1]-'0')*10 + uint32(text[i+2]-'0')
		if code%100 > 59 { // no SMTP reply has a second digit above 5
			continue
		}
		return code
	}
	return 0
}

// isDigit and isLetter test ASCII bytes.
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
