package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/idp"
	"github.com/mailintake/mailintake/internal/fakes/pop3test"
)

// TestPOP3EndToEnd runs a POP3 mailbox through the real daemon, CLI and basic provider against
// the in-process POP3 server: dry run and connection test of the definition, MARK_SEEN refused
// naming after_ack, delivery with acknowledgements deleting on the server, an oversized message
// quarantined without being downloaded, new mail at the next poll, status and events.
func TestPOP3EndToEnd(t *testing.T) {
	srv := pop3test.Start(t, pop3test.Options{})
	srv.AddUser("help@example.com", "pw-1")
	srv.Add("help@example.com", []byte("From: a@example.net\r\nSubject: first\r\n\r\nhello\r\n"))
	srv.Add("help@example.com", []byte("From: b@example.net\r\nSubject: too big\r\n\r\n"+strings.Repeat("x", 4000)+"\r\n"))
	srv.Add("help@example.com", []byte("From: c@example.net\r\nSubject: second\r\n\r\nhello again\r\n"))
	data := t.TempDir()
	metricsAddr := freeAddr(t)
	d := startDaemon(t, data, "--metrics-listen", metricsAddr)
	g := []string{"--addr", d.addr, "--data-dir", data}
	def := []string{"--tenant", "acme", "--name", "Help POP", "--protocol", "pop3", "--host", "127.0.0.1", "--port", strconv.Itoa(srv.Port),
		"--security", "none", "--username", "help@example.com", "--provider", "basic", "--password-stdin", "--start-from", "all",
		"--poll-interval", "5s"}

	code, out, errs := cli(t, "pw-1", append(append(g, "mailbox", "dry-run"), def...)...)
	if code != 0 || !strings.Contains(out, "would deliver 3 messages") {
		t.Errorf("dry-run: exit %d %q %q", code, out, errs)
	}
	code, out, _ = cli(t, "pw-1", append(append(g, "mailbox", "test"), def...)...)
	if code != 0 || strings.Count(out, "[ok]") != 6 || !strings.Contains(out, "CAPA") {
		t.Errorf("mailbox test: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, "wrong", append(append(g, "mailbox", "test"), def...)...)
	if code != 1 || !strings.Contains(out, "[FAIL] auth") || !strings.Contains(out, "POP3") {
		t.Errorf("mailbox test with a wrong password: exit %d\n%s", code, out)
	}
	code, _, errs = cli(t, "pw-1", append(append(g, "mailbox", "add", "--after-ack", "mark-seen"), def...)...)
	if code != 1 || !strings.Contains(errs, "mailbox.after_ack.action") || !strings.Contains(errs, "no flags") {
		t.Errorf("add with mark-seen: exit %d %s", code, errs)
	}
	code, _, errs = cli(t, "pw-1", append(append(append(g, "mailbox", "add"), def...), "--poll-interval", "1s")...)
	if code != 1 || !strings.Contains(errs, "mailbox.poll_interval") {
		t.Errorf("add polled every second: exit %d %s", code, errs)
	}

	code, out, errs = cli(t, "pw-1", append(append(g, "mailbox", "add", "--json", "--max-message-size", "2000", "--after-ack", "delete"), def...)...)
	if code != 0 {
		t.Fatalf("add: %s", errs)
	}
	var mb struct {
		ID string `json:"id"`
	}
	jsonUnmarshal(out, &mb)
	code, out, _ = cli(t, "", append(g, "mailbox", "show", mb.ID)...)
	if code != 0 || !strings.Contains(out, "pop3") || !strings.Contains(out, "5s") || !strings.Contains(out, "delete") {
		t.Errorf("show: exit %d\n%s", code, out)
	}
	s, ids := tailLines(t, g, "--ack", "--limit", "2", "--timeout", "10s")
	if len(s) != 2 || s[0] != "first" || s[1] != "second" || !strings.HasPrefix(ids[0], mb.ID+":1:") {
		t.Fatalf("tail = %v %v", s, ids)
	}
	waitFor(t, "the acknowledged messages deleted", func() bool { return len(srv.Messages("help@example.com")) == 1 })
	if n := srv.Commands("RETR"); n != 2 {
		t.Errorf("RETR sent %d times, want 2 (not for the oversized message)", n)
	}
	code, out, _ = cli(t, "", append(g, "quarantine", "list", mb.ID)...)
	if code != 0 || !strings.Contains(out, "too big") || !strings.Contains(out, "over the mailbox's limit") {
		t.Errorf("quarantine list: exit %d\n%s", code, out)
	}
	srv.Add("help@example.com", []byte("From: d@example.net\r\nSubject: new\r\n\r\nnew mail\r\n"))
	if s, _ := tailLines(t, g, "--ack", "--limit", "1", "--timeout", "15s"); len(s) != 1 || s[0] != "new" {
		t.Errorf("new mail: tail = %v", s)
	}
	waitFor(t, "the new message deleted", func() bool { return len(srv.Messages("help@example.com")) == 1 })
	code, out, _ = cli(t, "", append(g, "mailbox", "status", mb.ID)...)
	if code != 0 || !strings.Contains(out, "3 delivered, 3 acknowledged, 0 pending, 1 quarantined") || !strings.Contains(out, "polling every 5s") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, "", append(g, "mailbox", "events", mb.ID)...)
	for _, want := range []string{"first sync", "deliver", "quarantine"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("events lack %q: exit %d\n%s", want, code, out)
		}
	}
	// One message or two, as the acknowledgements were batched.
	if !regexp.MustCompile(`\b(1 acknowledged message deleted \(UID \d+\)|\d+ acknowledged messages deleted \(UIDs [\d:,]+\))`).MatchString(out) {
		t.Errorf("events lack the acknowledged messages deleted:\n%s", out)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`mailintake_messages_delivered_total{mailbox="` + mb.ID + `"} 3`,
		`mailintake_messages_acked_total{mailbox="` + mb.ID + `"} 3`,
		`mailintake_messages_quarantined_total{mailbox="` + mb.ID + `"} 1`,
		`mailintake_last_success_timestamp_seconds{mailbox="` + mb.ID + `"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if code, _, errs := cli(t, "", append(g, "mailbox", "update", mb.ID, "--poll-interval", "10s")...); code != 0 {
		t.Errorf("update --poll-interval: %s", errs)
	}
	if code, out, _ = cli(t, "", append(g, "mailbox", "show", mb.ID)...); !strings.Contains(out, "10s") {
		t.Errorf("show after the update: exit %d\n%s", code, out)
	}
	if code, _, errs := cli(t, "", append(g, "mailbox", "update", mb.ID, "--protocol", "imap", "--after-ack", "mark-seen")...); code != 1 || !strings.Contains(errs, "mailbox.protocol") {
		t.Errorf("update --protocol imap: exit %d %s", code, errs)
	}
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPOP3O365: an o365 mailbox reads over POP3 with XOAUTH2 in two steps (Exchange's way) on
// a token for the POP scope from the fake identity platform; a refused cached token (Exchange's
// one -ERR for every failed login) is replaced once by a fresh one, and no token reaches the
// logs.
func TestPOP3O365(t *testing.T) {
	const (
		tenant = "11111111-2222-3333-4444-555555555555"
		app    = "aaaaaaaa-0000-0000-0000-000000000001"
		user   = "help@contoso.onmicrosoft.com"
		pw     = "M365-pa55word"
	)
	p := idp.New(tenant, "contoso.onmicrosoft.com")
	p.AddUser(idp.User{UPN: user, Password: pw})
	p.AddApp(idp.App{ClientID: app, PublicFlows: true})
	hs := httptest.NewServer(p)
	t.Cleanup(hs.Close)
	scope := func(token string) string {
		resp, err := http.PostForm(hs.URL+"/introspect", url.Values{"token": {token}})
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var r struct {
			Scope string `json:"scope"`
		}
		json.NewDecoder(resp.Body).Decode(&r)
		return r.Scope
	}
	srv := pop3test.Start(t, pop3test.Options{Exchange: true, ValidateToken: func(tok, u string) bool {
		return p.Valid(tok, u) && strings.Contains(scope(tok), "https://outlook.office.com/POP.AccessAsUser.All")
	}})
	srv.AddUser(user, "not-used-with-oauth")
	srv.Add(user, []byte("From: a@example.net\r\nSubject: via pop\r\n\r\nhello\r\n"))
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	code, _, errs := cli(t, pw, append(g, "mailbox", "add", "--tenant", "acme", "--name", "M365 POP", "--protocol", "pop3", "--host", "127.0.0.1",
		"--port", strconv.Itoa(srv.Port), "--security", "none", "--username", user, "--provider", "o365", "--password-stdin",
		"--config", "client_id="+app, "--config", "tenant_id="+tenant, "--config", "authority="+hs.URL,
		"--start-from", "all", "--after-ack", "delete", "--poll-interval", "5s")...)
	if code != 0 {
		t.Fatalf("mailbox add: %s", errs)
	}
	if s, _ := tailLines(t, g, "--ack", "--limit", "1", "--timeout", "15s"); len(s) != 1 || s[0] != "via pop" {
		t.Fatalf("tail = %v", s)
	}
	auths := srv.AuthAttempts()
	if len(auths) == 0 || auths[0].Mechanism != "XOAUTH2" || auths[0].InitialResponse || !auths[0].OK || auths[0].User != user {
		t.Errorf("logins %+v, want XOAUTH2 in two steps", auths)
	}
	waitFor(t, "the acknowledged message deleted", func() bool { return len(srv.Messages(user)) == 0 })
	// Exchange refuses the cached token: one more login with a fresh one, and the mail comes.
	before := len(srv.AuthAttempts())
	srv.Inject(pop3test.Fault{Command: "AUTH", Action: pop3test.Refuse, Reply: "-ERR Authentication failure: unknown user name or bad password.", Times: 1})
	srv.Add(user, []byte("From: b@example.net\r\nSubject: after a refusal\r\n\r\nhello\r\n"))
	if s, _ := tailLines(t, g, "--ack", "--limit", "1", "--timeout", "20s"); len(s) != 1 || s[0] != "after a refusal" {
		t.Fatalf("tail after a refused token = %v", s)
	}
	if n := len(p.Issued()); n < 2 {
		t.Errorf("%d tokens issued, want a fresh one after the refusal", n)
	}
	if n := len(srv.AuthAttempts()) - before; n < 1 {
		t.Errorf("%d logins after the refusal", n)
	}
	d.stop(t)
	for _, tok := range p.Issued() {
		if strings.Contains(d.logs.String(), tok) {
			t.Errorf("a token is in the daemon's logs")
		}
	}
}
