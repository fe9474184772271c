// Package idp is a faithful fake of the Microsoft identity platform (v2.0 endpoints) for tests
// and local trials: the token endpoint for the password (ROPC), refresh_token, client_credentials
// and device_code grants, the devicecode endpoint, Microsoft-shaped error bodies (error,
// error_description with "AADSTSnnnnn:", error_codes, trace_id, correlation_id), rotating refresh
// tokens, token lifetimes set by the test, revocation, and an RFC 7662 introspection endpoint so a
// real IMAP server (Dovecot's oauth2 passdb) can validate its access tokens. Google (google.go) is
// a fake of Google's OAuth 2.0 endpoints beside it, for the google provider.
package idp

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Scopes the fake understands.
const (
	ScopeIMAP       = "https://outlook.office.com/IMAP.AccessAsUser.All"
	ScopeAppDefault = "https://outlook.office365.com/.default"
)

// User is an account of the fake tenant.
type User struct {
	UPN      string
	Password string
	// Error, when set, is the AADSTS code every password sign-in of this user fails with
	// (e.g. 50076 for MFA, 50053 locked, 50057 disabled, 50055 password expired).
	Error int
}

// App is an app registration.
type App struct {
	ClientID string
	// Secret makes the app confidential; public clients have none.
	Secret string
	// PublicFlows is "Allow public client flows": without it, password and device code grants of
	// a secretless request fail with AADSTS7000218.
	PublicFlows bool
	// AppOnlyUser is the mailbox an app-only token may open (client credentials).
	AppOnlyUsers []string
	// NoConsent makes every grant fail with AADSTS65001.
	NoConsent bool
}

type token struct {
	user, clientID, scope string
	expiry                time.Time
	appOnly               bool
}

type refresh struct {
	user, clientID string
	revoked        bool
	used           bool // exchanged once under strict rotation
}

type device struct {
	code, userCode, clientID, scope string
	expiry                          time.Time
	interval                        int
	state                           string // pending, approved, declined
	user                            string
	slowDowns                       int
}

// IdP is the fake. Its zero value is not usable; use New.
type IdP struct {
	// Tenant is the tenant id (GUID) accepted in the path, besides its domain name.
	Tenant string
	// Domain is the tenant's verified domain.
	Domain string

	mu        sync.Mutex
	users     map[string]*User
	apps      map[string]*App
	access    map[string]*token
	refreshes map[string]*refresh
	devices   map[string]*device
	// AccessTTL is the lifetime of access tokens issued from now on.
	accessTTL time.Duration
	counts    map[string]int
	// strict: a refresh token works once (rotation with reuse detection, as some platforms do).
	strict bool
	// tokenLen: access tokens issued from now on are padded to this many characters.
	tokenLen int
}

// SetAccessTokenLength makes the access tokens issued from now on n characters long (when n is
// more than the usual 79), as Microsoft 365's JWTs are (often over 2,000): protocols whose
// command lines are short (POP3's 255 octets, SMTP's 512) must send them after a continuation.
func (p *IdP) SetAccessTokenLength(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokenLen = n
}

// SetStrictRotation makes every refresh token single-use from now on: the one exchanged is
// revoked, so a client that sends an older one (a stale copy) is refused with invalid_grant, and
// counted as "refresh_reused". Microsoft keeps used refresh tokens valid; this is stricter, to
// catch a client that loses a rotated token.
func (p *IdP) SetStrictRotation(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.strict = on
}

// New returns an IdP for a tenant.
func New(tenantID, domain string) *IdP {
	return &IdP{Tenant: tenantID, Domain: domain, users: map[string]*User{}, apps: map[string]*App{},
		access: map[string]*token{}, refreshes: map[string]*refresh{}, devices: map[string]*device{},
		accessTTL: time.Hour, counts: map[string]int{}}
}

// AddUser adds or replaces a user.
func (p *IdP) AddUser(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u.UPN = strings.ToLower(u.UPN)
	p.users[u.UPN] = &u
}

// AddApp adds or replaces an app registration.
func (p *IdP) AddApp(a App) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.apps[a.ClientID] = &a
}

// SetAccessTTL sets the lifetime of access tokens issued from now on.
func (p *IdP) SetAccessTTL(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accessTTL = d
}

// SetPassword changes a user's password (refresh tokens survive, as for confidential clients;
// call RevokeRefreshTokens to model a public-client revocation).
func (p *IdP) SetPassword(upn, pw string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u := p.users[strings.ToLower(upn)]; u != nil {
		u.Password = pw
	}
}

// RevokeRefreshTokens revokes every refresh token of a user ("revoke sessions").
func (p *IdP) RevokeRefreshTokens(upn string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.refreshes {
		if r.user == strings.ToLower(upn) {
			r.revoked = true
		}
	}
}

// Count returns how many requests of a kind were made: "password", "refresh_token",
// "client_credentials", "device_code", "devicecode", "introspect".
func (p *IdP) Count(kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[kind]
}

// Approve completes a device sign-in: the user entered userCode and signed in as upn.
func (p *IdP) Approve(userCode, upn string) error {
	return p.setDevice(userCode, "approved", upn)
}

// Decline makes the user decline a device sign-in.
func (p *IdP) Decline(userCode string) error { return p.setDevice(userCode, "declined", "") }

// SlowDown makes the next n polls of a device sign-in answer slow_down.
func (p *IdP) SlowDown(userCode string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.devices {
		if d.userCode == userCode {
			d.slowDowns = n
		}
	}
}

func (p *IdP) setDevice(userCode, state, upn string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.devices {
		if d.userCode == userCode {
			d.state, d.user = state, strings.ToLower(upn)
			return nil
		}
	}
	return fmt.Errorf("no device sign-in with user code %q", userCode)
}

// Valid reports whether an access token is valid for user (what introspection answers).
func (p *IdP) Valid(accessToken, user string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.access[accessToken]
	if !ok || time.Now().After(t.expiry) {
		return false
	}
	user = strings.ToLower(user)
	if t.appOnly {
		app := p.apps[t.clientID]
		for _, u := range app.AppOnlyUsers {
			if strings.EqualFold(u, user) {
				return true
			}
		}
		return false
	}
	return t.user == user
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ServeHTTP serves /{tenant}/oauth2/v2.0/token, /{tenant}/oauth2/v2.0/devicecode and /introspect.
func (p *IdP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		p.fail(w, 400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	if r.URL.Path == "/introspect" {
		p.introspect(w, r)
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 4 || parts[1] != "oauth2" || parts[2] != "v2.0" {
		http.NotFound(w, r)
		return
	}
	tenant, endpoint := parts[0], parts[3]
	switch tenant {
	case p.Tenant, p.Domain, "organizations":
	case "common", "consumers":
		if r.PostForm.Get("grant_type") == "password" {
			p.fail(w, 400, "invalid_request", 9001023, "The grant type isn't supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint.")
			return
		}
	default:
		p.fail(w, 400, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	switch endpoint {
	case "token":
		p.token(w, r)
	case "devicecode":
		p.deviceCode(w, r)
	default:
		http.NotFound(w, r)
	}
}

// fail writes a Microsoft-shaped error body.
func (p *IdP) fail(w http.ResponseWriter, status int, class string, code int, text string) {
	trace, corr := randUUID(), randUUID()
	ts := time.Now().UTC().Format("2006-01-02 15:04:05Z")
	body := map[string]any{
		"error":             class,
		"error_description": fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s", code, text, trace, corr, ts),
		"error_codes":       []int{code},
		"timestamp":         ts,
		"trace_id":          trace,
		"correlation_id":    corr,
		"error_uri":         fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", code),
	}
	switch code {
	case 50076:
		body["suberror"] = "basic_action"
		body["claims"] = `{"access_token":{"capolids":{"essential":true,"values":["00000000-0000-0000-0000-000000000001"]}}}`
	case 65001:
		body["suberror"] = "consent_required"
	case 700082:
		body["suberror"] = "bad_token"
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

func randUUID() string {
	h := randHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// userErrors are the texts of the AADSTS codes a user can be configured to fail with.
var userErrors = map[int]struct{ class, text string }{
	50076:  {"invalid_grant", "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access this resource."},
	50079:  {"interaction_required", "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access this resource."},
	50053:  {"invalid_grant", "Your account is locked because you've tried to sign in too many times with an incorrect user ID or password."},
	50055:  {"invalid_grant", "The password is expired."},
	50057:  {"invalid_grant", "The user account is disabled."},
	53003:  {"invalid_grant", "Access has been blocked by Conditional Access policies."},
	530035: {"invalid_grant", "Access has been blocked by security defaults."},
}

func (p *IdP) token(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	grant := f.Get("grant_type")
	p.mu.Lock()
	defer p.mu.Unlock()
	kind := grant
	if grant == "urn:ietf:params:oauth:grant-type:device_code" {
		kind = "device_code"
	}
	p.counts[kind]++
	app, ok := p.apps[f.Get("client_id")]
	if !ok {
		p.fail(w, 400, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", f.Get("client_id"), p.Domain))
		return
	}
	secret := f.Get("client_secret")
	if u, pw, ok := r.BasicAuth(); ok && u == app.ClientID {
		secret = pw
	}
	if app.NoConsent && grant != "client_credentials" {
		p.fail(w, 400, "invalid_grant", 65001, fmt.Sprintf("The user or administrator has not consented to use the application with ID '%s'.", app.ClientID))
		return
	}
	switch {
	case secret != "" && app.Secret == "":
		p.fail(w, 401, "invalid_client", 700025, "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.")
		return
	case secret != "" && secret != app.Secret:
		p.fail(w, 401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.")
		return
	case secret == "" && app.Secret != "" && (grant == "client_credentials" || !app.PublicFlows):
		p.fail(w, 401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	switch grant {
	case "password":
		u := p.users[strings.ToLower(f.Get("username"))]
		switch {
		case u == nil:
			p.fail(w, 400, "invalid_grant", 50034, "The user account does not exist in this directory.")
		case u.Error != 0:
			e := userErrors[u.Error]
			p.fail(w, 400, e.class, u.Error, e.text)
		case u.Password != f.Get("password"):
			p.fail(w, 400, "invalid_grant", 50126, "Error validating credentials due to invalid username or password.")
		default:
			p.issue(w, u.UPN, app.ClientID, f.Get("scope"), false)
		}
	case "refresh_token":
		rt, ok := p.refreshes[f.Get("refresh_token")]
		switch {
		case !ok:
			p.fail(w, 400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
		case rt.revoked:
			if rt.used {
				p.counts["refresh_reused"]++
			}
			p.fail(w, 400, "invalid_grant", 50173, "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.")
		case rt.clientID != app.ClientID:
			p.fail(w, 400, "invalid_grant", 70000, "Provided grant is invalid or malformed.")
		default:
			// Rotation: the used refresh token keeps working (Microsoft does not revoke it), but
			// a new one comes back every time.
			if p.strict {
				rt.revoked, rt.used = true, true
			}
			p.issue(w, rt.user, app.ClientID, f.Get("scope"), false)
		}
	case "client_credentials":
		if f.Get("scope") != ScopeAppDefault {
			p.fail(w, 400, "invalid_scope", 1002012, "The provided value for scope "+f.Get("scope")+" is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
			return
		}
		p.issue(w, "", app.ClientID, ScopeAppDefault, true)
	case "urn:ietf:params:oauth:grant-type:device_code":
		d, ok := p.devices[f.Get("device_code")]
		switch {
		case !ok:
			p.fail(w, 400, "bad_verification_code", 70018, "The provided value for the input parameter 'device_code' is not valid.")
		case time.Now().After(d.expiry):
			p.fail(w, 400, "expired_token", 70019, "Verification code expired.")
		case d.slowDowns > 0:
			d.slowDowns--
			p.fail(w, 400, "slow_down", 70016, "OAuth 2.0 device flow error. Authorization is pending. Continue polling.")
		case d.state == "declined":
			p.fail(w, 400, "authorization_declined", 70016, "The user declined the sign-in.")
		case d.state == "approved":
			delete(p.devices, d.code)
			p.issue(w, d.user, app.ClientID, d.scope, false)
		default:
			p.fail(w, 400, "authorization_pending", 70016, "OAuth 2.0 device flow error. Authorization is pending. Continue polling.")
		}
	default:
		p.fail(w, 400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '"+grant+"'.")
	}
}

// issue writes a token response (caller holds p.mu).
func (p *IdP) issue(w http.ResponseWriter, user, clientID, scope string, appOnly bool) {
	at := "eyJ0eXAiOiJKV1QifQ.fake-access." + randHex(24)
	if pad := p.tokenLen - len(at); pad > 0 {
		at += "." + randHex(pad/2 + 1)[:pad-1]
	}
	ttl := p.accessTTL
	p.access[at] = &token{user: user, clientID: clientID, scope: scope, expiry: time.Now().Add(ttl), appOnly: appOnly}
	resp := map[string]any{"token_type": "Bearer", "scope": scope, "expires_in": int(ttl.Seconds()), "ext_expires_in": int(ttl.Seconds()), "access_token": at}
	if !appOnly {
		if strings.Contains(scope, "offline_access") {
			rt := "0.AXoA-fake-refresh." + randHex(24)
			p.refreshes[rt] = &refresh{user: user, clientID: clientID}
			resp["refresh_token"] = rt
		}
		if strings.Contains(scope, "openid") {
			resp["id_token"] = idToken(map[string]any{"preferred_username": user, "tid": p.Tenant, "aud": clientID,
				"iss": "https://login.microsoftonline.com/" + p.Tenant + "/v2.0", "iat": time.Now().Unix()})
		}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	json.NewEncoder(w).Encode(resp)
}

// idToken builds an unsigned-looking JWT (header.payload.signature) with the claims.
func idToken(claims map[string]any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"typ": "JWT", "alg": "RS256", "kid": "fake"})
	c, _ := json.Marshal(claims)
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "." + enc.EncodeToString([]byte("fake-signature"))
}

func (p *IdP) deviceCode(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts["devicecode"]++
	if _, ok := p.apps[f.Get("client_id")]; !ok {
		p.fail(w, 400, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", f.Get("client_id"), p.Domain))
		return
	}
	d := &device{code: "DAQABAAEAAA-fake-device." + randHex(16), userCode: strings.ToUpper(randHex(4)),
		clientID: f.Get("client_id"), scope: f.Get("scope"), expiry: time.Now().Add(15 * time.Minute), interval: 1, state: "pending"}
	p.devices[d.code] = d
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(map[string]any{
		"device_code": d.code, "user_code": d.userCode, "verification_uri": "https://microsoft.com/devicelogin",
		"expires_in": 900, "interval": d.interval,
		"message": fmt.Sprintf("To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code %s to authenticate.", d.userCode),
	})
}

// UserCodes returns the user codes of pending device sign-ins.
func (p *IdP) UserCodes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, d := range p.devices {
		if d.state == "pending" {
			out = append(out, d.userCode)
		}
	}
	return out
}

// introspect answers RFC 7662 introspection as Dovecot's oauth2 passdb expects:
// {"active": true, "username": ...} or {"active": false}.
func (p *IdP) introspect(w http.ResponseWriter, r *http.Request) {
	tok := r.PostForm.Get("token")
	p.mu.Lock()
	p.counts["introspect"]++
	t, ok := p.access[tok]
	var resp map[string]any
	switch {
	case !ok || time.Now().After(t.expiry):
		resp = map[string]any{"active": false}
	case t.appOnly:
		app := p.apps[t.clientID]
		// App-only tokens name no user; the IMAP server compares the mailbox it was given.
		resp = map[string]any{"active": true, "client_id": t.clientID, "username": strings.Join(app.AppOnlyUsers, " ")}
		if len(app.AppOnlyUsers) == 1 {
			resp["username"] = app.AppOnlyUsers[0]
		}
	default:
		resp = map[string]any{"active": true, "username": t.user, "client_id": t.clientID, "scope": t.scope}
	}
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// Issued returns every access and refresh token issued so far (tests scan logs and files for
// them).
func (p *IdP) Issued() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for t := range p.access {
		out = append(out, t)
	}
	for t := range p.refreshes {
		out = append(out, t)
	}
	return out
}
