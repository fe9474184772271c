package google

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

func (p *Provider) client() *http.Client {
	if p.HTTPClient != nil {
		return p.HTTPClient
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// unreachable is the error of a request that got no answer from Google.
func unreachable(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	return &authplugin.Error{Reason: authplugin.ReasonTemporary, Message: "cannot reach Google's token endpoint: " + err.Error(),
		Action: "Check the server's network access to oauth2.googleapis.com; the server tries again."}
}

// tokenResponse is the token endpoint's success body.
type tokenResponse struct {
	AccessToken           string `json:"access_token"`
	RefreshToken          string `json:"refresh_token"`
	IDToken               string `json:"id_token"`
	ExpiresIn             int64  `json:"expires_in"`
	Scope                 string `json:"scope"`
	RefreshTokenExpiresIn int64  `json:"refresh_token_expires_in"`
}

// grantsMail reports whether the token covers Gmail. A response without scope is taken at its
// word; Google names the granted scopes.
func (tr tokenResponse) grantsMail() bool {
	return tr.Scope == "" || strings.Contains(" "+tr.Scope+" ", " "+ScopeMail+" ")
}

var errNoGmail = &authplugin.Error{Reason: authplugin.ReasonConsentRequired, Code: "gmail_not_granted",
	Message: "the sign-in did not grant access to Gmail (its box was unticked on Google's consent screen)",
	Action:  "Run 'mailintake mailbox authorize MAILBOX_ID' again and tick 'Read, compose, send, and permanently delete all your email from Gmail'."}

// postToken sends one form request to the token endpoint with the client's credentials.
func (p *Provider) postToken(ctx context.Context, s *settings, form url.Values, ec errCtx) (tokenResponse, error) {
	form.Set("client_id", s.clientID)
	form.Set("client_secret", s.secret)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenResponse{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.client().Do(req)
	if err != nil {
		return tokenResponse{}, unreachable(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return tokenResponse{}, unreachable(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		return tokenResponse{}, errorFromBody(resp.StatusCode, body, ec)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return tokenResponse{}, &authplugin.Error{Reason: authplugin.ReasonTemporary, Message: "Google's token endpoint answered without an access token",
			Action: "Nothing: the server tries again."}
	}
	return tr, nil
}

func (p *Provider) credential(s *settings, tr tokenResponse) authplugin.Credential {
	c := authplugin.Credential{Mechanism: "XOAUTH2", Identity: s.username, Secret: tr.AccessToken}
	if tr.ExpiresIn > 0 {
		c.Expiry = time.Now().Add(time.Duration(tr.ExpiresIn) * time.Second)
	}
	return c
}

// IssueCredential implements authplugin.Provider.
func (p *Provider) IssueCredential(ctx context.Context, req authplugin.Request) (authplugin.IssueResult, error) {
	res, err := p.issue(ctx, req)
	return res, withMailbox(err, req.Account.MailboxID)
}

func (p *Provider) issue(ctx context.Context, req authplugin.Request) (authplugin.IssueResult, error) {
	s, err := parseSettings(req.Account)
	if err != nil {
		return authplugin.IssueResult{}, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid, Message: err.Error(), Action: "Correct the mailbox's google settings."}
	}
	if s.flow == FlowServiceAccount {
		return p.serviceAccount(ctx, s)
	}
	st := loadState(req.State)
	if s.authResponse != "" {
		if res, ok, err := p.completePasted(ctx, s, st, req.Account.MailboxID); ok {
			return res, err
		}
	}
	if st.RefreshToken == "" {
		return authplugin.IssueResult{}, &authplugin.Error{Reason: authplugin.ReasonAuthorizationRequired,
			Message: "the mailbox has not been signed in yet", Action: "Run 'mailintake mailbox authorize MAILBOX_ID' and sign in as " + s.username + " in a browser."}
	}
	return p.refresh(ctx, s, st)
}

// serviceAccount runs the JWT bearer grant: the service account, with domain-wide delegation,
// asks for a token of the mailbox's user (the JWT's sub).
func (p *Provider) serviceAccount(ctx context.Context, s *settings) (authplugin.IssueResult, error) {
	cfg := &jwt.Config{Email: s.key.ClientEmail, PrivateKey: []byte(s.key.PrivateKey), PrivateKeyID: s.key.PrivateKeyID,
		Subject: s.username, Scopes: []string{ScopeMail}, TokenURL: s.tokenURL}
	tok, err := cfg.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, p.client())).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			status := 400
			if re.Response != nil {
				status = re.Response.StatusCode
			}
			return authplugin.IssueResult{}, errorFromBody(status, re.Body, errCtx{s: s, grant: grantJWT, now: p.now()})
		}
		return authplugin.IssueResult{}, unreachable(ctx, err)
	}
	if tok.AccessToken == "" {
		return authplugin.IssueResult{}, &authplugin.Error{Reason: authplugin.ReasonTemporary, Message: "Google's token endpoint answered without an access token"}
	}
	c := authplugin.Credential{Mechanism: "XOAUTH2", Identity: s.username, Secret: tok.AccessToken, Expiry: tok.Expiry}
	return authplugin.IssueResult{Credential: c, Health: &authplugin.Health{}}, nil
}

// refresh redeems the stored refresh token; a rotated one is returned at once as the new state,
// which the host stores before it uses the token.
func (p *Provider) refresh(ctx context.Context, s *settings, st state) (authplugin.IssueResult, error) {
	tr, err := p.postToken(ctx, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {st.RefreshToken}},
		errCtx{s: s, grant: grantRefresh, st: st, now: p.now()})
	if err != nil {
		return authplugin.IssueResult{}, err
	}
	if _, err := checkAccount(s, tr.IDToken, false); err != nil {
		return authplugin.IssueResult{}, err
	}
	if !tr.grantsMail() {
		return authplugin.IssueResult{}, errNoGmail
	}
	res := authplugin.IssueResult{Credential: p.credential(s, tr)}
	changed := false
	if tr.RefreshToken != "" && tr.RefreshToken != st.RefreshToken {
		st.RefreshToken, st.RefreshIssued, changed = tr.RefreshToken, p.now().UTC(), true
	}
	if tr.RefreshTokenExpiresIn > 0 {
		if exp := p.now().Add(time.Duration(tr.RefreshTokenExpiresIn) * time.Second).UTC().Truncate(time.Minute); !exp.Equal(st.RefreshExpires) {
			st.RefreshExpires, changed = exp, true
		}
	}
	if changed {
		res.State, res.StateChanged = st.bytes(), true
	}
	res.Health = p.health(s, st)
	return res, nil
}

// exchange redeems a sign-in's code with its PKCE verifier and returns the token and the state
// of the new sign-in.
func (p *Provider) exchange(ctx context.Context, s *settings, code, verifier, redirectURI, signIn string) (tokenResponse, state, error) {
	tr, err := p.postToken(ctx, s, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}},
		errCtx{s: s, grant: grantCode, now: p.now()})
	if err != nil {
		return tokenResponse{}, state{}, err
	}
	acct, err := checkAccount(s, tr.IDToken, true)
	if err != nil {
		return tokenResponse{}, state{}, err
	}
	if !tr.grantsMail() {
		return tokenResponse{}, state{}, errNoGmail
	}
	if tr.RefreshToken == "" {
		return tokenResponse{}, state{}, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid, Code: "no_refresh_token",
			Message: "Google returned no refresh token, so the mailbox could not stay signed in", Action: "Run 'mailintake mailbox authorize MAILBOX_ID' again."}
	}
	now := p.now().UTC()
	st := state{RefreshToken: tr.RefreshToken, Account: acct, RefreshIssued: now, SignedIn: now, SignIn: signIn}
	if tr.RefreshTokenExpiresIn > 0 {
		st.RefreshExpires = now.Add(time.Duration(tr.RefreshTokenExpiresIn) * time.Second).Truncate(time.Minute)
	}
	return tr, st, nil
}
