package parse

import (
	"bytes"
	"io"
	"net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding/charmap"
)

// lenientMediaType parses a Content-Type or Content-Disposition value that mime.ParseMediaType
// refuses. Real clients send unquoted values with spaces ("name=This is a test.txt"), 8-bit bytes
// in parameters, and boundaries with "=" unquoted; RFC 2045's strict grammar would lose the part's
// name, or worse its boundary. Values keep everything up to the next ";". RFC 2231 extended
// values ("filename*=iso-8859-1'en'R%E9sum%E9.pdf") and continuations ("name*0*=…; name*1*=…")
// are assembled and decoded in any charset, and win over a plain value of the same name.
func lenientMediaType(v string) (string, map[string]string) {
	parts := splitParams(v)
	mt := strings.ToLower(strings.TrimSpace(parts[0]))
	params := map[string]string{}
	var ext map[string][]rfc2231Piece
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
		if name, piece, ok := parseRFC2231Key(k, val); ok {
			if ext == nil {
				ext = map[string][]rfc2231Piece{}
			}
			ext[name] = append(ext[name], piece)
			continue
		}
		if _, exists := params[k]; !exists {
			params[k] = eightBit(val)
		}
	}
	for name, pieces := range ext {
		if v := assembleRFC2231(pieces); v != "" {
			params[name] = v
		}
	}
	return mt, params
}

// rfc2231Piece is one section of an RFC 2231 parameter: "name*N" (or "name*N*", "name*").
type rfc2231Piece struct {
	n        int
	extended bool // percent-encoded, the first section with charset'language'
	value    string
}

// parseRFC2231Key recognises an RFC 2231 parameter name: "name*", "name*N" or "name*N*".
func parseRFC2231Key(k, val string) (string, rfc2231Piece, bool) {
	i := strings.IndexByte(k, '*')
	if i <= 0 {
		return "", rfc2231Piece{}, false
	}
	name, rest := k[:i], k[i+1:]
	p := rfc2231Piece{value: val}
	if rest == "" {
		p.extended = true
		return name, p, true
	}
	if strings.HasSuffix(rest, "*") {
		p.extended = true
		rest = rest[:len(rest)-1]
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || n > 999 {
		return "", rfc2231Piece{}, false
	}
	p.n = n
	return name, p, true
}

// assembleRFC2231 joins the sections of one parameter in order (up to the first missing one)
// and decodes them: percent-decoding of extended sections, then the charset the first one names.
func assembleRFC2231(pieces []rfc2231Piece) string {
	slices.SortStableFunc(pieces, func(a, b rfc2231Piece) int { return a.n - b.n })
	var raw []byte
	cs := ""
	for i, p := range pieces {
		if p.n != i {
			break
		}
		val := p.value
		if p.extended {
			if i == 0 {
				if c, rest, ok := strings.Cut(val, "'"); ok {
					if _, after, ok := strings.Cut(rest, "'"); ok {
						cs, val = c, after
					}
				}
			}
			raw = appendPercentDecoded(raw, val)
		} else {
			raw = append(raw, val...)
		}
	}
	return charsetText(raw, cs)
}

// appendPercentDecoded appends s with its %XX escapes decoded (a malformed escape stays as it is).
func appendPercentDecoded(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			dst = append(dst, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		dst = append(dst, s[i])
	}
	return dst
}

// charsetText converts bytes in a named charset to UTF-8: UTF-8 and US-ASCII (and no charset,
// or one no decoder knows) are read as UTF-8 when valid, Windows-1252 otherwise.
func charsetText(b []byte, cs string) string {
	switch strings.ToLower(cs) {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return guessText(b)
	}
	r, err := charset.Reader(cs, bytes.NewReader(b))
	if err != nil {
		return guessText(b)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return guessText(b)
	}
	return string(out)
}

// withExtendedParams puts into params (from the strict parser) the RFC 2231 extended and
// continued parameters of raw as lenientMediaType assembles them: mime.ParseMediaType decodes
// extended values only in UTF-8 and US-ASCII, and drops the others ("filename*=iso-8859-1'en'…")
// or keeps only the sections after them.
func withExtendedParams(params map[string]string, raw string) map[string]string {
	if !strings.Contains(raw, "*") {
		return params
	}
	_, lp := lenientMediaType(raw)
	for _, p := range splitParams(raw)[1:] {
		k, _, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		if name, _, ok := parseRFC2231Key(strings.ToLower(strings.TrimSpace(k)), ""); ok && lp[name] != "" {
			if params == nil {
				params = map[string]string{}
			}
			params[name] = lp[name]
		}
	}
	return params
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
	entries := splitAddressList(v)
	for i := 0; i < len(entries); i++ {
		entry := strings.TrimSpace(entries[i])
		if entry == "" {
			continue
		}
		if !strings.ContainsAny(entry, "@<:") {
			// An unquoted display name with commas ("Smith, John <john@example.com>") was split
			// at them: the pieces without an address belong to the next entry if that one has an
			// angle address.
			j := i + 1
			for j < len(entries) && !strings.ContainsAny(entries[j], "@<:") {
				j++
			}
			if j < len(entries) && angleAddr.MatchString(entries[j]) && !strings.Contains(entries[j][:strings.IndexByte(entries[j], '<')], "@") {
				entry = strings.TrimSpace(strings.Join(entries[i:j+1], ","))
				i = j
			}
		}
		if a, err := (&mail.AddressParser{WordDecoder: wordDecoder}).Parse(entry); err == nil {
			out = append(out, a)
			continue
		}
		if m := angleAddr.FindStringSubmatchIndex(entry); m != nil {
			name := strings.Trim(strings.TrimSpace(entry[:m[0]]), `"`)
			if dec, err := decodeText(name); err == nil {
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
