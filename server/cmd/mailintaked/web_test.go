//go:build browser

package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/client"
	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// The browser tests drive Debian's Chromium, headless, with chromedp against the real daemon
// (its web page on --http-listen) and the in-process IMAP server: make test-ui. They fail,
// never skip, without Chromium.

// chromium finds the browser, or fails the test saying what to install.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MAILINTAKE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the browser tests need Chromium and found none: install Debian's package with 'apt-get install chromium' " +
		"(or point MAILINTAKE_CHROMIUM at a Chrome or Chromium executable)")
	return ""
}

type page struct{ url, html string }

// browser is one headless Chromium tab, with a record of every page's HTML it saw.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	pages []page // every page's HTML, as seen after each step
	shots string // directory for screenshots, or ""
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // as root, Chromium's sandbox does not start
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("lang", "en-US"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx, base: base, shots: os.Getenv("MAILINTAKE_SCREENSHOTS")}
}

// do runs actions, failing the test with the page's text when one fails.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v\npage %s:\n%s", what, err, b.location(), b.text())
	}
	b.record()
}

func (b *browser) location() string {
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	return loc
}

func (b *browser) text() string {
	s, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
	return s
}

// record keeps the current page's HTML, for the scan for secrets.
func (b *browser) record() {
	html, err := chromedp.Run(b.ctx, chromedp.Evaluate[string]("document.documentElement.outerHTML"))
	if err == nil {
		b.pages = append(b.pages, page{b.location(), html})
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// waitJS waits until a JavaScript expression is true.
func (b *browser) waitJS(what, js string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](js))
		if err == nil && ok {
			b.record()
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("waited %s for %s (%s): %v\npage %s:\n%s", timeout, what, js, err, b.location(), b.text())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *browser) open(path string) {
	b.t.Helper()
	b.do("opening "+path, chromedp.Navigate(b.base+path))
}

// submit clicks a submit button and waits for the page it leads to.
func (b *browser) submit(what, sel string) {
	b.t.Helper()
	if _, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		b.t.Fatalf("%s: %v\npage %s:\n%s", what, err, b.location(), b.text())
	}
	b.record()
}

func (b *browser) set(sel, value string) {
	b.t.Helper()
	b.do("filling "+sel, chromedp.SetValue(chromedp.CSS(sel), value))
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	if b.shots == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(b.shots, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) signIn(token string) {
	b.t.Helper()
	b.open("/")
	b.set("#token", token)
	b.submit("signing in", "form[action='/signin'] button[type=submit]")
	b.waitJS("the mailbox list", `document.querySelector("[data-signed-in]") !== null && document.querySelector("h1").textContent === "Mailboxes"`, 10*time.Second)
}

func (b *browser) signOut() {
	b.t.Helper()
	b.submit("signing out", "form[action='/signout'] button")
	b.waitJS("the sign-in form", `document.querySelector("input[name=token]") !== null`, 10*time.Second)
}

// saveAndTest clicks Save and Test and waits for the checklist to finish.
func (b *browser) saveAndTest() {
	b.t.Helper()
	b.submit("Save and Test", "button[name=action][value=save_test]")
	b.waitJS("the checklist to finish", `(() => { const c = document.querySelector("#checklist"); return c !== null && c.dataset.running === "false"; })()`, 30*time.Second)
}

// checklist returns each step's result and sentence.
func (b *browser) checklist() map[string][2]string {
	b.t.Helper()
	steps := eval[[][]string](b, `[...document.querySelectorAll("#checklist [data-step]")].map(e => [e.dataset.step, e.dataset.result, e.textContent.trim()])`)
	out := map[string][2]string{}
	for _, s := range steps {
		out[s[0]] = [2]string{s[1], s[2]}
	}
	return out
}

const (
	browserUser     = "support@example.com"
	browserPassword = "Brows3r-IMAP-pa55word"
	wrongPassword   = "Not-the-Right-0ne"
)

func TestBrowserAdminPage(t *testing.T) {
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, browserUser, browserPassword)
	srv.Append(t, browserUser, "INBOX", []byte("From: Alice <alice@example.net>\r\nSubject: printer on fire\r\n\r\nplease help\r\n"))
	srv.Append(t, browserUser, "INBOX", []byte("From: Bob <bob@example.net>\r\nSubject: too big\r\n\r\n"+strings.Repeat("x", 4000)+"\r\n"))

	data := t.TempDir()
	webAddr := freeAddr(t)
	d := startDaemon(t, data, "--http-listen", webAddr)
	if !strings.Contains(d.logs.String(), "url=http://"+webAddr+"/") {
		t.Fatalf("the daemon does not say where the web page is:\n%s", d.logs.String())
	}
	adminToken := readToken(t, data)
	b := newBrowser(t, "http://"+webAddr)

	// Sign in with the admin token.
	b.signIn(adminToken)
	if who := eval[string](b, `document.querySelector("[data-signed-in]").dataset.signedIn`); who != "admin" {
		t.Errorf("signed in as %q, want admin", who)
	}

	// The add form: choosing o365 shows its fields (Application ID, Directory ID, flow).
	b.open("/mailboxes/new")
	b.do("choosing o365", chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector("#auth_provider"); s.value = "o365"; s.dispatchEvent(new Event("change", {bubbles: true})); })()`))
	b.waitJS("the o365 fields", `document.querySelector("#client_id") !== null && document.querySelector("#tenant_id") !== null && document.querySelector("select#flow") !== null`, 10*time.Second)
	if label := eval[string](b, `document.querySelector("label[for=client_id]").textContent`); !strings.Contains(label, "Application (client) ID") {
		t.Errorf("client_id's label = %q", label)
	}
	b.set("#display_name", "Support (Microsoft 365)")
	b.set("#host", "outlook.office365.com")
	b.set("#username", "support@contoso.com")
	b.do("scrolling to the server", chromedp.Evaluate[chromedp.Void](`document.querySelector("#host").closest("fieldset").scrollIntoView()`))
	b.screenshot("web-form.png")
	b.do("choosing basic", chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector("#auth_provider"); s.value = "basic"; s.dispatchEvent(new Event("change", {bubbles: true})); })()`))
	b.waitJS("the basic fields", `document.querySelector("#password") !== null && document.querySelector("#client_id") === null`, 10*time.Second)

	// A validation error first: the port is out of range. The error stands next to the port,
	// and the password typed is kept on the server, not in the page.
	b.set("#display_name", "Support")
	b.set("#tenant", "acme")
	b.set("#host", "127.0.0.1")
	b.set("#port", "70000")
	b.set("#security", "none")
	b.set("#username", browserUser)
	b.set("#password", browserPassword)
	b.set("#start_from", "all")
	b.set("#max_message_bytes", "2000")
	b.submit("Save and Test with a bad port", "button[name=action][value=save_test]")
	b.waitJS("the port's error", `document.querySelector("#port-error") !== null`, 10*time.Second)
	if msg := eval[string](b, `document.querySelector("#port-error").textContent`); !strings.Contains(msg, "65535") {
		t.Errorf("the port's error says %q", msg)
	}
	if desc := eval[string](b, `document.querySelector("#port").getAttribute("aria-describedby")`); !strings.Contains(desc, "port-error") {
		t.Errorf("the port's error is not tied to it: aria-describedby=%q", desc)
	}
	if v := eval[string](b, `document.querySelector("#password").value`); v != "" {
		t.Errorf("the password came back into the form: %q", v)
	}
	if eval[bool](b, `document.querySelector("#password-held") === null`) {
		t.Errorf("the form does not say the password is kept")
	}

	// Then success: Save and Test shows every step passing.
	b.set("#port", strconv.Itoa(srv.Port))
	b.saveAndTest()
	steps := b.checklist()
	for _, step := range []string{"dns", "tcp", "tls", "greeting", "auth", "select"} {
		if steps[step][0] != "pass" {
			t.Errorf("step %s: %v, want pass", step, steps[step])
		}
	}
	loc := b.location() // the Save and Test screenshot: TestBrowserSaveAndTestStepByStep
	id := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(loc, "?", 2)[0], b.base+"/mailboxes/"), "/edit")
	if id == "" || strings.Contains(id, "/") {
		t.Fatalf("after Save and Test the page is %s", loc)
	}

	// A wrong password: the authentication step fails, with its sentence; then the right one.
	b.set("#password", wrongPassword)
	b.saveAndTest()
	steps = b.checklist()
	if steps["auth"][0] != "fail" || !strings.Contains(steps["auth"][1], "Sign-in failed") || steps["select"][0] != "skip" {
		t.Errorf("with a wrong password: auth %v, select %v", steps["auth"], steps["select"])
	}
	for _, step := range []string{"dns", "tcp", "tls", "greeting"} {
		if steps[step][0] != "pass" {
			t.Errorf("with a wrong password, step %s: %v", step, steps[step])
		}
	}
	b.set("#password", browserPassword)
	b.saveAndTest()
	if steps = b.checklist(); steps["auth"][0] != "pass" || steps["select"][0] != "pass" {
		t.Errorf("with the right password again: %v", steps)
	}

	// The status page: the counts rise as mail is delivered (the page refreshes by itself).
	b.open("/mailboxes/" + id)
	b.waitJS("the counts", `document.querySelector("[data-delivered]") !== null && document.querySelector("[data-acknowledged]") !== null`, 10*time.Second)
	if n := eval[string](b, `document.querySelector("[data-delivered]").dataset.delivered`); n != "0" {
		t.Errorf("delivered before any consumer: %s", n)
	}
	cl, err := client.Dial(d.addr, client.Options{Token: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	subjects := make(chan string, 10)
	cctx, stopConsumer := context.WithCancel(context.Background())
	defer stopConsumer()
	go cl.Subscribe(cctx, &mailintakev1.StreamMessagesRequest{}, func(_ context.Context, m *mailintakev1.Message) error {
		subjects <- m.GetEnvelope().GetSubject()
		return nil
	})
	if s := recvSubject(t, subjects); s != "printer on fire" {
		t.Errorf("the consumer got %q", s)
	}
	b.waitJS("the delivered count to rise", `document.querySelector("[data-delivered]").dataset.delivered === "1" && document.querySelector("[data-acknowledged]").dataset.acknowledged === "1"`, 15*time.Second)
	b.waitJS("the quarantined count", `document.querySelector("[data-quarantined]").dataset.quarantined === "1"`, 15*time.Second)
	b.waitJS("the event log", `document.querySelector("tr[data-event=deliver]") !== null && document.querySelector("tr[data-event=quarantine]") !== null`, 15*time.Second)

	// The mailbox list shows each mailbox's state, last sync and counts, and the last error in
	// words (a second mailbox whose server refuses connections).
	sales, err := cl.Mailboxes.CreateMailbox(context.Background(), &mailintakev1.CreateMailboxRequest{Mailbox: &mailintakev1.Mailbox{
		Tenant: "acme", DisplayName: "Sales", Enabled: true, Host: "127.0.0.1", Port: uint32(closedPort(t)), Security: mailintakev1.Security_SECURITY_NONE,
		Username: "sales@example.com", AuthProvider: "basic", AuthSecrets: map[string]string{"password": browserPassword}}})
	if err != nil {
		t.Fatal(err)
	}
	b.open("/")
	b.waitJS("the mailbox's row", `document.querySelector("tr[data-mailbox-id='`+id+`'] [data-state]") !== null`, 5*time.Second)
	if st := eval[string](b, `document.querySelector("tr[data-mailbox-id='`+id+`'] [data-state]").dataset.state`); st != "idle" && st != "syncing" {
		t.Errorf("the list shows the state %q", st)
	}
	salesRow := "tr[data-mailbox-id='" + sales.GetMailbox().GetId() + "']"
	for deadline := time.Now().Add(15 * time.Second); !eval[bool](b, `document.querySelector("`+salesRow+` [data-state=error]") !== null`); {
		if time.Now().After(deadline) {
			t.Fatalf("the failing mailbox never showed as failing:\n%s", b.text())
		}
		time.Sleep(200 * time.Millisecond)
		b.open("/")
	}
	if msg := eval[string](b, `document.querySelector("`+salesRow+` [data-last-error]").textContent`); !strings.Contains(msg, "refused") {
		t.Errorf("the failing mailbox's last error: %q", msg)
	}
	b.screenshot("web-list.png")

	// The quarantined message is replayed from the mailbox's page, and delivered.
	b.open("/mailboxes/" + id)
	b.waitJS("the quarantined message", `document.querySelector("tr[data-quarantine-state=held]") !== null`, 5*time.Second)
	b.submit("replaying", "tr[data-quarantine-state=held] form button")
	b.waitJS("the replay's confirmation", `document.querySelector(".flash") !== null && document.querySelector(".flash").textContent.includes("will be delivered again")`, 10*time.Second)
	if s := recvSubject(t, subjects); s != "too big" {
		t.Errorf("after the replay the consumer got %q", s)
	}
	b.waitJS("the delivered count after the replay", `document.querySelector("[data-delivered]").dataset.delivered === "2"`, 15*time.Second)
	b.do("scrolling to the top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	b.screenshot("web-mailbox.png")

	// Tokens: create one for another tenant, shown once.
	b.open("/tokens")
	b.set("#tenant", "globex")
	b.set("#name", "globex-desk")
	before := len(b.pages)
	b.submit("creating a token", "form[action='/tokens'] button[type=submit]")
	b.waitJS("the new token", `document.querySelector("[data-token-secret]") !== null`, 10*time.Second)
	globexToken := eval[string](b, `document.querySelector("[data-token-secret]").value`)
	b.pages = b.pages[:before] // the one page that shows it, this once
	if !strings.HasPrefix(globexToken, "mit_") {
		t.Fatalf("the new token is %q", globexToken)
	}
	b.open("/tokens")
	if eval[bool](b, `document.querySelector("[data-token-secret]") !== null`) {
		t.Errorf("the token is shown a second time")
	}
	b.signOut()

	// The other tenant's token sees none of acme's mailboxes, not even by URL.
	b.signIn(globexToken)
	if n := eval[int](b, `document.querySelectorAll("tr[data-mailbox-id]").length`); n != 0 {
		t.Errorf("globex sees %d mailboxes", n)
	}
	for _, path := range []string{"/mailboxes/" + id, "/mailboxes/" + id + "/edit", "/mailboxes/" + id + "/delete"} {
		resp, err := chromedp.Run(b.ctx, chromedp.NavigateResponse(b.base+path))
		if err != nil {
			t.Fatal(err)
		}
		b.record()
		if resp.Status != http.StatusNotFound || strings.Contains(b.text(), "Support") {
			t.Errorf("globex opening %s: %d\n%s", path, resp.Status, b.text())
		}
	}
	b.signOut()

	// A form of another origin cannot act on the page: its POST is refused.
	b.signIn(adminToken)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><title>evil</title><form method="post" action="%s/mailboxes/%s/delete"><button id="go">win a prize</button></form>`, b.base, id)
	}))
	defer evil.Close()
	b.do("opening another site", chromedp.Navigate(evil.URL))
	resp, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS("#go")))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusForbidden || !strings.Contains(b.text(), "cross-origin") {
		t.Errorf("a cross-origin POST: %d\n%s", resp.Status, b.text())
	}
	if _, err := cl.Mailboxes.GetMailbox(context.Background(), &mailintakev1.GetMailboxRequest{Id: id}); err != nil {
		t.Errorf("after the cross-origin POST the mailbox is gone: %v", err)
	}

	// Revoke the other tenant's token (with a confirmation); it stops working.
	b.open("/tokens")
	b.submit("revoking", "tr[data-token-id='"+tokenID(globexToken)+"'] a")
	b.waitJS("the confirmation", `document.querySelector("form.confirm") !== null`, 5*time.Second)
	b.submit("confirming", "form.confirm button[type=submit]")
	b.waitJS("the revocation", `document.querySelector(".flash") !== null && document.querySelector(".flash").textContent.includes("Revoked")`, 10*time.Second)
	gl, err := client.Dial(d.addr, client.Options{Token: globexToken})
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	if _, err := gl.Mailboxes.ListMailboxes(context.Background(), &mailintakev1.ListMailboxesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the revoked token still works: %v", err)
	}
	b.signOut()

	// No secret in any page's HTML: neither the mailbox's passwords nor the admin token (the
	// new tenant token appeared on its one page only).
	if len(b.pages) < 15 {
		t.Errorf("only %d pages were recorded", len(b.pages))
	}
	for _, p := range b.pages {
		for name, secret := range map[string]string{"the IMAP password": browserPassword, "the wrong password": wrongPassword,
			"the admin token": adminToken, "the tenant token": globexToken} {
			if strings.Contains(p.html, secret) {
				t.Errorf("%s is in the HTML of %s", name, p.url)
			}
		}
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	n, _ := strconv.Atoi(port)
	return n
}

func readToken(t *testing.T, data string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func tokenID(token string) string {
	parts := strings.SplitN(strings.TrimPrefix(token, "mit_"), "_", 2)
	return parts[0]
}

func recvSubject(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("no message was delivered within 20 s")
		return ""
	}
}
