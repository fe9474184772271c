package parse

import (
	"mime"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// lenientMediaType parses a Content-Type or Content-Disposition value that mime.ParseMediaType
// refuses. Real clients send unquoted values with spaces ("name=This is a test.txt"), 8-bit bytes
// in parameters, and boundaries with "=" unquoted; RFC 2045's strict grammar would lose the part's
// name, or worse its boundary. Values keep everything up to the next ";".
func lenientMediaType(v string) (string, map[string]string) {
	parts := splitParams(v)
	mt := strings.ToLower(strings.TrimSpace(parts[0]))
	params := map[string]string{}
	for _, p := range parts[1:] {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = strings.ReplaceAll(val[1:len(val)-1], `\"`, `"`)
		}
		if strings.HasSuffix(k, "*") {
			// RFC 2231 extended value: charset'language'percent-encoded.
			if _, dec, err := mime.ParseMediaType("x/x; " + k + "=" + val); err == nil {
				for dk, dv := range dec {
					params[dk] = dv
				}
				continue
			}
			k = strings.TrimSuffix(k, "*")
		}
		if _, exists := params[k]; !exists {
			params[k] = eightBit(val)
		}
	}
	return mt, params
}

// splitParams splits at semicolons outside quotes.
func splitParams(v string) []string {
	var out []string
	var cur strings.Builder
	inQuote := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"':
			inQuote = !inQuote
			cur.WriteByte(c)
		case c == ';' && !inQuote:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, cur.String())
}

// eightBit returns raw 8-bit header text as UTF-8: valid UTF-8 as is, anything else read as
// Windows-1252 (what undeclared 8-bit headers almost always are).
func eightBit(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	out, err := charmap.Windows1252.NewDecoder().String(s)
	if err != nil {
		return s
	}
	return out
}

var angleAddr = regexp.MustCompile(`<\s*([^<>\s]+@[^<>\s]+)\s*>`)
var bareAddr = regexp.MustCompile(`[^\s<>(),;:"]+@[^\s<>(),;:"]+`)

// lenientAddresses reads an address list that net/mail refuses (e.g. an unquoted "@" in a
// display name, or a missing comma): each comma-separated entry is parsed alone, and an entry
// that still fails yields its <addr-spec> or bare address.
func lenientAddresses(v string) []*mail.Address {
	var out []*mail.Address
	for _, entry := range splitAddressList(v) {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if a, err := (&mail.AddressParser{WordDecoder: wordDecoder}).Parse(entry); err == nil {
			out = append(out, a)
			continue
		}
		if m := angleAddr.FindStringSubmatchIndex(entry); m != nil {
			name := strings.Trim(strings.TrimSpace(entry[:m[0]]), `"`)
			if dec, err := wordDecoder.DecodeHeader(name); err == nil {
				name = dec
			}
			out = append(out, &mail.Address{Name: name, Address: entry[m[2]:m[3]]})
			continue
		}
		if !strings.Contains(entry, "<") {
			// An entry without an angle address is an addr-spec: "jdoe@test . example".
			entry = spaceAroundAddrSep.ReplaceAllString(entry, "$1")
		}
		for _, a := range bareAddr.FindAllString(entry, -1) {
			out = append(out, &mail.Address{Address: strings.Trim(a, ".")})
		}
	}
	return out
}

// splitAddressList splits at commas outside quotes, angle brackets and comments.
func splitAddressList(v string) []string {
	var out []string
	var cur strings.Builder
	quote, angle, comment := false, 0, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && quote && i+1 < len(v):
			cur.WriteByte(c)
			i++
			c = v[i]
		case c == '"':
			quote = !quote
		case !quote && c == '<':
			angle++
		case !quote && c == '>' && angle > 0:
			angle--
		case !quote && c == '(':
			comment++
		case !quote && c == ')' && comment > 0:
			comment--
		case !quote && angle == 0 && comment == 0 && (c == ',' || c == ';'):
			out = append(out, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(c)
	}
	return append(out, cur.String())
}

// stripComments removes RFC 5322 comments ("(...)", nested, with quoted-pairs) outside quoted
// strings and replaces each with a space. The obsolete syntax allows comments almost anywhere:
// inside addresses, message ids and dates.
func stripComments(v string) string {
	if !strings.Contains(v, "(") {
		return v
	}
	var b strings.Builder
	depth, quote := 0, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && (quote || depth > 0) && i+1 < len(v):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(v[i+1])
			}
			i++
			continue
		case c == '"' && depth == 0:
			quote = !quote
		case c == '(' && !quote:
			if depth == 0 {
				b.WriteByte(' ')
			}
			depth++
			continue
		case c == ')' && !quote && depth > 0:
			depth--
			continue
		}
		if depth == 0 {
			b.WriteByte(c)
		}
	}
	return b.String()
}

var (
	// spaceAroundAddrSep matches white space around "@" and "." in an addr-spec (obs-local-part,
	// obs-domain).
	spaceAroundAddrSep = regexp.MustCompile(`\s*([@.])\s*`)
	// obsRoute matches an obsolete source route at the start of an angle address: "<@a,@b:".
	obsRoute = regexp.MustCompile(`<\s*(?:@[^<>:,]*,?\s*)+:`)
)

// cleanAddressList rewrites the obsolete syntax of RFC 5322 section 4.4 that net/mail refuses
// into the modern form: comments dropped, source routes dropped, white space inside an angle
// address removed.
func cleanAddressList(v string) string {
	v = obsRoute.ReplaceAllString(stripComments(v), "<")
	var b strings.Builder
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			break
		}
		b.WriteString(v[:i+1])
		b.WriteString(spaceAroundAddrSep.ReplaceAllString(strings.TrimSpace(v[i+1:i+j]), "$1"))
		v = v[i+j:]
	}
	b.WriteString(v)
	return b.String()
}

// parseAddressList parses an address list with net/mail, RFC 2047 words in any charset.
func parseAddressList(v string) ([]*mail.Address, error) {
	return (&mail.AddressParser{WordDecoder: wordDecoder}).ParseList(v)
}

// lenientMsgID reads a message id with the obsolete syntax: comments and white space inside it.
func lenientMsgID(v string) string {
	v = stripComments(v)
	i := strings.IndexByte(v, '<')
	j := strings.LastIndexByte(v, '>')
	if i < 0 || j < i {
		return ""
	}
	return strings.Join(strings.Fields(v[i+1:j]), "")
}

// spaceAroundColon matches white space around the colons of a time of day.
var spaceAroundColon = regexp.MustCompile(`(\d)\s*:\s*(\d)`)

// lenientDate parses a Date with the obsolete syntax net/mail refuses: comments inside it and
// white space around the colons of the time.
func lenientDate(v string) (time.Time, error) {
	v = strings.Join(strings.Fields(stripComments(v)), " ")
	v = spaceAroundColon.ReplaceAllString(v, "$1:$2")
	return mail.ParseDate(v)
}
