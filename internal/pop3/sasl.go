package pop3

import (
	"github.com/emersion/go-sasl"

	"github.com/mailintake/mailintake/internal/saslclient"
)

// Credential is what the mailbox's auth provider issued (authplugin.Credential without its
// expiry).
type Credential struct {
	// Mechanism is the SASL mechanism: PLAIN, LOGIN, XOAUTH2 or OAUTHBEARER. PLAIN and LOGIN
	// are a user name and password, sent with AUTH where the server offers the mechanism and
	// with USER/PASS otherwise.
	Mechanism string
	// Identity is the user to log in as.
	Identity string
	// Secret is the password or access token.
	Secret string
	// Fresh says the provider issued the credential for this attempt (a forced refresh)
	// rather than from its cache; an *AuthError repeats it.
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

// saslClient returns the client for a mechanism.
func saslClient(mech string, cred Credential, host string, port int) (sasl.Client, error) {
	return saslclient.New(mech, cred.Identity, cred.Secret, host, port)
}

// tokenRejection returns what a token client learnt from an error challenge, "" when none came.
func tokenRejection(cl sasl.Client) string { return saslclient.Rejection(cl) }
