package smtpsend

import (
	"github.com/emersion/go-sasl"

	"github.com/mailintake/mailintake/internal/saslclient"
)

// Credential is what the mailbox's auth provider issued for SMTP.
type Credential struct {
	// Mechanism is the SASL mechanism: PLAIN, LOGIN, XOAUTH2 or OAUTHBEARER.
	Mechanism string
	// Identity is the user to log in as. For a shared mailbox it is the delegate that has
	// access to it, never the shared address (Exchange refuses that with 535 5.7.3); the
	// shared address goes into From and MAIL FROM instead.
	Identity string
	// Secret is the password or access token.
	Secret string
	// Fresh says the provider issued the credential for this attempt (a forced refresh)
	// rather than from its cache; an *AuthError repeats it, so a refused fresh token is not
	// mistaken for an expired one.
	Fresh bool
}

// SASL mechanisms understood here.
const (
	MechPlain       = saslclient.Plain
	MechLogin       = saslclient.Login
	MechXOAuth2     = saslclient.XOAuth2
	MechOAuthBearer = saslclient.OAuthBearer
)

// tokenMechanism reports whether a mechanism carries an OAuth access token.
func tokenMechanism(mech string) bool { return saslclient.Token(mech) }

// saslClient returns the client for a credential.
func saslClient(cred Credential, host string, port int) (sasl.Client, error) {
	return saslclient.New(cred.Mechanism, cred.Identity, cred.Secret, host, port)
}

// tokenRejection returns what a token client learnt from an error challenge, "" when none came.
func tokenRejection(cl sasl.Client) string { return saslclient.Rejection(cl) }
