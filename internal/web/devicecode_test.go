package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/idp"
	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Device-code sign-in: the page shows the URL and the code, refreshes its state, and moves on
// to the mailbox by itself once the user has signed in (htmx is told to navigate; without
// JavaScript the reloaded page redirects). A test that fails for want of a sign-in offers it.
func TestDeviceCodeSignIn(t *testing.T) {
	const (
		tenantID  = "11111111-2222-3333-4444-555555555555"
		publicApp = "aaaaaaaa-0000-0000-0000-000000000001"
		o365User  = "help@contoso.onmicrosoft.com"
	)
	e := newEnv(t)
	p := idp.New(tenantID, "contoso.onmicrosoft.com")
	p.AddUser(idp.User{UPN: o365User, Password: "x"})
	p.AddApp(idp.App{ClientID: publicApp, PublicFlows: true})
	hs := httptest.NewServer(p)
	t.Cleanup(hs.Close)
	imap := imaptest.Start(t, imaptest.Options{ValidateToken: p.Valid})
	imap.AddUser(t, o365User, "not-used-with-oauth")
	mb := e.createMailbox(e.admin, &mailintakev1.Mailbox{Tenant: "acme", DisplayName: "M365", Enabled: true, Host: imap.Host, Port: uint32(imap.Port),
		Security: mailintakev1.Security_SECURITY_NONE, Username: o365User, AuthProvider: "o365",
		AuthConfig: map[string]string{"client_id": publicApp, "tenant_id": tenantID, "flow": "device_code", "authority": hs.URL}})
	id := mb.GetId()
	u := e.signedIn(e.admin)

	// Its page offers the sign-in; so does a failed connection test.
	_, body := u.get("/mailboxes/" + id)
	if !strings.Contains(body, `action="/mailboxes/`+id+`/authorize"`) {
		t.Errorf("the mailbox's page offers no device-code sign-in")
	}
	req, _ := http.NewRequest(http.MethodPost, e.base+"/mailboxes/"+id+"/test", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := u.noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	steps := waitChecklist(t, u, id, find(resp.Header.Get("Location"), `test=([0-9a-f]+)`))
	if steps["auth"][0] != "fail" {
		t.Errorf("the test before the sign-in: %v", steps)
	}
	if _, body := u.htmx("/mailboxes/" + id + "/tests/" + find(resp.Header.Get("Location"), `test=([0-9a-f]+)`)); !strings.Contains(body, `action="/mailboxes/`+id+`/authorize"`) {
		t.Errorf("the failed test does not offer the sign-in:\n%s", body)
	}

	resp, body = u.post("/mailboxes/"+id+"/authorize", nil)
	if resp.Request.URL.Path != "/mailboxes/"+id+"/authorize" || resp.Request.URL.Query().Get("wait") == "" {
		t.Fatalf("after starting the sign-in: %s", resp.Request.URL)
	}
	code := find(body, `data-user-code>([A-F0-9]+)<`)
	if code == "" || !strings.Contains(body, `href="https://microsoft.com/devicelogin"`) || !strings.Contains(body, `data-auth-state="pending"`) ||
		!strings.Contains(body, `hx-get="/mailboxes/`+id+`/authorize/state"`) || !strings.Contains(body, `<noscript><meta http-equiv="refresh"`) {
		t.Fatalf("the sign-in page:\n%s", body)
	}
	if _, frag := u.htmx("/mailboxes/" + id + "/authorize/state"); !strings.Contains(frag, `data-user-code>`+code+`<`) {
		t.Errorf("the refreshing part:\n%s", frag)
	}
	if err := p.Approve(code, o365User); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, _ := u.htmx("/mailboxes/" + id + "/authorize/state")
		if loc := resp.Header.Get("HX-Redirect"); loc != "" {
			if loc != "/mailboxes/"+id {
				t.Errorf("moves on to %s", loc)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the page never moved on")
		}
	}
	// Without JavaScript: the reloaded waiting page redirects to the mailbox.
	resp, body = u.get("/mailboxes/" + id + "/authorize?wait=1")
	if resp.Request.URL.Path != "/mailboxes/"+id || !strings.Contains(body, "Signed in") {
		t.Errorf("the reloaded sign-in page: %s", resp.Request.URL)
	}
}
