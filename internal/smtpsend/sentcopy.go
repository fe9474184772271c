package smtpsend

import (
	"bufio"
	"bytes"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// SentCopy returns the copy of a sent message to file in the sender's Sent folder: raw as it
// was sent, with a Bcc field naming the envelope recipients that its To and Cc fields do not
// (the blind copies, which the sent message must not show), as a mail client keeps them in its
// own copy so the sender can still see who got one. raw itself is returned when there are none,
// when it already has a Bcc field, or when its To or Cc field cannot be read (the blind
// recipients cannot be told apart then, and naming a visible one as blind would be wrong).
func SentCopy(raw []byte, recipients []string) []byte {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil || h.Has("Bcc") {
		return raw
	}
	mh := mail.Header{Header: message.Header{Header: h}}
	visible := map[string]bool{}
	for _, k := range []string{"To", "Cc"} {
		l, err := mh.AddressList(k)
		if err != nil {
			return raw
		}
		for _, a := range l {
			visible[strings.ToLower(a.Address)] = true
		}
	}
	var blind []*mail.Address
	seen := map[string]bool{}
	for _, r := range recipients {
		k := strings.ToLower(r)
		if visible[k] || seen[k] || r == "" {
			continue
		}
		seen[k] = true
		blind = append(blind, &mail.Address{Address: r})
	}
	if len(blind) == 0 {
		return raw
	}
	field := foldField("Bcc", formatAddresses(blind))
	if i := bytes.IndexByte(raw, '\n'); i > 0 && raw[i-1] != '\r' {
		field = strings.ReplaceAll(field, "\r\n", "\n") // the message's own line endings
	}
	return append([]byte(field), raw...)
}
