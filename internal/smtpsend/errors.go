package smtpsend

import (
	"errors"
	"fmt"
	"strings"
)

// Kind says what a failed send means for the message.
type Kind int

// Kinds of failure.
const (
	// Temporary: nothing was accepted (a 4xx reply, or the connection failed or timed out
	// before the final dot was written); send again later.
	Temporary Kind = iota + 1
	// Permanent: the server refused (5xx) or the send cannot work as configured; sending the
	// same message again fails the same way.
	Permanent
	// Unknown: the connection broke or timed out after the final dot was written and before
	// the server answered; the message may have been accepted, so it must not be sent again
	// automatically.
	Unknown
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case Temporary:
		return "temporary"
	case Permanent:
		return "permanent"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is a failed connection, login or send.
type Error struct {
	// Kind is what the failure means for the message.
	Kind Kind
	// Step is where it failed.
	Step StepKind
	// Code is the server's reply code; 0 when the server did not answer (a connection failure,
	// a timeout) or the refusal is this package's own.
	Code int
	// Enhanced is the server's enhanced status code ("5.7.139"), "" when it gave none.
	Enhanced string
	// Text is the server's words, without the codes.
	Text string
	// Recipients lists the refused recipients when Step is StepRcpt.
	Recipients []RecipientError
	// Explanation says in plain words what happened and what to do.
	Explanation string
	// Err is the underlying error: an *AuthError for a refused login, a network error, or nil.
	Err error
}

// RecipientError is one recipient the server refused at RCPT TO.
type RecipientError struct {
	Address  string
	Code     int
	Enhanced string
	Text     string
}

// String renders the refusal as "<a@example.com>: 550 5.1.1 text".
func (r RecipientError) String() string {
	return "<" + r.Address + ">: " + ReplyString(r.Code, r.Enhanced, r.Text)
}

// Error renders the failure on one line.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "smtp %s (%s)", e.Step, e.Kind)
	if e.Code != 0 {
		b.WriteString(": " + ReplyString(e.Code, e.Enhanced, e.Text))
	} else if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	if e.Explanation != "" {
		b.WriteString(": " + e.Explanation)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether the message may be sent again automatically (Temporary only).
func (e *Error) Retryable() bool { return e.Kind == Temporary }

// KindOf returns the Kind of an *Error in err's chain; any other non-nil error (one that did
// not come from talking to the server) is Temporary, and nil is 0.
func KindOf(err error) Kind {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Temporary
}

// ReplyString renders a reply as "550 5.1.1 text".
func ReplyString(code int, enhanced, text string) string {
	s := fmt.Sprint(code)
	if enhanced != "" {
		s += " " + enhanced
	}
	if text != "" {
		s += " " + text
	}
	return s
}

// kindOfCode classifies a server reply received before the message was accepted.
func kindOfCode(code int) Kind {
	if code >= 400 && code < 500 {
		return Temporary
	}
	return Permanent
}
