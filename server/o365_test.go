package server

import (
	"fmt"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mailintake/mailintake/internal/fakes/idp"
	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

const (
	tenantID      = "11111111-2222-3333-4444-555555555555"
	publicApp     = "aaaaaaaa-0000-0000-0000-000000000001"
	confidential  = "aaaaaaaa-0000-0000-0000-000000000002"
	noFlowsApp    = "aaaaaaaa-0000-0000-0000-000000000003"
	noConsentApp  = "aaaaaaaa-0000-0000-0000-000000000004"
	appSecret     = "app-secret-value~1"
	o365User      = "help@contoso.onmicrosoft.com"
	o365Password  = "M365-pa55word"
	otherO365User = "someone.else@contoso.onmicrosoft.com"
)

// o365World is a fake Microsoft identity platform and an IMAP server that accepts its tokens.
type o365World struct {
	idp       *idp.IdP
	authority string
	imap      *imaptest.Server
}

func newO365World(t *testing.T) *o365World {
	p := idp.New(tenantID, "contoso.onmicrosoft.com")
	p.AddUser(idp.User{UPN: o365User, Password: o365Password})
	p.AddUser(idp.User{UPN: otherO365User, Password: "x"})
	for code, upn := range map[int]string{50076: "mfa", 50053: "locked", 50057: "disabled", 50055: "expired"} {
		p.AddUser(idp.User{UPN: upn + "@contoso.onmicrosoft.com", Password: "pw", Error: code})
	}
	p.AddApp(idp.App{ClientID: publicApp, PublicFlows: true})
	p.AddApp(idp.App{ClientID: confidential, Secret: appSecret, AppOnlyUsers: []string{o365User}})
	p.AddApp(idp.App{ClientID: noFlowsApp, Secret: "s"})
	p.AddApp(idp.App{ClientID: noConsentApp, PublicFlows: true, NoConsent: true})
	hs := httptest.NewServer(p)
	t.Cleanup(hs.Close)
	srv := imaptest.Start(t, imaptest.Options{ValidateToken: p.Valid})
	srv.AddUser(t, o365User, "not-used-with-oauth")
	return &o365World{idp: p, authority: hs.URL, imap: srv}
}

func (w *o365World) mailbox(flow, clientID string, secrets map[string]string) *mailintakev1.Mailbox {
	return &mailintakev1.Mailbox{
		Tenant: "acme", DisplayName: "M365", Enabled: true, Host: w.imap.Host, Port: uint32(w.imap.Port),
		Security: mailintakev1.Security_SECURITY_NONE, Username: o365User, AuthProvider: "o365",
		AuthConfig:  map[string]string{"client_id": clientID, "tenant_id": tenantID, "flow": flow, "authority": w.authority},
		AuthSecrets: secrets, StartFrom: mailintakev1.StartFrom_START_FROM_ALL,
	}
}

func (e *env) stream(t *testing.T, token string) func() *mailintakev1.Message {
	s, err := e.msgs.StreamMessages(as(token), &mailintakev1.StreamMessagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *mailintakev1.Message, 100)
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				close(ch)
				return
			}
			ch <- r.GetMessage()
		}
	}()
	return func() *mailintakev1.Message {
		select {
		case m := <-ch:
			if m != nil {
				e.msgs.AckMessages(as(token), &mailintakev1.AckMessagesRequest{MessageIds: []string{m.GetId()}})
			}
			return m
		case <-time.After(15 * time.Second):
			t.Fatal("no message within 15 s")
			return nil
		}
	}
}

func note(i int, subject string) []byte {
	return []byte(fmt.Sprintf("From: c%d@example.net\r\nSubject: %s\r\n\r\nbody\r\n", i, subject))
}

func TestO365ROPCRefreshAndFallback(t *testing.T) {
	e := newEnv(t)
	w := newO365World(t)
	w.idp.SetAccessTTL(3 * time.Second)
	w.imap.Append(t, o365User, "INBOX", note(1, "first"))
	mb := e.create(e.admin, w.mailbox("ropc", publicApp, map[string]string{"password": o365Password}))
	next := e.stream(t, e.admin)
	if m := next(); m.GetEnvelope().GetSubject() != "first" {
		t.Fatalf("got %q", m.GetEnvelope().GetSubject())
	}
	if n := w.idp.Count("password"); n != 1 {
		t.Errorf("password grants = %d, want 1", n)
	}
	// The access token expires (3 s): mail keeps flowing on refreshed tokens, without the password.
	time.Sleep(4 * time.Second)
	w.imap.Append(t, o365User, "INBOX", note(2, "after expiry"))
	if m := next(); m.GetEnvelope().GetSubject() != "after expiry" {
		t.Fatalf("got %q", m.GetEnvelope().GetSubject())
	}
	if n := w.idp.Count("password"); n != 1 {
		t.Errorf("password grants after expiry = %d, want still 1", n)
	}
	if n := w.idp.Count("refresh_token"); n < 1 {
		t.Errorf("refresh grants = %d, want at least 1", n)
	}
	st, _ := e.mailbox.GetMailboxStatus(as(e.admin), &mailintakev1.GetMailboxStatusRequest{Id: mb.GetId()})
	if th := st.GetStatus().GetTokenHealth(); th.GetAccessTokenExpireTime() == nil || th.GetStateRotateTime() == nil || th.GetLastRefreshTime() == nil {
		t.Errorf("token health in the status: %v", st.GetStatus())
	}
	// A revoked refresh token: the stored password gets a new one, once.
	w.idp.RevokeRefreshTokens(o365User)
	time.Sleep(4 * time.Second)
	w.imap.Append(t, o365User, "INBOX", note(3, "after revocation"))
	if m := next(); m.GetEnvelope().GetSubject() != "after revocation" {
		t.Fatalf("got %q", m.GetEnvelope().GetSubject())
	}
	if n := w.idp.Count("password"); n != 2 {
		t.Errorf("password grants after revocation = %d, want 2", n)
	}
	// No access token, refresh token or password appears in the logs (every level), in any
	// response, or in plain text in the data directory.
	secrets := append(w.idp.Issued(), o365Password)
	if len(secrets) < 4 {
		t.Fatalf("only %d tokens issued", len(secrets))
	}
	logs := e.logs.String()
	e.mu.Lock()
	var responses strings.Builder
	for _, m := range e.seen {
		b, _ := protojson.Marshal(m)
		responses.Write(b)
	}
	e.mu.Unlock()
	files := dirContents(t, e.dir)
	for _, sec := range secrets {
		for where, text := range map[string]string{"logs": logs, "responses": responses.String(), "data directory": files} {
			if strings.Contains(text, sec) {
				t.Errorf("a secret (%.12s…) appears in the %s", sec, where)
			}
		}
	}
}

// dirContents concatenates every file under dir.
func dirContents(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(path)
			b.Write(data)
		}
		return nil
	})
	return b.String()
}

func TestO365ClientCredentials(t *testing.T) {
	e := newEnv(t)
	w := newO365World(t)
	w.imap.Append(t, o365User, "INBOX", note(1, "app-only"))
	cc := w.mailbox("client_credentials", confidential, map[string]string{"client_secret": appSecret})
	cc.AuthConfig["client_secret_expires"] = time.Now().Add(10 * 24 * time.Hour).Format("2006-01-02")
	mb := e.create(e.admin, cc)
	next := e.stream(t, e.admin)
	if m := next(); m.GetEnvelope().GetSubject() != "app-only" {
		t.Fatalf("got %q", m.GetEnvelope().GetSubject())
	}
	// The status warns well before the client secret lapses.
	st, _ := e.mailbox.GetMailboxStatus(as(e.admin), &mailintakev1.GetMailboxStatusRequest{Id: mb.GetId()})
	if w := st.GetStatus().GetTokenHealth().GetWarnings(); len(w) != 1 || !strings.Contains(w[0], "client secret expires") {
		t.Errorf("token health warnings = %v", w)
	}
	if w.idp.Count("client_credentials") < 1 || w.idp.Count("password") != 0 {
		t.Errorf("grants: cc %d password %d", w.idp.Count("client_credentials"), w.idp.Count("password"))
	}
}

func TestO365DeviceCode(t *testing.T) {
	e := newEnv(t)
	w := newO365World(t)
	w.imap.Append(t, o365User, "INBOX", note(1, "after sign-in"))
	mb := e.create(e.admin, w.mailbox("device_code", publicApp, nil))
	status := func() *mailintakev1.MailboxStatus {
		st, err := e.mailbox.GetMailboxStatus(as(e.admin), &mailintakev1.GetMailboxStatusRequest{Id: mb.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		return st.GetStatus()
	}
	eventually(t, "awaiting authorization", func() bool {
		return status().GetState() == mailintakev1.MailboxState_MAILBOX_STATE_AWAITING_AUTHORIZATION
	})
	if !strings.Contains(status().GetAuthFailure().GetAction(), "authorize") {
		t.Errorf("status does not say how to sign in: %v", status())
	}
	begin, err := e.provs.BeginAuthorization(as(e.admin), &mailintakev1.BeginAuthorizationRequest{MailboxId: mb.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	a := begin.GetAuthorization()
	if a.GetUserCode() == "" || a.GetVerificationUri() != "https://microsoft.com/devicelogin" || a.GetState() != mailintakev1.AuthorizationState_AUTHORIZATION_STATE_PENDING {
		t.Fatalf("authorization = %v", a)
	}
	// slow_down: the interval grows by 5 s (RFC 8628 3.5).
	w.idp.SlowDown(a.GetUserCode(), 1)
	eventually(t, "slow_down honoured", func() bool {
		g, _ := e.provs.GetAuthorization(as(e.admin), &mailintakev1.GetAuthorizationRequest{MailboxId: mb.GetId()})
		return g.GetAuthorization().GetInterval().AsDuration() >= 6*time.Second
	})
	if err := w.idp.Approve(a.GetUserCode(), o365User); err != nil {
		t.Fatal(err)
	}
	eventually(t, "completed", func() bool {
		g, _ := e.provs.GetAuthorization(as(e.admin), &mailintakev1.GetAuthorizationRequest{MailboxId: mb.GetId()})
		return g.GetAuthorization().GetState() == mailintakev1.AuthorizationState_AUTHORIZATION_STATE_COMPLETED
	})
	next := e.stream(t, e.admin)
	if m := next(); m.GetEnvelope().GetSubject() != "after sign-in" {
		t.Fatalf("got %q", m.GetEnvelope().GetSubject())
	}
	if w.idp.Count("device_code") < 2 {
		t.Errorf("device polls = %d, want pending and slow_down seen", w.idp.Count("device_code"))
	}

	// Signing in as the wrong account is refused.
	mb2 := e.create(e.admin, w.mailbox("device_code", publicApp, nil))
	b2, err := e.provs.BeginAuthorization(as(e.admin), &mailintakev1.BeginAuthorizationRequest{MailboxId: mb2.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	w.idp.Approve(b2.GetAuthorization().GetUserCode(), otherO365User)
	eventually(t, "wrong account refused", func() bool {
		g, _ := e.provs.GetAuthorization(as(e.admin), &mailintakev1.GetAuthorizationRequest{MailboxId: mb2.GetId()})
		return g.GetAuthorization().GetState() == mailintakev1.AuthorizationState_AUTHORIZATION_STATE_FAILED &&
			strings.Contains(g.GetAuthorization().GetFailure().GetMessage(), "signed in as "+otherO365User)
	})
	// A basic mailbox has no interactive sign-in.
	basic := e.create(e.admin, validMailbox("acme"))
	_, err = e.provs.BeginAuthorization(as(e.admin), &mailintakev1.BeginAuthorizationRequest{MailboxId: basic.GetId()})
	wantCode(t, "BeginAuthorization of a basic mailbox", err, codes.FailedPrecondition)
}

func TestO365ErrorsReachTheAdmin(t *testing.T) {
	e := newEnv(t)
	w := newO365World(t)
	cases := []struct {
		name, user, password, clientID, tenant string
		reason                                 mailintakev1.AuthFailureReason
		code, action                           string
	}{
		{"wrong password", o365User, "wrong", publicApp, tenantID, mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_INVALID_CREDENTIALS, "AADSTS50126", "password"},
		{"MFA", "mfa@contoso.onmicrosoft.com", "pw", publicApp, tenantID, mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_MFA_REQUIRED, "AADSTS50076", "device_code"},
		{"locked", "locked@contoso.onmicrosoft.com", "pw", publicApp, tenantID, mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_ACCOUNT_LOCKED, "AADSTS50053", "unlock"},
		{"disabled", "disabled@contoso.onmicrosoft.com", "pw", publicApp, tenantID, mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_ACCOUNT_DISABLED, "AADSTS50057", "Enable"},
		{"password expired", "expired@contoso.onmicrosoft.com", "pw", publicApp, tenantID, mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_PASSWORD_EXPIRED, "AADSTS50055", "Reset"},
		{"unknown app", o365User, o365Password, "aaaaaaaa-0000-0000-0000-00000000ffff", tenantID, mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_CONFIG_INVALID, "AADSTS700016", "client) ID"},
		{"unknown tenant", o365User, o365Password, publicApp, "fabrikam.onmicrosoft.com", mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_CONFIG_INVALID, "AADSTS90002", "tenant"},
		{"public flows off", o365User, o365Password, noFlowsApp, tenantID, mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_CONFIG_INVALID, "AADSTS7000218", "Allow public client flows"},
		{"no consent", o365User, o365Password, noConsentApp, tenantID, mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_CONSENT_REQUIRED, "AADSTS65001", "admin consent"},
	}
	for _, c := range cases {
		mb := w.mailbox("ropc", c.clientID, map[string]string{"password": c.password})
		mb.Username = c.user
		mb.AuthConfig["tenant_id"] = c.tenant
		resp, err := e.mailbox.TestConnection(as(e.admin), &mailintakev1.TestConnectionRequest{Target: &mailintakev1.TestConnectionRequest_Mailbox{Mailbox: mb}})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		af := stepResults(resp)[mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH].GetAuthFailure()
		if af.GetReason() != c.reason || af.GetProviderCode() != c.code || !strings.Contains(af.GetAction(), c.action) || af.GetSupportIds()["trace_id"] == "" {
			t.Errorf("%s: auth failure = %v; want %v %s, an action with %q and a trace id", c.name, af, c.reason, c.code, c.action)
		}
	}
	// A saved mailbox with a wrong password: the status says why, and Microsoft is not hammered.
	before := w.idp.Count("password")
	mb := e.create(e.admin, w.mailbox("ropc", publicApp, map[string]string{"password": "wrong"}))
	eventually(t, "auth_failed", func() bool {
		st, _ := e.mailbox.GetMailboxStatus(as(e.admin), &mailintakev1.GetMailboxStatusRequest{Id: mb.GetId()})
		return st.GetStatus().GetState() == mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED &&
			st.GetStatus().GetAuthFailure().GetProviderCode() == "AADSTS50126"
	})
	time.Sleep(time.Second)
	if n := w.idp.Count("password") - before; n > 2 {
		t.Errorf("%d password attempts for one refused mailbox within a second; want at most 2", n)
	}
	// Validation names the o365 fields.
	bad := w.mailbox("ropc", "not-a-guid", nil)
	bad.AuthConfig["tenant_id"] = "common"
	_, err := e.mailbox.CreateMailbox(as(e.admin), &mailintakev1.CreateMailboxRequest{Mailbox: bad})
	f := badFields(err)
	for _, want := range []string{"mailbox.auth_config.client_id", "mailbox.auth_config.tenant_id", "mailbox.auth_secrets.password"} {
		if !strings.Contains(strings.Join(f, " "), want) {
			t.Errorf("violations %v lack %s", f, want)
		}
	}
}
