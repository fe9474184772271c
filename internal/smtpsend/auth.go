package smtpsend

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

// AuthError is the server's refusal of a login. A failed Authenticate returns it inside an
// *Error (Step StepAuth; Permanent for a 5xx, Temporary for a 4xx such as 454 4.7.0), so
// errors.As finds it.
type AuthError struct {
	Mechanism string
	Identity  string
	Code      int
	Enhanced  string
	// Text is the server's words, or what the token mechanism's error challenge said.
	Text string
	// TokenRejected is set when the server sent an XOAUTH2 or OAUTHBEARER error challenge.
	TokenRejected bool
	// Fresh repeats Credential.Fresh: the refused credential had just been issued.
	Fresh bool
}

// Error renders the refusal on one line.
func (e *AuthError) Error() string {
	s := "the SMTP server refused the " + e.Mechanism + " login of " + e.Identity
	if e.Code != 0 {
		s += ": " + ReplyString(e.Code, e.Enhanced, e.Text)
	}
	if e.TokenLogin() {
		if e.Fresh {
			s += " (with a token issued just now)"
		} else {
			s += " (with a cached token)"
		}
	}
	return s
}

// TokenLogin reports whether the login used an OAuth access token (XOAUTH2, OAUTHBEARER).
func (e *AuthError) TokenLogin() bool { return tokenMechanism(e.Mechanism) }

// RetryWithFreshToken reports whether one more login with a newly issued token may succeed: a
// token login refused for good (5xx) with a token that came from a cache (it may have been
// revoked before it expired), and not for a reason no token cures (SMTP AUTH turned off,
// 5.7.139; passwords refused, 5.7.30). A caller asks the provider for a fresh token once, and
// reports the second refusal.
func (e *AuthError) RetryWithFreshToken() bool {
	return e.TokenLogin() && !e.Fresh && e.Code >= 500 && e.Enhanced != "5.7.139" && e.Enhanced != "5.7.30"
}

// Authenticate logs in with a credential. PLAIN and LOGIN stand in for each other when the
// server offers only the other (Exchange Online offers LOGIN and XOAUTH2, no PLAIN). A
// refusal is an *Error wrapping an *AuthError.
func (c *Conn) Authenticate(ctx context.Context, cred Credential) error {
	start := time.Now()
	var err error
	if e := c.authenticate(ctx, cred); e != nil {
		err = e // not a typed nil
	}
	c.report(Step{Kind: StepAuth, Duration: time.Since(start), Detail: strings.ToUpper(cred.Mechanism) + " as " + cred.Identity, Err: err})
	return err
}

func (c *Conn) authenticate(ctx context.Context, cred Credential) *Error {
	if c.broken {
		return &Error{Kind: Temporary, Step: StepAuth, Err: errBroken, Explanation: errBroken.Error()}
	}
	cred.Mechanism = strings.ToUpper(cred.Mechanism)
	ok, offered := c.c.Extension("AUTH")
	if !ok {
		e := &Error{Kind: Permanent, Step: StepAuth, Explanation: fmt.Sprintf("%s offers no login (AUTH) on this connection", c.target.Addr())}
		if c.target.Security == Plaintext {
			e.Explanation += ": servers offer it only once the connection is encrypted, use security starttls (587) or tls (465)"
		} else {
			e.Explanation += ": it is not a submission server (port 587 or 465), or it accepts mail without a login; remove the credential only for a trusted relay"
		}
		return e
	}
	mech := cred.Mechanism
	if !c.c.SupportsAuth(mech) {
		switch {
		case mech == MechPlain && c.c.SupportsAuth(MechLogin):
			mech = MechLogin
		case mech == MechLogin && c.c.SupportsAuth(MechPlain):
			mech = MechPlain
		default:
			return &Error{Kind: Permanent, Step: StepAuth, Explanation: fmt.Sprintf(
				"%s does not offer the %s login the mailbox's auth provider issued (it offers: %s)", c.target.Addr(), mech, offered)}
		}
	}
	cl, err := saslClient(Credential{Mechanism: mech, Identity: cred.Identity, Secret: cred.Secret}, c.target.Host, c.target.Port)
	if err != nil {
		return &Error{Kind: Permanent, Step: StepAuth, Err: err, Explanation: err.Error()}
	}
	err = c.guard(ctx, func() error { return c.c.Auth(cl) })
	if err == nil {
		return nil
	}
	return c.authError(ctx, cred, mech, cl, err)
}

// authError classifies a failed AUTH exchange.
func (c *Conn) authError(ctx context.Context, cred Credential, mech string, cl sasl.Client, err error) *Error {
	code, enh, text, ok := smtpReply(err)
	if !ok {
		c.broken = true
		return connError(ctx, c.target, StepAuth, err)
	}
	ae := &AuthError{Mechanism: mech, Identity: cred.Identity, Code: code, Enhanced: enh, Text: text, Fresh: cred.Fresh}
	if r := tokenRejection(cl); r != "" {
		ae.TokenRejected = true
		if ae.Text == "" {
			ae.Text = r
		}
	}
	if code == 421 {
		c.broken = true
	}
	return &Error{Kind: kindOfCode(code), Step: StepAuth, Code: code, Enhanced: enh, Text: text,
		Explanation: explainAuth(ae), Err: ae}
}
