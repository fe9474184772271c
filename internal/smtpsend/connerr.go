package smtpsend

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// nothingSent ends the explanation of every failure before the final dot.
const nothingSent = "nothing was accepted, so it can be sent again"

// replyError turns a refusal (a reply with another code than expected) into an *Error, and
// anything else into a connection error.
func replyError(ctx context.Context, t Target, step StepKind, err error) *Error {
	if code, enh, text, ok := smtpReply(err); ok {
		return &Error{Kind: kindOfCode(code), Step: step, Code: code, Enhanced: enh, Text: text,
			Explanation: explain(step, code, enh, text)}
	}
	return connError(ctx, t, step, err)
}

// smtpReply extracts the code, enhanced code and text of a server's reply from go-smtp's and
// net/textproto's errors.
func smtpReply(err error) (code int, enhanced, text string, ok bool) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		text = se.Message
		if se.EnhancedCode[0] > 0 {
			enhanced = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		return se.Code, enhanced, oneLine(text), true
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		enhanced, text = splitEnhanced(te.Msg)
		return te.Code, enhanced, oneLine(text), true
	}
	return 0, "", "", false
}

// splitEnhanced splits "5.7.139 text" into the enhanced code and the text.
func splitEnhanced(msg string) (enhanced, text string) {
	first, rest, _ := strings.Cut(msg, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return "", msg
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil || p == "" {
			return "", msg
		}
	}
	// RFC 2034: the code is repeated on every line of a multi-line reply.
	return first, strings.ReplaceAll(rest, "\n"+first+" ", "\n")
}

// oneLine joins a multi-line reply's lines with spaces.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// connError is a failure of the connection itself before the final dot: Temporary.
func connError(ctx context.Context, t Target, step StepKind, err error) *Error {
	e := &Error{Kind: Temporary, Step: step, Err: err}
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		e.Err = ctx.Err()
		e.Explanation = fmt.Sprintf("the send was cancelled at %s; %s", step, nothingSent)
	case errors.Is(ctx.Err(), context.DeadlineExceeded) && step <= StepHello:
		e.Explanation = fmt.Sprintf("%s did not finish connecting within %s (stuck at %s); %s", t.Addr(), t.DialTimeout, step, nothingSent)
	case errors.As(err, &ne) && ne.Timeout():
		e.Explanation = fmt.Sprintf("%s did not answer at %s within %s, so the connection was closed; %s", t.Addr(), step, stepTimeout(t, step), nothingSent)
	default:
		e.Explanation = fmt.Sprintf("the connection to %s failed at %s (%v); %s", t.Addr(), step, err, nothingSent)
	}
	return e
}

func stepTimeout(t Target, step StepKind) any {
	if step <= StepHello {
		return t.DialTimeout
	}
	return t.CommandTimeout
}

func dnsError(t Target, err error) *Error {
	e := &Error{Kind: Temporary, Step: StepDNS, Err: err}
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		e.Explanation = fmt.Sprintf("the host name %q does not exist (DNS: no such host): check the mailbox's SMTP host", t.Host)
	} else {
		e.Explanation = fmt.Sprintf("resolving %q failed (%v); %s", t.Host, err, nothingSent)
	}
	return e
}

func tcpError(t Target, err error) *Error {
	e := &Error{Kind: Temporary, Step: StepTCP, Err: err}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		e.Explanation = fmt.Sprintf("no answer from %s within %s (a firewall, or the wrong port: submission is 587 with STARTTLS, 465 with TLS)", t.Addr(), t.DialTimeout)
	case strings.Contains(err.Error(), "connection refused"):
		e.Explanation = fmt.Sprintf("connection to %s refused: nothing listens on port %d (submission is 587 with STARTTLS, 465 with TLS)", t.Addr(), t.Port)
	default:
		e.Explanation = fmt.Sprintf("connecting to %s failed (%v); %s", t.Addr(), err, nothingSent)
	}
	return e
}

// tlsError names certificate problems in words an admin can act on. They are Permanent: the
// same certificate fails the same way until someone changes the configuration.
func tlsError(ctx context.Context, t Target, err error) *Error {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	e := &Error{Kind: Permanent, Step: StepTLS, Err: err}
	switch {
	case errors.As(err, &ua):
		e.Explanation = "the server's certificate is not signed by a trusted authority (self-signed, or a private CA): give its CA certificate (ca_pem / --ca-file)"
	case errors.As(err, &he):
		e.Explanation = fmt.Sprintf("the server's certificate is not valid for %q: use the host name the certificate names", t.Host)
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		e.Explanation = "the server's certificate has expired or is not yet valid"
	case errors.As(err, &rh):
		e.Explanation = fmt.Sprintf("the server at %s does not speak TLS here (port 465 is TLS from the start, 587 is STARTTLS)", t.Addr())
	default:
		ce := connError(ctx, t, StepTLS, err)
		ce.Explanation = "the TLS handshake failed: " + ce.Explanation
		return ce
	}
	return e
}
