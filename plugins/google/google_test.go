package google

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/idp"
	"github.com/mailintake/mailintake/plugins/authplugin"
)

const (
	user      = "help@example.com"
	other     = "someone.else@example.com"
	clientID  = "1234-fake.apps.googleusercontent.com"
	secret    = "GOCSPX-fake-secret"
	saEmail   = "mailintake@acme-desk.iam.gserviceaccount.com"
	mailboxID = "mb-1"
)

type world struct {
	g   *idp.Google
	url string
	sa  *idp.ServiceAccount
	key string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	g := idp.NewGoogle()
	g.AddUser(idp.GoogleUser{Email: user})
	g.AddUser(idp.GoogleUser{Email: other})
	g.AddClient(idp.GoogleClient{ID: clientID, Secret: secret})
	sa := g.AddServiceAccount(saEmail)
	g.Delegate(sa.ClientID, idp.ScopeGmail)
	hs := httptest.NewServer(g)
	t.Cleanup(hs.Close)
	return &world{g: g, url: hs.URL, sa: sa, key: string(sa.KeyJSON(hs.URL + "/token"))}
}

func (w *world) saAccount() authplugin.Account {
	return authplugin.Account{MailboxID: mailboxID, Protocol: "imap", Username: user,
		Config: map[string]string{"endpoint": w.url}, Secrets: map[string]string{"service_account_key": w.key}}
}

func (w *world) userAccount(cfg map[string]string) authplugin.Account {
	c := map[string]string{"flow": "authorization_code", "client_id": clientID, "endpoint": w.url}
	for k, v := range cfg {
		c[k] = v
	}
	return authplugin.Account{MailboxID: mailboxID, Protocol: "imap", Username: user, Config: c, Secrets: map[string]string{"client_secret": secret}}
}

func reason(t *testing.T, err error) *authplugin.Error {
	t.Helper()
	e, ok := authplugin.AsError(err)
	if !ok {
		t.Fatalf("error %v (%T) is not an *authplugin.Error", err, err)
	}
	return e
}

func TestValidateConfig(t *testing.T) {
	w := newWorld(t)
	p := New()
	ctx := context.Background()
	if err := p.ValidateConfig(ctx, w.saAccount()); err != nil {
		t.Fatalf("valid service account refused: %v", err)
	}
	if err := p.ValidateConfig(ctx, w.userAccount(nil)); err != nil {
		t.Fatalf("valid authorization_code refused: %v", err)
	}
	sa := func(key string, cfg map[string]string) authplugin.Account {
		a := w.saAccount()
		a.Secrets["service_account_key"] = key
		for k, v := range cfg {
			a.Config[k] = v
		}
		return a
	}
	withSecret := func(a authplugin.Account, k, v string) authplugin.Account {
		a.Secrets[k] = v
		return a
	}
	noUser := w.saAccount()
	noUser.Username = "help"
	for _, c := range []struct {
		name  string
		acct  authplugin.Account
		field string
		want  string
	}{
		{"no key", sa("", nil), "service_account_key", "required"},
		{"not JSON", sa("-----BEGIN PRIVATE KEY-----", nil), "service_account_key", "JSON"},
		{"OAuth client file", sa(`{"installed":{"client_id":"x"}}`, nil), "service_account_key", "OAuth client's file"},
		{"user credentials", sa(`{"type":"authorized_user","client_id":"x"}`, nil), "service_account_key", "authorized_user"},
		{"no private key", sa(`{"type":"service_account","client_email":"a@b"}`, nil), "service_account_key", "private_key"},
		{"bad private key", sa(`{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}`, nil), "service_account_key", "cannot be read"},
		{"client id with service account", sa(w.key, map[string]string{"client_id": clientID}), "client_id", "not used"},
		{"unknown field", sa(w.key, map[string]string{"colour": "blue"}), "colour", "not a field"},
		{"http endpoint", sa(w.key, map[string]string{"endpoint": "http://oauth.example.com"}), "endpoint", "https"},
		{"unknown flow", sa(w.key, map[string]string{"flow": "device_code"}), "flow", "service_account or authorization_code"},
		{"username not an address", noUser, "username", "email address"},
		{"no client id", w.userAccount(map[string]string{"client_id": ""}), "client_id", "required"},
		{"client id not one", w.userAccount(map[string]string{"client_id": "my app"}), "client_id", "apps.googleusercontent.com"},
		{"no client secret", withSecret(w.userAccount(nil), "client_secret", ""), "client_secret", "required"},
		{"bad port", w.userAccount(map[string]string{"redirect_port": "80"}), "redirect_port", "between 1024"},
		{"bad app status", w.userAccount(map[string]string{"app_status": "draft"}), "app_status", "production or testing"},
		{"pasted code alone", withSecret(w.userAccount(nil), "authorization_response", "4/0Afake"), "authorization_response", "not the code alone"},
		{"key with user flow", withSecret(w.userAccount(nil), "service_account_key", w.key), "service_account_key", "not used"},
	} {
		err := p.ValidateConfig(ctx, c.acct)
		var verr *authplugin.ValidationError
		if !errors.As(err, &verr) {
			t.Errorf("%s: %v, want a validation error", c.name, err)
			continue
		}
		found := false
		for _, v := range verr.Violations {
			found = found || v.Field == c.field && strings.Contains(v.Description, c.want)
		}
		if !found {
			t.Errorf("%s: violations %v do not name %s with %q", c.name, verr.Violations, c.field, c.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	d, err := New().Describe(context.Background())
	if err != nil || d.Name != "google" || len(d.SASLMechanisms) != 1 || d.SASLMechanisms[0] != "XOAUTH2" {
		t.Fatalf("Describe = %+v, %v", d, err)
	}
	for _, f := range d.Fields {
		if f.Label == "" || f.Help == "" {
			t.Errorf("field %s has no label or help", f.Name)
		}
		if f.Secret && f.Default != "" {
			t.Errorf("secret field %s has a default", f.Name)
		}
	}
}

func TestServiceAccount(t *testing.T) {
	w := newWorld(t)
	p := New()
	res, err := p.IssueCredential(context.Background(), authplugin.Request{Account: w.saAccount()})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Credential
	if c.Mechanism != "XOAUTH2" || c.Identity != user || time.Until(c.Expiry) < 50*time.Minute || res.StateChanged {
		t.Fatalf("credential %+v (state changed %v)", c, res.StateChanged)
	}
	if !w.g.Valid(c.Secret, user) || w.g.Valid(c.Secret, other) {
		t.Errorf("the token is not the mailbox's")
	}
	if w.g.Count("jwt-bearer") != 1 {
		t.Errorf("%d token requests", w.g.Count("jwt-bearer"))
	}
}

func TestServiceAccountErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("delegation not granted", func(t *testing.T) {
		w := newWorld(t)
		w.g.Delegate(w.sa.ClientID) // revoked
		_, err := New().IssueCredential(ctx, authplugin.Request{Account: w.saAccount()})
		e := reason(t, err)
		if e.Reason != authplugin.ReasonConsentRequired || e.Code != "unauthorized_client" ||
			!strings.Contains(e.Action, "Manage Domain Wide Delegation") || !strings.Contains(e.Action, w.sa.ClientID) || !strings.Contains(e.Action, "https://mail.google.com/") {
			t.Errorf("got %v", e)
		}
	})
	t.Run("delegated for another scope", func(t *testing.T) {
		w := newWorld(t)
		w.g.Delegate(w.sa.ClientID, "https://www.googleapis.com/auth/gmail.readonly")
		_, err := New().IssueCredential(ctx, authplugin.Request{Account: w.saAccount()})
		if !errors.Is(err, authplugin.ErrConsentRequired) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("no such user", func(t *testing.T) {
		w := newWorld(t)
		a := w.saAccount()
		a.Username = "nobody@example.com"
		_, err := New().IssueCredential(ctx, authplugin.Request{Account: a})
		e := reason(t, err)
		if e.Reason != authplugin.ReasonConfigInvalid || !strings.Contains(e.Message, "nobody@example.com") || !strings.Contains(e.Action, "primary address") {
			t.Errorf("got %v", e)
		}
	})
	t.Run("key deleted", func(t *testing.T) {
		w := newWorld(t)
		w.g.DeleteServiceAccountKey(saEmail)
		_, err := New().IssueCredential(ctx, authplugin.Request{Account: w.saAccount()})
		e := reason(t, err)
		if e.Reason != authplugin.ReasonInvalidCredentials || !strings.Contains(e.Action, "Add key") {
			t.Errorf("got %v", e)
		}
	})
	t.Run("service account deleted", func(t *testing.T) {
		w := newWorld(t)
		stranger := idp.NewGoogle().AddServiceAccount("gone@acme-desk.iam.gserviceaccount.com")
		a := w.saAccount()
		a.Secrets["service_account_key"] = string(stranger.KeyJSON(w.url + "/token"))
		_, err := New().IssueCredential(ctx, authplugin.Request{Account: a})
		e := reason(t, err)
		if e.Reason != authplugin.ReasonInvalidCredentials || !strings.Contains(e.Message, "deleted") {
			t.Errorf("got %v", e)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		w := newWorld(t)
		a := w.saAccount()
		a.Config["endpoint"] = "http://127.0.0.1:1"
		_, err := New().IssueCredential(ctx, authplugin.Request{Account: a})
		if !errors.Is(err, authplugin.ErrTemporary) {
			t.Errorf("got %v", err)
		}
	})
}

// browser opens the sign-in URL as a browser on the server's machine does: Google approves at
// once and redirects to the provider's loopback listener, whose page it returns.
func browser(t *testing.T, authURL string) (int, string) {
	t.Helper()
	resp, err := http.Get(authURL)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// remoteBrowser opens the URL on another machine: the redirect to 127.0.0.1 does not reach the
// server, and the admin copies the address it shows.
func remoteBrowser(t *testing.T, authURL string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("the sign-in answered %d, not a redirect", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

func poll(t *testing.T, p *Provider, a authplugin.Account, st []byte, h []byte) (authplugin.PollResult, error) {
	t.Helper()
	return p.PollAuthorization(context.Background(), authplugin.Request{Account: a, State: st}, h)
}

func TestSignInLoopback(t *testing.T) {
	w := newWorld(t)
	p := New()
	a := w.userAccount(nil)
	ctx := context.Background()
	if _, err := p.IssueCredential(ctx, authplugin.Request{Account: a}); !errors.Is(err, authplugin.ErrAuthorizationRequired) ||
		!strings.Contains(reason(t, err).Action, "mailbox authorize "+mailboxID) {
		t.Fatalf("before the sign-in: %v", err)
	}
	auth, err := p.BeginAuthorization(ctx, authplugin.Request{Account: a})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(auth.VerificationURI)
	q := u.Query()
	ru, _ := url.Parse(q.Get("redirect_uri"))
	if !strings.HasPrefix(auth.VerificationURI, w.url+"/o/oauth2/v2/auth?") || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" ||
		q.Get("access_type") != "offline" || q.Get("prompt") != "consent" || q.Get("login_hint") != user || ru.Hostname() != "127.0.0.1" ||
		!strings.Contains(q.Get("scope"), "https://mail.google.com/") || !strings.Contains(q.Get("scope"), "openid") || auth.Interval <= 0 {
		t.Fatalf("sign-in URL %s", auth.VerificationURI)
	}
	if !strings.Contains(auth.Message, "authorization_response") || !strings.Contains(auth.Message, "ssh -L "+ru.Port()) || strings.Contains(auth.Message, q.Get("state")) {
		t.Errorf("message: %s", auth.Message)
	}
	if _, err := poll(t, p, a, nil, auth.Handle); !errors.Is(err, authplugin.ErrAuthorizationPending) {
		t.Fatalf("poll before the browser came back: %v", err)
	}
	code, page := browser(t, auth.VerificationURI)
	if code != 200 || !strings.Contains(page, "Signed in") {
		t.Fatalf("browser: %d %s", code, page)
	}
	res, err := poll(t, p, a, nil, auth.Handle)
	if err != nil || !res.Done {
		t.Fatalf("poll after the browser came back: %+v %v", res, err)
	}
	st := loadState(res.State)
	if st.RefreshToken == "" || st.Account != user || st.SignedIn.IsZero() {
		t.Fatalf("state %+v", st)
	}
	// The listener is gone once the code was redeemed (it closes in the background: allow it 3 s).
	for deadline := time.Now().Add(3 * time.Second); ; {
		c, err := net.DialTimeout("tcp", ru.Host, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Errorf("the loopback listener still runs 3 s after the sign-in")
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A poll again (the server's poll racing the credential request) gets the same result.
	if again, err := poll(t, p, a, nil, auth.Handle); err != nil || string(again.State) != string(res.State) {
		t.Errorf("second poll: %v", err)
	}
	ir, err := p.IssueCredential(ctx, authplugin.Request{Account: a, State: res.State})
	if err != nil {
		t.Fatal(err)
	}
	if !w.g.Valid(ir.Credential.Secret, user) || ir.StateChanged || ir.Health == nil || len(ir.Health.Warnings) != 0 {
		t.Errorf("refresh: %+v", ir)
	}
	if n := w.g.Count("authorization_code"); n != 1 {
		t.Errorf("%d code exchanges", n)
	}
}

func TestSignInFailures(t *testing.T) {
	ctx := context.Background()
	begin := func(t *testing.T, w *world, p *Provider) (authplugin.Account, authplugin.Authorization) {
		a := w.userAccount(nil)
		auth, err := p.BeginAuthorization(ctx, authplugin.Request{Account: a})
		if err != nil {
			t.Fatal(err)
		}
		return a, auth
	}
	t.Run("wrong account", func(t *testing.T) {
		w := newWorld(t)
		p := New()
		a, auth := begin(t, w, p)
		w.g.SignInAs(other)
		browser(t, auth.VerificationURI)
		_, err := poll(t, p, a, nil, auth.Handle)
		e := reason(t, err)
		if e.Code != "wrong_account" || !strings.Contains(e.Message, "signed in as "+other) || !strings.Contains(e.Action, user) {
			t.Errorf("got %v", e)
		}
	})
	t.Run("declined", func(t *testing.T) {
		w := newWorld(t)
		p := New()
		a, auth := begin(t, w, p)
		w.g.Decline(true)
		code, page := browser(t, auth.VerificationURI)
		if code != http.StatusForbidden || !strings.Contains(page, "Not signed in") || !strings.Contains(page, "allow access") {
			t.Errorf("page %d %s", code, page)
		}
		_, err := poll(t, p, a, nil, auth.Handle)
		if e := reason(t, err); e.Code != "access_denied" || e.Reason != authplugin.ReasonConsentRequired || !strings.Contains(e.Action, "authorize "+mailboxID) {
			t.Errorf("got %v", e)
		}
	})
	t.Run("gmail unticked", func(t *testing.T) {
		w := newWorld(t)
		p := New()
		a, auth := begin(t, w, p)
		w.g.UntickGmail(true)
		browser(t, auth.VerificationURI)
		_, err := poll(t, p, a, nil, auth.Handle)
		if e := reason(t, err); e.Code != "gmail_not_granted" || e.Reason != authplugin.ReasonConsentRequired {
			t.Errorf("got %v", e)
		}
	})
	t.Run("org internal", func(t *testing.T) {
		w := newWorld(t)
		w.g.AddClient(idp.GoogleClient{ID: clientID, Secret: secret, InternalDomain: "other-org.example"})
		p := New()
		a, auth := begin(t, w, p)
		code, page := browser(t, auth.VerificationURI) // Google's own error page: no redirect
		if code != http.StatusForbidden || !strings.Contains(page, "org_internal") {
			t.Errorf("page %d %s", code, page)
		}
		if _, err := poll(t, p, a, nil, auth.Handle); !errors.Is(err, authplugin.ErrAuthorizationPending) {
			t.Errorf("poll: %v", err)
		}
	})
	t.Run("wrong client secret", func(t *testing.T) {
		w := newWorld(t)
		p := New()
		a, auth := begin(t, w, p)
		a.Secrets["client_secret"] = "GOCSPX-old"
		browser(t, auth.VerificationURI)
		_, err := poll(t, p, a, nil, auth.Handle)
		if e := reason(t, err); e.Code != "invalid_client" || e.Reason != authplugin.ReasonInvalidCredentials || !strings.Contains(e.Action, "client secret") {
			t.Errorf("got %v", e)
		}
	})
	t.Run("service account flow", func(t *testing.T) {
		w := newWorld(t)
		_, err := New().BeginAuthorization(ctx, authplugin.Request{Account: w.saAccount()})
		if !errors.Is(err, authplugin.ErrConfigInvalid) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("fixed port", func(t *testing.T) {
		w := newWorld(t)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		a := w.userAccount(map[string]string{"redirect_port": itoa(port)})
		_, err = New().BeginAuthorization(ctx, authplugin.Request{Account: a})
		l.Close()
		if e := reason(t, err); e.Reason != authplugin.ReasonConfigInvalid || !strings.Contains(e.Action, itoa(port)) {
			t.Errorf("busy port: %v", e)
		}
		p := New()
		auth, err := p.BeginAuthorization(ctx, authplugin.Request{Account: a})
		if err != nil || !strings.Contains(auth.VerificationURI, url.QueryEscape("http://127.0.0.1:"+itoa(port)+"/")) {
			t.Fatalf("fixed port: %v %s", err, auth.VerificationURI)
		}
		browser(t, auth.VerificationURI)
		if res, err := poll(t, p, a, nil, auth.Handle); err != nil || !res.Done {
			t.Errorf("poll: %v", err)
		}
	})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestSignInPasted(t *testing.T) {
	w := newWorld(t)
	p := New()
	ctx := context.Background()
	a := w.userAccount(nil)
	auth, err := p.BeginAuthorization(ctx, authplugin.Request{Account: a})
	if err != nil {
		t.Fatal(err)
	}
	addr := remoteBrowser(t, auth.VerificationURI)
	// The admin saves the address for the mailbox: the credential request after the change
	// completes the sign-in.
	pasted := w.userAccount(nil)
	pasted.Secrets["authorization_response"] = addr + "\n"
	if err := p.ValidateConfig(ctx, pasted); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([]authplugin.IssueResult, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = p.IssueCredential(ctx, authplugin.Request{Account: pasted})
		}()
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil || !results[i].StateChanged || !w.g.Valid(results[i].Credential.Secret, user) {
			t.Fatalf("credential from the pasted address: %+v %v", results[i], errs[i])
		}
	}
	if n := w.g.Count("authorization_code"); n != 1 {
		t.Errorf("the code was redeemed %d times", n)
	}
	st := results[0].State
	// The server's poll (with the mailbox as it was) sees the stored sign-in and completes.
	if res, err := poll(t, p, a, st, auth.Handle); err != nil || !res.Done || string(res.State) != string(st) {
		t.Errorf("poll after the paste: %+v %v", res, err)
	}
	// The address stays in the mailbox: it is not used again.
	ir, err := p.IssueCredential(ctx, authplugin.Request{Account: pasted, State: st})
	if err != nil || ir.StateChanged || w.g.Count("authorization_code") != 1 || w.g.Count("refresh_token") != 1 {
		t.Errorf("later credential: %+v %v (codes %d)", ir, err, w.g.Count("authorization_code"))
	}

	// A provider process that did not begin the sign-in (restarted, or another server's)
	// completes it from the poll, when the mailbox it is given has the address: the verifier is
	// in the handle.
	auth2, err := p.BeginAuthorization(ctx, authplugin.Request{Account: a})
	if err != nil {
		t.Fatal(err)
	}
	pasted.Secrets["authorization_response"] = remoteBrowser(t, auth2.VerificationURI)
	fresh := New()
	res, err := poll(t, fresh, pasted, st, auth2.Handle)
	if err != nil || !res.Done || loadState(res.State).RefreshToken == loadState(st).RefreshToken {
		t.Fatalf("poll in another process: %+v %v", res, err)
	}
	// ... but a credential request there cannot: it says what to do (with no sign-in stored).
	_, err = fresh.IssueCredential(ctx, authplugin.Request{Account: pasted})
	if e := reason(t, err); e.Code != "unknown_sign_in" || !strings.Contains(e.Action, "authorize "+mailboxID) {
		t.Errorf("unknown sign-in: %v", e)
	}
	// An address of a sign-in started again is not the new one's.
	auth3, _ := p.BeginAuthorization(ctx, authplugin.Request{Account: a})
	if _, err := poll(t, p, pasted, nil, auth3.Handle); !errors.Is(err, authplugin.ErrAuthorizationPending) {
		t.Errorf("stale address: %v", err)
	}
}

func signedIn(t *testing.T, w *world, p *Provider, a authplugin.Account) []byte {
	t.Helper()
	auth, err := p.BeginAuthorization(context.Background(), authplugin.Request{Account: a})
	if err != nil {
		t.Fatal(err)
	}
	browser(t, auth.VerificationURI)
	res, err := poll(t, p, a, nil, auth.Handle)
	if err != nil || !res.Done {
		t.Fatalf("sign-in: %v", err)
	}
	return res.State
}

func TestRefresh(t *testing.T) {
	ctx := context.Background()
	t.Run("rotation", func(t *testing.T) {
		w := newWorld(t)
		p := New()
		a := w.userAccount(nil)
		st := signedIn(t, w, p, a)
		w.g.SetRotation(true)
		res, err := p.IssueCredential(ctx, authplugin.Request{Account: a, State: st})
		if err != nil || !res.StateChanged || loadState(res.State).RefreshToken == loadState(st).RefreshToken {
			t.Fatalf("rotated refresh: %+v %v", res, err)
		}
		if loadState(res.State).SignedIn != loadState(st).SignedIn {
			t.Errorf("rotation changed the sign-in's time")
		}
		if _, err := p.IssueCredential(ctx, authplugin.Request{Account: a, State: res.State}); err != nil {
			t.Errorf("refresh with the rotated token: %v", err)
		}
		if _, err := p.IssueCredential(ctx, authplugin.Request{Account: a, State: st}); !errors.Is(err, authplugin.ErrAuthorizationRequired) || w.g.Count("refresh_reused") != 1 {
			t.Errorf("the old token: %v", err)
		}
	})
	t.Run("testing app ends after 7 days", func(t *testing.T) {
		w := newWorld(t)
		w.g.AddClient(idp.GoogleClient{ID: clientID, Secret: secret, Testing: true})
		p := New()
		now := time.Now()
		p.Now = func() time.Time { return now }
		a := w.userAccount(map[string]string{"app_status": "testing"})
		st := signedIn(t, w, p, a)
		res, err := p.IssueCredential(ctx, authplugin.Request{Account: a, State: st})
		if err != nil || len(res.Health.Warnings) != 1 || !strings.Contains(res.Health.Warnings[0], "7 days") {
			t.Fatalf("health of a testing app: %+v %v", res.Health, err)
		}
		w.g.Advance(7*24*time.Hour + time.Hour)
		now = now.Add(7*24*time.Hour + time.Hour)
		_, err = p.IssueCredential(ctx, authplugin.Request{Account: a, State: st})
		e := reason(t, err)
		if e.Reason != authplugin.ReasonAuthorizationRequired || !strings.Contains(e.Message, "Testing") || !strings.Contains(e.Action, "Audience") ||
			!strings.Contains(e.Action, "authorize "+mailboxID) {
			t.Errorf("got %v", e)
		}
		// Without app_status, the age alone tells.
		_, err = p.IssueCredential(ctx, authplugin.Request{Account: w.userAccount(nil), State: st})
		if e := reason(t, err); !strings.Contains(e.Message, "7 days") {
			t.Errorf("without app_status: %v", e)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		w := newWorld(t)
		p := New()
		a := w.userAccount(nil)
		st := signedIn(t, w, p, a)
		w.g.RevokeRefreshTokens(user)
		_, err := p.IssueCredential(ctx, authplugin.Request{Account: a, State: st})
		e := reason(t, err)
		if e.Reason != authplugin.ReasonAuthorizationRequired || strings.Contains(e.Message, "Testing") || !strings.Contains(e.Action, "password") {
			t.Errorf("got %v", e)
		}
	})
	t.Run("admin policy", func(t *testing.T) {
		w := newWorld(t)
		p := New()
		a := w.userAccount(nil)
		st := signedIn(t, w, p, a)
		w.g.AddClient(idp.GoogleClient{ID: clientID, Secret: secret, Blocked: true})
		_, err := p.IssueCredential(ctx, authplugin.Request{Account: a, State: st})
		e := reason(t, err)
		if e.Code != "admin_policy_enforced" || e.Reason != authplugin.ReasonConsentRequired || !strings.Contains(e.Action, "Manage Third-Party App Access") || !strings.Contains(e.Action, clientID) {
			t.Errorf("got %v", e)
		}
	})
	t.Run("unknown client", func(t *testing.T) {
		w := newWorld(t)
		p := New()
		a := w.userAccount(nil)
		st := signedIn(t, w, p, a)
		a.Config["client_id"] = "999-nope.apps.googleusercontent.com"
		_, err := p.IssueCredential(ctx, authplugin.Request{Account: a, State: st})
		if e := reason(t, err); e.Code != "invalid_client" || e.Reason != authplugin.ReasonConfigInvalid {
			t.Errorf("got %v", e)
		}
	})
}

// TestEveryErrorExplained: each error Google answers with gets a reason, plain words and an
// action, for each kind of request.
func TestEveryErrorExplained(t *testing.T) {
	s := &settings{username: user, clientID: clientID, key: serviceAccountKey{ClientEmail: saEmail, ClientID: "1017"}}
	for _, class := range []string{"invalid_grant", "unauthorized_client", "admin_policy_enforced", "org_internal", "access_denied", "invalid_client",
		"policy_enforced", "invalid_scope", "redirect_uri_mismatch", "rate_limit_exceeded", "deleted_client", "something_new"} {
		for _, g := range []grant{grantJWT, grantRefresh, grantCode, grantRedirect} {
			e := explain(googleError{Error: class, ErrorDescription: "Bad Request"}, errCtx{s: s, grant: g, now: time.Now()})
			if e.Reason == authplugin.ReasonUnknown || e.Message == "" || e.Action == "" || e.Code != class || !strings.Contains(e.Message, "Bad Request") {
				t.Errorf("%s (grant %d): %+v", class, g, e)
			}
		}
	}
	e := explain(googleError{Error: "invalid_grant", ErrorDescription: "reauth related error (invalid_rapt)", ErrorSubtype: "invalid_rapt"}, errCtx{s: s, grant: grantRefresh})
	if e.Reason != authplugin.ReasonAuthorizationRequired || !strings.Contains(e.Message, "sign in again") {
		t.Errorf("invalid_rapt: %v", e)
	}
	e = explain(googleError{Error: "invalid_grant", ErrorDescription: "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."}, errCtx{s: s, grant: grantJWT})
	if e.Reason != authplugin.ReasonConfigInvalid || !strings.Contains(e.Message, "clock") {
		t.Errorf("clock: %v", e)
	}
	e = explain(googleError{Error: "org_internal"}, errCtx{s: s, grant: grantRedirect})
	if e.Reason != authplugin.ReasonConsentRequired || !strings.Contains(e.Action, "External") {
		t.Errorf("org_internal: %v", e)
	}
	if e := errorFromBody(503, []byte("<html>"), errCtx{s: s}); e.Reason != authplugin.ReasonTemporary {
		t.Errorf("503: %v", e)
	}
	if e := errorFromBody(404, []byte("<html>"), errCtx{s: s}); e.Reason != authplugin.ReasonConfigInvalid || !strings.Contains(e.Action, "endpoint") {
		t.Errorf("404: %v", e)
	}
}

func TestParseAuthResponse(t *testing.T) {
	for _, in := range []string{"http://127.0.0.1:5000/?state=abc&code=4%2F0Axyz&scope=x", "  ?state=abc&code=4/0Axyz  ", "state=abc&code=4/0Axyz#"} {
		r, err := parseAuthResponse(in)
		if err != nil || r.State != "abc" || r.Code != "4/0Axyz" {
			t.Errorf("%q: %+v %v", in, r, err)
		}
	}
	if r, err := parseAuthResponse("http://127.0.0.1:5000/?state=abc&error=access_denied"); err != nil || r.Error != "access_denied" {
		t.Errorf("error address: %+v %v", r, err)
	}
	for _, in := range []string{"4/0Axyz", "http://127.0.0.1:5000/?state=abc", "http://127.0.0.1:5000/?code=x"} {
		if _, err := parseAuthResponse(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
