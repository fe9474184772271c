package web

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/fakes/pop3test"
	"github.com/mailintake/mailintake/internal/fakes/smtptest"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// saveAndTest posts a form that should be saved and returns the mailbox's id and the test
// run it leads to.
func (u *user) saveAndTest(path string, form url.Values) (id, run string) {
	u.e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u.e.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := u.noRedirect().Do(req)
	if err != nil {
		u.e.t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	m := regexp.MustCompile(`^/mailboxes/([^/]+)/edit\?test=([0-9a-f]+)#checklist$`).FindStringSubmatch(loc)
	if resp.StatusCode != http.StatusSeeOther || m == nil {
		_, body := u.post(path, form)
		u.e.t.Fatalf("Save and Test of %s: %d %q\n%s", path, resp.StatusCode, loc, body)
	}
	return m[1], m[2]
}

// errorNextTo checks that the page shows an error next to the input name, tied to it by
// aria-describedby, and returns the error's text.
func errorNextTo(t *testing.T, body, name string) string {
	t.Helper()
	if !regexp.MustCompile(`id="` + name + `" name="` + name + `"[^>]*aria-describedby="[^"]*` + name + `-error"[^>]*aria-invalid="true"`).MatchString(body) {
		t.Errorf("the error on %s is not tied to its input:\n%s", name, body)
	}
	return find(body, `id="`+name+`-error"><span class="visually-hidden">Error: </span>([^<]*)</p>`)
}

// A POP3 mailbox added through the form: the protocol, the poll interval and after_ack
// saved, Save and Test passing its six steps (the mailbox enabled: its session's first poll
// and the test's login take turns at the maildrop's lock) against the in-process POP3 server, mail
// delivered, the page showing POP3 and the interval, the edit form the protocol read-only
// and only what POP3 can do after an ack. MARK_SEEN over POP3 and an unreadable interval
// come back as errors next to their inputs.
func TestFormAddsPOP3Mailbox(t *testing.T) {
	e := newEnv(t)
	srv := pop3test.Start(t, pop3test.Options{})
	srv.AddUser(imapUser, imapPass)
	srv.Add(imapUser, []byte("From: a@example.net\r\nSubject: over POP3\r\n\r\nhello\r\n"))
	u := e.signedIn(e.admin)

	if _, body := u.get("/mailboxes/new"); !regexp.MustCompile(`<label for="protocol">Protocol</label>\s*<select id="protocol" name="protocol"[^>]*aria-describedby="protocol-help"`).MatchString(body) ||
		!strings.Contains(body, `<option value="pop3">POP3</option>`) || !strings.Contains(body, `<label for="poll_interval">`) ||
		!strings.Contains(body, `<legend>Outgoing mail server (SMTP)</legend>`) {
		t.Errorf("the add form lacks the protocol, poll interval or outgoing server:\n%s", body)
	}

	form := url.Values{"display_name": {"Help POP"}, "tenant": {"acme"}, "protocol": {"pop3"}, "host": {srv.Host}, "port": {strconv.Itoa(srv.Port)},
		"security": {"none"}, "poll_interval": {"soon"}, "username": {imapUser}, "auth_provider": {"basic"}, "password": {imapPass}, "mechanism": {"PLAIN"},
		"start_from": {"all"}, "after_ack": {"mark_seen"}, "enabled": {"true"}}
	resp, body := u.post("/mailboxes/new", form)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(errorNextTo(t, body, "poll_interval"), "is not a duration") {
		t.Errorf("an unreadable poll interval: %d\n%s", resp.StatusCode, body)
	}
	form.Set("poll_interval", "5")
	resp, body = u.post("/mailboxes/new", form)
	if msg := errorNextTo(t, body, "after_ack"); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(msg, "MARK_SEEN is not possible over POP3") {
		t.Errorf("MARK_SEEN over POP3: %d, the error next to after_ack says %q", resp.StatusCode, msg)
	}
	if !strings.Contains(body, `value="pop3" selected`) || !strings.Contains(body, `id="poll_interval" name="poll_interval" value="5"`) {
		t.Errorf("the form with errors lost the protocol or interval:\n%s", body)
	}

	form.Set("after_ack", "delete")
	id, run := u.saveAndTest("/mailboxes/new", form)
	steps := waitChecklist(t, u, id, run)
	for _, s := range []string{"dns", "tcp", "tls", "greeting", "auth", "select"} {
		if steps[s][0] != "pass" && !(s == "tls" && steps[s][0] == "skip") {
			t.Errorf("step %s: %v", s, steps[s])
		}
	}
	got, err := e.mb.GetMailbox(as(e.admin), &mailintakev1.GetMailboxRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	mb := got.GetMailbox()
	if mb.GetProtocol() != mailintakev1.Protocol_PROTOCOL_POP3 || mb.GetPollInterval().AsDuration() != 5*time.Second ||
		mb.GetAfterAck().GetAction() != mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE || mb.GetPort() != uint32(srv.Port) {
		t.Errorf("saved %v", mb)
	}

	// The page: POP3, polled every 5s; mail is delivered.
	_, body = u.get("/mailboxes/" + id)
	if !strings.Contains(body, `data-protocol="POP3"`) || !strings.Contains(body, `data-poll-interval="5s"`) || !strings.Contains(body, `data-sending="false"`) {
		t.Errorf("the mailbox page:\n%s", body)
	}
	consume(t, e, e.admin)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, live := u.htmx("/mailboxes/" + id + "/live")
		if find(live, `data-delivered="(\d+)"`) == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the POP3 mailbox delivered nothing:\n%s", live)
		}
	}

	// The edit form: the protocol read-only, the interval and after_ack shown back, only
	// keep and delete offered.
	_, body = u.get("/mailboxes/" + id + "/edit")
	if strings.Contains(body, `name="protocol"`) || !strings.Contains(body, `data-protocol="pop3">Protocol: <strong>POP3</strong>`) ||
		!strings.Contains(body, `id="poll_interval" name="poll_interval" value="5s"`) || strings.Contains(body, `<option value="mark_seen"`) ||
		!strings.Contains(body, `<option value="delete" selected>`) || strings.Contains(body, imapPass) {
		t.Errorf("the edit form:\n%s", body)
	}
	// An edit keeps the protocol (a posted one is ignored) and changes the interval.
	edit := url.Values{"display_name": {"Help POP"}, "protocol": {"imap"}, "host": {srv.Host}, "port": {strconv.Itoa(srv.Port)}, "security": {"none"},
		"poll_interval": {"2m"}, "username": {imapUser}, "auth_provider": {"basic"}, "mechanism": {"PLAIN"}, "start_from": {"all"}, "after_ack": {"keep"}}
	u.saveAndTest("/mailboxes/"+id+"/edit", edit)
	got, _ = e.mb.GetMailbox(as(e.admin), &mailintakev1.GetMailboxRequest{Id: id})
	if mb := got.GetMailbox(); mb.GetProtocol() != mailintakev1.Protocol_PROTOCOL_POP3 || mb.GetPollInterval().AsDuration() != 2*time.Minute ||
		mb.GetAfterAck().GetAction() != mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP {
		t.Errorf("edited %v", mb)
	}
	e.noSecretIn(imapPass)
}

// The outgoing mail server through the form: saved, tested (the four SMTP steps passing
// against the in-process submission server), shown on the mailbox's page and back in the
// edit form, kept by an edit that changes something else; a bad From address and a sent
// copy for POP3-less sending errors stand next to their inputs.
func TestFormSendingFields(t *testing.T) {
	e := newEnv(t)
	imap := imaptest.Start(t, imaptest.Options{})
	imap.AddUser(t, imapUser, imapPass)
	smtp := smtptest.Start(t, smtptest.Options{InsecureAuth: true})
	smtp.AddUser(imapUser, imapPass)
	u := e.signedIn(e.admin)

	form := url.Values{"display_name": {"Help"}, "tenant": {"acme"}, "protocol": {"imap"}, "host": {imap.Host}, "port": {strconv.Itoa(imap.Port)},
		"security": {"none"}, "username": {imapUser}, "auth_provider": {"basic"}, "password": {imapPass}, "mechanism": {"PLAIN"}, "start_from": {"new"},
		"after_ack": {"mark_seen"}, "sending_enabled": {"true"}, "smtp_host": {smtp.Host}, "smtp_port": {strconv.Itoa(smtp.Port)},
		"smtp_security": {"none"}, "smtp_from": {"not an address"}, "smtp_max_per_minute": {"12"}, "save_sent_copy": {"true"}, "sent_folder": {"Sent Items"}}
	resp, body := u.post("/mailboxes/new", form)
	if msg := errorNextTo(t, body, "smtp_from"); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(msg, "is not an email address") {
		t.Errorf("a bad From: %d, the error next to smtp_from says %q", resp.StatusCode, msg)
	}
	if !strings.Contains(body, `id="sending_enabled" name="sending_enabled" value="true" checked`) || !strings.Contains(body, `id="smtp_host" name="smtp_host" value="`+smtp.Host+`"`) {
		t.Errorf("the form with errors lost the sending fields:\n%s", body)
	}
	form.Set("smtp_from", "Help desk <help@example.com>")
	id, run := u.saveAndTest("/mailboxes/new", form)
	steps := waitChecklistOf(t, u, id, run, 10)
	for _, s := range []string{"auth", "select", "smtp-connect", "smtp-tls", "smtp-ehlo", "smtp-auth"} {
		if steps[s][0] != "pass" && !(s == "smtp-tls" && steps[s][0] == "skip") {
			t.Errorf("step %s: %v", s, steps[s])
		}
	}
	got, err := e.mb.GetMailbox(as(e.admin), &mailintakev1.GetMailboxRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string, mb *mailintakev1.Mailbox) {
		t.Helper()
		if !mb.GetSendingEnabled() || mb.GetSmtpHost() != smtp.Host || mb.GetSmtpPort() != uint32(smtp.Port) || mb.GetSmtpSecurity() != mailintakev1.Security_SECURITY_NONE ||
			mb.GetSmtpFrom() != "Help desk <help@example.com>" || mb.GetSmtpMaxPerMinute() != 12 || !mb.GetSaveSentCopy() || mb.GetSentFolder() != "Sent Items" {
			t.Errorf("%s: %v", when, mb)
		}
	}
	check("saved", got.GetMailbox())

	_, body = u.get("/mailboxes/" + id)
	if want := smtp.Host + ":" + strconv.Itoa(smtp.Port) + " (no encryption)"; !strings.Contains(body, `data-submission="`+want+`"`) ||
		!strings.Contains(body, `data-sending="true"`) || !strings.Contains(body, `data-protocol="IMAP"`) || strings.Contains(body, "data-poll-interval") ||
		!strings.Contains(body, "saved in Sent Items") {
		t.Errorf("the mailbox page does not show the submission server %s:\n%s", want, body)
	}
	_, body = u.get("/mailboxes/" + id + "/edit")
	for _, want := range []string{`id="sending_enabled" name="sending_enabled" value="true" checked`, `id="smtp_host" name="smtp_host" value="` + smtp.Host + `"`,
		`id="smtp_port" name="smtp_port" value="` + strconv.Itoa(smtp.Port) + `"`, `<option value="none" selected>None: plaintext`,
		`id="smtp_from" name="smtp_from" value="Help desk &lt;help@example.com&gt;"`, `id="smtp_max_per_minute" name="smtp_max_per_minute" value="12"`,
		`id="save_sent_copy" name="save_sent_copy" value="true" checked`, `id="sent_folder" name="sent_folder" value="Sent Items"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the edit form lacks %s", want)
		}
	}
	if strings.Contains(body, `name="poll_interval"`) || strings.Contains(body, `name="protocol"`) {
		t.Errorf("the edit form of an IMAP mailbox offers a poll interval or protocol")
	}

	// An edit posting the form as shown, with another name, keeps the sending settings.
	edit := url.Values{"display_name": {"Help (renamed)"}, "host": {imap.Host}, "port": {strconv.Itoa(imap.Port)}, "security": {"none"}, "username": {imapUser},
		"auth_provider": {"basic"}, "mechanism": {"PLAIN"}, "start_from": {"new"}, "after_ack": {"mark_seen"}, "sending_enabled": {"true"},
		"smtp_host": {smtp.Host}, "smtp_port": {strconv.Itoa(smtp.Port)}, "smtp_security": {"none"}, "smtp_from": {"Help desk <help@example.com>"},
		"smtp_max_per_minute": {"12"}, "save_sent_copy": {"true"}, "sent_folder": {"Sent Items"}}
	u.saveAndTest("/mailboxes/"+id+"/edit", edit)
	got, _ = e.mb.GetMailbox(as(e.admin), &mailintakev1.GetMailboxRequest{Id: id})
	if got.GetMailbox().GetDisplayName() != "Help (renamed)" {
		t.Errorf("not renamed: %v", got.GetMailbox())
	}
	check("after an edit", got.GetMailbox())

	// Unticking sends no more.
	edit.Del("sending_enabled")
	edit.Del("save_sent_copy")
	u.saveAndTest("/mailboxes/"+id+"/edit", edit)
	got, _ = e.mb.GetMailbox(as(e.admin), &mailintakev1.GetMailboxRequest{Id: id})
	if got.GetMailbox().GetSendingEnabled() || got.GetMailbox().GetSaveSentCopy() || got.GetMailbox().GetSmtpHost() != smtp.Host {
		t.Errorf("after unticking: %v", got.GetMailbox())
	}

	// A sent copy for a POP3 mailbox: the API's error next to save_sent_copy.
	pop := pop3test.Start(t, pop3test.Options{})
	pop.AddUser(imapUser, imapPass)
	form.Set("protocol", "pop3")
	form.Set("host", pop.Host)
	form.Set("port", strconv.Itoa(pop.Port))
	form.Set("after_ack", "keep")
	resp, body = u.post("/mailboxes/new", form)
	if msg := errorNextTo(t, body, "save_sent_copy"); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(msg, "POP3 has no folders") {
		t.Errorf("a sent copy over POP3: %d, the error next to save_sent_copy says %q", resp.StatusCode, msg)
	}
	e.noSecretIn(imapPass)
}

// noSecretIn fails the test when any page the env served holds secret.
func (e *env) noSecretIn(secret string) {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.pages {
		if strings.Contains(p.body, secret) {
			e.t.Errorf("%s holds the secret", p.url)
		}
	}
}
