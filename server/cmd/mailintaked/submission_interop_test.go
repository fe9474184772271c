//go:build interop

package main

import (
	"bytes"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	"github.com/mailintake/mailintake/internal/fakes/idp"
	"github.com/mailintake/mailintake/internal/parse"
)

// TestInteropSubmission replies through the daemon to mail it delivered from Dovecot, sending
// with Dovecot's submission service, which relays to its sink: a basic mailbox (PLAIN over
// STARTTLS) and a Microsoft 365 mailbox (o365 provider, XOAUTH2 over implicit TLS with a
// 2,500-character token that Dovecot's oauth2 passdb checks at the fake identity platform). The
// sink gets each reply once, threaded to its original, with the envelope and the DSN envelope
// id; the outbound message is SENT. The connection test passes its SMTP steps against Dovecot.
func TestInteropSubmission(t *testing.T) {
	const (
		tenant = "11111111-2222-3333-4444-555555555555"
		app    = "aaaaaaaa-0000-0000-0000-000000000001"
		m365   = "help@contoso.onmicrosoft.com"
		m365pw = "M365-pw-1"
	)
	p := idp.New(tenant, "contoso.onmicrosoft.com")
	p.AddUser(idp.User{UPN: m365, Password: m365pw})
	p.AddApp(idp.App{ClientID: app, PublicFlows: true})
	p.SetAccessTokenLength(2500)
	hs := httptest.NewServer(p)
	defer hs.Close()
	dv := dovecot.StartWith(t, dovecot.Options{
		Users:            map[string]string{dvUser: dvPass, m365: "dovecot-side-unused"},
		IntrospectionURL: hs.URL + "/introspect",
		Submission:       true,
		SinkDSN:          true,
	})
	sink := dv.Sink()
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}

	for _, c := range []struct {
		name, user, mech string
		smtpPort         int
		smtpSecurity     string
		add              func(extra ...string) string
	}{
		{"basic", dvUser, "PLAIN", dv.SubmissionPort, "starttls", func(extra ...string) string {
			return addDovecotMailbox(t, g, dv, dvUser, extra...)
		}},
		{"o365", m365, "XOAUTH2", dv.SubmissionSPort, "tls", func(extra ...string) string {
			return addMailboxAt(t, g, dv, m365, dv.IMAPSPort, m365pw, append([]string{"--provider", "o365", "--password-stdin",
				"--config", "client_id=" + app, "--config", "tenant_id=" + tenant, "--config", "authority=" + hs.URL}, extra...)...)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			orig := "From: Customer <c@example.net>\r\nTo: " + c.user + "\r\nSubject: AW: [#4711] Printer " + c.name + "\r\n" +
				"Message-ID: <second." + c.name + "@example.net>\r\nReferences: <first." + c.name + "@helpdesk.example>\r\n" +
				"In-Reply-To: <first." + c.name + "@helpdesk.example>\r\n\r\nStill broken.\r\n"
			dv.Deliver(t, c.user, "INBOX", []byte(orig))
			id := c.add("--start-from", "all", "--smtp-host", "127.0.0.1", "--smtp-port", strconv.Itoa(c.smtpPort), "--smtp-security", c.smtpSecurity)
			// The connection test passes Dovecot's submission steps too, printed as they end.
			if code, out, errs := cli(t, "", append(append([]string{}, g...), "mailbox", "test", id)...); code != 0 ||
				strings.Count(out, "[ok]") != 10 || !strings.Contains(out, "[ok]   smtp-auth") || !strings.Contains(out, c.mech+" as "+c.user) {
				t.Errorf("mailbox test with sending through Dovecot: exit %d\n%s%s", code, out, errs)
			}
			_, ids := tailLines(t, g, "--mailbox", id, "--ack", "--limit", "1")
			if len(ids) != 1 {
				t.Fatalf("no delivery from Dovecot: %v", ids)
			}
			before := len(sink.Accepted())
			body := "On its way.\n.\n..and a dotted line.\n"
			m, code, errs := send(t, g, body, "--mailbox", id, "--to", "Customer <c@example.net>", "--in-reply-to", ids[0],
				"--idempotency-key", "ticket-4711-"+c.name, "--wait")
			if code != 0 || m.State != "OUTBOUND_STATE_SENT" || m.InReplyTo != "second."+c.name+"@example.net" {
				t.Fatalf("send: exit %d %+v %s", code, m, errs)
			}
			acc := sink.WaitAccepted(before+1, 0)
			if len(acc) != before+1 {
				t.Fatalf("the sink has %d messages, want %d", len(acc), before+1)
			}
			got := acc[before]
			if got.From != c.user || strings.Join(got.To, ",") != "c@example.net" || got.MailOptions.EnvelopeID != m.ID ||
				got.MailOptions.Return != "HDRS" {
				t.Errorf("envelope at the sink: MAIL FROM %q RCPT %v ENVID %q RET %q; want the mailbox, the customer, %s, HDRS",
					got.From, got.To, got.MailOptions.EnvelopeID, got.MailOptions.Return, m.ID)
			}
			if !bytes.HasPrefix(got.Data, []byte("Received: from ")) || !bytes.Contains(got.Data, []byte("by dovecot.invalid with ESMTPSA")) {
				t.Errorf("the message did not come through Dovecot's authenticated submission: %.200q", got.Data)
			}
			env := parse.Parse(got.Data, parse.Options{}).GetEnvelope()
			if env.GetMessageId() != m.MessageID || strings.Join(env.GetInReplyTo(), " ") != "second."+c.name+"@example.net" ||
				strings.Join(env.GetReferences(), " ") != "first."+c.name+"@helpdesk.example second."+c.name+"@example.net" ||
				env.GetSubject() != "Re: [#4711] Printer "+c.name {
				t.Errorf("the reply: Message-ID %q (want %q), In-Reply-To %v, References %v, Subject %q",
					env.GetMessageId(), m.MessageID, env.GetInReplyTo(), env.GetReferences(), env.GetSubject())
			}
			if !bytes.Contains(got.Data, []byte("\r\n.\r\n..and a dotted line.\r\n")) {
				t.Errorf("the dotted body lines did not arrive as written: %q", got.Data)
			}
			if n := countLogins(dv, c.user, c.mech); n == 0 {
				t.Errorf("Dovecot's log shows no submission login of %s with %s", c.user, c.mech)
			}
			m = waitState(t, g, m.ID, "OUTBOUND_STATE_SENT")
			if m.Attempts != 1 {
				t.Errorf("%d attempts, want 1", m.Attempts)
			}
		})
	}
	d.stop(t)
	for _, tok := range p.Issued() {
		if strings.Contains(d.logs.String(), tok) {
			t.Errorf("a token is in the daemon's logs")
		}
	}
}

// countLogins counts Dovecot's logged submission logins of user with a SASL mechanism.
func countLogins(dv *dovecot.Server, user, mech string) int {
	n := 0
	for _, l := range strings.Split(dv.Log(), "\n") {
		if strings.Contains(l, "submission-login: Info: Login: user=<"+user+">") && strings.Contains(l, "method="+mech) {
			n++
		}
	}
	return n
}
