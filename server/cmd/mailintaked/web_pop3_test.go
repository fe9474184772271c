//go:build browser

package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailintake/mailintake/client"
	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/fakes/pop3test"
	"github.com/mailintake/mailintake/internal/fakes/smtptest"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// mailboxID is the mailbox's id from the page's URL after Save and Test
// (/mailboxes/ID/edit?test=…).
func (b *browser) mailboxID() string {
	b.t.Helper()
	loc := b.location()
	id := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(loc, "?", 2)[0], b.base+"/mailboxes/"), "/edit")
	if id == "" || strings.Contains(id, "/") {
		b.t.Fatalf("after Save and Test the page is %s\n%s", loc, b.text())
	}
	return id
}

// check ticks or unticks a checkbox.
func (b *browser) check(sel string, on bool) {
	b.t.Helper()
	b.do("ticking "+sel, chromedp.Evaluate[chromedp.Void](`document.querySelector("`+sel+`").checked = `+strconv.FormatBool(on)))
}

// In Chromium, a POP3 mailbox added through the form against the in-process POP3 server:
// choosing POP3 shows its poll interval and only keep and delete after an ack (form.js), a bad
// interval is an error next to it, Save and Test passes every step, the mailbox's page says POP3 and its poll interval, and its
// counts rise as mail arrives; the edit form shows the protocol read-only. Then a mailbox that
// sends, through the in-process submission server: Save and Test shows the SMTP steps passing
// and the page the submission server. No password is in any page.
func TestBrowserPOP3AndSendingForm(t *testing.T) {
	pop := pop3test.Start(t, pop3test.Options{})
	pop.AddUser(browserUser, browserPassword)
	pop.Add(browserUser, []byte("From: Alice <alice@example.net>\r\nSubject: printer on fire\r\n\r\nplease help\r\n"))
	imap := imaptest.Start(t, imaptest.Options{})
	imap.AddUser(t, browserUser, browserPassword)
	smtp := smtptest.Start(t, smtptest.Options{InsecureAuth: true})
	smtp.AddUser(browserUser, browserPassword)

	data := t.TempDir()
	webAddr := freeAddr(t)
	d := startDaemon(t, data, "--http-listen", webAddr)
	adminToken := readToken(t, data)
	b := newBrowser(t, "http://"+webAddr)
	b.signIn(adminToken)

	// The POP3 mailbox, fetching mail once saved: its first poll and Save and Test's login
	// take turns at the maildrop's lock.
	b.open("/mailboxes/new")
	visible := func(name string) bool {
		return eval[bool](b, `(() => { const f = document.querySelector('[data-field="`+name+`"]'); return f !== null && !f.hidden && f.offsetParent !== null; })()`)
	}
	if visible("poll_interval") || !visible("save_sent_copy") {
		t.Errorf("with IMAP chosen, the poll interval is shown or the sent copy hidden")
	}
	b.set("#display_name", "Help (POP3)")
	b.set("#tenant", "acme")
	b.set("#protocol", "pop3") // fires change: form.js shows POP3's inputs
	if !visible("poll_interval") || visible("save_sent_copy") || visible("after_ack_folder") {
		t.Errorf("with POP3 chosen, the poll interval is hidden or the sent copy shown")
	}
	if v := eval[string](b, `document.querySelector("#after_ack").value + " " + [...document.querySelectorAll("#after_ack option:not(:disabled)")].map(o => o.value).join(",") + " " + document.querySelector("#port").placeholder`); v != "keep delete,keep 995" {
		t.Errorf("with POP3 chosen, after_ack, its choices and the port's placeholder are %q", v)
	}
	b.set("#host", "127.0.0.1")
	b.set("#port", strconv.Itoa(pop.Port))
	b.set("#security", "none")
	b.set("#poll_interval", "5s")
	b.set("#username", browserUser)
	b.set("#password", browserPassword)
	b.set("#start_from", "all")
	b.do("scrolling to the server", chromedp.Evaluate[chromedp.Void](`document.querySelector("#protocol").closest("fieldset").scrollIntoView()`))
	b.screenshot("web-form-pop3.png")

	// An interval that is no duration: the error stands next to poll_interval, and the form
	// comes back as POP3.
	b.set("#poll_interval", "soon")
	b.submit("Save and Test with a bad interval", "button[name=action][value=save_test]")
	b.waitJS("poll_interval's error", `document.querySelector("#poll_interval-error") !== null`, 10*time.Second)
	if msg := eval[string](b, `document.querySelector("#poll_interval-error").textContent`); !strings.Contains(msg, "is not a duration") {
		t.Errorf("poll_interval's error says %q", msg)
	}
	if desc := eval[string](b, `document.querySelector("#poll_interval").getAttribute("aria-describedby")`); !strings.Contains(desc, "poll_interval-error") {
		t.Errorf("poll_interval's error is not tied to it: aria-describedby=%q", desc)
	}
	if v := eval[string](b, `document.querySelector("#protocol").value`); v != "pop3" || !visible("poll_interval") {
		t.Errorf("the form came back with protocol %q", v)
	}
	b.set("#poll_interval", "5s")
	b.set("#after_ack", "delete")
	b.saveAndTest()
	steps := b.checklist()
	for _, step := range []string{"dns", "tcp", "greeting", "auth", "select"} {
		if steps[step][0] != "pass" {
			t.Errorf("POP3 step %s: %v, want pass", step, steps[step])
		}
	}
	if steps["tls"][0] != "pass" && steps["tls"][0] != "skip" {
		t.Errorf("POP3 step tls: %v", steps["tls"])
	}
	id := b.mailboxID()
	if eval[bool](b, `document.querySelector("select#protocol") !== null`) || !strings.Contains(eval[string](b, `document.querySelector("[data-protocol]").textContent`), "POP3") {
		t.Errorf("the edit form does not show the protocol read-only")
	}
	if opts := eval[string](b, `[...document.querySelectorAll("#after_ack option")].map(o => o.value).join(",")`); opts != "delete,keep" {
		t.Errorf("a POP3 mailbox's after_ack offers %s", opts)
	}

	// Its page: POP3, every 5s; its counts rise as mail arrives.
	b.open("/mailboxes/" + id)
	if p := eval[string](b, `document.querySelector("dd[data-protocol]").dataset.protocol + " " + document.querySelector("[data-poll-interval]").dataset.pollInterval`); p != "POP3 5s" {
		t.Errorf("the page says %q", p)
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
	pop.Add(browserUser, []byte("From: Bob <bob@example.net>\r\nSubject: still on fire\r\n\r\nhelp\r\n"))
	if s := recvSubject(t, subjects); s != "still on fire" {
		t.Errorf("the consumer got %q", s)
	}
	b.waitJS("the delivered count to rise again", `document.querySelector("[data-delivered]").dataset.delivered === "2" && document.querySelector("[data-acknowledged]").dataset.acknowledged === "2"`, 20*time.Second)

	// A mailbox that sends: IMAP in, the submission server out.
	b.open("/mailboxes/new")
	b.set("#display_name", "Help (sending)")
	b.set("#tenant", "acme")
	b.set("#host", "127.0.0.1")
	b.set("#port", strconv.Itoa(imap.Port))
	b.set("#security", "none")
	b.set("#username", browserUser)
	b.set("#password", browserPassword)
	b.check("#sending_enabled", true)
	b.set("#smtp_host", "127.0.0.1")
	b.set("#smtp_port", strconv.Itoa(smtp.Port))
	b.set("#smtp_security", "none")
	b.set("#smtp_from", "Help desk <"+browserUser+">")
	b.set("#sent_folder", "Sent")
	b.do("scrolling to the outgoing server", chromedp.Evaluate[chromedp.Void](`document.querySelector("#sending_enabled").closest("fieldset").scrollIntoView()`))
	b.screenshot("web-form-outgoing.png")
	b.saveAndTest()
	steps = b.checklist()
	for _, step := range []string{"auth", "select", "smtp-connect", "smtp-ehlo", "smtp-auth"} {
		if steps[step][0] != "pass" {
			t.Errorf("step %s: %v, want pass", step, steps[step])
		}
	}
	if steps["smtp-tls"][0] != "pass" && steps["smtp-tls"][0] != "skip" {
		t.Errorf("step smtp-tls: %v", steps["smtp-tls"])
	}
	sid := b.mailboxID()
	if v := eval[string](b, `document.querySelector("#smtp_host").value + " " + document.querySelector("#smtp_port").value + " " + document.querySelector("#sending_enabled").checked`); v != "127.0.0.1 "+strconv.Itoa(smtp.Port)+" true" {
		t.Errorf("the edit form shows the submission server as %q", v)
	}
	b.open("/mailboxes/" + sid)
	if s := eval[string](b, `document.querySelector("[data-submission]").dataset.submission`); s != "127.0.0.1:"+strconv.Itoa(smtp.Port)+" (no encryption)" {
		t.Errorf("the page shows the submission server as %q", s)
	}

	for _, p := range b.pages {
		for name, secret := range map[string]string{"the password": browserPassword, "the admin token": adminToken} {
			if strings.Contains(p.html, secret) {
				t.Errorf("%s is in the HTML of %s", name, p.url)
			}
		}
	}
}
