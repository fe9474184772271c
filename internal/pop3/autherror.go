package pop3

import (
	"errors"
	"strings"
)

// AuthError is the server's refusal of a login (-ERR to USER, PASS or AUTH, without a code
// that blames the server rather than the credential). The connection stays usable.
type AuthError struct {
	// Mechanism is the credential's mechanism (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER).
	Mechanism string
	// Method is how it was sent: "USER/PASS", "AUTH PLAIN", "AUTH XOAUTH2".
	Method string
	// Identity is the user name that was refused.
	Identity string
	// Code is the response code ("AUTH", RFC 3206), "" when none.
	Code string
	// Text is the server's words.
	Text string
	// TokenRejected is set when the server sent an XOAUTH2 or OAUTHBEARER error challenge;
	// Rejection is what it said.
	TokenRejected bool
	Rejection     string
	// Fresh repeats Credential.Fresh: the refused credential had just been issued.
	Fresh bool
}

// Error renders the refusal on one line, with its explanation.
func (e *AuthError) Error() string {
	s := "the POP3 server refused the " + e.Method + " login of " + e.Identity + ": -ERR"
	if e.Code != "" {
		s += " [" + e.Code + "]"
	}
	if e.Text != "" {
		s += " " + e.Text
	}
	s = strings.TrimSuffix(s, ".")
	if e.Rejection != "" {
		s += " (" + e.Rejection + ")"
	}
	return s + ": " + e.Explanation()
}

// TokenLogin reports whether the login used an OAuth access token (XOAUTH2, OAUTHBEARER).
func (e *AuthError) TokenLogin() bool { return tokenMechanism(e.Mechanism) }

// RetryWithFreshToken reports whether one more login with a newly issued token may succeed:
// a token login refused with a token that came from a cache (it may have been revoked before
// it expired). A caller asks the provider for a fresh token once, and reports the second
// refusal.
func (e *AuthError) RetryWithFreshToken() bool { return e.TokenLogin() && !e.Fresh }

// exchangeRefusal is Exchange Online's one answer to every failed POP3 login.
const exchangeRefusal = "unknown user name or bad password"

// Exchange reports whether the refusal is Exchange Online's single answer to every failed
// login ("-ERR Authentication failure: unknown user name or bad password."), which does not
// say what was wrong.
func (e *AuthError) Exchange() bool {
	return strings.Contains(strings.ToLower(e.Text), exchangeRefusal)
}

// Explanations of refused logins.
const (
	explainExchange = "Exchange Online answers this same -ERR to every failed POP3 login, whatever the cause, so check each of: " +
		"POP is enabled for the mailbox (Microsoft 365 admin center: the user's Mail tab, Manage email apps, POP; or " +
		"`Set-CASMailbox -Identity <mailbox> -PopEnabled $true`; it can take an hour to apply); " +
		"the token carries the POP scope https://outlook.office.com/POP.AccessAsUser.All (delegated, consented for the app), " +
		"or for app-only access the app has POP.AccessAsApp with admin consent (token scope https://outlook.office365.com/.default), " +
		"its service principal is registered in Exchange (New-ServicePrincipal) and has FullAccess on the mailbox (Add-MailboxPermission); " +
		"the username is the mailbox's address (its user principal name) and the same account the token was issued for"
	explainExchangePassword = "; with a password: Exchange Online no longer accepts passwords (Basic authentication) for POP3, " +
		"switch the mailbox to OAuth (the o365 provider)"
	explainToken = "the server rejected the OAuth token: it expired or was revoked, was issued for another account than the " +
		"username, or lacks the server's POP scope; check the mailbox's auth provider settings"
	explainPassword = "check the username and password (or the auth provider's settings); some servers also refuse POP3 for " +
		"accounts where it is turned off"
)

// Explanation says in plain words what to check.
func (e *AuthError) Explanation() string {
	var s string
	switch {
	case e.Exchange():
		s = explainExchange
		if !e.TokenLogin() {
			s += explainExchangePassword
		}
	case e.TokenLogin():
		s = explainToken
	default:
		s = explainPassword
	}
	if e.TokenLogin() {
		if e.Fresh {
			s += ". The token was issued just now, so it has not expired: the account, its permissions or the mailbox's settings are the cause"
		} else {
			s += ". The token came from the cache and may have been revoked: one more try with a freshly issued token tells"
		}
	}
	return s
}

// IsAuthError reports whether err is a refused login, and returns it.
func IsAuthError(err error) (*AuthError, bool) {
	var ae *AuthError
	ok := errors.As(err, &ae)
	return ae, ok
}
