package smtpsend

import (
	"fmt"
	"strings"
)

// Envelope is the SMTP envelope of one message.
type Envelope struct {
	// From is MAIL FROM: the mailbox's address, or the send-as address.
	From string
	// To is every recipient for RCPT TO, Bcc included.
	To []string
	// ID is the outbound message's id. Where the server offers DSN it goes as the envelope id
	// (ENVID, xtext-encoded), so a delivery report names it; omitted when it is not printable
	// ASCII or longer than RFC 3461's 100 characters once encoded.
	ID string
}

// checkEnvelope refuses an envelope no server could take, before anything is sent.
func checkEnvelope(env Envelope, msg []byte) *Error {
	bad := func(s string) *Error {
		return &Error{Kind: Permanent, Step: StepMail, Explanation: s}
	}
	if err := checkEnvelopeAddress(env.From); err != nil {
		return bad("the sender address (MAIL FROM) " + err.Error())
	}
	if len(env.To) == 0 {
		return bad("the message has no recipients")
	}
	for _, to := range env.To {
		if err := checkEnvelopeAddress(to); err != nil {
			return bad("the recipient address " + err.Error())
		}
	}
	if len(msg) == 0 {
		return bad("the message is empty")
	}
	return nil
}

func checkEnvelopeAddress(a string) error {
	switch {
	case a == "":
		return fmt.Errorf("is empty")
	case strings.ContainsAny(a, "<>\r\n \t"):
		return fmt.Errorf("%q has characters an address cannot have (give the bare address, without a name)", a)
	case !strings.Contains(a, "@"):
		return fmt.Errorf("%q has no @domain", a)
	}
	return nil
}

func needsUTF8(env Envelope) bool {
	if !isASCII(env.From) {
		return true
	}
	for _, to := range env.To {
		if !isASCII(to) {
			return true
		}
	}
	return false
}

// validEnvelopeID reports whether id can go as ENVID: printable ASCII, at most 100 characters
// once xtext-encoded (RFC 3461 section 4.4).
func validEnvelopeID(id string) bool {
	if id == "" {
		return false
	}
	n := 0
	for _, r := range id {
		if r < ' ' || r > '~' {
			return false
		}
		if r == '+' || r == '=' || r == ' ' {
			n += 3
		} else {
			n++
		}
	}
	return n <= 100
}
