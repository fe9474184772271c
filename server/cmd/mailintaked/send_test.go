package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/idp"
	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/fakes/smtptest"
	"github.com/mailintake/mailintake/internal/parse"
	"github.com/mailintake/mailintake/internal/testutil"
)

// These tests send through the real daemon, CLI and auth plugins to an in-process submission
// server (internal/fakes/smtptest) over STARTTLS with a private CA given as the mailbox's
// --ca-file (which its IMAP side does not need).

// submission is an in-process submission server with the CA file a mailbox trusts it with.
type submission struct {
	*smtptest.Server
	caFile string
}

func startSubmission(t *testing.T, opts smtptest.Options) *submission {
	ca := testutil.NewCA(t)
	opts.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1")}}
	opts.DSN = true
	return &submission{Server: smtptest.Start(t, opts), caFile: ca.CAFile(t)}
}

// outboundJSON is what the CLI prints of an outbound message with --json.
type outboundJSON struct {
	ID             string `json:"id"`
	State          string `json:"state"`
	MessageID      string `json:"messageId"`
	IdempotencyKey string `json:"idempotencyKey"`
	Attempts       int    `json:"attempts"`
	InReplyTo      string `json:"inReplyTo"`
	Error          struct {
		Kind         string `json:"kind"`
		Step         string `json:"step"`
		Code         int    `json:"code"`
		EnhancedCode string `json:"enhancedCode"`
		Explanation  string `json:"explanation"`
	} `json:"error"`
}

// send runs `mailintake send --json` with body on standard input and returns the outbound
// message it printed and the exit code.
func send(t *testing.T, g []string, body string, args ...string) (outboundJSON, int, string) {
	t.Helper()
	code, out, errs := cli(t, body, append(append(append([]string{}, g...), "--json", "send"), args...)...)
	var resp struct {
		OutboundMessage outboundJSON `json:"outboundMessage"`
		Replayed        bool         `json:"replayed"`
	}
	if code == 0 || strings.HasPrefix(strings.TrimSpace(out), "{") {
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("send printed %q (exit %d, %s): %v", out, code, errs, err)
		}
	}
	if resp.Replayed {
		errs = "replayed " + errs
	}
	return resp.OutboundMessage, code, errs
}

// outboundGet runs `outbound get ID --json`.
func outboundGet(t *testing.T, g []string, id string) outboundJSON {
	t.Helper()
	code, out, errs := cli(t, "", append(append([]string{}, g...), "outbound", "get", id, "--json")...)
	var m outboundJSON
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
		t.Fatalf("outbound get %s: exit %d %q %s", id, code, out, errs)
	}
	return m
}

// waitState waits until an outbound message is in state, by the CLI.
func waitState(t *testing.T, g []string, id, state string) outboundJSON {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := outboundGet(t, g, id)
		if m.State == state {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbound %s is %s, want %s: %+v", id, m.State, state, m.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// received counts the messages the server read whole (accepted or not) whose subject is subject.
func received(s *submission, subject string) int {
	n := 0
	for _, m := range s.Messages() {
		if bytes.Contains(m.Data, []byte("\r\nSubject: "+subject+"\r\n")) {
			n++
		}
	}
	return n
}

const original = "From: Customer <c@example.net>\r\nTo: help@example.com\r\nSubject: AW: [#4711] Printer\r\n" +
	"Message-ID: <second@example.net>\r\nReferences: <first@helpdesk.example>\r\nIn-Reply-To: <first@helpdesk.example>\r\n\r\nStill broken.\r\n"

// TestSendEndToEnd: a basic (PLAIN) mailbox replies to a delivered message, a retried command
// sends once, and the submission server's faults end as they must: retried and sent once (a cut
// before DATA, a 4xx), FAILED with the explanation (5.2.252), UNKNOWN and never resent (a cut after
// the final dot).
func TestSendEndToEnd(t *testing.T) {
	imap := imaptest.Start(t, imaptest.Options{})
	imap.AddUser(t, "help@example.com", "pw-1")
	imap.Append(t, "help@example.com", "INBOX", []byte(original))
	sub := startSubmission(t, smtptest.Options{})
	sub.AddUser("help@example.com", "pw-1")
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	code, out, errs := cli(t, "pw-1", append(g, "mailbox", "add", "--json", "--tenant", "acme", "--name", "Help", "--host", "127.0.0.1",
		"--port", strconv.Itoa(imap.Port), "--security", "none", "--username", "help@example.com", "--provider", "basic", "--password-stdin",
		"--start-from", "all", "--smtp-host", "127.0.0.1", "--smtp-port", strconv.Itoa(sub.Port), "--smtp-security", "starttls", "--ca-file", sub.caFile)...)
	if code != 0 {
		t.Fatalf("mailbox add: %s", errs)
	}
	var mb struct {
		ID             string `json:"id"`
		SendingEnabled bool   `json:"sendingEnabled"`
	}
	if jsonUnmarshal(out, &mb); !mb.SendingEnabled {
		t.Fatalf("sending is not on: %s", out)
	}
	_, ids := tailLines(t, g, "--ack", "--limit", "1")

	// A reply to the delivered message.
	reply := []string{"--mailbox", mb.ID, "--to", "Customer <c@example.net>", "--in-reply-to", ids[0], "--idempotency-key", "ticket-4711-1", "--wait"}
	m, code, errs := send(t, g, "On its way.\n", reply...)
	if code != 0 || m.State != "OUTBOUND_STATE_SENT" || m.InReplyTo != "second@example.net" {
		t.Fatalf("send: exit %d %+v %s", code, m, errs)
	}
	acc := sub.Accepted()
	if len(acc) != 1 || acc[0].User != "help@example.com" || !acc[0].TLS || acc[0].MailOptions.EnvelopeID != m.ID {
		t.Fatalf("the submission server got %+v", acc)
	}
	if a := sub.Auths(); len(a) != 1 || a[0].Mechanism != "PLAIN" || !a[0].OK {
		t.Errorf("logins %+v, want one PLAIN", a)
	}
	env := parse.Parse(acc[0].Data, parse.Options{}).GetEnvelope()
	if env.GetMessageId() != m.MessageID || strings.Join(env.GetInReplyTo(), " ") != "second@example.net" ||
		strings.Join(env.GetReferences(), " ") != "first@helpdesk.example second@example.net" || env.GetSubject() != "Re: [#4711] Printer" {
		t.Errorf("the reply: Message-ID %q, In-Reply-To %v, References %v, Subject %q", env.GetMessageId(), env.GetInReplyTo(), env.GetReferences(), env.GetSubject())
	}
	// The same command again: the same message, not sent again. Other content under the key: refused.
	again, code, errs := send(t, g, "On its way.\n", reply...)
	if code != 0 || again.ID != m.ID || !strings.HasPrefix(errs, "replayed") {
		t.Errorf("repeated send: exit %d %+v %s", code, again, errs)
	}
	_, code, errs = send(t, g, "Something else.\n", reply...)
	if code != 1 || !strings.Contains(errs, "idempotency_key") {
		t.Errorf("same key, other content: exit %d %s", code, errs)
	}
	if n := len(sub.Messages()); n != 1 {
		t.Errorf("the server received %d messages, want 1", n)
	}

	// Faults.
	for _, c := range []struct {
		name, state string
		fault       smtptest.Fault
		attempts    int
		says        string
	}{
		{"cut before DATA", "OUTBOUND_STATE_SENT", smtptest.Fault{Step: smtptest.StepRcpt, Action: smtptest.Cut, Times: 1}, 2, ""},
		{"4xx then success", "OUTBOUND_STATE_SENT", smtptest.Fault{Step: smtptest.StepMail, Code: 451, Enhanced: "4.3.0", Text: "try later", Times: 1}, 2, ""},
		{"5.2.252", "OUTBOUND_STATE_FAILED", smtptest.Fault{Step: smtptest.StepEndOfData, Code: 554, Enhanced: "5.2.252",
			Text: "SendAsDenied; help@example.com not allowed to send as help@example.com", Times: 1}, 1, "Send As"},
		{"cut after the final dot", "OUTBOUND_STATE_UNKNOWN", smtptest.Fault{Step: smtptest.StepEndOfData, Action: smtptest.Cut, Times: 1}, 1, "not sent again"},
	} {
		sub.Inject(c.fault)
		m, code, errs := send(t, g, "x\n", "--mailbox", mb.ID, "--to", "c@example.net", "--subject", c.name, "--wait")
		if wantCode := map[bool]int{true: 0, false: 1}[c.state == "OUTBOUND_STATE_SENT"]; code != wantCode {
			t.Errorf("%s: exit %d, want %d: %s", c.name, code, wantCode, errs)
		}
		m = waitState(t, g, m.ID, c.state)
		if m.Attempts != c.attempts || !strings.Contains(m.Error.Explanation, c.says) {
			t.Errorf("%s: %d attempts, error %+v", c.name, m.Attempts, m.Error)
		}
		if c.state == "OUTBOUND_STATE_FAILED" && (m.Error.Code != 554 || m.Error.EnhancedCode != "5.2.252" || m.Error.Kind != "OUTBOUND_ERROR_KIND_PERMANENT") {
			t.Errorf("%s: error %+v", c.name, m.Error)
		}
		if n := received(sub, c.name); (c.state == "OUTBOUND_STATE_SENT" || c.state == "OUTBOUND_STATE_UNKNOWN") && n != 1 {
			t.Errorf("%s: the server read the message %d times, want once", c.name, n)
		}
	}
	// Nothing is sent again later: the unknown one stays as it is.
	time.Sleep(3 * time.Second)
	if n := received(sub, "cut after the final dot"); n != 1 {
		t.Errorf("the unknown message was read %d times, want once", n)
	}
	code, out, _ = cli(t, "", append(g, "outbound", "list", "--mailbox", mb.ID)...)
	for _, want := range []string{"sent", "failed", "unknown", "554 5.2.252"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("outbound list lacks %q: exit %d\n%s", want, code, out)
		}
	}
	code, out, _ = cli(t, "", append(g, "outbound", "list", "--state", "unknown", "--json")...)
	if code != 0 || strings.Count(out, `"id"`) != 1 {
		t.Errorf("outbound list --state unknown: exit %d\n%s", code, out)
	}
}

// TestSendO365: an o365 mailbox sends with XOAUTH2 on a token for the SMTP.Send scope from the
// fake identity platform (the submission server checks it as Exchange Online would); a refused
// cached token is replaced once by a fresh one.
func TestSendO365(t *testing.T) {
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
	// The token's scope, as the identity platform's introspection says.
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
	imap := imaptest.Start(t, imaptest.Options{ValidateToken: p.Valid})
	imap.AddUser(t, user, "not-used-with-oauth")
	sub := startSubmission(t, smtptest.Options{Mechanisms: []string{"LOGIN", "XOAUTH2"}, ValidateToken: func(tok, u string) bool {
		return p.Valid(tok, u) && strings.Contains(scope(tok), "https://outlook.office.com/SMTP.Send")
	}})
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	code, out, errs := cli(t, pw, append(g, "mailbox", "add", "--json", "--tenant", "acme", "--name", "M365", "--host", "127.0.0.1",
		"--port", strconv.Itoa(imap.Port), "--security", "none", "--username", user, "--provider", "o365", "--password-stdin",
		"--config", "client_id="+app, "--config", "tenant_id="+tenant, "--config", "authority="+hs.URL,
		"--smtp-host", "127.0.0.1", "--smtp-port", strconv.Itoa(sub.Port), "--ca-file", sub.caFile)...)
	if code != 0 {
		t.Fatalf("mailbox add: %s", errs)
	}
	var mb struct {
		ID           string `json:"id"`
		SmtpSecurity string `json:"smtpSecurity"`
	}
	if jsonUnmarshal(out, &mb); mb.SmtpSecurity != "SECURITY_STARTTLS" {
		t.Errorf("security %q, want STARTTLS on port %d by default", mb.SmtpSecurity, sub.Port)
	}
	m, code, errs := send(t, g, "Hello from Microsoft 365.\n", "--mailbox", mb.ID, "--to", "c@example.net", "--subject", "m365", "--wait")
	if code != 0 || m.State != "OUTBOUND_STATE_SENT" {
		t.Fatalf("send: exit %d %+v %s", code, m, errs)
	}
	auths := sub.Auths()
	if len(auths) != 1 || auths[0].Mechanism != "XOAUTH2" || auths[0].User != user || !auths[0].OK {
		t.Errorf("logins %+v", auths)
	}
	if acc := sub.Accepted(); len(acc) != 1 || acc[0].From != user {
		t.Errorf("accepted %+v", acc)
	}
	// Exchange refuses the cached token (revoked): one more login with a fresh one, which lives
	// four seconds.
	p.SetAccessTTL(4 * time.Second)
	sub.Inject(smtptest.Fault{Step: smtptest.StepAuth, Code: 535, Enhanced: "5.7.3", Text: "Authentication unsuccessful", Times: 1})
	m, code, errs = send(t, g, "Again.\n", "--mailbox", mb.ID, "--to", "c@example.net", "--subject", "m365 again", "--wait")
	if code != 0 || m.State != "OUTBOUND_STATE_SENT" || m.Attempts != 1 {
		t.Errorf("send after a refused cached token: exit %d %+v %s", code, m, errs)
	}
	if n := len(sub.Auths()); n != 3 {
		t.Errorf("%d logins, want 3 (the first send's, the refused one, the fresh one)", n)
	}
	// The cached token expires while the outbox is idle: the next message signs in with a new
	// one, on its first attempt, and no login is refused.
	before := map[string]bool{}
	for _, tok := range p.Issued() {
		before[tok] = true
	}
	time.Sleep(5 * time.Second) // the token cached for the mailbox has expired
	m, code, errs = send(t, g, "After the expiry.\n", "--mailbox", mb.ID, "--to", "c@example.net", "--subject", "m365 after expiry", "--wait")
	if code != 0 || m.State != "OUTBOUND_STATE_SENT" || m.Attempts != 1 {
		t.Errorf("send after the cached token expired: exit %d %+v %s", code, m, errs)
	}
	renewed := false
	for _, tok := range p.Issued() {
		renewed = renewed || !before[tok]
	}
	if !renewed {
		t.Errorf("no new token issued after the cached one expired")
	}
	for _, a := range sub.Auths()[3:] {
		if !a.OK {
			t.Errorf("a login was refused around the expiry: %+v", a)
		}
	}
	d.stop(t)
	for _, tok := range p.Issued() {
		if strings.Contains(d.logs.String(), tok) {
			t.Errorf("a token is in the daemon's logs")
		}
	}
}

// TestSendSurvivesSIGKILL: mail queued when the daemon is killed is sent exactly once after the
// restart; mail that was being sent (the whole message written, no answer yet) is UNKNOWN after
// the restart and never sent again.
func TestSendSurvivesSIGKILL(t *testing.T) {
	sub := startSubmission(t, smtptest.Options{})
	sub.AddUser("help@example.com", "pw-1")
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	code, out, errs := cli(t, "pw-1", append(g, "mailbox", "add", "--json", "--tenant", "acme", "--name", "Help", "--host", "127.0.0.1",
		"--port", "143", "--security", "none", "--disabled", "--username", "help@example.com", "--provider", "basic", "--password-stdin",
		"--smtp-host", "127.0.0.1", "--smtp-port", strconv.Itoa(sub.Port), "--ca-file", sub.caFile)...)
	if code != 0 {
		t.Fatalf("mailbox add: %s", errs)
	}
	var mb struct {
		ID string `json:"id"`
	}
	jsonUnmarshal(out, &mb)

	// Queued: the server refuses connections for now.
	sub.Inject(smtptest.Fault{Step: smtptest.StepGreeting, Code: 421, Enhanced: "4.3.2", Text: "Service not available"})
	queued, code, errs := send(t, g, "x\n", "--mailbox", mb.ID, "--to", "c@example.net", "--subject", "queued at the crash")
	if code != 0 {
		t.Fatalf("send: %s", errs)
	}
	for m := outboundGet(t, g, queued.ID); m.Attempts == 0; m = outboundGet(t, g, queued.ID) {
		time.Sleep(50 * time.Millisecond)
	}
	d.cmd.Process.Kill()
	d.cmd.Wait()

	sub.ClearFaults()
	d = startDaemon(t, data)
	g[1] = d.addr
	waitState(t, g, queued.ID, "OUTBOUND_STATE_SENT")

	// Being sent: the server has the whole message and does not answer.
	sub.Inject(smtptest.Fault{Step: smtptest.StepEndOfData, Action: smtptest.Stall, StallFor: time.Minute, Times: 1})
	stalled, code, errs := send(t, g, "y\n", "--mailbox", mb.ID, "--to", "c@example.net", "--subject", "sending at the crash")
	if code != 0 {
		t.Fatalf("send: %s", errs)
	}
	waitState(t, g, stalled.ID, "OUTBOUND_STATE_SENDING")
	for received(sub, "sending at the crash") == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	d.cmd.Process.Kill()
	d.cmd.Wait()
	d = startDaemon(t, data)
	g[1] = d.addr
	m := waitState(t, g, stalled.ID, "OUTBOUND_STATE_UNKNOWN")
	if !strings.Contains(m.Error.Explanation, "not sent again") {
		t.Errorf("unknown: %+v", m.Error)
	}
	// A later message goes out, and neither earlier one again.
	later, code, _ := send(t, g, "z\n", "--mailbox", mb.ID, "--to", "c@example.net", "--subject", "after the restarts", "--wait")
	if code != 0 || later.State != "OUTBOUND_STATE_SENT" {
		t.Errorf("a message after the restarts: exit %d %+v", code, later)
	}
	time.Sleep(2 * time.Second)
	for subject, want := range map[string]int{"queued at the crash": 1, "sending at the crash": 1, "after the restarts": 1} {
		if n := received(sub, subject); n != want {
			t.Errorf("%q was read %d times, want %d", subject, n, want)
		}
	}
}
