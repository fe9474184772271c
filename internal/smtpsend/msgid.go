package smtpsend

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
	"time"
)

// fallbackDomain names the right side of a Message-ID when the sender's address gives no usable
// domain.
const fallbackDomain = "mailintake.invalid"

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewMessageID returns a new, globally unique Message-ID (without angle brackets) of the form
// random@domain: 128 random bits, and the domain of the sender's address so the id is the
// sender's own (a domain name only, in ASCII).
func NewMessageID(domain string) string {
	var b [16]byte
	rand.Read(b[:])
	if domain == "" || !validIDRight(domain) {
		domain = fallbackDomain
	}
	return idEncoding.EncodeToString(b[:]) + "@" + domain
}

// validIDRight reports whether s can be a Message-ID's right side (a dot-atom of a domain).
func validIDRight(s string) bool {
	return validHostname(s) && !strings.Contains(s, "..")
}

// validMessageID reports whether id (without angle brackets) can be written in a header: no
// whitespace, brackets or control characters, one @, and not longer than a header line allows.
func validMessageID(id string) bool {
	if id == "" || len(id) > 900 || strings.Count(id, "@") != 1 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c == '<' || c == '>' || c == 0x7f {
			return false
		}
	}
	return true
}

// dateLayout is RFC 5322's date-time.
const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

func formatDate(t time.Time) string { return t.Format(dateLayout) }
