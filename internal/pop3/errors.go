package pop3

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrClosed is returned for a command on a connection that was closed: by Close or Quit, or
// by an earlier failure that left it unable to carry another command (a timeout, a protocol
// violation, a broken connection). The messages marked with Dele on it were not deleted.
var ErrClosed = errors.New("the POP3 connection is closed")

// ErrNotAllowed is returned for a command that Target.Allow refused; nothing was sent.
var ErrNotAllowed = errors.New("command not sent: this replica may no longer own the mailbox")

// ErrNoSTLS is returned by Dial when Security is StartTLS and the server does not offer STLS.
var ErrNoSTLS = errors.New("the server does not offer STLS")

// ErrInsecureAuth is returned by Authenticate on an unencrypted connection without
// Target.InsecureAuth; nothing was sent.
var ErrInsecureAuth = errors.New("credentials are not sent over an unencrypted connection")

// Response codes (RFC 2449 section 8, RFC 3206) a -ERR may carry.
const (
	// CodeInUse: the maildrop is locked by another session (the login itself was right).
	CodeInUse = "IN-USE"
	// CodeLoginDelay: logins come too often for the server.
	CodeLoginDelay = "LOGIN-DELAY"
	// CodeSysTemp: a temporary failure at the server.
	CodeSysTemp = "SYS/TEMP"
	// CodeSysPerm: a failure at the server that needs its admin.
	CodeSysPerm = "SYS/PERM"
	// CodeAuth: the credentials are wrong.
	CodeAuth = "AUTH"
)

// ServerError is a -ERR answer. The connection stays usable (unless the server closes it).
type ServerError struct {
	// Command is the command the server refused ("RETR", "PASS", "greeting").
	Command string
	// Code is the response code without brackets ("IN-USE", "SYS/TEMP"), "" when none.
	Code string
	// Text is the server's words after the code, with control characters replaced.
	Text string
}

// Error renders the answer on one line.
func (e *ServerError) Error() string {
	s := "POP3 " + e.Command + ": -ERR"
	if e.Code != "" {
		s += " [" + e.Code + "]"
	}
	if e.Text != "" {
		s += " " + e.Text
	}
	if x := e.Explanation(); x != "" {
		s += " (" + x + ")"
	}
	return s
}

// Temporary reports whether the refusal is expected to pass by itself: IN-USE, LOGIN-DELAY
// and SYS/TEMP.
func (e *ServerError) Temporary() bool {
	switch baseCode(e.Code) {
	case CodeInUse, CodeLoginDelay, CodeSysTemp:
		return true
	}
	return false
}

// Explanation says in plain words what the response code means and what to do, "" for an
// answer without a known code.
func (e *ServerError) Explanation() string {
	switch baseCode(e.Code) {
	case CodeInUse:
		return "the login was accepted but another session holds the maildrop's lock (another POP3 client " +
			"on the same mailbox, or a previous session the server has not noticed ended yet); it is tried again later"
	case CodeLoginDelay:
		return "the server allows logins only so often: it is tried again later; poll this mailbox less often"
	case CodeSysTemp:
		return "a temporary failure at the server; it is tried again later"
	case CodeSysPerm:
		return "a failure at the server that its admin has to fix (the maildrop may be damaged or over quota)"
	}
	return ""
}

// baseCode returns a response code's first level ("SYS/TEMP" stays whole: its levels are the
// meaning; "IN-USE/x" becomes "IN-USE").
func baseCode(code string) string {
	code = strings.ToUpper(code)
	if strings.HasPrefix(code, "SYS/") {
		if i := strings.IndexByte(code[4:], '/'); i >= 0 {
			return code[:4+i]
		}
		return code
	}
	if i := strings.IndexByte(code, '/'); i >= 0 {
		return code[:i]
	}
	return code
}

// ProtocolError is an answer that breaks the protocol (a line too long, a list too long, a
// malformed line, data the server should not have sent). The connection was closed.
type ProtocolError struct {
	// Command is the command being answered.
	Command string
	// Problem says what was wrong.
	Problem string
}

// Error renders the violation on one line.
func (e *ProtocolError) Error() string {
	cmd := e.Command
	if cmd == "" {
		cmd = "response"
	}
	return "POP3 " + cmd + ": the server broke the protocol: " + e.Problem + "; the connection was closed"
}

// TimeoutError is a command the server did not finish answering within its deadline (a
// stalled server, or one that trickles data). The connection was closed.
type TimeoutError struct {
	Command string
	After   time.Duration
}

// Error renders the timeout on one line.
func (e *TimeoutError) Error() string {
	return fmt.Sprintf("POP3 %s: no complete answer within %s; the connection was closed", e.Command, e.After)
}

// Timeout reports true (net.Error's sense).
func (e *TimeoutError) Timeout() bool { return true }

// ConnError is a connection that broke during a command (closed by the server, reset). The
// connection is closed.
type ConnError struct {
	Command string
	Err     error
}

// Error renders the failure on one line.
func (e *ConnError) Error() string {
	return "POP3 " + e.Command + ": the connection broke: " + e.Err.Error()
}

// Unwrap returns the network error.
func (e *ConnError) Unwrap() error { return e.Err }

// TooLargeError is a message (RETR) or header (TOP) longer than the caller's limit. Its
// first Limit bytes were read; the rest was read and thrown away when it was at most
// Limits.MaxDiscard bytes (Closed false: the connection stays usable), else the connection
// was closed as soon as that was known.
type TooLargeError struct {
	Command string
	Msg     int
	Limit   int64
	// Size is the message's size as far as it was read (at least Limit+1); when Closed is
	// false it is the whole message's size.
	Size int64
	// Announced is the size the server announced on its +OK line, -1 when it did not.
	Announced int64
	// Head holds the message's first bytes (up to 64 KiB), enough for its header in most
	// cases (Retr only).
	Head []byte
	// Closed says the connection was closed (the rest was too long to discard).
	Closed bool
}

// Error renders the refusal on one line.
func (e *TooLargeError) Error() string {
	s := fmt.Sprintf("POP3 %s %d: the message is over the limit of %d bytes", e.Command, e.Msg, e.Limit)
	if e.Closed {
		return s + " (at least " + fmt.Sprint(e.Size) + " bytes); the connection was closed rather than read it all"
	}
	return s + fmt.Sprintf(" (%d bytes; the rest was read and discarded)", e.Size)
}

// IsServerError reports whether err is a -ERR answer, and returns it.
func IsServerError(err error) (*ServerError, bool) {
	var se *ServerError
	ok := errors.As(err, &se)
	return se, ok
}
