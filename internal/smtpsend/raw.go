package smtpsend

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// RawOptions say how to send a message the caller wrote whole.
type RawOptions struct {
	// EnvelopeFrom is MAIL FROM; empty: the Sender field's address, else the first From's.
	EnvelopeFrom string
	// Recipients are the envelope's recipients; empty: the To, Cc and Bcc fields'.
	Recipients []string
	// MessageID is used when the message has no Message-ID (without angle brackets); empty:
	// NewMessageID with the From address's domain.
	MessageID string
	// Date is used when the message has no Date; zero: now.
	Date time.Time
}

// maxLineLength is RFC 5322's limit on a line, without its CRLF.
const maxLineLength = 998

// PrepareRaw checks a message the caller wrote and makes it ready to send, changing as little
// as possible: the header must be readable, have a From, and the message recipients (its To,
// Cc or Bcc, or RawOptions.Recipients); no line may be longer than 998 octets. A missing
// Message-ID and Date are added at the top, in the message's own line endings. A Bcc field is
// removed (its addresses stay recipients), as a mail client does before submitting, so the
// other recipients never see it. Nothing else changes, byte for byte.
func PrepareRaw(raw []byte, opts RawOptions) (*Outgoing, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, fmt.Errorf("the message's header cannot be read: %v", err)
	}
	if n, line := longestLine(raw); n > maxLineLength {
		return nil, fmt.Errorf("line %d is %d octets long, RFC 5322 allows %d: encode the body quoted-printable or base64", line, n, maxLineLength)
	}
	mh := mail.Header{Header: message.Header{Header: h}}
	from, err := mh.AddressList("From")
	if err != nil || len(from) == 0 {
		return nil, errors.New("the message has no readable From field")
	}
	out := &Outgoing{From: from[0].Address}
	if sender, err := mh.AddressList("Sender"); err == nil && len(sender) == 1 {
		out.From = sender[0].Address
	}
	if opts.EnvelopeFrom != "" {
		out.From = opts.EnvelopeFrom
	}
	if err := checkEnvelopeAddress(out.From); err != nil {
		return nil, fmt.Errorf("the sender address %v", err)
	}
	if len(opts.Recipients) > 0 {
		list, err := parseAddresses("recipients", opts.Recipients)
		if err != nil {
			return nil, err
		}
		out.Recipients = uniqueAddresses(list)
	} else {
		var lists [][]*mail.Address
		for _, k := range []string{"To", "Cc", "Bcc"} {
			l, err := mh.AddressList(k)
			if err != nil {
				return nil, fmt.Errorf("the %s field cannot be read: %v", k, err)
			}
			lists = append(lists, l)
		}
		out.Recipients = uniqueAddresses(lists...)
	}
	if len(out.Recipients) == 0 {
		return nil, errors.New("the message has no recipients: no To, Cc or Bcc field, and none given")
	}

	eol := "\r\n"
	if i := bytes.IndexByte(raw, '\n'); i > 0 && raw[i-1] != '\r' {
		eol = "\n"
	}
	var top []byte
	if h.Has("Message-Id") {
		id, err := mh.MessageID()
		if err == nil {
			out.MessageID = id
		} else {
			out.Warnings = append(out.Warnings, "the Message-ID field cannot be read: "+err.Error())
		}
	} else {
		out.MessageID = strings.Trim(strings.TrimSpace(opts.MessageID), "<>")
		if out.MessageID == "" {
			out.MessageID = NewMessageID(domainOf(from[0].Address))
		} else if !validMessageID(out.MessageID) {
			return nil, fmt.Errorf("message_id: %q cannot be a Message-ID", opts.MessageID)
		}
		top = append(top, "Message-ID: <"+out.MessageID+">"+eol...)
	}
	if !h.Has("Date") {
		date := opts.Date
		if date.IsZero() {
			date = time.Now()
		}
		top = append(top, "Date: "+formatDate(date)+eol...)
	}
	out.Bytes = append(top, removeField(raw, "Bcc")...)
	return out, nil
}

// longestLine returns the length of the longest line (without its line ending) and its number.
func longestLine(raw []byte) (n, line int) {
	for i := 1; len(raw) > 0; i++ {
		l := raw
		if j := bytes.IndexByte(raw, '\n'); j >= 0 {
			l, raw = raw[:j], raw[j+1:]
		} else {
			raw = nil
		}
		if k := len(bytes.TrimSuffix(l, []byte("\r"))); k > n {
			n, line = k, i
		}
	}
	return n, line
}

// removeField returns raw without the header field name (and its folded lines), untouched
// otherwise; raw itself when it has no such field.
func removeField(raw []byte, name string) []byte {
	var out []byte
	skipping, found := false, false
	rest := raw
	for len(rest) > 0 {
		j := bytes.IndexByte(rest, '\n')
		line := rest
		if j >= 0 {
			line = rest[:j+1]
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 { // the end of the header
			break
		}
		folded := line[0] == ' ' || line[0] == '\t'
		if !folded {
			colon := bytes.IndexByte(line, ':')
			skipping = colon > 0 && strings.EqualFold(strings.TrimSpace(string(line[:colon])), name)
		}
		if skipping {
			found = true
		} else {
			out = append(out, line...)
		}
		rest = rest[len(line):]
	}
	if !found {
		return raw
	}
	return append(out, rest...)
}
