// Package google is the Google Workspace OAuth 2.0 auth provider: it signs mailboxes in to Gmail
// and presents access tokens with SASL XOAUTH2 (IMAP, POP and SMTP all take the scope
// https://mail.google.com/). Two flows:
//
//   - service_account: a service account with domain-wide delegation acts as the mailbox's user
//     (the JWT bearer grant of RFC 7523, signed with the service account's key; no user password,
//     no sign-in, nothing stored but the key);
//   - authorization_code: one user signs in once in a browser (the installed-app flow with PKCE
//     and a loopback redirect, started by mailintake mailbox authorize); the refresh token keeps
//     the mailbox running. Google's device flow does not allow the Gmail scope.
//
// It is written only against the public SDK; cmd/mailintake-auth-google serves it.
package google

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

// Version is the provider's version.
const Version = "1.0.0"

// Config and secret fields.
const (
	FieldFlow              = "flow"
	FieldServiceAccountKey = "service_account_key"
	FieldClientID          = "client_id"
	FieldClientSecret      = "client_secret"
	FieldAppStatus         = "app_status"
	FieldRedirectPort      = "redirect_port"
	FieldAuthResponse      = "authorization_response"
	FieldEndpoint          = "endpoint"
)

// Flows.
const (
	FlowServiceAccount    = "service_account"
	FlowAuthorizationCode = "authorization_code"
)

// App publishing statuses (Google Auth platform > Audience).
const (
	AppProduction = "production"
	AppTesting    = "testing"
)

// ScopeMail is the one scope Gmail's IMAP, POP and SMTP accept.
const ScopeMail = "https://mail.google.com/"

// Google's endpoints.
const (
	GoogleAuthURL  = "https://accounts.google.com/o/oauth2/v2/auth"
	GoogleTokenURL = "https://oauth2.googleapis.com/token"
)

// testingLifetime is how long Google keeps the refresh tokens of an External app in "Testing".
const testingLifetime = 7 * 24 * time.Hour

// Provider is the google provider. Use New: it keeps the sign-ins in progress of this process
// (their loopback listener).
type Provider struct {
	// HTTPClient may be nil (a client with a 30 s timeout).
	HTTPClient *http.Client
	// Now may be nil (time.Now); tests move it.
	Now func() time.Time

	signIns *signIns
}

// New returns a provider.
func New() *Provider {
	return &Provider{signIns: newSignIns()}
}

func (p *Provider) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Describe implements authplugin.Provider.
func (*Provider) Describe(context.Context) (authplugin.Description, error) {
	return authplugin.Description{
		Name:        "google",
		Version:     Version,
		DisplayName: "Google Workspace (OAuth 2.0)",
		Description: "Signs in to Gmail with Google's OAuth 2.0 (a service account with domain-wide delegation, or a user's one-time browser sign-in) and presents the token with SASL XOAUTH2.",
		Fields: []authplugin.Field{
			{Name: FieldFlow, Label: "Sign-in flow", Type: authplugin.FieldEnum, Options: []string{FlowServiceAccount, FlowAuthorizationCode}, Default: FlowServiceAccount,
				Help: "service_account: a service account with domain-wide delegation reads the mailbox (no user password, no sign-in; set up once by a Workspace super admin). " +
					"authorization_code: the mailbox's user signs in once in a browser (mailintake mailbox authorize), with an OAuth client of type Desktop app."},
			{Name: FieldServiceAccountKey, Label: "Service account key (JSON)", Secret: true,
				Help: "Flow service_account: the whole JSON key file (Google Cloud console > IAM & Admin > Service accounts > the account > Keys > Add key > JSON). " +
					"Its client_id is the Client ID to grant https://mail.google.com/ in the Admin console (Security > Access and data control > API controls > Manage Domain Wide Delegation)."},
			{Name: FieldClientID, Label: "OAuth client ID", Help: "Flow authorization_code: the Client ID of an OAuth client of type Desktop app (Google Auth platform > Clients), like 1234-abc.apps.googleusercontent.com."},
			{Name: FieldClientSecret, Label: "OAuth client secret", Secret: true, Help: "Flow authorization_code: the client's secret (Google requires it of Desktop app clients, with PKCE)."},
			{Name: FieldAppStatus, Label: "App publishing status", Type: authplugin.FieldEnum, Options: []string{AppProduction, AppTesting}, Default: AppProduction,
				Help: "Flow authorization_code: the app's status on Google Auth platform > Audience. testing: Google ends the sign-in 7 days after it, and the status warns before; " +
					"an Internal app, or one In production, has no such limit."},
			{Name: FieldRedirectPort, Label: "Loopback redirect port", Type: authplugin.FieldInt,
				Help: "Flow authorization_code: the port on 127.0.0.1 of the server where Google returns the browser after the sign-in (default: any free port). " +
					"Fix it to forward it from the admin's machine: ssh -L PORT:127.0.0.1:PORT server."},
			{Name: FieldAuthResponse, Label: "Sign-in address (pasted)", Secret: true,
				Help: "Flow authorization_code, when the browser of the sign-in is not on the server's machine: the address of the page that failed to load at the end " +
					"(http://127.0.0.1:PORT/?state=…&code=…), pasted within 10 minutes. Saving it completes the sign-in; it is used once."},
			{Name: FieldEndpoint, Label: "OAuth endpoint", Type: authplugin.FieldURL,
				Help: "Empty for Google. For trials, the base URL of a compatible fake (make dev-idp: http://127.0.0.1:7470/google), whose /o/oauth2/v2/auth and /token are used."},
		},
		SASLMechanisms: []string{"XOAUTH2"},
		Protocols:      []string{"imap", "pop3", "smtp"},
	}, nil
}

// serviceAccountKey is the part of a service account's JSON key file the provider uses.
type serviceAccountKey struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	ClientID     string `json:"client_id"`
	TokenURI     string `json:"token_uri"`
}

// settings is a validated config.
type settings struct {
	flow, username, clientID, secret, appStatus, authResponse string
	authURL, tokenURL                                         string
	redirectPort                                              int
	key                                                       serviceAccountKey
}

func (s *settings) testing() bool { return s.appStatus == AppTesting }

// ValidateConfig implements authplugin.Provider.
func (p *Provider) ValidateConfig(_ context.Context, a authplugin.Account) error {
	_, err := parseSettings(a)
	return err
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

func parseSettings(a authplugin.Account) (*settings, error) {
	var v authplugin.Validator
	cfg := a.Config
	s := &settings{flow: strings.TrimSpace(cfg[FieldFlow]), username: a.Username, clientID: strings.TrimSpace(cfg[FieldClientID]),
		secret: a.Secrets[FieldClientSecret], appStatus: strings.TrimSpace(cfg[FieldAppStatus]),
		authResponse: strings.TrimSpace(a.Secrets[FieldAuthResponse]), authURL: GoogleAuthURL, tokenURL: GoogleTokenURL}
	if s.flow == "" {
		s.flow = FlowServiceAccount
	}
	if s.appStatus == "" {
		s.appStatus = AppProduction
	}
	known := map[string]bool{FieldFlow: true, FieldClientID: true, FieldAppStatus: true, FieldRedirectPort: true, FieldEndpoint: true}
	for k := range cfg {
		if !known[k] {
			v.Add(k, "is not a field of the google provider")
		}
	}
	for k := range a.Secrets {
		if k != FieldServiceAccountKey && k != FieldClientSecret && k != FieldAuthResponse {
			v.Add(k, "is not a secret of the google provider (secrets: service_account_key, client_secret, authorization_response)")
		}
	}
	if a.Username == "" {
		v.Add("username", "is required: the mailbox's address, its user's primary address in Google Workspace")
	} else if !strings.Contains(a.Username, "@") {
		v.Add("username", "must be the mailbox's email address (user@example.com), not %q", a.Username)
	}
	if e := strings.TrimRight(strings.TrimSpace(cfg[FieldEndpoint]), "/"); e != "" {
		u, err := url.Parse(e)
		if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			v.Add(FieldEndpoint, "must be an https URL (http only on loopback, for trials), not %q", e)
		}
		s.authURL, s.tokenURL = e+"/o/oauth2/v2/auth", e+"/token"
	}
	switch s.appStatus {
	case AppProduction, AppTesting:
	default:
		v.Add(FieldAppStatus, "must be production or testing, not %q", s.appStatus)
	}
	if ps := strings.TrimSpace(cfg[FieldRedirectPort]); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1024 || n > 65535 {
			v.Add(FieldRedirectPort, "must be a port between 1024 and 65535, not %q", ps)
		}
		s.redirectPort = n
	}
	switch s.flow {
	case FlowServiceAccount:
		raw := a.Secrets[FieldServiceAccountKey]
		if raw == "" {
			v.Add(FieldServiceAccountKey, "is required for flow service_account: the service account's JSON key file")
		} else if why := s.parseKey(raw); why != "" {
			v.Add(FieldServiceAccountKey, "%s", why)
		}
		for _, f := range []string{FieldClientID, FieldRedirectPort} {
			if cfg[f] != "" {
				v.Add(f, "is not used by flow service_account; remove it")
			}
		}
		for _, f := range []string{FieldClientSecret, FieldAuthResponse} {
			if a.Secrets[f] != "" {
				v.Add(f, "is not used by flow service_account; remove it")
			}
		}
	case FlowAuthorizationCode:
		switch {
		case s.clientID == "":
			v.Add(FieldClientID, "is required for flow authorization_code: the Client ID of an OAuth client of type Desktop app")
		case strings.ContainsAny(s.clientID, " \t/") || !strings.Contains(s.clientID, "."):
			v.Add(FieldClientID, "must be an OAuth client ID like 1234-abc.apps.googleusercontent.com, not %q", s.clientID)
		}
		if s.secret == "" {
			v.Add(FieldClientSecret, "is required for flow authorization_code: Google requires the secret of a Desktop app client")
		}
		if a.Secrets[FieldServiceAccountKey] != "" {
			v.Add(FieldServiceAccountKey, "is not used by flow authorization_code; remove it")
		}
		if s.authResponse != "" {
			if _, err := parseAuthResponse(s.authResponse); err != nil {
				v.Add(FieldAuthResponse, "%s", err.Error())
			}
		}
	default:
		v.Add(FieldFlow, "must be service_account or authorization_code, not %q", s.flow)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// parseKey reads a service account's JSON key into s.key and returns what is wrong with it.
func (s *settings) parseKey(raw string) string {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &probe); err != nil {
		return "must be the service account's JSON key file, whole (it does not parse as JSON: " + err.Error() + ")"
	}
	if _, ok := probe["installed"]; ok {
		return "is an OAuth client's file (client_secret_….json), not a service account key: for flow service_account create a key of the service account (IAM & Admin > Service accounts > Keys > Add key > JSON); " +
			"for a user's sign-in use flow authorization_code with that client's client_id and client_secret"
	}
	if _, ok := probe["web"]; ok {
		return "is an OAuth web client's file, not a service account key (IAM & Admin > Service accounts > Keys > Add key > JSON)"
	}
	k := &s.key
	json.Unmarshal([]byte(raw), k)
	switch {
	case k.Type != "service_account":
		return fmt.Sprintf("is a key of type %q, not a service account key (its \"type\" must be \"service_account\")", k.Type)
	case k.ClientEmail == "":
		return "has no client_email: paste the whole JSON key file"
	case k.PrivateKey == "":
		return "has no private_key: paste the whole JSON key file"
	}
	if _, err := parseRSAKey(k.PrivateKey); err != nil {
		return "has a private_key that cannot be read: " + err.Error()
	}
	return ""
}

func parseRSAKey(p string) (*rsa.PrivateKey, error) {
	b, _ := pem.Decode([]byte(p))
	if b == nil {
		return nil, fmt.Errorf("it is not PEM")
	}
	if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		if rk, ok := k.(*rsa.PrivateKey); ok {
			return rk, nil
		}
		return nil, fmt.Errorf("it is not an RSA key")
	}
	return x509.ParsePKCS1PrivateKey(b.Bytes)
}

// state is what the host stores (encrypted) for a mailbox of flow authorization_code.
type state struct {
	RefreshToken  string    `json:"refresh_token,omitempty"`
	Account       string    `json:"account,omitempty"`
	RefreshIssued time.Time `json:"refresh_issued,omitempty"` // when the refresh token in use was issued
	SignedIn      time.Time `json:"signed_in,omitempty"`      // when the user signed in
	// RefreshExpires is the end of a time-limited grant (refresh_token_expires_in).
	RefreshExpires time.Time `json:"refresh_expires,omitempty"`
	// SignIn is the OAuth state of the sign-in that gave the refresh token: a pasted sign-in
	// address with it was used already.
	SignIn string `json:"sign_in,omitempty"`
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

// health reports the sign-in's lifecycle, with warnings before it ends.
func (p *Provider) health(s *settings, st state) *authplugin.Health {
	h := &authplugin.Health{RefreshTokenIssued: st.RefreshIssued}
	now := p.now()
	if s.testing() && !st.SignedIn.IsZero() {
		end := st.SignedIn.Add(testingLifetime)
		h.Warnings = append(h.Warnings, fmt.Sprintf("the sign-in ends on %s (7 days after it): Google ends the sign-ins of apps in Testing publishing status after 7 days; "+
			"make the app Internal or publish it (Google Auth platform > Audience), then sign in again once", end.UTC().Format("2006-01-02 15:04 MST")))
	}
	if !st.RefreshExpires.IsZero() {
		if left := st.RefreshExpires.Sub(now); left < 7*24*time.Hour {
			h.Warnings = append(h.Warnings, fmt.Sprintf("the user granted access until %s only (time-limited access): sign in again then, granting access without a time limit",
				st.RefreshExpires.UTC().Format("2006-01-02 15:04 MST")))
		}
	}
	return h
}

// idClaims are the ID token's claims the provider reads.
type idClaims struct {
	Email         string `json:"email"`
	EmailVerified any    `json:"email_verified"`
	HD            string `json:"hd"`
}

// readIDToken reads the ID token's claims. The token came straight from Google's token endpoint
// over TLS, which OpenID Connect Core 3.1.3.7 accepts in place of checking its signature.
func readIDToken(idToken string) (idClaims, bool) {
	var c idClaims
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		return c, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return c, false
	}
	return c, json.Unmarshal(payload, &c) == nil
}

// checkAccount refuses a token of another account than the mailbox's: a user who picked another
// account in Google's account chooser would otherwise have mailintake read someone else's mail.
// required: the ID token must be there (a sign-in asks for openid email).
func checkAccount(s *settings, idToken string, required bool) (string, error) {
	c, ok := readIDToken(idToken)
	if !ok || c.Email == "" {
		if !required {
			return "", nil
		}
		return "", &authplugin.Error{Reason: authplugin.ReasonConfigInvalid, Code: "no_id_token",
			Message: "Google's answer named no account (no ID token with an email): the account cannot be checked against the mailbox",
			Action:  "Run the sign-in again (mailintake mailbox authorize); check that the endpoint is Google's."}
	}
	if !strings.EqualFold(c.Email, s.username) {
		return c.Email, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid, Code: "wrong_account",
			Message: fmt.Sprintf("signed in as %s, but the mailbox is %s", c.Email, s.username),
			Action:  "Sign in again and pick " + s.username + " in Google's account chooser (or change the mailbox's username)."}
	}
	return c.Email, nil
}

var (
	_ authplugin.Provider   = (*Provider)(nil)
	_ authplugin.Authorizer = (*Provider)(nil)
)
