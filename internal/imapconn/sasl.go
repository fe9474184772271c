package imapconn

import (
	"github.com/emersion/go-sasl"

	"github.com/mailintake/mailintake/internal/saslclient"
)

// Credential is what a provider issued: the SASL mechanism, the identity and the password or
// access token.
type Credential struct {
	Mechanism string
	Identity  string
	Secret    string
}

// Mechanisms understood here. PLAIN and LOGIN fall back to the IMAP LOGIN command when the
// server does not offer them as SASL mechanisms.
const (
	MechPlain       = saslclient.Plain
	MechLogin       = saslclient.Login
	MechXOAuth2     = saslclient.XOAuth2
	MechOAuthBearer = saslclient.OAuthBearer
)

// saslClient returns the SASL client for a credential (internal/saslclient's, but LOGIN is
// go-sasl's).
func saslClient(cred Credential, host string, port int) (sasl.Client, error) {
	if cred.Mechanism == MechLogin {
		// IMAP takes LOGIN's user name as an initial response where the server offers SASL-IR.
		return sasl.NewLoginClient(cred.Identity, cred.Secret), nil
	}
	return saslclient.New(cred.Mechanism, cred.Identity, cred.Secret, host, port)
}
