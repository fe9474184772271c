package o365

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

func (p Provider) client() *http.Client {
	if p.HTTPClient != nil {
		return p.HTTPClient
	}
	return &http.Client{Timeout: 30 * time.Second}
}

func (p Provider) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, p.client())
}

// convert turns an oauth2 or transport error into a typed provider error.
func convert(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 400
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		return errorFromBody(status, re.Body)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	return &authplugin.Error{Reason: authplugin.ReasonTemporary, Message: "cannot reach the Microsoft identity platform: " + err.Error(),
		Action: "Check the server's network access to the authority; the server tries again."}
}

// tokenResponse is the token endpoint's success body.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
}

func fromOAuth2(t *oauth2.Token) tokenResponse {
	r := tokenResponse{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken}
	if id, ok := t.Extra("id_token").(string); ok {
		r.IDToken = id
	}
	if !t.Expiry.IsZero() {
		r.ExpiresIn = int64(time.Until(t.Expiry).Seconds())
	}
	return r
}

// postToken sends one form request to the token endpoint. x/oauth2 is used for the grants it
// handles well; this covers the two it does not: a refresh that sends the scope (x/oauth2's
// refresher never does, and Microsoft may then narrow the token to Graph) and a single device-code
// poll (x/oauth2 only offers a loop, while the host owns the polling schedule).
// It returns the OAuth error class with the error, for callers that react to it.
func (p Provider) postToken(ctx context.Context, s *settings, form url.Values) (tokenResponse, string, error) {
	form.Set("client_id", s.clientID)
	if s.secret != "" {
		form.Set("client_secret", s.secret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint().TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenResponse{}, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.client().Do(req)
	if err != nil {
		return tokenResponse{}, "", convert(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return tokenResponse{}, "", convert(err)
	}
	if resp.StatusCode != http.StatusOK {
		var me msError
		json.Unmarshal(body, &me)
		return tokenResponse{}, me.Error, errorFromBody(resp.StatusCode, body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return tokenResponse{}, "", &authplugin.Error{Reason: authplugin.ReasonTemporary, Message: "the token endpoint answered without an access token"}
	}
	return tr, "", nil
}

func credential(s *settings, tr tokenResponse) authplugin.Credential {
	c := authplugin.Credential{Mechanism: "XOAUTH2", Identity: s.username, Secret: tr.AccessToken}
	if tr.ExpiresIn > 0 {
		c.Expiry = time.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)
	}
	return c
}

// isGrantGone reports whether a refresh failed because the stored refresh token is no longer
// usable (so a new sign-in is needed).
func isGrantGone(err error) bool {
	e, ok := authplugin.AsError(err)
	return ok && e.Reason == authplugin.ReasonAuthorizationRequired
}

// IssueCredential implements authplugin.Provider.
func (p Provider) IssueCredential(ctx context.Context, req authplugin.Request) (authplugin.IssueResult, error) {
	s, err := parseSettings(req.Account)
	if err != nil {
		return authplugin.IssueResult{}, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid, Message: err.Error(), Action: "Correct the mailbox's o365 settings."}
	}
	st := loadState(req.State)
	switch s.flow {
	case FlowClientCredentials:
		cc := clientcredentials.Config{ClientID: s.clientID, ClientSecret: s.secret, TokenURL: s.endpoint().TokenURL,
			Scopes: s.scopes, AuthStyle: oauth2.AuthStyleInParams}
		tok, err := cc.Token(p.ctx(ctx))
		if err != nil {
			return authplugin.IssueResult{}, convert(err)
		}
		return authplugin.IssueResult{Credential: credential(s, fromOAuth2(tok)), Health: s.health(st)}, nil

	case FlowDeviceCode:
		if st.RefreshToken == "" {
			return authplugin.IssueResult{}, &authplugin.Error{Reason: authplugin.ReasonAuthorizationRequired,
				Message: "the mailbox has not been signed in yet", Action: "Run 'mailintake mailbox authorize MAILBOX_ID' and sign in as " + s.username + "."}
		}
		return p.refresh(ctx, s, st)

	default: // ropc
		if st.RefreshToken != "" {
			res, err := p.refresh(ctx, s, st)
			if err == nil || !isGrantGone(err) {
				return res, err
			}
			// The refresh token was revoked or expired: the stored password gets a new one, once.
		}
		return p.password(ctx, s, st)
	}
}

// refresh redeems the refresh token, always sending the scope, and returns the rotated one as
// the new state.
func (p Provider) refresh(ctx context.Context, s *settings, st state) (authplugin.IssueResult, error) {
	tr, _, err := p.postToken(ctx, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {st.RefreshToken}, "scope": {strings.Join(s.scopes, " ")}})
	if err != nil {
		return authplugin.IssueResult{}, err
	}
	if _, err := checkAccount(s, tr.IDToken); err != nil {
		return authplugin.IssueResult{}, err
	}
	res := authplugin.IssueResult{Credential: credential(s, tr)}
	if tr.RefreshToken != "" && tr.RefreshToken != st.RefreshToken {
		st.RefreshToken = tr.RefreshToken
		st.RefreshIssued = time.Now().UTC()
		res.State, res.StateChanged = st.bytes(), true
	}
	res.Health = s.health(st)
	return res, nil
}

// password runs the ROPC grant with the mailbox's username and password.
func (p Provider) password(ctx context.Context, s *settings, st state) (authplugin.IssueResult, error) {
	tok, err := s.oauthConfig().PasswordCredentialsToken(p.ctx(ctx), s.username, s.password)
	if err != nil {
		return authplugin.IssueResult{}, convert(err)
	}
	tr := fromOAuth2(tok)
	acct, err := checkAccount(s, tr.IDToken)
	if err != nil {
		return authplugin.IssueResult{}, err
	}
	res := authplugin.IssueResult{Credential: credential(s, tr)}
	if tr.RefreshToken != "" {
		st.RefreshToken, st.RefreshIssued, st.Account = tr.RefreshToken, time.Now().UTC(), acct
		if st.FirstSignIn.IsZero() {
			st.FirstSignIn = st.RefreshIssued
		}
		res.State, res.StateChanged = st.bytes(), true
	}
	res.Health = s.health(st)
	return res, nil
}

// BeginAuthorization implements authplugin.Authorizer: the device code flow.
func (p Provider) BeginAuthorization(ctx context.Context, req authplugin.Request) (authplugin.Authorization, error) {
	s, err := parseSettings(req.Account)
	if err != nil {
		return authplugin.Authorization{}, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid, Message: err.Error(), Action: "Correct the mailbox's o365 settings."}
	}
	if s.flow != FlowDeviceCode {
		return authplugin.Authorization{}, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid,
			Message: "interactive sign-in is for flow device_code; this mailbox uses " + s.flow, Action: "Set the config field flow=device_code first."}
	}
	cfg := s.oauthConfig()
	cfg.Scopes = s.signInScopes(req.Account.Protocol)
	da, err := cfg.DeviceAuth(p.ctx(ctx))
	if err != nil {
		return authplugin.Authorization{}, convert(err)
	}
	interval := time.Duration(da.Interval) * time.Second
	if interval <= 0 {
		interval = 5 * time.Second
	}
	msg := fmt.Sprintf("To sign in, open %s and enter the code %s, then sign in as %s.", da.VerificationURI, da.UserCode, s.username)
	return authplugin.Authorization{VerificationURI: da.VerificationURI, UserCode: da.UserCode, Message: msg,
		Expiry: da.Expiry, Interval: interval, Handle: []byte(da.DeviceCode)}, nil
}

// PollAuthorization implements authplugin.Authorizer: one poll of the device code.
func (p Provider) PollAuthorization(ctx context.Context, req authplugin.Request, handle []byte) (authplugin.PollResult, error) {
	s, err := parseSettings(req.Account)
	if err != nil {
		return authplugin.PollResult{}, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid, Message: err.Error()}
	}
	tr, class, err := p.postToken(ctx, s, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {string(handle)}})
	switch {
	case class == "authorization_pending":
		return authplugin.PollResult{}, &authplugin.Error{Reason: authplugin.ReasonAuthorizationPending, Message: "waiting for the user to sign in"}
	case class == "slow_down":
		// RFC 8628 3.5: add 5 seconds to the interval for this and every later poll.
		return authplugin.PollResult{}, &authplugin.Error{Reason: authplugin.ReasonAuthorizationPending, Message: "slow down", RetryAfter: 5 * time.Second}
	case err != nil:
		return authplugin.PollResult{}, err
	}
	acct, err := checkAccount(s, tr.IDToken)
	if err != nil {
		return authplugin.PollResult{}, err
	}
	if tr.RefreshToken == "" {
		return authplugin.PollResult{}, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid,
			Message: "the sign-in returned no refresh token", Action: "Keep offline_access in the scopes."}
	}
	now := time.Now().UTC()
	return authplugin.PollResult{Done: true, State: state{RefreshToken: tr.RefreshToken, Account: acct, RefreshIssued: now, FirstSignIn: now}.bytes()}, nil
}
