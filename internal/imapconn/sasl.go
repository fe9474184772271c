package imapconn

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/emersion/go-sasl"
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
	MechPlain       = "PLAIN"
	MechLogin       = "LOGIN"
	MechXOAuth2     = "XOAUTH2"
	MechOAuthBearer = "OAUTHBEARER"
)

// xoauth2Client implements SASL XOAUTH2 (Google's and Microsoft's bearer-token mechanism), which
// go-sasl lacks. On failure the server sends a JSON error challenge; the client must answer it with
// an empty response and then receives the tagged NO. The challenge is kept so the failure can be
// classified as a rejected token whatever the final status (see ../../ARCHITECTURE.md).
type xoauth2Client struct {
	user, token string
	challenge   *XOAuth2Challenge
}

// XOAuth2Challenge is the error a server sends during a failed XOAUTH2 exchange.
type XOAuth2Challenge struct {
	Status  string `json:"status"`
	Schemes string `json:"schemes"`
	Scope   string `json:"scope"`
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	return MechXOAuth2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	var ch XOAuth2Challenge
	if err := json.Unmarshal(challenge, &ch); err != nil {
		ch.Status = string(challenge)
	}
	c.challenge = &ch
	return []byte{}, nil
}

// oauthBearerClient wraps go-sasl's OAUTHBEARER client: on an error challenge it answers the
// required single 0x01 byte (RFC 7628 section 3.2.3) instead of returning an error, which would
// leave the server waiting and the connection hung.
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

func saslClient(cred Credential, host string, port int) (sasl.Client, error) {
	switch cred.Mechanism {
	case MechPlain:
		return sasl.NewPlainClient("", cred.Identity, cred.Secret), nil
	case MechLogin:
		return sasl.NewLoginClient(cred.Identity, cred.Secret), nil
	case MechXOAuth2:
		return &xoauth2Client{user: cred.Identity, token: cred.Secret}, nil
	case MechOAuthBearer:
		return &oauthBearerClient{Client: sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{
			Username: cred.Identity, Token: cred.Secret, Host: host, Port: port})}, nil
	}
	return nil, fmt.Errorf("unsupported SASL mechanism %q", cred.Mechanism)
}
