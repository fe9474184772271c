package parse

import (
	"bytes"
	"encoding/base64"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// fixUTF8 makes every string of a parsed message valid UTF-8, which protobuf requires: without it
// one undeclared 8-bit header or body would make the message impossible to send. Text that is not
// UTF-8 is read as Windows-1252 (what undeclared 8-bit mail almost always is) and a problem is
// recorded.
func fixUTF8(m protoreflect.Message) (fixed bool) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				switch fd.Kind() {
				case protoreflect.StringKind:
					if s := l.Get(i).String(); !utf8.ValidString(s) {
						l.Set(i, protoreflect.ValueOfString(eightBit(s)))
						fixed = true
					}
				case protoreflect.MessageKind:
					fixed = fixUTF8(l.Get(i).Message()) || fixed
				}
			}
		case fd.IsMap():
			mp := v.Map()
			mp.Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if fd.MapValue().Kind() == protoreflect.StringKind && !utf8.ValidString(mv.String()) {
					mp.Set(k, protoreflect.ValueOfString(eightBit(mv.String())))
					fixed = true
				}
				return true
			})
		case fd.Kind() == protoreflect.StringKind:
			if s := v.String(); !utf8.ValidString(s) {
				m.Set(fd, protoreflect.ValueOfString(eightBit(s)))
				fixed = true
			}
		case fd.Kind() == protoreflect.MessageKind:
			fixed = fixUTF8(v.Message()) || fixed
		}
		return true
	})
	return fixed
}

// Encoded words (RFC 2047) are often labelled with the wrong charset: "us-ascii" carrying 8-bit
// bytes, "iso-8859-1" carrying UTF-8 or Windows-1252 (its 0x80–0x9F are typographic quotes and
// the euro sign, not the control characters ISO-8859-1 has there), "utf-8" carrying Latin-1, or a
// label no decoder knows ("unknown-8bit", "x-user-defined"). mime.WordDecoder decodes the three
// common labels itself, without asking its CharsetReader, and gives U+FFFD, mojibake or invalid
// UTF-8; an unknown label fails the whole header. repairWords rewrites such words before they are
// decoded, as UTF-8 words holding what the bytes most likely are.

// encodedWord matches an RFC 2047 encoded word.
var encodedWord = regexp.MustCompile(`=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=`)

// decodeText decodes a header value: raw 8-bit text that is not UTF-8 is read as Windows-1252,
// and RFC 2047 words as repairWords makes them. On an error it returns the value undecoded.
func decodeText(s string) (string, error) {
	if !utf8.ValidString(s) {
		s = eightBit(s)
	}
	if !strings.Contains(s, "=?") {
		return s, nil
	}
	s = repairWords(s)
	dec, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s, err
	}
	return dec, nil
}

// repairWords rewrites the encoded words of s whose bytes are not in their declared charset as
// UTF-8 words; the others are left as they are. Adjacent words (only white space between them)
// of one charset are judged together: encoders split a character over two words.
func repairWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	m := encodedWord.FindAllStringSubmatchIndex(s, -1)
	if m == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for i := 0; i < len(m); {
		cs := s[m[i][2]:m[i][3]]
		j := i + 1
		for j < len(m) && strings.EqualFold(s[m[j][2]:m[j][3]], cs) && strings.TrimSpace(s[m[j-1][1]:m[j][0]]) == "" {
			j++
		}
		var raw []byte
		ok := true
		for k := i; k < j && ok; k++ {
			raw, ok = appendWordBytes(raw, s[m[k][4]:m[k][5]], s[m[k][6]:m[k][7]])
		}
		if ok {
			if text, changed := wordText(cs, raw); changed {
				b.WriteString(s[last:m[i][0]])
				b.WriteString("=?utf-8?b?" + base64.StdEncoding.EncodeToString([]byte(text)) + "?=")
				last = m[j-1][1]
			}
		}
		i = j
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// appendWordBytes appends the bytes of an encoded word's text ("B" or "Q" encoding).
func appendWordBytes(dst []byte, enc, text string) ([]byte, bool) {
	if enc == "b" || enc == "B" {
		t := strings.TrimRight(text, "=")
		d, err := base64.RawStdEncoding.DecodeString(t)
		if err != nil {
			return dst, false
		}
		return append(dst, d...), true
	}
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '_':
			dst = append(dst, ' ')
		case c == '=' && i+2 < len(text) && isHex(text[i+1]) && isHex(text[i+2]):
			dst = append(dst, unhex(text[i+1])<<4|unhex(text[i+2]))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// wordText returns the text of an encoded word's bytes in charset cs, and whether it differs
// from what the standard decoder would make of them (only then is the word rewritten).
func wordText(cs string, raw []byte) (string, bool) {
	cs = strings.ToLower(cs)
	if i := strings.IndexByte(cs, '*'); i >= 0 {
		cs = cs[:i] // RFC 2231 language suffix: "us-ascii*en"
	}
	ascii := true
	for _, c := range raw {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	switch cs {
	case "utf-8", "utf8":
		if utf8.Valid(raw) {
			return "", false
		}
		return guessText(raw), true
	case "us-ascii", "ascii", "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "l1", "windows-1252", "cp1252":
		// The labels of the "undeclared or wrong" charsets. Text in them that is valid UTF-8
		// with multi-byte sequences is UTF-8: Latin-1 text almost never forms such sequences.
		if ascii {
			return "", false
		}
		if cs == "windows-1252" || cs == "cp1252" {
			if !utf8.Valid(raw) {
				return "", false // the decoder's Windows-1252 is right
			}
		}
		return guessText(raw), true
	}
	if ascii {
		return "", false
	}
	if _, err := charset.Reader(cs, bytes.NewReader(nil)); err != nil {
		return guessText(raw), true // a label no decoder knows
	}
	return "", false
}

// guessText reads bytes of an unknown or wrong charset: UTF-8 when they are valid UTF-8,
// Windows-1252 otherwise.
func guessText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return eightBit(string(b))
}
