package pop3

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

// ErrMechanismNotOffered is returned by Authenticate when the server offers no way to log in
// with the credential's mechanism; nothing was sent.
var ErrMechanismNotOffered = errors.New("the POP3 server does not offer this login")

// maxSASLRounds bounds the challenges of one AUTH exchange (the mechanisms here need at most
// two), so a server cannot keep a login going.
const maxSASLRounds = 4

// Authenticate logs in with a credential and reports StepAuth. How the credential is sent:
//
//   - PLAIN and LOGIN (a password): AUTH with that mechanism (or the other) where CAPA's SASL
//     offers it, else USER and PASS (RFC 1939).
//   - XOAUTH2: always in two steps, "AUTH XOAUTH2", then the base64 token on its own line
//     after the server's "+": a Microsoft 365 token is over 2,000 octets and POP3 limits
//     command lines to 255 (RFC 2449), and Exchange needs the two steps anyway.
//   - OAUTHBEARER: the initial response on the AUTH line when the line fits 255 octets,
//     else after the "+" (RFC 5034).
//
// A credential is never sent over an unencrypted connection without Target.InsecureAuth
// (ErrInsecureAuth). A refusal of the credential is an *AuthError; a refusal that says the
// credential was right but the server cannot serve now ([IN-USE], [LOGIN-DELAY], [SYS/TEMP],
// [SYS/PERM]) is a *ServerError. After a refusal the connection stays usable for another try.
func (c *Conn) Authenticate(ctx context.Context, cred Credential) error {
	start := time.Now()
	method, err := c.authenticate(ctx, cred)
	detail := method + " as " + clean([]byte(cred.Identity))
	if err == nil {
		detail += ", " + c.tlsWords()
	}
	c.report(Step{Kind: StepAuth, Duration: time.Since(start), Detail: detail, Err: err})
	return err
}

func (c *Conn) tlsWords() string {
	if c.tls != nil {
		return "encrypted"
	}
	return "unencrypted (as configured)"
}

func (c *Conn) authenticate(ctx context.Context, cred Credential) (method string, err error) {
	mech := strings.ToUpper(cred.Mechanism)
	cred.Mechanism = mech
	switch mech {
	case MechPlain, MechLogin, MechXOAuth2, MechOAuthBearer:
	default:
		return mech, fmt.Errorf("%w: the auth provider issued a credential for the SASL mechanism %q, which POP3 logins here do not support (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER)", ErrMechanismNotOffered, cred.Mechanism)
	}
	if c.authed {
		return mech, errors.New("POP3: already logged in on this connection")
	}
	if strings.ContainsAny(cred.Identity, "\r\n\x00") || strings.ContainsAny(cred.Secret, "\r\n\x00") {
		return mech, errors.New("POP3: the user name or secret holds a line break or NUL, which no POP3 login can carry")
	}
	if c.tls == nil && !c.target.InsecureAuth {
		return mech, fmt.Errorf("%w: the connection to %s is plaintext and the mailbox does not allow sending the login in the clear; "+
			"use security tls (995) or starttls (110)", ErrInsecureAuth, c.target.Addr())
	}
	saslMech, err := c.chooseMethod(cred)
	if err != nil {
		return mech, err
	}
	if saslMech == "" {
		return "USER/PASS", c.userPass(ctx, cred)
	}
	cl, err := saslClient(saslMech, cred, c.target.Host, c.target.Port)
	if err != nil {
		return "AUTH " + saslMech, err
	}
	err = c.auth(ctx, cl, cred)
	if err == nil {
		c.authed, c.marked = true, nil
	}
	return "AUTH " + saslMech, err
}

// chooseMethod returns the SASL mechanism to use, "" for USER/PASS.
func (c *Conn) chooseMethod(cred Credential) (string, error) {
	caps := c.caps
	offered := strings.Join(caps.SASL(), " ")
	if offered == "" {
		offered = "none"
	}
	switch cred.Mechanism {
	case MechPlain, MechLogin:
		other := MechLogin
		if cred.Mechanism == MechLogin {
			other = MechPlain
		}
		passFits := len("PASS ")+len(cred.Secret)+2 <= maxCommandLine && len("USER ")+len(cred.Identity)+2 <= maxCommandLine
		switch {
		case caps.SupportsSASL(cred.Mechanism):
			return cred.Mechanism, nil
		case caps.SupportsSASL(other):
			return other, nil
		case (!caps.Known || caps.Has("USER")) && passFits:
			return "", nil
		case !caps.Known || caps.Has("USER"):
			return "", fmt.Errorf("%w: the user name or password is too long for USER/PASS (POP3 command lines are at most 255 octets) and %s offers no SASL PLAIN or LOGIN", ErrMechanismNotOffered, c.target.Addr())
		}
		return "", fmt.Errorf("%w: %s offers no password login on this connection (no USER capability; SASL mechanisms: %s)", ErrMechanismNotOffered, c.target.Addr(), offered)
	default:
		if caps.Known && !caps.SupportsSASL(cred.Mechanism) {
			return "", fmt.Errorf("%w: %s does not offer the %s login the mailbox's auth provider issued (SASL mechanisms: %s)", ErrMechanismNotOffered, c.target.Addr(), cred.Mechanism, offered)
		}
		return cred.Mechanism, nil
	}
}

// userPass logs in with USER and PASS, each under its own deadline.
func (c *Conn) userPass(ctx context.Context, cred Credential) error {
	for _, step := range []struct{ name, line string }{{"USER", "USER " + cred.Identity}, {"PASS", "PASS " + cred.Secret}} {
		err := c.run(ctx, step.name, c.target.CommandTimeout, func() error {
			st, err := c.command(step.line)
			if err != nil {
				return err
			}
			if !st.ok {
				return refusal(step.name, st, cred, "USER/PASS", "")
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	c.authed, c.marked = true, nil
	return nil
}

// auth runs an AUTH exchange (RFC 5034) with a SASL client.
func (c *Conn) auth(ctx context.Context, cl sasl.Client, cred Credential) error {
	mech, ir, err := cl.Start()
	if err != nil {
		return err
	}
	return c.run(ctx, "AUTH", c.target.CommandTimeout, func() error {
		line := "AUTH " + mech
		if ir != nil && mech != MechXOAuth2 {
			enc := base64.StdEncoding.EncodeToString(ir)
			if enc == "" {
				enc = "=" // an empty initial response (RFC 5034 section 4)
			}
			if len(line)+1+len(enc)+2 <= maxCommandLine {
				line, ir = line+" "+enc, nil
			}
		}
		if err := c.send(line); err != nil {
			return err
		}
		for round := 0; ; round++ {
			l, err := c.r.line()
			if err != nil {
				return err
			}
			challenge, cont, err := parseContinuation(l)
			if err != nil {
				return err
			}
			if !cont {
				st, err := parseStatus(l)
				if err != nil {
					return err
				}
				if !st.ok {
					return refusal("AUTH", st, cred, "AUTH "+mech, tokenRejection(cl))
				}
				return nil
			}
			if round >= maxSASLRounds {
				return &ProtocolError{Problem: fmt.Sprintf("the %s login went on for more than %d challenges", mech, maxSASLRounds)}
			}
			resp := ir
			if ir != nil {
				ir = nil // the first "+" asks for the initial response that did not fit the line
			} else if resp, err = cl.Next(challenge); err != nil {
				return &ProtocolError{Problem: fmt.Sprintf("the %s login: %v", mech, err)}
			}
			if err := c.sendRaw(base64.StdEncoding.EncodeToString(resp)); err != nil {
				return err
			}
		}
	})
}

// refusal classifies a -ERR to a login command: the codes that say the credential was right
// but the maildrop cannot be served are a *ServerError, anything else an *AuthError.
func refusal(cmd string, st status, cred Credential, method, rejection string) error {
	switch baseCode(st.code) {
	case CodeInUse, CodeLoginDelay, CodeSysTemp, CodeSysPerm:
		return &ServerError{Command: cmd, Code: st.code, Text: st.text}
	}
	ae := &AuthError{Mechanism: cred.Mechanism, Method: method, Identity: clean([]byte(cred.Identity)),
		Code: st.code, Text: st.text, Fresh: cred.Fresh}
	if rejection != "" {
		ae.TokenRejected, ae.Rejection = true, rejection
	}
	return ae
}
