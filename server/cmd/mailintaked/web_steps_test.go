//go:build browser

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/client"
	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/fakes/smtptest"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Save and Test shows the checklist step by step as the test runs: with the IMAP server slow to
// answer the login, Chromium sees the connection passed while the sign-in runs and the later
// steps wait, then every step passed, the SMTP steps of a mailbox with sending on included.
func TestBrowserSaveAndTestStepByStep(t *testing.T) {
	srv := imaptest.Start(t, imaptest.Options{LoginDelay: 3 * time.Second})
	srv.AddUser(t, browserUser, browserPassword)
	smtp := smtptest.Start(t, smtptest.Options{InsecureAuth: true})
	smtp.AddUser(browserUser, browserPassword)

	data := t.TempDir()
	webAddr := freeAddr(t)
	d := startDaemon(t, data, "--http-listen", webAddr)
	adminToken := readToken(t, data)
	cl, err := client.Dial(d.addr, client.Options{Token: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	created, err := cl.Mailboxes.CreateMailbox(context.Background(), &mailintakev1.CreateMailboxRequest{Mailbox: &mailintakev1.Mailbox{
		Tenant: "acme", DisplayName: "Support", Host: srv.Host, Port: uint32(srv.Port), Security: mailintakev1.Security_SECURITY_NONE,
		Username: browserUser, AuthProvider: "basic", AuthSecrets: map[string]string{"password": browserPassword},
		SendingEnabled: true, SmtpHost: smtp.Host, SmtpPort: uint32(smtp.Port), SmtpSecurity: mailintakev1.Security_SECURITY_NONE}})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetMailbox().GetId()

	b := newBrowser(t, "http://"+webAddr)
	b.signIn(adminToken)
	b.open("/mailboxes/" + id + "/edit")
	b.submit("Save and Test", "button[name=action][value=save_test]")
	const result = `const r = s => { const e = document.querySelector('#checklist [data-step="' + s + '"]'); return e === null ? "" : e.dataset.result; };`
	b.waitJS("the connection passed while the sign-in runs",
		`(() => { `+result+` return r("tcp") === "pass" && r("greeting") === "pass" && r("auth") === "running" && r("select") === "pending" && r("smtp-connect") === "pending" && r("smtp-auth") === "pending"; })()`,
		10*time.Second)
	if running := eval[bool](b, `document.querySelector("#checklist").dataset.running === "true"`); !running {
		t.Errorf("the checklist does not say it is running")
	}
	if s := b.checklist()["auth"][1]; !strings.Contains(s, "Signing in") {
		t.Errorf("the running sign-in says %q", s)
	}
	b.screenshot("web-save-and-test-running.png")
	b.waitJS("the checklist to finish", `(() => { const c = document.querySelector("#checklist"); return c !== null && c.dataset.running === "false"; })()`, 30*time.Second)
	steps := b.checklist()
	for _, step := range []string{"dns", "tcp", "tls", "greeting", "auth", "select", "smtp-connect", "smtp-tls", "smtp-ehlo", "smtp-auth"} {
		if steps[step][0] != "pass" {
			t.Errorf("step %s: %v, want pass", step, steps[step])
		}
	}
	if len(steps) != 10 {
		t.Errorf("the checklist has %d steps: %v", len(steps), steps)
	}
	if s := steps["smtp-auth"][1]; !strings.Contains(s, "Signed in to send") || !strings.Contains(s, browserUser) {
		t.Errorf("the SMTP sign-in says %q", s)
	}
	b.screenshot("web-save-and-test.png")
}
