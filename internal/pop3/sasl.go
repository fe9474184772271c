package pop3

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
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
	MechPlain       = "PLAIN"
	MechLogin       = "LOGIN"
	MechXOAuth2     = "XOAUTH2"
	MechOAuthBearer = "OAUTHBEARER"
)

// tokenMechanism reports whether a mechanism carries an OAuth access token.
func tokenMechanism(mech string) bool { return mech == MechXOAuth2 || mech == MechOAuthBearer }

// xoauth2Client implements SASL XOAUTH2 (Google's and Microsoft's bearer-token mechanism),
// which go-sasl lacks. On failure a server may send a JSON error challenge (Dovecot, Gmail),
// answered with an empty line before the -ERR; Exchange answers -ERR at once. The challenge is
// kept so the failure is known as a rejected token.
type xoauth2Client struct {
	user, token string
	challenge   *xoauth2Challenge
}

// xoauth2Challenge is the error a server sends during a failed XOAUTH2 exchange.
type xoauth2Challenge struct {
	Status  string `json:"status"`
	Schemes string `json:"schemes"`
	Scope   string `json:"scope"`
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	return MechXOAuth2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	var ch xoauth2Challenge
	if err := json.Unmarshal(challenge, &ch); err != nil {
		ch.Status = clean(challenge)
	}
	c.challenge = &ch
	return []byte{}, nil
}

// oauthBearerClient wraps go-sasl's OAUTHBEARER client: on an error challenge it answers the
// required single 0x01 byte (RFC 7628 section 3.2.3) instead of cancelling.
type oauthBearerClient struct {
	sasl.Client
	failed *sasl.OAuthBearerError
}

func (c *oauthBearerClient) Next(challenge []byte) ([]byte, error) {
	resp, err := c.Client.Next(challenge)
	var oe *sasl.OAuthBearerError
	if errors.As(err, &oe) {
		c.failed = oe
		return []byte{0x01}, nil
	}
	return resp, err
}

// loginClient implements the LOGIN mechanism without an initial response: the server asks
// for the user name, then the password; its prompts are read when they are the usual ones,
// else their order decides.
type loginClient struct {
	user, password string
	step           int
}

func (c *loginClient) Start() (string, []byte, error) { return MechLogin, nil, nil }

func (c *loginClient) Next(challenge []byte) ([]byte, error) {
	c.step++
	prompt := strings.ToLower(string(bytes.TrimSpace(challenge)))
	switch {
	case c.step > 2:
		return nil, errors.New("LOGIN: the server asked for more than a user name and a password")
	case strings.HasPrefix(prompt, "user"):
		return []byte(c.user), nil
	case strings.HasPrefix(prompt, "pass"):
		return []byte(c.password), nil
	case c.step == 1:
		return []byte(c.user), nil
	}
	return []byte(c.password), nil
}

// saslClient returns the client for a mechanism.
func saslClient(mech string, cred Credential, host string, port int) (sasl.Client, error) {
	switch mech {
	case MechPlain:
		return sasl.NewPlainClient("", cred.Identity, cred.Secret), nil
	case MechLogin:
		return &loginClient{user: cred.Identity, password: cred.Secret}, nil
	case MechXOAuth2:
		return &xoauth2Client{user: cred.Identity, token: cred.Secret}, nil
	case MechOAuthBearer:
		return &oauthBearerClient{Client: sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{
			Username: cred.Identity, Token: cred.Secret, Host: host, Port: port})}, nil
	}
	return nil, fmt.Errorf("unsupported SASL mechanism %q", mech)
}

// tokenRejection returns what a token client learnt from an error challenge, "" when none came.
func tokenRejection(cl sasl.Client) string {
	switch c := cl.(type) {
	case *xoauth2Client:
		if c.challenge != nil {
			return "token rejected (status " + c.challenge.Status + ")"
		}
	case *oauthBearerClient:
		if c.failed != nil {
			return "token rejected (" + c.failed.Status + ")"
		}
	}
	return ""
}
