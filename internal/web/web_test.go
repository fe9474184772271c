package web

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/web/guard"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

const (
	imapUser = "help@example.com"
	imapPass = "Imap-Passw0rd-of-the-test"
)

func imapMailbox(srv *imaptest.Server, tenant string) *mailintakev1.Mailbox {
	return &mailintakev1.Mailbox{Tenant: tenant, DisplayName: "Help desk", Enabled: true, Host: srv.Host, Port: uint32(srv.Port),
		Security: mailintakev1.Security_SECURITY_NONE, Username: imapUser, AuthProvider: "basic",
		AuthSecrets: map[string]string{"password": imapPass}, StartFrom: mailintakev1.StartFrom_START_FROM_ALL}
}

// The sign-in: a refused token is not written back and is answered slowly; an accepted one
// gets an HttpOnly, SameSite=Strict session cookie (not Secure over plain HTTP on loopback);
// signing out ends the session on the server, not only in the browser.
func TestSignInCookieAndSignOut(t *testing.T) {
	e := newEnv(t)
	u := e.user()
	resp, body := u.get("/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="token"`) {
		t.Fatalf("/ before signing in: %d\n%s", resp.StatusCode, body)
	}

	bad := "mit_0123456789abcdef_not-a-real-secret"
	start := time.Now()
	resp, body = u.post("/signin", url.Values{"token": {bad}})
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, bad) || !strings.Contains(body, "not accepted") {
		t.Errorf("a bad token: %d\n%s", resp.StatusCode, body)
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Errorf("a refused sign-in was answered at once")
	}

	req, _ := http.NewRequest(http.MethodPost, e.base+"/signin", strings.NewReader(url.Values{"token": {e.admin}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := u.noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	raw := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"mailintake_session=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(raw, want) {
			t.Errorf("the session cookie %q lacks %s", raw, want)
		}
	}
	if strings.Contains(raw, "Secure") || strings.Contains(raw, e.admin) {
		t.Errorf("the session cookie over plain HTTP: %q", raw)
	}
	cookie := resp.Cookies()[0]

	resp, body = u.get("/")
	if !strings.Contains(body, `data-signed-in="admin"`) || !strings.Contains(body, "<h1>Mailboxes</h1>") {
		t.Fatalf("after signing in: %d\n%s", resp.StatusCode, body)
	}
	resp, body = u.post("/signout", nil)
	if !strings.Contains(body, `name="token"`) {
		t.Errorf("after signing out: %d\n%s", resp.StatusCode, body)
	}
	// The old cookie, replayed, no longer works.
	req, _ = http.NewRequest(http.MethodGet, e.base+"/mailboxes/new", nil)
	req.AddCookie(cookie)
	resp, err = e.user().noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("a signed-out session's cookie: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// Every response carries the strict CSP and the other headers, and no page has inline script,
// inline style or event-handler attributes (which that CSP would block anyway).
func TestSecurityHeadersAndNoInlineScript(t *testing.T) {
	e := newEnv(t)
	acme := e.tenantToken("acme")
	mb := e.createMailbox(acme, &mailintakev1.Mailbox{DisplayName: "Sales", Enabled: false, Host: "imap.example.com", Port: 993,
		Username: "sales@example.com", AuthProvider: "basic", AuthSecrets: map[string]string{"password": "pw"}})
	anon := e.user()
	admin := e.signedIn(e.admin)
	paths := []string{"/", "/mailboxes/new", "/mailboxes/new?auth_provider=o365", "/mailboxes/" + mb.GetId(), "/mailboxes/" + mb.GetId() + "/edit",
		"/mailboxes/" + mb.GetId() + "/delete", "/mailboxes/" + mb.GetId() + "/authorize", "/tokens", "/nope", "/static/htmx.min.js", "/static/style.css"}
	check := func(who string, u *user, path string) {
		resp, body := u.get(path)
		h := resp.Header
		if h.Get("Content-Security-Policy") != guard.CSP || strings.Contains(guard.CSP, "unsafe") {
			t.Errorf("%s %s: CSP %q", who, path, h.Get("Content-Security-Policy"))
		}
		for k, v := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
			if h.Get(k) != v {
				t.Errorf("%s %s: %s = %q", who, path, k, h.Get(k))
			}
		}
		if strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			if h.Get("Cache-Control") != "no-store" {
				t.Errorf("%s %s: Cache-Control %q", who, path, h.Get("Cache-Control"))
			}
			checkNoInline(t, who+" "+path, body)
		}
	}
	for _, p := range paths {
		check("admin", admin, p)
	}
	check("anonymous", anon, "/")
	resp, _ := admin.get("/static/htmx.min.js?v=x")
	if !strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
		t.Errorf("htmx served as %q", resp.Header.Get("Content-Type"))
	}
}

// checkNoInline fails when the HTML has a script without src, a script from elsewhere, a
// style element or attribute, or an on* attribute.
func checkNoInline(t *testing.T, what, body string) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			if n.Data == "script" {
				src := ""
				for _, a := range n.Attr {
					if a.Key == "src" {
						src = a.Val
					}
				}
				if !strings.HasPrefix(src, "/static/") {
					t.Errorf("%s: a script with src %q", what, src)
				}
			}
			if n.Data == "style" {
				t.Errorf("%s: a style element", what)
			}
			for _, a := range n.Attr {
				if strings.HasPrefix(a.Key, "on") || a.Key == "style" || strings.HasPrefix(a.Key, "hx-on") {
					t.Errorf("%s: <%s %s=%q>", what, n.Data, a.Key, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
}

// A form posted from another origin is refused before it does anything, whatever carries the
// origin (Sec-Fetch-Site, or Origin alone in an older browser); so is a cross-site sign-in
// (login CSRF).
func TestCrossOriginPostsRefused(t *testing.T) {
	e := newEnv(t)
	mb := e.createMailbox(e.admin, &mailintakev1.Mailbox{Tenant: "acme", DisplayName: "Sales", Host: "imap.example.com", Port: 993,
		Username: "sales@example.com", AuthProvider: "basic", AuthSecrets: map[string]string{"password": "pw"}})
	u := e.signedIn(e.admin)
	for _, c := range []struct {
		name   string
		header []string
	}{
		{"cross-site", []string{"Sec-Fetch-Site", "cross-site"}},
		{"same-site", []string{"Sec-Fetch-Site", "same-site"}},
		{"another Origin", []string{"Sec-Fetch-Site", "", "Origin", "http://evil.example"}},
		{"Origin null", []string{"Sec-Fetch-Site", "", "Origin", "null"}},
	} {
		for _, path := range []string{"/mailboxes/" + mb.GetId() + "/delete", "/mailboxes/" + mb.GetId() + "/disable", "/signout", "/tokens"} {
			resp, body := u.post(path, url.Values{"tenant": {"x"}}, c.header...)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "cross-origin") {
				t.Errorf("%s POST %s: %d", c.name, path, resp.StatusCode)
			}
		}
		resp, _ := e.user().post("/signin", url.Values{"token": {e.admin}}, c.header...)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s sign-in: %d", c.name, resp.StatusCode)
		}
	}
	if _, err := e.mb.GetMailbox(as(e.admin), &mailintakev1.GetMailboxRequest{Id: mb.GetId()}); err != nil {
		t.Fatalf("the mailbox is gone: %v", err)
	}
	if _, body := u.get("/"); !strings.Contains(body, `data-signed-in="admin"`) {
		t.Errorf("the cross-origin sign-out signed the user out")
	}
	// The page's own form works.
	resp, _ := u.post("/mailboxes/"+mb.GetId()+"/delete", nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a same-origin delete: %d", resp.StatusCode)
	}
	if _, err := e.mb.GetMailbox(as(e.admin), &mailintakev1.GetMailboxRequest{Id: mb.GetId()}); status.Code(err) != codes.NotFound {
		t.Errorf("after the page's delete: %v", err)
	}
}

// The page answers only to the host names of its listen address (DNS rebinding: a page of
// another site whose name resolves to 127.0.0.1 sends its own name as Host).
func TestHostAllowlist(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Hosts = []string{"admin.example.com"} })
	_, port, _ := strings.Cut(strings.TrimPrefix(e.base, "http://"), ":")
	for host, want := range map[string]int{
		"127.0.0.1:" + port:         http.StatusOK,
		"localhost:" + port:         http.StatusOK,
		"[::1]:" + port:             http.StatusOK,
		"LOCALHOST.:" + port:        http.StatusOK,
		"admin.example.com":         http.StatusOK,
		"admin.example.com:443":     http.StatusOK,
		"evil.example:" + port:      http.StatusMisdirectedRequest,
		"evil.example":              http.StatusMisdirectedRequest,
		"127.0.0.1:1":               http.StatusMisdirectedRequest,
		"127.0.0.1":                 http.StatusMisdirectedRequest,
		"127.0.0.1.evil.example":    http.StatusMisdirectedRequest,
		"admin.example.com.evil.io": http.StatusMisdirectedRequest,
	} {
		req, _ := http.NewRequest(http.MethodGet, e.base+"/", nil)
		req.Host = host
		resp, body := e.user().do(req)
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
		if want != http.StatusOK && strings.Contains(body, `name="token"`) {
			t.Errorf("Host %s: the sign-in form was served", host)
		}
	}
}

// TestSecretsNeverInHTML fills and saves forms with secrets (a password, a client secret),
// sends them back with errors, switches providers, and opens every page and page part; no
// response contains a secret or the token signed in with.
func TestSecretsNeverInHTML(t *testing.T) {
	e := newEnv(t)
	const clientSecret = "o365-Client-Secret-Value~abc"
	const typedPassword = "Typed-into-the-form-0nly"
	const editPassword = "Changed-on-the-edit-page-1"
	o365 := e.createMailbox(e.admin, &mailintakev1.Mailbox{Tenant: "acme", DisplayName: "Graph", Host: "outlook.office365.com", Port: 993,
		Username: "ops@contoso.example", AuthProvider: "o365", Enabled: false,
		AuthConfig:  map[string]string{"client_id": "11111111-2222-3333-4444-555555555555", "tenant_id": "contoso.onmicrosoft.com", "flow": "client_credentials"},
		AuthSecrets: map[string]string{"client_secret": clientSecret}})
	u := e.signedIn(e.admin)

	form := url.Values{"display_name": {"Support"}, "tenant": {"acme"}, "host": {"imap.example.com"}, "port": {"99999"}, "security": {"tls"},
		"username": {"support@example.com"}, "auth_provider": {"basic"}, "password": {typedPassword}, "mechanism": {"PLAIN"},
		"start_from": {"new"}, "after_ack": {"mark_seen"}, "enabled": {"true"}, "draft": {"d1"}}
	resp, body := u.post("/mailboxes/new", form)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="port-error"`) || !strings.Contains(body, `id="password-held"`) {
		t.Fatalf("a form with a bad port: %d\n%s", resp.StatusCode, body)
	}
	form.Set("action", "provider")
	form.Set("auth_provider", "o365")
	u.post("/mailboxes/new", form)
	form.Set("auth_provider", "basic")
	u.post("/mailboxes/new", form)
	u.htmx("/mailboxes/fields?auth_provider=basic&draft=d1")
	// The password is kept on the server: the corrected form saves without it typed again.
	form.Del("action")
	form.Set("port", "993")
	form.Set("password", "")
	resp, body = u.post("/mailboxes/new", form)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Saved") {
		t.Fatalf("the corrected form: %d\n%s", resp.StatusCode, body)
	}
	list, err := e.mb.ListMailboxes(as(e.admin), &mailintakev1.ListMailboxesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var basic *mailintakev1.Mailbox
	for _, mb := range list.GetMailboxes() {
		if mb.GetDisplayName() == "Support" {
			basic = mb
		}
	}
	if basic == nil || len(basic.GetAuthSecretsSet()) != 1 {
		t.Fatalf("the saved mailbox: %v", basic)
	}

	for _, id := range []string{basic.GetId(), o365.GetId()} {
		for _, p := range []string{"/", "/mailboxes/" + id, "/mailboxes/" + id + "/edit", "/mailboxes/" + id + "/delete", "/mailboxes/" + id + "/disable",
			"/mailboxes/" + id + "/authorize"} {
			u.get(p)
		}
		u.htmx("/mailboxes/" + id + "/live")
		u.htmx("/mailboxes/fields?auth_provider=o365&mailbox=" + id)
		u.htmx("/mailboxes/fields?auth_provider=basic&mailbox=" + id)
	}
	_, body = u.get("/mailboxes/" + o365.GetId() + "/edit")
	if !strings.Contains(body, "A value is stored") || !regexp.MustCompile(`<input type="password" id="client_secret" name="client_secret" value=""`).MatchString(body) {
		t.Errorf("the o365 edit form does not say the client secret is stored, or fills it:\n%s", body)
	}
	// An edit with a new password and an error: the new password is not sent back either.
	edit := url.Values{"display_name": {"Support"}, "host": {""}, "port": {"993"}, "security": {"tls"}, "username": {"support@example.com"},
		"auth_provider": {"basic"}, "password": {editPassword}, "mechanism": {"PLAIN"}, "start_from": {"new"}, "after_ack": {"mark_seen"}, "draft": {"d2"}}
	resp, body = u.post("/mailboxes/"+basic.GetId()+"/edit", edit)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="host-error"`) {
		t.Errorf("an edit with an empty host: %d", resp.StatusCode)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.pages) < 20 {
		t.Errorf("only %d pages seen", len(e.pages))
	}
	for _, p := range e.pages {
		for name, secret := range map[string]string{"the IMAP password": typedPassword, "the edited password": editPassword,
			"the client secret": clientSecret, "the admin token": e.admin} {
			if strings.Contains(p.body, secret) {
				t.Errorf("%s is in the HTML of %s", name, p.url)
			}
		}
	}
}

// A tenant token's session sees only its tenant's mailboxes and cannot open or act on another
// tenant's mailbox, or its quarantined message, by URL: the API answers "not found", and so
// does the page; nothing changes.
func TestTenantIsolationByURL(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, imapUser, imapPass)
	srv.Append(t, imapUser, "INBOX", []byte("Subject: too big\r\n\r\n"+strings.Repeat("x", 4096)+"\r\n"))
	acme := e.tenantToken("acme")
	globex := e.tenantToken("globex")
	spec := imapMailbox(srv, "")
	spec.Limits = &mailintakev1.MailboxLimits{MaxMessageBytes: 2048}
	mb := e.createMailbox(acme, spec)
	id := mb.GetId()
	consume(t, e, acme)
	var qid string
	for deadline := time.Now().Add(20 * time.Second); qid == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		q, err := e.msgs.ListQuarantinedMessages(as(acme), &mailintakev1.ListQuarantinedMessagesRequest{MailboxId: id})
		if err == nil && len(q.GetMessages()) > 0 {
			qid = q.GetMessages()[0].GetId()
		}
	}
	if qid == "" {
		t.Fatal("no quarantined message")
	}

	g := e.signedIn(globex)
	if _, body := g.get("/"); strings.Contains(body, id) || !strings.Contains(body, `data-signed-in="tenant"`) {
		t.Errorf("globex's list shows acme's mailbox")
	}
	for _, p := range []string{"", "/edit", "/delete", "/disable", "/authorize", "/quarantine/" + qid + "/release", "/tests/x"} {
		resp, body := g.get("/mailboxes/" + id + p)
		if resp.StatusCode != http.StatusNotFound || strings.Contains(body, "Help desk") || strings.Contains(body, imapUser) {
			t.Errorf("globex GET %s: %d", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/live", "/authorize/state"} {
		resp, body := g.htmx("/mailboxes/" + id + p)
		if resp.Header.Get("HX-Redirect") == "" || strings.Contains(body, imapUser) {
			t.Errorf("globex htmx GET %s: %d %q", p, resp.StatusCode, body)
		}
	}
	if resp, body := g.htmx("/mailboxes/fields?auth_provider=basic&mailbox=" + id); resp.Header.Get("HX-Redirect") == "" || strings.Contains(body, imapUser) {
		t.Errorf("globex fields of acme's mailbox: %d", resp.StatusCode)
	}
	edit := url.Values{"display_name": {"Owned"}, "host": {"evil.example"}, "port": {"993"}, "security": {"tls"}, "username": {"x"},
		"auth_provider": {"basic"}, "password": {"x"}, "start_from": {"new"}, "after_ack": {"delete"}}
	for _, p := range []string{"/edit", "/delete", "/disable", "/enable", "/test", "/authorize", "/quarantine/" + qid + "/replay", "/quarantine/" + qid + "/release"} {
		resp, body := g.post("/mailboxes/"+id+p, edit)
		if resp.StatusCode != http.StatusNotFound || strings.Contains(body, imapUser) {
			t.Errorf("globex POST %s: %d", p, resp.StatusCode)
		}
	}
	// The quarantine entry under globex's own (nonexistent) mailbox path is refused by the API too.
	if resp, _ := g.post("/mailboxes/whatever/quarantine/"+qid+"/replay", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("globex replay via another path: %d", resp.StatusCode)
	}
	if resp, _ := g.get("/tokens"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("globex /tokens: %d", resp.StatusCode)
	}

	got, err := e.mb.GetMailbox(as(acme), &mailintakev1.GetMailboxRequest{Id: id})
	if err != nil || got.GetMailbox().GetDisplayName() != "Help desk" || !got.GetMailbox().GetEnabled() || got.GetMailbox().GetHost() != srv.Host {
		t.Errorf("acme's mailbox changed: %v %v", got, err)
	}
	q, err := e.msgs.ListQuarantinedMessages(as(acme), &mailintakev1.ListQuarantinedMessagesRequest{MailboxId: id})
	if err != nil || len(q.GetMessages()) != 1 || q.GetMessages()[0].GetState() != mailintakev1.QuarantineState_QUARANTINE_STATE_HELD {
		t.Errorf("acme's quarantine changed: %v %v", q, err)
	}
	// acme's own session sees it all.
	a := e.signedIn(acme)
	if resp, body := a.get("/mailboxes/" + id); resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-quarantine-id="`+qid+`"`) {
		t.Errorf("acme's page: %d", resp.StatusCode)
	}
	if _, body := a.get("/"); !strings.Contains(body, "Tenant token of acme") {
		t.Errorf("acme's header does not name its tenant")
	}
}

// The form: the API's field violations stand next to their inputs (described by them, listed
// at the top with links), values that cannot be sent are caught first, a tenant token's form
// has no tenant, and the provider's own fields come from its description.
func TestFormErrorsAndProviderFields(t *testing.T) {
	e := newEnv(t)
	u := e.signedIn(e.admin)
	form := url.Values{"display_name": {"X"}, "tenant": {""}, "host": {""}, "port": {"70000"}, "security": {"tls"}, "username": {"u@example.com"},
		"auth_provider": {"o365"}, "client_id": {"not-a-guid"}, "tenant_id": {""}, "flow": {"ropc"}, "password": {"pw"}, "start_from": {"new"}, "after_ack": {"move"}}
	// The API checks the admin's tenant before anything else.
	resp, body := u.post("/mailboxes/new", form)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="tenant-error"`) {
		t.Fatalf("without a tenant: %d\n%s", resp.StatusCode, body)
	}
	form.Set("tenant", "acme")
	resp, body = u.post("/mailboxes/new", form)
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("status %d\n%s", resp.StatusCode, body)
	}
	for _, in := range []string{"host", "port", "client_id", "tenant_id", "after_ack_folder"} {
		if !strings.Contains(body, `id="`+in+`-error"`) {
			t.Errorf("no error next to %s", in)
		}
		if !regexp.MustCompile(`id="` + in + `" name="` + in + `"[^>]*aria-describedby="[^"]*` + in + `-error"[^>]*aria-invalid="true"`).MatchString(body) {
			t.Errorf("%s is not described by its error", in)
		}
		if !strings.Contains(body, `href="#`+in+`"`) {
			t.Errorf("the summary does not link to %s", in)
		}
	}
	if msg := find(body, `id="port-error"><span class="visually-hidden">Error: </span>([^<]*)`); !strings.Contains(msg, "65535") {
		t.Errorf("the port's error: %q", msg)
	}
	if list, _ := e.mb.ListMailboxes(as(e.admin), &mailintakev1.ListMailboxesRequest{}); len(list.GetMailboxes()) != 0 {
		t.Errorf("a mailbox was created from an invalid form")
	}
	form.Set("port", "nine")
	if _, body := u.post("/mailboxes/new", form); !strings.Contains(find(body, `id="port-error"><span class="visually-hidden">Error: </span>([^<]*)`), "not a port number") {
		t.Errorf("a port that is not a number")
	}

	// The provider part, for htmx, and the same without JavaScript.
	resp, body = u.htmx("/mailboxes/fields?auth_provider=o365")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the o365 fields: %d", resp.StatusCode)
	}
	for _, want := range []string{`<fieldset id="provider-fields"`, `name="client_id"`, `name="tenant_id"`, `<select id="flow" name="flow"`,
		`<option value="device_code">`, `type="password" id="client_secret"`, `type="password" id="password"`, `type="url" id="authority"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the o365 fields lack %s", want)
		}
	}
	if strings.Contains(body, "<html") {
		t.Errorf("the htmx answer is a whole page")
	}
	_, body = u.get("/mailboxes/fields?auth_provider=o365")
	if !strings.Contains(body, "<h1>Add a mailbox</h1>") || !strings.Contains(body, `name="client_id"`) {
		t.Errorf("without htmx the fields are not in the add form")
	}

	// A tenant token's form: no tenant input; the mailbox lands in the token's tenant.
	acme := e.tenantToken("acme")
	a := e.signedIn(acme)
	_, body = a.get("/mailboxes/new")
	if strings.Contains(body, `name="tenant"`) {
		t.Errorf("a tenant token's form asks for the tenant")
	}
	resp, body = a.post("/mailboxes/new", url.Values{"display_name": {"Acme"}, "host": {"imap.example.com"}, "port": {"993"}, "security": {"tls"},
		"username": {"acme@example.com"}, "auth_provider": {"basic"}, "password": {"pw"}, "start_from": {"new"}, "after_ack": {"keep"}, "tenant": {"globex"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a tenant's form: %d\n%s", resp.StatusCode, body)
	}
	list, _ := e.mb.ListMailboxes(as(e.admin), &mailintakev1.ListMailboxesRequest{})
	if len(list.GetMailboxes()) != 1 || list.GetMailboxes()[0].GetTenant() != "acme" {
		t.Errorf("the tenant's mailbox: %v", list.GetMailboxes())
	}
}

// Save and Test: the form saves, then its page shows the checklist, which htmx refreshes until
// every step has its result; a wrong password fails the authentication step with its
// sentence. Without JavaScript the checklist's URL leads back to the page.
func TestSaveAndTestChecklist(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, imapUser, imapPass)
	u := e.signedIn(e.admin)
	form := url.Values{"display_name": {"Help"}, "tenant": {"acme"}, "host": {srv.Host}, "port": {strconv.Itoa(srv.Port)}, "security": {"none"},
		"username": {imapUser}, "auth_provider": {"basic"}, "password": {imapPass}, "mechanism": {"PLAIN"}, "start_from": {"new"}, "after_ack": {"mark_seen"}, "enabled": {"true"}}
	req, _ := http.NewRequest(http.MethodPost, e.base+"/mailboxes/new", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := u.noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	m := regexp.MustCompile(`^/mailboxes/([^/]+)/edit\?test=([0-9a-f]+)#checklist$`).FindStringSubmatch(loc)
	if resp.StatusCode != http.StatusSeeOther || m == nil {
		t.Fatalf("Save and Test: %d %q", resp.StatusCode, loc)
	}
	id, run := m[1], m[2]
	steps := waitChecklist(t, u, id, run)
	for _, s := range []string{"dns", "tcp", "tls", "greeting", "auth", "select"} {
		if steps[s][0] != "pass" {
			t.Errorf("step %s: %v", s, steps[s])
		}
	}
	if _, body := u.get("/mailboxes/" + id + "/edit?test=" + run); !strings.Contains(body, `data-running="false"`) || strings.Contains(body, `hx-trigger="every 500ms"`) {
		t.Errorf("the finished checklist still refreshes")
	}
	resp, _ = u.get("/mailboxes/" + id + "/tests/" + run)
	if resp.Request.URL.Path != "/mailboxes/"+id+"/edit" {
		t.Errorf("the checklist's URL without htmx leads to %s", resp.Request.URL)
	}

	// A wrong password.
	edit := url.Values{"display_name": {"Help"}, "host": {srv.Host}, "port": {strconv.Itoa(srv.Port)}, "security": {"none"}, "username": {imapUser},
		"auth_provider": {"basic"}, "password": {"wrong-password"}, "mechanism": {"PLAIN"}, "start_from": {"new"}, "after_ack": {"mark_seen"}}
	req, _ = http.NewRequest(http.MethodPost, e.base+"/mailboxes/"+id+"/edit", strings.NewReader(edit.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err = u.noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	m = regexp.MustCompile(`test=([0-9a-f]+)`).FindStringSubmatch(resp.Header.Get("Location"))
	if m == nil {
		t.Fatalf("edit: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	steps = waitChecklist(t, u, id, m[1])
	if steps["auth"][0] != "fail" || !strings.Contains(steps["auth"][1], "Sign-in failed") || steps["select"][0] != "skip" || steps["greeting"][0] != "pass" {
		t.Errorf("with a wrong password: %v", steps)
	}
	// Another session cannot see this session's test.
	if resp, _ := e.signedIn(e.admin).htmx("/mailboxes/" + id + "/tests/" + m[1]); resp.Header.Get("HX-Redirect") == "" {
		t.Errorf("another session read the test")
	}
}

// waitChecklist polls the checklist as htmx does until it is done, and returns each step's
// result and sentence.
func waitChecklist(t *testing.T, u *user, id, run string) map[string][2]string {
	t.Helper()
	return waitChecklistOf(t, u, id, run, 6)
}

// waitChecklistOf is waitChecklist for a test of n steps (10 with sending on).
func waitChecklistOf(t *testing.T, u *user, id, run string, n int) map[string][2]string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, body := u.htmx("/mailboxes/" + id + "/tests/" + run)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="checklist"`) {
			t.Fatalf("the checklist: %d\n%s", resp.StatusCode, body)
		}
		if strings.Contains(body, `data-running="false"`) {
			out := map[string][2]string{}
			for _, m := range regexp.MustCompile(`data-step="([\w-]+)" data-result="(\w+)">(.*?)</li>`).FindAllStringSubmatch(body, -1) {
				out[m[1]] = [2]string{m[2], html.UnescapeString(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(m[3], ""))}
			}
			if len(out) != n {
				t.Fatalf("the checklist has %d steps, want %d:\n%s", len(out), n, body)
			}
			return out
		}
		if !strings.Contains(body, `hx-trigger="every 500ms"`) {
			t.Fatalf("a running checklist without refresh:\n%s", body)
		}
		if time.Now().After(deadline) {
			t.Fatal("the test did not finish")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Tokens: created (shown once), listed, revoked with a confirmation; a page signed in with a
// revoked token is signed out.
func TestTokens(t *testing.T) {
	e := newEnv(t)
	u := e.signedIn(e.admin)
	resp, body := u.post("/tokens", url.Values{"tenant": {"bad tenant!"}, "name": {"x"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="tenant-error"`) {
		t.Errorf("a bad tenant: %d", resp.StatusCode)
	}
	_, body = u.post("/tokens", url.Values{"tenant": {"acme"}, "name": {"desk"}, "ttl": {"720"}})
	secret := find(body, `value="(mit_[^"]+)" data-token-secret`)
	if secret == "" {
		t.Fatalf("no token shown:\n%s", body)
	}
	if _, body := u.get("/tokens"); strings.Contains(body, secret) {
		t.Errorf("the token is shown twice")
	}
	id := strings.SplitN(strings.TrimPrefix(secret, "mit_"), "_", 2)[0]
	if !strings.Contains(body, `data-token-id="`+id+`"`) {
		t.Errorf("the token is not listed")
	}

	a := e.signedIn(secret)
	if _, body := u.get("/tokens/" + id + "/revoke"); !strings.Contains(body, `action="/tokens/`+id+`/revoke"`) {
		t.Errorf("no confirmation")
	}
	if _, body := u.post("/tokens/"+id+"/revoke", nil); !strings.Contains(body, "Revoked the token") {
		t.Errorf("revoking:\n%s", body)
	}
	if _, body := a.get("/"); !strings.Contains(body, `name="token"`) {
		t.Errorf("the revoked token's session goes on")
	}
	if _, err := e.mb.ListMailboxes(as(secret), &mailintakev1.ListMailboxesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the revoked token: %v", err)
	}
	// The admin cannot revoke its own token from the page.
	if _, body := u.get("/tokens"); strings.Contains(body, `href="/tokens/`+tokenID(e.admin)+`/revoke"`) {
		t.Errorf("the page offers to revoke the admin token")
	}
}

// A session whose token is revoked elsewhere ends at its next page, which says so.
func TestRevokedElsewhereSignsOut(t *testing.T) {
	e := newEnv(t)
	tok := e.tenantToken("acme")
	u := e.signedIn(tok)
	list, _ := e.toks.ListTokens(as(e.admin), &mailintakev1.ListTokensRequest{})
	for _, tk := range list.GetTokens() {
		if tk.GetTenant() == "acme" {
			if _, err := e.toks.RevokeToken(as(e.admin), &mailintakev1.RevokeTokenRequest{Id: tk.GetId()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	resp, body := u.get("/mailboxes/new")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "You were signed out") {
		t.Errorf("after the revocation: %d\n%s", resp.StatusCode, body)
	}
	if _, body := u.get("/"); !strings.Contains(body, `name="token"`) {
		t.Errorf("the session goes on")
	}
}

// The mailbox page: status with counts (data-delivered, data-acknowledged), the event log, the
// quarantine with replay and release (with a confirmation), enable and disable.
func TestMailboxPage(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, imapUser, imapPass)
	srv.Append(t, imapUser, "INBOX", []byte("Subject: too big\r\n\r\n"+strings.Repeat("x", 4096)+"\r\n"))
	srv.Append(t, imapUser, "INBOX", []byte("Subject: also big\r\n\r\n"+strings.Repeat("y", 4096)+"\r\n"))
	spec := imapMailbox(srv, "acme")
	spec.Limits = &mailintakev1.MailboxLimits{MaxMessageBytes: 2048}
	id := e.createMailbox(e.admin, spec).GetId()
	consume(t, e, e.admin)
	u := e.signedIn(e.admin)
	var body string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, body = u.htmx("/mailboxes/" + id + "/live")
		// The session may still be syncing when the second message is quarantined.
		if find(body, `data-quarantined="(\d+)"`) == "2" && strings.Contains(body, `data-state="idle"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the live status never showed 2 quarantined and idle:\n%s", body)
		}
	}
	for _, want := range []string{`data-delivered="0"`, `data-acknowledged="0"`, `data-state="idle"`, `data-event="quarantine"`, `hx-trigger="every 2s"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the live status lacks %s", want)
		}
	}
	_, body = u.get("/mailboxes/" + id)
	qids := regexp.MustCompile(`data-quarantine-id="([^"]+)" data-quarantine-state="held"`).FindAllStringSubmatch(body, -1)
	if len(qids) != 2 {
		t.Fatalf("%d held messages on the page", len(qids))
	}
	// Replayed, the message waits to be delivered again, or has been already (a consumer waits).
	if _, body = u.post("/mailboxes/"+id+"/quarantine/"+qids[0][1]+"/replay", nil); !strings.Contains(body, "will be delivered again") ||
		strings.Contains(body, `data-quarantine-id="`+qids[0][1]+`" data-quarantine-state="held"`) {
		t.Errorf("after replay:\n%s", body)
	}
	if _, body = u.get("/mailboxes/" + id + "/quarantine/" + qids[1][1] + "/release"); !strings.Contains(body, "Release") || !strings.Contains(body, "after-ack") {
		t.Errorf("no release confirmation")
	}
	if _, body = u.post("/mailboxes/"+id+"/quarantine/"+qids[1][1]+"/release", nil); strings.Contains(body, `data-quarantine-id="`+qids[1][1]+`"`) {
		t.Errorf("the released message is still listed")
	}

	if _, body = u.get("/mailboxes/" + id + "/disable"); !strings.Contains(body, `action="/mailboxes/`+id+`/disable"`) {
		t.Errorf("no disable confirmation")
	}
	if _, body = u.post("/mailboxes/"+id+"/disable", nil); !strings.Contains(body, `data-enabled="false"`) {
		t.Errorf("after disable:\n%s", body)
	}
	if _, body = u.post("/mailboxes/"+id+"/enable", nil); !strings.Contains(body, `data-enabled="true"`) {
		t.Errorf("after enable")
	}
	// Test the connection from the mailbox's page.
	req, _ := http.NewRequest(http.MethodPost, e.base+"/mailboxes/"+id+"/test", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := u.noRedirect().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	run := find(resp.Header.Get("Location"), `test=([0-9a-f]+)`)
	if run == "" {
		t.Fatalf("test: %s", resp.Header.Get("Location"))
	}
	if steps := waitChecklist(t, u, id, run); steps["select"][0] != "pass" {
		t.Errorf("the test from the mailbox's page: %v", steps)
	}
	if _, body := u.get("/mailboxes/" + id + "?test=" + run); !strings.Contains(body, `id="checklist"`) {
		t.Errorf("the mailbox's page does not show its test")
	}
}

// consume opens a message stream as token until the test ends (the sessions fetch only while
// a consumer waits).
func consume(t *testing.T, e *env, token string) {
	ctx, cancel := context.WithCancel(as(token))
	t.Cleanup(cancel)
	stream, err := e.msgs.StreamMessages(ctx, &mailintakev1.StreamMessagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				return
			}
		}
	}()
}

func TestStaticFiles(t *testing.T) {
	e := newEnv(t)
	u := e.user()
	_, page := u.get("/")
	src := find(page, `<script src="(/static/htmx\.min\.js\?v=[0-9a-f]+)"`)
	if src == "" {
		t.Fatalf("no htmx script in the page")
	}
	resp, body := u.get(src)
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || !strings.HasPrefix(body, "var htmx=") {
		t.Errorf("htmx: %d %s", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	if resp, _ := u.get("/static/nope.js"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown file: %d", resp.StatusCode)
	}
	if resp, _ := u.get("/static/"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the directory: %d", resp.StatusCode)
	}
}
