// Package o365 is the Microsoft 365 OAuth 2.0 auth provider: it signs mailboxes in to Exchange
// Online through the Microsoft identity platform and presents access tokens with SASL XOAUTH2.
// Three flows: ropc (username + password, as PSA screens ask today), device_code (an admin signs in
// once with MFA; the refresh token keeps the mailbox running) and client_credentials (app-only,
// no user password). It is written only against the public SDK; cmd/mailintake-auth-o365 serves it.
package o365

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

// Version is the provider's version.
const Version = "1.0.0"

// Config fields.
const (
	FieldClientID     = "client_id"
	FieldTenantID     = "tenant_id"
	FieldFlow         = "flow"
	FieldClientSecret = "client_secret"
	FieldAuthority    = "authority"
	FieldScopes       = "scopes"
	FieldPassword     = "password"
	FieldSecretExpiry = "client_secret_expires"
)

// Flows.
const (
	FlowROPC              = "ropc"
	FlowDeviceCode        = "device_code"
	FlowClientCredentials = "client_credentials"
)

// DefaultAuthority is the global cloud.
const DefaultAuthority = "https://login.microsoftonline.com"

// Scopes.
const (
	ScopeIMAP        = "https://outlook.office.com/IMAP.AccessAsUser.All"
	ScopePOP         = "https://outlook.office.com/POP.AccessAsUser.All"
	ScopeSMTP        = "https://outlook.office.com/SMTP.Send"
	ScopeAppOnly     = "https://outlook.office365.com/.default"
	scopeIdentity    = "openid profile"
	scopeOfflineOnly = "offline_access"
)

var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
var domain = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,}$`)

// Provider is the o365 provider. Its HTTPClient may be nil (http.DefaultClient with a timeout).
type Provider struct {
	HTTPClient *http.Client
}

// Describe implements authplugin.Provider.
func (Provider) Describe(context.Context) (authplugin.Description, error) {
	return authplugin.Description{
		Name:        "o365",
		Version:     Version,
		DisplayName: "Microsoft 365 (OAuth 2.0)",
		Description: "Signs in to Exchange Online with the Microsoft identity platform and presents the token with SASL XOAUTH2.",
		Fields: []authplugin.Field{
			{Name: FieldClientID, Label: "Application (client) ID", Help: "From the app registration's Overview page in Entra ID.", Required: true},
			{Name: FieldTenantID, Label: "Directory (tenant) ID", Help: "The tenant's GUID or verified domain (e.g. contoso.onmicrosoft.com).", Required: true},
			{Name: FieldFlow, Label: "Sign-in flow", Type: authplugin.FieldEnum, Options: []string{FlowROPC, FlowDeviceCode, FlowClientCredentials}, Default: FlowROPC,
				Help: "ropc: the mailbox's username and password (no MFA). device_code: sign in once in a browser, with MFA (mailintake mailbox authorize). client_credentials: app-only access with a client secret."},
			{Name: FieldPassword, Label: "Password", Secret: true, Help: "The mailbox account's password (flow ropc)."},
			{Name: FieldClientSecret, Label: "Client secret", Secret: true, Help: "The secret's Value (flow client_credentials)."},
			{Name: FieldAuthority, Label: "Authority", Type: authplugin.FieldURL, Default: DefaultAuthority,
				Help: "The identity platform: https://login.microsoftonline.us (US Government), https://login.partner.microsoftonline.cn (China)."},
			{Name: FieldScopes, Label: "Scopes", Help: "Space-separated; empty for the defaults of the protocol and flow. " +
				"By default the interactive sign-in (device_code) asks for reading (IMAP or POP) and sending (SMTP.Send) at once, so one consent and one refresh token cover both; " +
				"set the reading scope alone (with offline_access) where SMTP.Send cannot be consented."},
			{Name: FieldSecretExpiry, Label: "Client secret expires", Help: "The secret's expiry date (YYYY-MM-DD, the 'Expires' column in Entra ID): the status warns 30 days before."},
		},
		SASLMechanisms: []string{"XOAUTH2"},
		Protocols:      []string{"imap", "pop3", "smtp"},
	}, nil
}

// settings is a validated config.
type settings struct {
	clientID, tenant, flow, secret, authority, password, username string
	scopes                                                        []string
	secretExpires                                                 time.Time
	// explicitScopes is set when the config names the scopes: they are used for everything.
	explicitScopes bool
}

// health reports the credential's lifecycle: the refresh token's age and the client secret's
// expiry, with warnings well before either stops the mailbox.
func (s *settings) health(st state) *authplugin.Health {
	h := &authplugin.Health{RefreshTokenIssued: st.RefreshIssued}
	if !st.RefreshIssued.IsZero() && time.Since(st.RefreshIssued) > 14*24*time.Hour {
		h.Warnings = append(h.Warnings, fmt.Sprintf("the refresh token has not rotated since %s: Microsoft ends it after 90 days without use",
			st.RefreshIssued.Format("2006-01-02")))
	}
	if !s.secretExpires.IsZero() {
		days := int(time.Until(s.secretExpires).Hours() / 24)
		switch {
		case days < 0:
			h.Warnings = append(h.Warnings, fmt.Sprintf("the client secret expired on %s: create a new one in the app registration and save it for the mailbox", s.secretExpires.Format("2006-01-02")))
		case days <= 30:
			h.Warnings = append(h.Warnings, fmt.Sprintf("the client secret expires on %s (in %d days): create a new one in the app registration and save it for the mailbox", s.secretExpires.Format("2006-01-02"), days))
		}
	}
	return h
}

func flowOf(cfg map[string]string) string {
	if f := cfg[FieldFlow]; f != "" {
		return f
	}
	return FlowROPC
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ValidateConfig implements authplugin.Provider.
func (p Provider) ValidateConfig(_ context.Context, a authplugin.Account) error {
	_, err := parseSettings(a)
	return err
}

func parseSettings(a authplugin.Account) (*settings, error) {
	var v authplugin.Validator
	cfg := a.Config
	s := &settings{clientID: strings.TrimSpace(cfg[FieldClientID]), tenant: strings.TrimSpace(cfg[FieldTenantID]), flow: flowOf(cfg),
		secret: a.Secrets[FieldClientSecret], password: a.Secrets[FieldPassword], username: a.Username,
		authority: strings.TrimRight(strings.TrimSpace(cfg[FieldAuthority]), "/")}
	if s.authority == "" {
		s.authority = DefaultAuthority
	}
	known := map[string]bool{FieldClientID: true, FieldTenantID: true, FieldFlow: true, FieldAuthority: true, FieldScopes: true, FieldSecretExpiry: true}
	for k := range cfg {
		if !known[k] {
			v.Add(k, "is not a field of the o365 provider")
		}
	}
	for k := range a.Secrets {
		if k != FieldPassword && k != FieldClientSecret {
			v.Add(k, "is not a secret of the o365 provider (secrets: password, client_secret)")
		}
	}
	switch {
	case s.clientID == "":
		v.Add(FieldClientID, "is required: the Application (client) ID of the app registration")
	case !guid.MatchString(s.clientID):
		v.Add(FieldClientID, "must be a GUID like 00000000-0000-0000-0000-000000000000, not %q", s.clientID)
	}
	switch {
	case s.tenant == "":
		v.Add(FieldTenantID, "is required: the Directory (tenant) ID, or the tenant's verified domain")
	case s.tenant == "common" || s.tenant == "consumers":
		if s.flow == FlowROPC || s.flow == FlowClientCredentials {
			v.Add(FieldTenantID, "%q cannot be used with flow %s: give the Directory (tenant) ID", s.tenant, s.flow)
		}
	case s.tenant == "organizations":
		if s.flow == FlowClientCredentials {
			v.Add(FieldTenantID, "client credentials need the Directory (tenant) ID that consented, not %q", s.tenant)
		}
	case !guid.MatchString(s.tenant) && !domain.MatchString(s.tenant):
		v.Add(FieldTenantID, "must be a GUID or a domain like contoso.onmicrosoft.com, not %q", s.tenant)
	}
	if u, err := url.Parse(s.authority); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		v.Add(FieldAuthority, "must be an https URL (http only on loopback, for tests), not %q", s.authority)
	}
	switch s.flow {
	case FlowROPC:
		if s.password == "" {
			v.Add(FieldPassword, "is required for flow ropc")
		}
		if s.secret != "" {
			v.Add(FieldClientSecret, "is not used by flow ropc (public client); remove it")
		}
	case FlowDeviceCode:
		if s.password != "" {
			v.Add(FieldPassword, "is not used by flow device_code; remove it")
		}
	case FlowClientCredentials:
		if s.secret == "" {
			v.Add(FieldClientSecret, "is required for flow client_credentials")
		}
		if s.password != "" {
			v.Add(FieldPassword, "is not used by flow client_credentials; remove it")
		}
	default:
		v.Add(FieldFlow, "must be ropc, device_code or client_credentials, not %q", s.flow)
	}
	if a.Username == "" {
		v.Add("username", "is required: the mailbox address")
	}
	if d := cfg[FieldSecretExpiry]; d != "" {
		t, err := time.Parse("2006-01-02", d)
		if err != nil {
			v.Add(FieldSecretExpiry, "must be a date like 2027-06-30, not %q", d)
		}
		s.secretExpires = t
	}
	if sc := strings.Fields(cfg[FieldScopes]); len(sc) > 0 {
		s.scopes, s.explicitScopes = sc, true
		for _, x := range sc {
			if x != "offline_access" && x != "openid" && x != "profile" && !strings.HasPrefix(x, "https://") {
				v.Add(FieldScopes, "%q must be a full resource-prefixed scope (https://outlook.office.com/IMAP.AccessAsUser.All)", x)
			}
		}
	} else {
		s.scopes = defaultScopes(s.flow, a.Protocol)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func defaultScopes(flow, protocol string) []string {
	if flow == FlowClientCredentials {
		return []string{ScopeAppOnly}
	}
	sc := ScopeIMAP
	switch protocol {
	case "pop3":
		sc = ScopePOP
	case "smtp":
		sc = ScopeSMTP
	}
	return []string{sc, scopeOfflineOnly, "openid", "profile"}
}

// consentScopes are the scopes an interactive sign-in asks for: reading (IMAP, or POP for a POP3
// mailbox) and sending (SMTP.Send) together. Both are scopes of one resource
// (https://outlook.office.com), so the one consent and the one refresh token cover both: a
// mailbox whose sending is turned on later needs no second sign-in, and each access token is then
// asked for with its protocol's scope alone (defaultScopes). A token request, unlike the sign-in,
// never asks for more than its protocol needs: a mailbox whose app registration lacks SMTP.Send
// keeps reading.
func consentScopes(protocol string) []string {
	read := ScopeIMAP
	if protocol == "pop3" {
		read = ScopePOP
	}
	return []string{read, ScopeSMTP, scopeOfflineOnly, "openid", "profile"}
}

// signInScopes are the scopes of an interactive sign-in: the configured ones, else consentScopes.
func (s *settings) signInScopes(protocol string) []string {
	if s.explicitScopes || s.flow == FlowClientCredentials {
		return s.scopes
	}
	return consentScopes(protocol)
}

func (s *settings) endpoint() oauth2.Endpoint {
	base := s.authority + "/" + url.PathEscape(s.tenant) + "/oauth2/v2.0"
	return oauth2.Endpoint{AuthURL: base + "/authorize", TokenURL: base + "/token", DeviceAuthURL: base + "/devicecode",
		// One request per attempt: the auto-detect style retries a failed login with the other
		// style, and two failed sign-ins count twice toward Microsoft's smart lockout.
		AuthStyle: oauth2.AuthStyleInParams}
}

func (s *settings) oauthConfig() *oauth2.Config {
	return &oauth2.Config{ClientID: s.clientID, ClientSecret: s.secret, Endpoint: s.endpoint(), Scopes: s.scopes}
}

// state is what the host stores (encrypted) for a mailbox.
type state struct {
	RefreshToken   string    `json:"refresh_token,omitempty"`
	Account        string    `json:"account,omitempty"`
	RefreshIssued  time.Time `json:"refresh_issued,omitempty"`
	FirstSignIn    time.Time `json:"first_sign_in,omitempty"`
	LastRefreshErr string    `json:"-"`
}

func loadState(b []byte) state {
	var st state
	if len(b) > 0 {
		json.Unmarshal(b, &st)
	}
	return st
}

func (st state) bytes() []byte {
	b, _ := json.Marshal(st)
	return b
}

// idAccount reads preferred_username from an ID token. The token came straight from the token
// endpoint over TLS, which OpenID Connect Core 3.1.3.7 accepts in place of checking its signature.
func idAccount(idToken string) string {
	parts := strings.Split(idToken, ".")
	if len(parts) < 2 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var claims struct {
		PreferredUsername string `json:"preferred_username"`
		UPN               string `json:"upn"`
	}
	json.Unmarshal(payload, &claims)
	if claims.PreferredUsername != "" {
		return claims.PreferredUsername
	}
	return claims.UPN
}

// checkAccount refuses a token of another account than the mailbox's (a device code signed in
// with the wrong user would otherwise read someone else's mail).
func checkAccount(s *settings, idToken string) (string, error) {
	acct := idAccount(idToken)
	if acct == "" {
		return "", nil
	}
	if !strings.EqualFold(acct, s.username) {
		return acct, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid,
			Message: fmt.Sprintf("signed in as %s, but the mailbox is %s", acct, s.username),
			Action:  "Sign in again as " + s.username + " (or change the mailbox's username)."}
	}
	return acct, nil
}

var _ authplugin.Provider = Provider{}
var _ authplugin.Authorizer = Provider{}
