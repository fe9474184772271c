package pop3

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mailintake/mailintake/internal/fakes/idp"
	"github.com/mailintake/mailintake/internal/fakes/pop3test"
)

var ctx = context.Background()

// How a password goes: SASL PLAIN where offered, the other of PLAIN/LOGIN where only that is
// offered, USER/PASS where no SASL is.
func TestPasswordMethods(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mechs []string
		cred  string
		want  string
	}{
		{"plain offered", nil, MechPlain, "PLAIN"},
		{"login credential, login offered", []string{"LOGIN"}, MechLogin, "LOGIN"},
		{"plain credential, only login offered", []string{"LOGIN"}, MechPlain, "LOGIN"},
		{"no SASL", []string{}, MechPlain, "USER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, target := serve(t, TLS, pop3test.Options{Mechanisms: tc.mechs})
			var steps []Step
			c, err := Dial(ctx, target, func(s Step) { steps = append(steps, s) })
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Authenticate(ctx, Credential{Mechanism: tc.cred, Identity: alice, Secret: password}); err != nil {
				t.Fatal(err)
			}
			a := srv.AuthAttempts()
			if len(a) != 1 || a[0].Mechanism != tc.want || !a[0].OK || !a[0].TLS {
				t.Fatalf("auth attempts %+v, want one %s", a, tc.want)
			}
			last := steps[len(steps)-1]
			if last.Kind != StepAuth || last.Err != nil || !strings.Contains(last.Detail, alice) {
				t.Errorf("auth step %+v", last)
			}
		})
	}
}

// A refused password is an AuthError with advice; the connection stays usable and a second
// try with the right password succeeds.
func TestWrongPassword(t *testing.T) {
	for _, mechs := range [][]string{nil, {}} { // SASL PLAIN, then USER/PASS
		srv, target := serve(t, TLS, pop3test.Options{Mechanisms: mechs})
		c := dial(t, target)
		err := c.Authenticate(ctx, Credential{Mechanism: MechPlain, Identity: alice, Secret: "wrong"})
		ae, ok := IsAuthError(err)
		if !ok || ae.Code != CodeAuth || ae.TokenLogin() || !strings.Contains(ae.Explanation(), "username and password") {
			t.Fatalf("Authenticate = %v, want an AuthError [AUTH]", err)
		}
		if !c.Usable() {
			t.Fatal("connection unusable after a refused login")
		}
		if err := c.Authenticate(ctx, Credential{Mechanism: MechPlain, Identity: alice, Secret: password}); err != nil {
			t.Fatal(err)
		}
		if srv.FailedLogins.Load() != 1 || srv.Logins.Load() != 1 {
			t.Errorf("failed %d, ok %d", srv.FailedLogins.Load(), srv.Logins.Load())
		}
	}
}

// Credentials never go over plaintext without InsecureAuth; nothing is sent.
func TestPlaintextLoginRefused(t *testing.T) {
	srv, target := serve(t, Plaintext, pop3test.Options{})
	target.InsecureAuth = false
	c := dial(t, target)
	err := c.Authenticate(ctx, Credential{Mechanism: MechPlain, Identity: alice, Secret: password})
	if !errors.Is(err, ErrInsecureAuth) {
		t.Fatalf("Authenticate = %v, want ErrInsecureAuth", err)
	}
	if srv.Commands("USER")+srv.Commands("AUTH") != 0 {
		t.Error("credentials were sent")
	}
}

// tokens is a token check for the fake server.
type tokens map[string]string

func (tk tokens) valid(token, user string) bool { return tk[token] == user }

// XOAUTH2 always goes in two steps: a Microsoft-sized token (2.5 KB) does not fit POP3's
// 255-octet command line, which the fake enforces as Exchange does.
func TestXOAuth2TwoSteps(t *testing.T) {
	long := strings.Repeat("t", 2500)
	for _, token := range []string{"short-token", long} {
		srv, target := serve(t, TLS, pop3test.Options{ValidateToken: tokens{token: alice}.valid, Exchange: true})
		c := dial(t, target)
		if err := c.Authenticate(ctx, Credential{Mechanism: MechXOAuth2, Identity: alice, Secret: token}); err != nil {
			t.Fatalf("token of %d bytes: %v", len(token), err)
		}
		a := srv.AuthAttempts()
		if len(a) != 1 || a[0].InitialResponse || a[0].LineLength != len("AUTH XOAUTH2") || srv.TokenLogins.Load() != 1 {
			t.Fatalf("auth attempts %+v, want AUTH XOAUTH2 alone on its line", a)
		}
	}
}

// A token refused with a JSON error challenge (Dovecot, Gmail) is answered and reported as a
// rejected token; the connection stays usable.
func TestXOAuth2Rejected(t *testing.T) {
	_, target := serve(t, TLS, pop3test.Options{ValidateToken: tokens{}.valid})
	c := dial(t, target)
	err := c.Authenticate(ctx, Credential{Mechanism: MechXOAuth2, Identity: alice, Secret: "expired"})
	ae, ok := IsAuthError(err)
	if !ok || !ae.TokenRejected || !strings.Contains(ae.Rejection, "401") || !ae.RetryWithFreshToken() {
		t.Fatalf("Authenticate = %v, want a rejected token", err)
	}
	if !c.Usable() {
		t.Fatal("connection unusable after a refused token")
	}
	if _, err := c.Quit(ctx); err != nil {
		t.Fatalf("QUIT after a refused token: %v", err)
	}
}

// Exchange answers every failed login with the same -ERR: the error says so and lists what
// to check (POP enabled, the POP scope, the username).
func TestExchangeRefusalExplained(t *testing.T) {
	_, target := serve(t, TLS, pop3test.Options{ValidateToken: tokens{}.valid, Exchange: true})
	c := dial(t, target)
	err := c.Authenticate(ctx, Credential{Mechanism: MechXOAuth2, Identity: alice, Secret: "whatever", Fresh: true})
	ae, ok := IsAuthError(err)
	if !ok || !ae.Exchange() || ae.TokenRejected || ae.RetryWithFreshToken() {
		t.Fatalf("Authenticate = %v, want Exchange's refusal", err)
	}
	for _, want := range []string{"same -ERR", "PopEnabled", "https://outlook.office.com/POP.AccessAsUser.All", "username", "issued just now"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	err = c.Authenticate(ctx, Credential{Mechanism: MechPlain, Identity: alice, Secret: "wrong"})
	if ae, ok := IsAuthError(err); !ok || !strings.Contains(ae.Explanation(), "no longer accepts passwords") {
		t.Errorf("password refusal at Exchange = %v", err)
	}
}

// OAUTHBEARER: accepted, and refused with the RFC 7628 error challenge answered by 0x01.
func TestOAuthBearer(t *testing.T) {
	_, target := serve(t, TLS, pop3test.Options{ValidateToken: tokens{"good": alice}.valid})
	c := dial(t, target)
	err := c.Authenticate(ctx, Credential{Mechanism: MechOAuthBearer, Identity: alice, Secret: "bad"})
	if ae, ok := IsAuthError(err); !ok || !ae.TokenRejected || !strings.Contains(ae.Rejection, "invalid_token") {
		t.Fatalf("Authenticate = %v, want a rejected token", err)
	}
	if err := c.Authenticate(ctx, Credential{Mechanism: MechOAuthBearer, Identity: alice, Secret: "good"}); err != nil {
		t.Fatal(err)
	}
}

// A token mechanism the server does not offer is refused before anything is sent.
func TestMechanismNotOffered(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	c := dial(t, target)
	err := c.Authenticate(ctx, Credential{Mechanism: MechXOAuth2, Identity: alice, Secret: "t"})
	if !errors.Is(err, ErrMechanismNotOffered) || !strings.Contains(err.Error(), "PLAIN LOGIN") {
		t.Fatalf("Authenticate = %v", err)
	}
	if srv.Commands("AUTH") != 0 {
		t.Error("AUTH was sent")
	}
	err = c.Authenticate(ctx, Credential{Mechanism: "CRAM-MD5", Identity: alice, Secret: "t"})
	if !errors.Is(err, ErrMechanismNotOffered) {
		t.Fatalf("Authenticate CRAM-MD5 = %v", err)
	}
}

// A second session on a locked maildrop gets -ERR [IN-USE]: a temporary ServerError, not a
// refused login. Once the first ends, the second gets in.
func TestMaildropInUse(t *testing.T) {
	_, target := serve(t, TLS, pop3test.Options{})
	first := login(t, target)
	second := dial(t, target)
	err := second.Authenticate(ctx, Credential{Mechanism: MechPlain, Identity: alice, Secret: password})
	se, ok := IsServerError(err)
	if _, isAuth := IsAuthError(err); !ok || isAuth || se.Code != CodeInUse || !se.Temporary() || !strings.Contains(err.Error(), "lock") {
		t.Fatalf("second login = %v, want -ERR [IN-USE]", err)
	}
	if _, err := first.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := second.Authenticate(ctx, Credential{Mechanism: MechPlain, Identity: alice, Secret: password}); err != nil {
		t.Fatal(err)
	}
}

// [LOGIN-DELAY] and [SYS/TEMP] at PASS are the server's, not the credential's.
func TestLoginRefusedByServerCodes(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{Mechanisms: []string{}})
	for _, code := range []string{CodeLoginDelay, CodeSysTemp, CodeSysPerm} {
		srv.Inject(pop3test.Fault{Command: "PASS", Action: pop3test.Refuse, Reply: "-ERR [" + code + "] not now", Times: 1})
		c := dial(t, target)
		err := c.Authenticate(ctx, Credential{Mechanism: MechPlain, Identity: alice, Secret: password})
		se, ok := IsServerError(err)
		if !ok || se.Code != code || se.Temporary() != (code != CodeSysPerm) {
			t.Errorf("%s: Authenticate = %v", code, err)
		}
	}
}

// The fake identity platform plugs into the fake server: a token issued for the POP scope
// logs in with XOAUTH2.
func TestIdentityPlatformToken(t *testing.T) {
	p := idp.New("11111111-2222-3333-4444-555555555555", "example.com")
	p.AddUser(idp.User{UPN: alice, Password: password})
	p.AddApp(idp.App{ClientID: "app", PublicFlows: true})
	form := url.Values{"grant_type": {"password"}, "client_id": {"app"}, "username": {alice}, "password": {password},
		"scope": {"https://outlook.office.com/POP.AccessAsUser.All offline_access"}}
	req := httptest.NewRequest(http.MethodPost, "/example.com/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token response %d %s", rec.Code, rec.Body)
	}
	_, target := serve(t, TLS, pop3test.Options{ValidateToken: p.Valid, Exchange: true})
	c := dial(t, target)
	if err := c.Authenticate(ctx, Credential{Mechanism: MechXOAuth2, Identity: alice, Secret: tok.AccessToken}); err != nil {
		t.Fatal(err)
	}
}

// Line breaks in a credential never reach the wire.
func TestCredentialInjection(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{Mechanisms: []string{}})
	c := dial(t, target)
	err := c.Authenticate(ctx, Credential{Mechanism: MechPlain, Identity: alice, Secret: "x\r\nDELE 1"})
	if err == nil || srv.Commands("USER") != 0 {
		t.Fatalf("Authenticate = %v, USER sent %d times", err, srv.Commands("USER"))
	}
}
