package parse

import (
	"bufio"
	"bytes"
	"net/textproto"
	"regexp"
	"strings"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// calendarMethod finds the iTIP method in a text/calendar body (RFC 5546).
var calendarMethod = regexp.MustCompile(`(?im)^METHOD:\s*([A-Z-]+)\s*$`)

// deliveryStatus reads the per-recipient fields of a message/delivery-status part (RFC 3464
// section 2.3): blocks of header fields separated by blank lines, the first one per message.
func deliveryStatus(body []byte) []*mailintakev1.BounceRecipient {
	body = bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))
	var out []*mailintakev1.BounceRecipient
	blocks := strings.Split(string(body), "\n\n")
	for i, b := range blocks {
		b = strings.TrimSpace(b)
		if b == "" || (i == 0 && !strings.Contains(strings.ToLower(b), "final-recipient")) {
			continue
		}
		h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(b + "\n\n"))).ReadMIMEHeader()
		if err != nil && len(h) == 0 {
			continue
		}
		addr := afterType(h.Get("Final-Recipient"))
		if addr == "" {
			addr = afterType(h.Get("Original-Recipient"))
		}
		if addr == "" {
			continue
		}
		status, _, _ := strings.Cut(strings.TrimSpace(h.Get("Status")), " ")
		out = append(out, &mailintakev1.BounceRecipient{
			Address: addr, Action: strings.ToLower(strings.TrimSpace(h.Get("Action"))), Status: status,
			Diagnostic: afterType(h.Get("Diagnostic-Code")),
		})
	}
	return out
}

// afterType strips the address-type or diagnostic-type prefix: "rfc822;a@b" → "a@b".
func afterType(v string) string {
	v = strings.TrimSpace(v)
	if _, after, ok := strings.Cut(v, ";"); ok {
		return strings.TrimSpace(after)
	}
	return v
}
