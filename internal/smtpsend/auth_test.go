package smtpsend

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mailintake/mailintake/internal/fakes/idp"
	"github.com/mailintake/mailintake/internal/fakes/smtptest"
)

func TestEveryMechanismLogsIn(t *testing.T) {
	validate := func(token, user string) bool { return token == "tok-"+user }
	for _, mech := range []string{MechPlain, MechLogin, MechXOAuth2, MechOAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			srv, target := startServer(t, StartTLS, smtptest.Options{ValidateToken: validate})
			cred := Credential{Mechanism: mech, Identity: "agent@example.com", Secret: "pw"}
			if tokenMechanism(mech) {
				cred.Secret = "tok-agent@example.com"
			}
			o := testMessage(t)
			if _, err := Send(t.Context(), target, &cred, o.Envelope("out-1"), o.Bytes); err != nil {
				t.Fatal(err)
			}
			a := srv.Auths()
			if len(a) != 1 || a[0].Mechanism != mech || !a[0].OK || a[0].User != "agent@example.com" {
				t.Errorf("server saw %+v", a)
			}
		})
	}
}

func TestPasswordMechanismsStandInForEachOther(t *testing.T) {
	// Exchange Online offers LOGIN and XOAUTH2, no PLAIN.
	srv, target := startServer(t, StartTLS, smtptest.Options{Mechanisms: []string{"LOGIN", "XOAUTH2"}})
	o := testMessage(t)
	if _, err := Send(t.Context(), target, password, o.Envelope("out-1"), o.Bytes); err != nil {
		t.Fatal(err)
	}
	if a := srv.Auths(); len(a) != 1 || a[0].Mechanism != "LOGIN" || a[0].InitialResponse {
		t.Errorf("server saw %+v", a)
	}
}

func TestMechanismNotOffered(t *testing.T) {
	_, target := startServer(t, StartTLS, smtptest.Options{Mechanisms: []string{"PLAIN"}})
	e := sendErr(t, target, &Credential{Mechanism: MechXOAuth2, Identity: "agent@example.com", Secret: "t"}, testMessage(t))
	if e.Kind != Permanent || e.Step != StepAuth || !strings.Contains(e.Explanation, "it offers: PLAIN") {
		t.Errorf("got %v", e)
	}
}

// A Microsoft 365 token is over 2,000 bytes: its XOAUTH2 response must follow the 334, because
// Dovecot's submission service refuses an AUTH line over about 1 KiB (and RFC 4954 limits the
// line to 512 octets).
func TestLongXOAuth2TokenFollowsTheChallenge(t *testing.T) {
	token := "eyJ0eXAiOiJKV1QiLCJub25jZSI6" + strings.Repeat("x", 2600)
	srv, target := startServer(t, StartTLS, smtptest.Options{MaxAuthLine: 1024,
		ValidateToken: func(tok, user string) bool { return tok == token && user == "agent@example.com" }})
	o := testMessage(t)
	cred := &Credential{Mechanism: MechXOAuth2, Identity: "agent@example.com", Secret: token}
	if _, err := Send(t.Context(), target, cred, o.Envelope("out-1"), o.Bytes); err != nil {
		t.Fatal(err)
	}
	a := srv.Auths()
	ir := "user=agent@example.com\x01auth=Bearer " + token + "\x01\x01"
	if len(a) != 1 || a[0].InitialResponse || a[0].ResponseLength != len(ir) || !a[0].OK {
		t.Fatalf("server saw %+v", a)
	}
	tr := srv.Transcript()
	wantContains(t, "transcript", tr, "AUTH XOAUTH2\r\n334 \r\n"+base64.StdEncoding.EncodeToString([]byte(ir))+"\r\n235 ")

	// A short token still goes on the AUTH line, within 512 octets.
	srv, target = startServer(t, StartTLS, smtptest.Options{MaxAuthLine: 1024, ValidateToken: func(tok, _ string) bool { return tok == "short" }})
	cred.Secret = "short"
	if _, err := Send(t.Context(), target, cred, o.Envelope("out-1"), o.Bytes); err != nil {
		t.Fatal(err)
	}
	if a := srv.Auths(); len(a) != 1 || !a[0].InitialResponse || a[0].LineLength > 512 {
		t.Errorf("server saw %+v", a)
	}
}

func TestRejectedTokenIsAnAuthError(t *testing.T) {
	for _, fresh := range []bool{false, true} {
		_, target := startServer(t, StartTLS, smtptest.Options{ValidateToken: func(string, string) bool { return false }})
		e := sendErr(t, target, &Credential{Mechanism: MechXOAuth2, Identity: "agent@example.com", Secret: "expired", Fresh: fresh}, testMessage(t))
		var ae *AuthError
		if e.Kind != Permanent || e.Step != StepAuth || !errors.As(e, &ae) {
			t.Fatalf("got %v", e)
		}
		if !ae.TokenRejected || ae.Code != 535 || ae.Fresh != fresh || ae.RetryWithFreshToken() == fresh {
			t.Errorf("fresh=%v: %+v, retry with a fresh token: %v", fresh, ae, ae.RetryWithFreshToken())
		}
		word := map[bool]string{false: "from the cache", true: "issued just now"}[fresh]
		wantContains(t, "explanation", e.Explanation, word)
	}
}

func TestOAuthBearerRejected(t *testing.T) {
	_, target := startServer(t, StartTLS, smtptest.Options{ValidateToken: func(string, string) bool { return false }})
	e := sendErr(t, target, &Credential{Mechanism: MechOAuthBearer, Identity: "agent@example.com", Secret: "bad"}, testMessage(t))
	var ae *AuthError
	if !errors.As(e, &ae) || !ae.TokenRejected || e.Kind != Permanent {
		t.Errorf("got %v", e)
	}
}

// The server checks XOAUTH2 tokens against the fake identity platform, as the interop suite's
// Dovecot does through introspection.
func TestTokensFromTheFakeIdentityPlatform(t *testing.T) {
	p := idp.New("11111111-2222-3333-4444-555555555555", "example.com")
	p.AddUser(idp.User{UPN: "agent@example.com", Password: "pw"})
	p.AddApp(idp.App{ClientID: "app", PublicFlows: true})
	web := httptest.NewServer(p)
	defer web.Close()
	resp, err := http.PostForm(web.URL+"/organizations/oauth2/v2.0/token", url.Values{"grant_type": {"password"}, "client_id": {"app"},
		"username": {"agent@example.com"}, "password": {"pw"}, "scope": {"https://outlook.office.com/SMTP.Send offline_access"}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if tok.AccessToken == "" {
		t.Fatal("no token")
	}
	srv, target := startServer(t, StartTLS, smtptest.Options{ValidateToken: p.Valid})
	o := testMessage(t)
	if _, err := Send(t.Context(), target, &Credential{Mechanism: MechXOAuth2, Identity: "agent@example.com", Secret: tok.AccessToken}, o.Envelope("out-1"), o.Bytes); err != nil {
		t.Fatal(err)
	}
	// The same token for another account is refused.
	e := sendErr(t, target, &Credential{Mechanism: MechXOAuth2, Identity: "shared@example.com", Secret: tok.AccessToken}, o)
	if e.Step != StepAuth || len(srv.Accepted()) != 1 {
		t.Errorf("got %v", e)
	}
}

func TestAuthRefusalsExplained(t *testing.T) {
	for _, c := range []struct {
		code       int
		enh, text  string
		kind       Kind
		retryFresh bool
		says       string
	}{
		{535, "5.7.139", "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", Permanent, false, "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false"},
		{535, "5.7.3", "Authentication unsuccessful", Permanent, true, "shared mailbox used as the login"},
		{550, "5.7.30", "Basic authentication is not supported for Client Submission.", Permanent, false, "switch the mailbox to OAuth"},
		{454, "4.7.0", "Temporary authentication failure", Temporary, false, "temporary failure of the login"},
		{421, "4.3.2", "Service not available, closing transmission channel", Temporary, false, "at the same time"},
	} {
		srv, target := startServer(t, StartTLS, smtptest.Options{ValidateToken: func(string, string) bool { return true }})
		srv.Inject(smtptest.Fault{Step: smtptest.StepAuth, Code: c.code, Enhanced: c.enh, Text: c.text})
		e := sendErr(t, target, &Credential{Mechanism: MechXOAuth2, Identity: "agent@example.com", Secret: "t"}, testMessage(t))
		var ae *AuthError
		if !errors.As(e, &ae) || e.Kind != c.kind || e.Step != StepAuth || e.Code != c.code || e.Enhanced != c.enh || e.Text != c.text {
			t.Errorf("%d %s: got %v (%#v)", c.code, c.enh, e, ae)
			continue
		}
		if ae.RetryWithFreshToken() != c.retryFresh {
			t.Errorf("%d %s: retry with a fresh token %v", c.code, c.enh, !c.retryFresh)
		}
		wantContains(t, c.enh+" explanation", e.Explanation, c.says)
	}
}

func TestNoAuthOffered(t *testing.T) {
	// A server offers AUTH on an unencrypted connection only when it must (go-smtp's does not
	// by default): the credential is not sent, and the error says why.
	srv, target := startServer(t, StartTLS, smtptest.Options{})
	target.Security = Plaintext
	e := sendErr(t, target, password, testMessage(t))
	if e.Kind != Permanent || e.Step != StepAuth || !strings.Contains(e.Explanation, "use security starttls") {
		t.Errorf("got %v", e)
	}
	if strings.Contains(srv.Transcript(), "\nAUTH ") {
		t.Error("AUTH sent")
	}
}
