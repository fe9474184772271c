// Package saslclient holds the SASL client mechanisms the mail connections (IMAP, SMTP, POP3)
// share beyond what github.com/emersion/go-sasl gives: XOAUTH2, which go-sasl lacks; an
// OAUTHBEARER that answers an error challenge as RFC 7628 requires; and a LOGIN without an
// initial response. Each keeps what a failed exchange told it, so a refused token is told
// apart from other failures.
package saslclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/emersion/go-sasl"
)

// The SASL mechanisms a credential may name.
const (
	Plain       = "PLAIN"
	Login       = "LOGIN"
	XOAuth2     = "XOAUTH2"
	OAuthBearer = "OAUTHBEARER"
)

// Token reports whether a mechanism carries an OAuth access token.
func Token(mech string) bool { return mech == XOAuth2 || mech == OAuthBearer }

// XOAuth2Challenge is the error a server sends during a failed XOAUTH2 exchange (Google's and
// Microsoft's JSON; anything else is kept as its text in Status).
type XOAuth2Challenge struct {
	Status  string `json:"status"`
	Schemes string `json:"schemes"`
	Scope   string `json:"scope"`
}

// XOAuth2Client implements SASL XOAUTH2, the bearer-token mechanism of Google and Microsoft. On
// failure the server may send an error challenge, answered with an empty response before its
// final refusal; the challenge is kept in Challenge.
type XOAuth2Client struct {
	User, Token string
	Challenge   *XOAuth2Challenge
}

// Start implements sasl.Client.
func (c *XOAuth2Client) Start() (string, []byte, error) {
	return XOAuth2, []byte("user=" + c.User + "\x01auth=Bearer " + c.Token + "\x01\x01"), nil
}

// Next implements sasl.Client.
func (c *XOAuth2Client) Next(challenge []byte) ([]byte, error) {
	var ch XOAuth2Challenge
	if err := json.Unmarshal(challenge, &ch); err != nil {
		ch.Status = printable(challenge)
	}
	c.Challenge = &ch
	return []byte{}, nil
}

// printable makes a server's challenge fit for a message: valid UTF-8, no control characters,
// at most 200 bytes.
func printable(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(bytes.TrimSpace(b)), "?"))
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return s
}

// OAuthBearerClient wraps go-sasl's OAUTHBEARER client: on an error challenge it answers the
// required single 0x01 byte (RFC 7628 section 3.2.3) instead of aborting the exchange, and keeps
// the error in Failed.
type OAuthBearerClient struct {
	sasl.Client
	Failed *sasl.OAuthBearerError
}

// Next implements sasl.Client.
func (c *OAuthBearerClient) Next(challenge []byte) ([]byte, error) {
	resp, err := c.Client.Next(challenge)
	var oe *sasl.OAuthBearerError
	if errors.As(err, &oe) {
		c.Failed = oe
		return []byte{0x01}, nil
	}
	return resp, err
}

// LoginClient implements the LOGIN mechanism without an initial response (go-sasl's sends the
// user name on the AUTH line, which some servers refuse): the server asks for the user name,
// then the password; its prompts are read when they are the usual ones, else their order
// decides.
type LoginClient struct {
	User, Password string
	step           int
}

// Start implements sasl.Client.
func (c *LoginClient) Start() (string, []byte, error) { return Login, nil, nil }

// Next implements sasl.Client.
func (c *LoginClient) Next(challenge []byte) ([]byte, error) {
	c.step++
	prompt := strings.ToLower(string(bytes.TrimSpace(challenge)))
	switch {
	case c.step > 2:
		return nil, errors.New("LOGIN: the server asked for more than a user name and a password")
	case strings.HasPrefix(prompt, "user"):
		return []byte(c.User), nil
	case strings.HasPrefix(prompt, "pass"):
		return []byte(c.Password), nil
	case c.step == 1:
		return []byte(c.User), nil
	}
	return []byte(c.Password), nil
}

// New returns the client for a mechanism with the credential's identity and secret; host and
// port go into OAUTHBEARER's message. LOGIN is LoginClient (no initial response).
func New(mech, identity, secret, host string, port int) (sasl.Client, error) {
	switch mech {
	case Plain:
		return sasl.NewPlainClient("", identity, secret), nil
	case Login:
		return &LoginClient{User: identity, Password: secret}, nil
	case XOAuth2:
		return &XOAuth2Client{User: identity, Token: secret}, nil
	case OAuthBearer:
		return &OAuthBearerClient{Client: sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{
			Username: identity, Token: secret, Host: host, Port: port})}, nil
	}
	return nil, fmt.Errorf("unsupported SASL mechanism %q", mech)
}

// Rejection describes a token the server refused during the exchange with c, a client New made
// ("" when the exchange brought no error challenge, or c is not a token mechanism).
func Rejection(c any) string {
	switch c := c.(type) {
	case *XOAuth2Client:
		if c.Challenge != nil {
			return "token rejected (status " + c.Challenge.Status + ")"
		}
	case *OAuthBearerClient:
		if c.Failed != nil {
			return "token rejected (" + c.Failed.Status + ")"
		}
	}
	return ""
}
