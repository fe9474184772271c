package pop3

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// status is a parsed status line (+OK or -ERR).
type status struct {
	ok   bool
	code string // the response code without brackets (RFC 2449 section 8), "" when none
	text string // the rest, with control characters replaced
}

// maxCodeLen bounds a response code; a longer bracketed prefix is text.
const maxCodeLen = 64

// parseStatus parses a status line. Anything but +OK or -ERR (followed by the end or a space)
// is a *ProtocolError.
func parseStatus(line []byte) (status, error) {
	var st status
	var rest []byte
	switch {
	case hasWord(line, "+OK"):
		st.ok, rest = true, line[3:]
	case hasWord(line, "-ERR"):
		rest = line[4:]
	default:
		return st, &ProtocolError{Problem: "expected +OK or -ERR, got " + quote(line)}
	}
	rest = bytes.TrimLeft(rest, " ")
	if len(rest) > 0 && rest[0] == '[' {
		if end := bytes.IndexByte(rest, ']'); end > 1 && end <= maxCodeLen+1 && validCode(rest[1:end]) {
			st.code = strings.ToUpper(string(rest[1:end]))
			rest = bytes.TrimLeft(rest[end+1:], " ")
		}
	}
	st.text = clean(rest)
	return st, nil
}

// hasWord reports whether line starts with word (case-insensitively) followed by its end or a
// space.
func hasWord(line []byte, word string) bool {
	return len(line) >= len(word) && strings.EqualFold(string(line[:len(word)]), word) &&
		(len(line) == len(word) || line[len(word)] == ' ')
}

// validCode reports whether b is a response code: levels of printable characters without
// spaces or brackets, separated by "/" (RFC 2449 section 8).
func validCode(b []byte) bool {
	for _, l := range bytes.Split(b, []byte("/")) {
		if len(l) == 0 {
			return false
		}
		for _, c := range l {
			if c <= ' ' || c >= 0x7f || c == '[' || c == ']' {
				return false
			}
		}
	}
	return true
}

// parseContinuation recognises a SASL continuation ("+" or "+ " and base64, RFC 5034) and
// decodes its challenge. ok is false for any other line (a status line).
func parseContinuation(line []byte) (challenge []byte, ok bool, err error) {
	if len(line) == 0 || line[0] != '+' || hasWord(line, "+OK") {
		return nil, false, nil
	}
	if len(line) > 1 && line[1] != ' ' {
		return nil, false, nil
	}
	enc := bytes.TrimSpace(line[1:])
	if len(enc) == 0 {
		return []byte{}, true, nil
	}
	dec := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(dec, enc)
	if err != nil {
		return nil, true, &ProtocolError{Problem: "a SASL challenge that is not base64: " + quote(line)}
	}
	return dec[:n], true, nil
}

// parseStat parses STAT's text: the number of messages and the maildrop's size.
func parseStat(text string) (count int, size int64, err error) {
	f := strings.Fields(text)
	if len(f) < 2 {
		return 0, 0, &ProtocolError{Problem: "STAT answered without a count and a size: " + strconv.Quote(text)}
	}
	c, err1 := parseNumber(f[0], 1<<31-1)
	s, err2 := parseNumber(f[1], 1<<62)
	if err1 != nil || err2 != nil {
		return 0, 0, &ProtocolError{Problem: "STAT answered a count and a size that are not numbers: " + strconv.Quote(text)}
	}
	return int(c), s, nil
}

// errNumber is a field that is not a number in range; callers say which field.
var errNumber = errors.New("not a number in range")

// parseNumber parses a decimal number of at most max (digits only, no sign).
func parseNumber(s string, max int64) (int64, error) {
	if s == "" || len(s) > 19 {
		return 0, errNumber
	}
	var n int64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, errNumber
		}
		n = n*10 + int64(c-'0')
		if n > max {
			return 0, errNumber
		}
	}
	return n, nil
}

// parseMsg parses a message number (1 and up).
func parseMsg(s string) (int, error) {
	n, err := parseNumber(s, 1<<31-1)
	if err != nil || n == 0 {
		return 0, errNumber
	}
	return int(n), nil
}

// parseListLine parses a scan listing: a message number and its size; RFC 1939 lets servers
// add more after the size, which is ignored.
func parseListLine(line []byte) (ListEntry, error) {
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return ListEntry{}, &ProtocolError{Problem: "a LIST line without a message number and a size: " + quote(line)}
	}
	n, err := parseMsg(f[0])
	if err != nil {
		return ListEntry{}, &ProtocolError{Problem: "a LIST line with a bad message number: " + quote(line)}
	}
	size, err := parseNumber(f[1], 1<<62)
	if err != nil {
		return ListEntry{}, &ProtocolError{Problem: "a LIST line with a bad size: " + quote(line)}
	}
	return ListEntry{Msg: n, Size: size}, nil
}

// parseUIDLLine parses a unique-id listing: a message number, one space, and a unique-id of
// 1 to MaxUIDLen printable characters without spaces (RFC 1939 says 0x21 to 0x7E, 70 at most).
func parseUIDLLine(line []byte) (UIDEntry, error) {
	num, uid, ok := bytes.Cut(bytes.TrimRight(line, " \t"), []byte(" "))
	if !ok {
		return UIDEntry{}, &ProtocolError{Problem: "a UIDL line without a unique-id: " + quote(line)}
	}
	n, err := parseMsg(string(num))
	if err != nil {
		return UIDEntry{}, &ProtocolError{Problem: "a UIDL line with a bad message number: " + quote(line)}
	}
	uid = bytes.TrimLeft(uid, " ")
	if len(uid) == 0 || len(uid) > MaxUIDLen {
		return UIDEntry{}, &ProtocolError{Problem: fmt.Sprintf("a UIDL line whose unique-id is empty or longer than %d bytes: %s", MaxUIDLen, quote(line))}
	}
	for _, c := range uid {
		if c < 0x21 || c > 0x7e {
			return UIDEntry{}, &ProtocolError{Problem: "a unique-id with a character outside 0x21-0x7E: " + quote(line)}
		}
	}
	return UIDEntry{Msg: n, UID: string(uid)}, nil
}

// parseAnnounced returns the size on a RETR's +OK line ("+OK 1234 octets"), -1 when there
// is none.
func parseAnnounced(text string) int64 {
	f := strings.Fields(text)
	if len(f) == 0 {
		return -1
	}
	n, err := parseNumber(f[0], 1<<62)
	if err != nil || len(f) > 1 && !strings.HasPrefix(strings.ToLower(f[1]), "octet") {
		return -1
	}
	return n
}

// clean returns text a server sent as printable UTF-8: control characters and invalid bytes
// are replaced, so a hostile answer cannot forge log lines or terminal escapes.
func clean(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return '\uFFFD'
		}
		return r
	}, s)
}

// quoteMax bounds the bytes of a hostile line quoted in an error.
const quoteMax = 80

// quote returns a line for an error message: Go-quoted, cut at quoteMax bytes.
func quote(b []byte) string {
	if len(b) > quoteMax {
		return strconv.Quote(string(b[:quoteMax])) + fmt.Sprintf("... (%d bytes)", len(b))
	}
	return strconv.Quote(string(b))
}
