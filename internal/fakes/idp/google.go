package idp

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// ScopeGmail is the scope Gmail's IMAP, POP and SMTP accept.
const ScopeGmail = "https://mail.google.com/"

// GoogleUser is an account of the fake Google Workspace.
type GoogleUser struct {
	Email string
	// AdvancedProtection enrols the account in Google's Advanced Protection Program: refreshes of
	// its tokens fail with policy_enforced.
	AdvancedProtection bool
}

// GoogleClient is an OAuth client (Google Cloud console > Google Auth platform > Clients).
type GoogleClient struct {
	ID     string // e.g. 1234-abc.apps.googleusercontent.com
	Secret string
	// InternalDomain makes the app Internal to the Workspace organisation of this domain: an
	// account of another domain is refused with org_internal (on Google's page, no redirect).
	InternalDomain string
	// Testing is the "Testing" publishing status of an External app: its refresh tokens end 7
	// days after they were issued.
	Testing bool
	// Blocked is the Workspace admin's third-party app access control blocking the app: the
	// sign-in shows admin_policy_enforced, and refreshes fail with it.
	Blocked bool
}

// ServiceAccount is a Google Cloud service account with one JSON key.
type ServiceAccount struct {
	Email    string // name@project.iam.gserviceaccount.com
	ClientID string // its numeric unique ID, the client ID domain-wide delegation names
	KeyID    string
	key      *rsa.PrivateKey
}

// KeyJSON is the service account's key file as the Google Cloud console downloads it, with
// token_uri pointing at tokenURI.
func (sa *ServiceAccount) KeyJSON(tokenURI string) []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(sa.key)
	project := strings.TrimSuffix(sa.Email[strings.IndexByte(sa.Email, '@')+1:], ".iam.gserviceaccount.com")
	b, _ := json.MarshalIndent(map[string]string{
		"type": "service_account", "project_id": project, "private_key_id": sa.KeyID,
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": sa.Email, "client_id": sa.ClientID,
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   tokenURI,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/" + url.PathEscape(sa.Email),
		"universe_domain":             "googleapis.com",
	}, "", "  ")
	return b
}

type gAccess struct {
	user, clientID, scope string
	expiry                time.Time
	serviceAccount        bool
}

type gRefresh struct {
	user, clientID, scope string
	issued                time.Time // on the fake's clock
	revoked, used         bool
}

type gCode struct {
	clientID, user, redirectURI, scope, challenge, method string
	offline                                               bool
	expiry                                                time.Time
}

// Google is a fake of Google's OAuth 2.0 endpoints for Workspace mail: the authorization
// endpoint (/o/oauth2/v2/auth, approving at once for the account named by login_hint or by
// SignInAs, redirecting to a loopback redirect URI), the token endpoint (/token: the JWT bearer
// grant of service accounts with domain-wide delegation, authorization_code with PKCE, and
// refresh_token), ID tokens signed with RS256 (/oauth2/v3/certs), Google-shaped errors
// ({"error", "error_description"}), RFC 7662 introspection for Dovecot's oauth2 passdb
// (/introspect) and Google's /tokeninfo. Its zero value is not usable; use NewGoogle.
type Google struct {
	mu        sync.Mutex
	signer    *rsa.PrivateKey
	kid       string
	users     map[string]*GoogleUser
	clients   map[string]*GoogleClient
	accounts  map[string]*ServiceAccount // by email
	delegated map[string][]string        // domain-wide delegation: client ID → scopes
	consents  map[string]bool            // user|client that consented before
	codes     map[string]*gCode
	access    map[string]*gAccess
	refreshes map[string]*gRefresh
	accessTTL time.Duration
	counts    map[string]int
	offset    time.Duration // the clock of refresh token ages and codes
	rotate    bool
	signInAs  string
	decline   bool
	noGmail   bool
	authReqs  []url.Values
}

// NewGoogle returns an empty fake.
func NewGoogle() *Google {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return &Google{signer: k, kid: randHex(20), users: map[string]*GoogleUser{}, clients: map[string]*GoogleClient{},
		accounts: map[string]*ServiceAccount{}, delegated: map[string][]string{}, consents: map[string]bool{},
		codes: map[string]*gCode{}, access: map[string]*gAccess{}, refreshes: map[string]*gRefresh{},
		accessTTL: time.Hour, counts: map[string]int{}}
}

// AddUser adds or replaces a Workspace account.
func (g *Google) AddUser(u GoogleUser) {
	g.mu.Lock()
	defer g.mu.Unlock()
	u.Email = strings.ToLower(u.Email)
	g.users[u.Email] = &u
}

// AddClient adds or replaces an OAuth client.
func (g *Google) AddClient(c GoogleClient) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.clients[c.ID] = &c
}

// AddServiceAccount creates a service account with a new key; its numeric client ID is made up.
func (g *Google) AddServiceAccount(email string) *ServiceAccount {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(9e17))
	sa := &ServiceAccount{Email: strings.ToLower(email), ClientID: fmt.Sprintf("1%020d", n.Int64()), KeyID: randHex(20), key: k}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.accounts[sa.Email] = sa
	return sa
}

// DeleteServiceAccountKey makes the service account's key unknown (deleted in the console).
func (g *Google) DeleteServiceAccountKey(email string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if sa := g.accounts[strings.ToLower(email)]; sa != nil {
		sa.KeyID = "deleted-" + sa.KeyID
		sa.key, _ = rsa.GenerateKey(rand.Reader, 1024)
	}
}

// Delegate grants domain-wide delegation to a service account's client ID for scopes (Admin
// console > Security > Access and data control > API controls > Manage Domain Wide Delegation).
// No scopes removes the grant.
func (g *Google) Delegate(clientID string, scopes ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(scopes) == 0 {
		delete(g.delegated, clientID)
		return
	}
	g.delegated[clientID] = scopes
}

// SetAccessTTL sets the lifetime of access tokens issued from now on.
func (g *Google) SetAccessTTL(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.accessTTL = d
}

// Advance moves the clock of refresh token ages and authorization codes forward (access tokens
// keep the real clock, which the IMAP server checks).
func (g *Google) Advance(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.offset += d
}

func (g *Google) now() time.Time { return time.Now().Add(g.offset) }

// SetRotation makes every refresh return a new refresh token and revoke the one used (Google
// usually keeps the refresh token; this catches a client that loses a rotated one).
func (g *Google) SetRotation(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rotate = on
}

// SignInAs makes the following sign-ins those of this account, whatever login_hint says (a user
// who picks another account in Google's account chooser); "" returns to login_hint.
func (g *Google) SignInAs(email string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.signInAs = strings.ToLower(email)
}

// Decline makes the following sign-ins end with access_denied (the user pressed Cancel).
func (g *Google) Decline(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.decline = on
}

// UntickGmail makes the following sign-ins grant everything but the Gmail scope (the user
// unticked it on the granular consent screen).
func (g *Google) UntickGmail(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.noGmail = on
}

// RevokeRefreshTokens revokes every refresh token of an account (the user removed the app's
// access, or changed the password: Gmail scopes end with it).
func (g *Google) RevokeRefreshTokens(email string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.refreshes {
		if r.user == strings.ToLower(email) {
			r.revoked = true
		}
	}
}

// AuthRequests returns the query of every authorization request so far.
func (g *Google) AuthRequests() []url.Values {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.authReqs)
}

// Count returns how many requests of a kind were made: "jwt-bearer", "authorization_code",
// "refresh_token", "authorize", "introspect", "tokeninfo", "refresh_reused".
func (g *Google) Count(kind string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.counts[kind]
}

// Issued returns every access and refresh token issued so far.
func (g *Google) Issued() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for t := range g.access {
		out = append(out, t)
	}
	for t := range g.refreshes {
		out = append(out, t)
	}
	return out
}

// Valid reports whether an access token is valid for Gmail as user (what Gmail's IMAP checks).
func (g *Google) Valid(accessToken, user string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.access[accessToken]
	return ok && time.Now().Before(t.expiry) && t.user == strings.ToLower(user) && hasScope(t.scope, ScopeGmail)
}

func hasScope(scopes, s string) bool { return slices.Contains(strings.Fields(scopes), s) }

// ServeHTTP serves the endpoints.
func (g *Google) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/o/oauth2/v2/auth" && r.Method == http.MethodGet:
		g.authorize(w, r)
	case r.URL.Path == "/oauth2/v3/certs" && r.Method == http.MethodGet:
		g.certs(w)
	case r.URL.Path == "/tokeninfo":
		r.ParseForm()
		g.tokeninfo(w, r.Form.Get("access_token"))
	case r.Method != http.MethodPost:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	case r.URL.Path == "/token":
		if err := r.ParseForm(); err != nil {
			gFail(w, 400, "invalid_request", "Invalid request.")
			return
		}
		g.token(w, r)
	case r.URL.Path == "/introspect":
		r.ParseForm()
		g.introspect(w, r.PostForm.Get("token"))
	default:
		http.NotFound(w, r)
	}
}

// gFail writes Google's token endpoint error body.
func gFail(w http.ResponseWriter, status int, class, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": class, "error_description": desc})
}

// errorPage is Google's sign-in error page: the browser stays there, nothing is redirected.
func errorPage(w http.ResponseWriter, status int, class, text string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html><title>Error</title><h1>Access blocked: Authorization Error</h1><p>%s</p><p>Error %d: %s</p>",
		html.EscapeString(text), status, class)
}

func isLoopbackRedirect(u *url.URL) bool {
	ip := net.ParseIP(u.Hostname())
	return u.Scheme == "http" && (u.Hostname() == "localhost" || ip != nil && ip.IsLoopback())
}

func (g *Google) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.counts["authorize"]++
	g.authReqs = append(g.authReqs, q)
	c, ok := g.clients[q.Get("client_id")]
	if !ok {
		errorPage(w, 401, "invalid_client", "The OAuth client was not found.")
		return
	}
	ru, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || !isLoopbackRedirect(ru) {
		errorPage(w, 400, "redirect_uri_mismatch", "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy.")
		return
	}
	if q.Get("response_type") != "code" {
		errorPage(w, 400, "unsupported_response_type", "Required parameter is missing: response_type")
		return
	}
	if m := q.Get("code_challenge_method"); q.Get("code_challenge") != "" && m != "S256" && m != "plain" && m != "" {
		errorPage(w, 400, "invalid_request", "Invalid code_challenge_method value.")
		return
	}
	redirect := func(v url.Values) {
		v.Set("state", q.Get("state"))
		u := *ru
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	user := g.signInAs
	if user == "" {
		user = strings.ToLower(q.Get("login_hint"))
	}
	if _, ok := g.users[user]; !ok {
		errorPage(w, 400, "invalid_request", "Couldn't find your Google Account.")
		return
	}
	if c.InternalDomain != "" && !strings.HasSuffix(user, "@"+strings.ToLower(c.InternalDomain)) {
		errorPage(w, 403, "org_internal", "This client is restricted to users within its organization.")
		return
	}
	if c.Blocked {
		errorPage(w, 400, "admin_policy_enforced", "Access to your account data is restricted by policies within your organization. Please contact the administrator for more information.")
		return
	}
	if g.decline {
		redirect(url.Values{"error": {"access_denied"}})
		return
	}
	var granted []string
	for _, s := range strings.Fields(q.Get("scope")) {
		switch s {
		case "email", "https://www.googleapis.com/auth/userinfo.email":
			granted = append(granted, "https://www.googleapis.com/auth/userinfo.email")
		case ScopeGmail:
			if !g.noGmail {
				granted = append(granted, s)
			}
		default:
			granted = append(granted, s)
		}
	}
	code := "4/0A-fake-code-" + randHex(20)
	g.codes[code] = &gCode{clientID: c.ID, user: user, redirectURI: q.Get("redirect_uri"), scope: strings.Join(granted, " "),
		challenge: q.Get("code_challenge"), method: q.Get("code_challenge_method"),
		// Google returns a refresh token on the first consent to an offline request, and on
		// later ones only when the consent screen was shown again (prompt=consent).
		offline: q.Get("access_type") == "offline" && (!g.consents[user+"|"+c.ID] || strings.Contains(q.Get("prompt"), "consent")),
		expiry:  g.now().Add(10 * time.Minute)}
	g.consents[user+"|"+c.ID] = true
	redirect(url.Values{"code": {code}, "scope": {strings.Join(granted, " ")}, "authuser": {"0"}, "prompt": {"consent"}})
}

// clientAuth checks the client id and secret of a token request (caller holds g.mu).
func (g *Google) clientAuth(w http.ResponseWriter, r *http.Request) *GoogleClient {
	f := r.PostForm
	id, secret := f.Get("client_id"), f.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		id, secret = u, p
	}
	c, ok := g.clients[id]
	switch {
	case !ok:
		gFail(w, 401, "invalid_client", "The OAuth client was not found.")
		return nil
	case secret != c.Secret:
		gFail(w, 401, "invalid_client", "Unauthorized")
		return nil
	}
	return c
}

func (g *Google) token(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	g.mu.Lock()
	defer g.mu.Unlock()
	switch f.Get("grant_type") {
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		g.counts["jwt-bearer"]++
		g.jwtBearer(w, r)
	case "authorization_code":
		g.counts["authorization_code"]++
		c := g.clientAuth(w, r)
		if c == nil {
			return
		}
		code, ok := g.codes[f.Get("code")]
		switch {
		case !ok || code.clientID != c.ID:
			gFail(w, 400, "invalid_grant", "Malformed auth code.")
			return
		case g.now().After(code.expiry):
			delete(g.codes, f.Get("code"))
			gFail(w, 400, "invalid_grant", "Bad Request")
			return
		case f.Get("redirect_uri") != code.redirectURI:
			gFail(w, 400, "redirect_uri_mismatch", "Bad Request")
			return
		}
		if code.challenge != "" {
			v := f.Get("code_verifier")
			want := v
			if code.method == "S256" {
				sum := sha256.Sum256([]byte(v))
				want = base64.RawURLEncoding.EncodeToString(sum[:])
			}
			switch {
			case v == "":
				gFail(w, 400, "invalid_grant", "Missing code verifier.")
				return
			case want != code.challenge:
				gFail(w, 400, "invalid_grant", "Invalid code verifier.")
				return
			}
		}
		delete(g.codes, f.Get("code")) // single use
		g.issue(w, code.user, c.ID, code.scope, code.offline, "")
	case "refresh_token":
		g.counts["refresh_token"]++
		c := g.clientAuth(w, r)
		if c == nil {
			return
		}
		rt, ok := g.refreshes[f.Get("refresh_token")]
		switch {
		case !ok || rt.clientID != c.ID:
			gFail(w, 400, "invalid_grant", "Bad Request")
		case rt.revoked:
			if rt.used {
				g.counts["refresh_reused"]++
			}
			gFail(w, 400, "invalid_grant", "Token has been expired or revoked.")
		case c.Testing && g.now().Sub(rt.issued) >= 7*24*time.Hour:
			gFail(w, 400, "invalid_grant", "Token has been expired or revoked.")
		case c.Blocked:
			gFail(w, 400, "admin_policy_enforced", "Access to your account data is restricted by policies within your organization.")
		case g.users[rt.user] != nil && g.users[rt.user].AdvancedProtection:
			gFail(w, 400, "policy_enforced", "Advanced Protection prevented your Google Account from signing in.")
		default:
			next := ""
			if g.rotate {
				rt.revoked, rt.used = true, true
				next = "1//0g-fake-refresh-" + randHex(24)
				g.refreshes[next] = &gRefresh{user: rt.user, clientID: c.ID, scope: rt.scope, issued: rt.issued}
			}
			g.issue(w, rt.user, c.ID, rt.scope, false, next)
		}
	default:
		gFail(w, 400, "unsupported_grant_type", "Invalid grant_type: "+f.Get("grant_type"))
	}
}

// jwtBearer is the service account grant (caller holds g.mu).
func (g *Google) jwtBearer(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(r.PostForm.Get("assertion"), ".")
	if len(parts) != 3 {
		gFail(w, 400, "invalid_grant", "Invalid JWT: Failed audience check.")
		return
	}
	var hdr struct {
		Alg, Kid string
	}
	var claims struct {
		Iss, Scope, Aud, Sub string
		Iat, Exp             int64
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hb, &hdr) != nil || json.Unmarshal(cb, &claims) != nil {
		gFail(w, 400, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	sa, ok := g.accounts[strings.ToLower(claims.Iss)]
	if !ok {
		gFail(w, 400, "invalid_grant", "Invalid grant: account not found")
		return
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if hdr.Alg != "RS256" || rsa.VerifyPKCS1v15(&sa.key.PublicKey, crypto.SHA256, sum[:], sig) != nil {
		gFail(w, 400, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	// The audience is this token endpoint's URL.
	path, _, _ := strings.Cut(r.RequestURI, "?")
	if claims.Aud != "http://"+r.Host+path && claims.Aud != "https://"+r.Host+path {
		gFail(w, 400, "invalid_grant", "Invalid JWT: Failed audience check. The expected audience is the token endpoint.")
		return
	}
	now := time.Now().Unix()
	if claims.Iat > now+300 || claims.Exp < now || claims.Exp-claims.Iat > 3600+60 {
		gFail(w, 400, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
		return
	}
	if claims.Scope == "" {
		gFail(w, 400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
		return
	}
	if claims.Sub == "" {
		// The service account itself: no Gmail without a user to act as.
		g.issueSA(w, sa.Email, sa.ClientID, claims.Scope)
		return
	}
	if _, ok := g.users[strings.ToLower(claims.Sub)]; !ok {
		gFail(w, 400, "invalid_grant", "Invalid email or User ID")
		return
	}
	for _, s := range strings.Fields(claims.Scope) {
		if !slices.Contains(g.delegated[sa.ClientID], s) {
			gFail(w, 401, "unauthorized_client", "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.")
			return
		}
	}
	g.issueSA(w, strings.ToLower(claims.Sub), sa.ClientID, claims.Scope)
}

func (g *Google) issueSA(w http.ResponseWriter, user, clientID, scope string) {
	at := "ya29.c.fake-" + randHex(24)
	g.access[at] = &gAccess{user: user, clientID: clientID, scope: scope, expiry: time.Now().Add(g.accessTTL), serviceAccount: true}
	writeJSON(w, map[string]any{"access_token": at, "expires_in": int(g.accessTTL.Seconds()), "token_type": "Bearer"})
}

// issue writes a user token response (caller holds g.mu). rotated, when set, is the new refresh
// token of a refresh.
func (g *Google) issue(w http.ResponseWriter, user, clientID, scope string, offline bool, rotated string) {
	at := "ya29.a0-fake-" + randHex(24)
	g.access[at] = &gAccess{user: user, clientID: clientID, scope: scope, expiry: time.Now().Add(g.accessTTL)}
	resp := map[string]any{"access_token": at, "expires_in": int(g.accessTTL.Seconds()), "token_type": "Bearer", "scope": scope}
	if offline {
		rt := "1//0g-fake-refresh-" + randHex(24)
		g.refreshes[rt] = &gRefresh{user: user, clientID: clientID, scope: scope, issued: g.now()}
		resp["refresh_token"] = rt
	}
	if rotated != "" {
		resp["refresh_token"] = rotated
	}
	if hasScope(scope, "openid") {
		now := time.Now()
		claims := map[string]any{"iss": "https://accounts.google.com", "azp": clientID, "aud": clientID, "sub": subjectOf(user),
			"at_hash": randHex(8), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if hasScope(scope, "https://www.googleapis.com/auth/userinfo.email") {
			claims["email"], claims["email_verified"] = user, true
			if _, domain, ok := strings.Cut(user, "@"); ok && domain != "gmail.com" {
				claims["hd"] = domain
			}
		}
		resp["id_token"] = g.sign(claims)
	}
	writeJSON(w, resp)
}

// subjectOf is a stable made-up numeric subject for an account.
func subjectOf(email string) string {
	sum := sha256.Sum256([]byte(email))
	return "1" + new(big.Int).SetBytes(sum[:8]).String()
}

func (g *Google) sign(claims map[string]any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": g.kid, "typ": "JWT"})
	c, _ := json.Marshal(claims)
	in := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	sum := sha256.Sum256([]byte(in))
	sig, _ := rsa.SignPKCS1v15(rand.Reader, g.signer, crypto.SHA256, sum[:])
	return in + "." + enc.EncodeToString(sig)
}

func (g *Google) certs(w http.ResponseWriter) {
	pub := g.signer.PublicKey
	writeJSON(w, map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": g.kid,
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

// introspect answers RFC 7662 introspection as Dovecot's oauth2 passdb expects. A token without
// the Gmail scope is not active: Gmail refuses it.
func (g *Google) introspect(w http.ResponseWriter, tok string) {
	g.mu.Lock()
	g.counts["introspect"]++
	t, ok := g.access[tok]
	resp := map[string]any{"active": false}
	if ok && time.Now().Before(t.expiry) && hasScope(t.scope, ScopeGmail) {
		resp = map[string]any{"active": true, "username": t.user, "email": t.user, "client_id": t.clientID, "scope": t.scope,
			"exp": t.expiry.Unix()}
	}
	g.mu.Unlock()
	writeJSON(w, resp)
}

// tokeninfo answers as https://oauth2.googleapis.com/tokeninfo?access_token= does.
func (g *Google) tokeninfo(w http.ResponseWriter, tok string) {
	g.mu.Lock()
	g.counts["tokeninfo"]++
	t, ok := g.access[tok]
	g.mu.Unlock()
	if !ok || time.Now().After(t.expiry) {
		gFail(w, 400, "invalid_token", "Invalid Value")
		return
	}
	writeJSON(w, map[string]any{"azp": t.clientID, "aud": t.clientID, "sub": subjectOf(t.user), "scope": t.scope,
		"exp": fmt.Sprint(t.expiry.Unix()), "expires_in": fmt.Sprint(int(time.Until(t.expiry).Seconds())),
		"email": t.user, "email_verified": "true", "access_type": "offline"})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
	json.NewEncoder(w).Encode(v)
}
