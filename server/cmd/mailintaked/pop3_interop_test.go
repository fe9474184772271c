//go:build interop

package main

import (
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	"github.com/mailintake/mailintake/internal/fakes/idp"
)

// TestInteropPOP3 runs POP3 mailboxes through the daemon against Dovecot's POP3 service: a
// basic mailbox over STLS (110) with after_ack DELETE (acknowledged mail leaves Dovecot at the
// next QUIT), a Microsoft 365 mailbox (o365 provider, XOAUTH2 in two steps with a
// 2,500-character token that Dovecot's oauth2 passdb checks at the fake identity platform) over
// implicit TLS (995), and a KEEP mailbox whose folder gets a new UIDVALIDITY, which renumbers
// every Dovecot unique-id: the acknowledged message is recognised by its hash and not delivered
// again, the other one is.
func TestInteropPOP3(t *testing.T) {
	const (
		tenant = "11111111-2222-3333-4444-555555555555"
		app    = "aaaaaaaa-0000-0000-0000-000000000001"
		m365   = "help@contoso.onmicrosoft.com"
		m365pw = "M365-pw-1"
		keeper = "keep@example.com"
	)
	p := idp.New(tenant, "contoso.onmicrosoft.com")
	p.AddUser(idp.User{UPN: m365, Password: m365pw})
	p.AddApp(idp.App{ClientID: app, PublicFlows: true})
	p.SetAccessTokenLength(2500)
	hs := httptest.NewServer(p)
	defer hs.Close()
	dv := dovecot.StartWith(t, dovecot.Options{
		Users:            map[string]string{dvUser: dvPass, m365: "dovecot-side-unused", keeper: dvPass},
		IntrospectionURL: hs.URL + "/introspect",
		POP3:             true,
	})
	mail := func(user, subject string) []byte {
		return []byte(fmt.Sprintf("From: Customer <c@example.net>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s.%d@example.net>\r\n\r\n"+
			"Body of %s.\r\n.\r\n..a dotted line.\r\n", user, subject, strings.ReplaceAll(subject, " ", "-"), time.Now().UnixNano(), subject))
	}
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	pop := []string{"--protocol", "pop3", "--start-from", "all", "--poll-interval", "5s"}

	t.Run("basic over STLS, DELETE", func(t *testing.T) {
		dv.Deliver(t, dvUser, "INBOX", mail(dvUser, "basic one"))
		dv.Deliver(t, dvUser, "INBOX", mail(dvUser, "basic two"))
		id := addMailboxAt(t, g, dv, dvUser, dv.POP3Port, dvPass, append([]string{"--provider", "basic", "--password-stdin",
			"--security", "starttls", "--after-ack", "delete"}, pop...)...)
		if code, out, errs := cli(t, "", append(append([]string{}, g...), "mailbox", "test", id)...); code != 0 || strings.Count(out, "[ok]") != 6 {
			t.Errorf("mailbox test against Dovecot POP3: exit %d\n%s%s", code, out, errs)
		}
		s, _ := tailLines(t, g, "--mailbox", id, "--ack", "--limit", "2", "--timeout", "20s")
		if slices.Sort(s); !slices.Equal(s, []string{"basic one", "basic two"}) {
			t.Fatalf("tail = %v", s)
		}
		eventually(t, "the acknowledged mail deleted from Dovecot", func() bool { m, _ := dv.Status(t, dvUser, "INBOX"); return m == 0 })
		if n := countPOP3Logins(dv, dvUser, ""); n == 0 {
			t.Errorf("Dovecot's log shows no POP3 login of %s", dvUser)
		}
	})

	t.Run("o365 over implicit TLS, XOAUTH2", func(t *testing.T) {
		dv.Deliver(t, m365, "INBOX", mail(m365, "from m365"))
		id := addMailboxAt(t, g, dv, m365, dv.POP3SPort, m365pw, append([]string{"--provider", "o365", "--password-stdin",
			"--config", "client_id=" + app, "--config", "tenant_id=" + tenant, "--config", "authority=" + hs.URL, "--after-ack", "keep"}, pop...)...)
		s, _ := tailLines(t, g, "--mailbox", id, "--ack", "--limit", "1", "--timeout", "20s")
		if len(s) != 1 || s[0] != "from m365" {
			t.Fatalf("tail = %v", s)
		}
		if n := countPOP3Logins(dv, m365, "XOAUTH2"); n == 0 {
			t.Errorf("Dovecot's log shows no POP3 XOAUTH2 login of %s:\n%s", m365, dv.Log())
		}
		if m, _ := dv.Status(t, m365, "INBOX"); m != 1 {
			t.Errorf("KEEP left %d messages, want 1", m)
		}
	})

	t.Run("new UIDVALIDITY renumbers the unique-ids", func(t *testing.T) {
		dv.Deliver(t, keeper, "INBOX", mail(keeper, "acked"))
		id := addMailboxAt(t, g, dv, keeper, dv.POP3SPort, dvPass, append([]string{"--provider", "basic", "--password-stdin", "--after-ack", "keep"}, pop...)...)
		if s, _ := tailLines(t, g, "--mailbox", id, "--ack", "--limit", "1", "--timeout", "20s"); len(s) != 1 || s[0] != "acked" {
			t.Fatalf("tail = %v", s)
		}
		dv.Deliver(t, keeper, "INBOX", mail(keeper, "not acked"))
		if s, _ := tailLines(t, g, "--mailbox", id, "--limit", "1", "--timeout", "20s"); len(s) != 1 || s[0] != "not acked" {
			t.Fatalf("tail = %v", s)
		}
		dv.SetUIDValidity(t, keeper, "INBOX", 4242)
		// The next poll sees two unknown unique-ids: one is a message acknowledged before.
		s, _ := tailLines(t, g, "--mailbox", id, "--ack", "--timeout", "15s")
		if len(s) != 1 || s[0] != "not acked" {
			t.Errorf("after the new UIDVALIDITY tail = %v, want only the unacknowledged message", s)
		}
		code, out, _ := cli(t, "", append(append([]string{}, g...), "mailbox", "events", id)...)
		if code != 0 || !strings.Contains(out, "recognised by its SHA-256") {
			t.Errorf("events lack the recognition:\n%s", out)
		}
	})
	d.stop(t)
	for _, tok := range p.Issued() {
		if strings.Contains(d.logs.String(), tok) {
			t.Errorf("a token is in the daemon's logs")
		}
	}
}

// countPOP3Logins counts Dovecot's logged POP3 logins of user (with a SASL mechanism, or any).
func countPOP3Logins(dv *dovecot.Server, user, mech string) int {
	n := 0
	for _, l := range strings.Split(dv.Log(), "\n") {
		if strings.Contains(l, "pop3-login: Info: Login: user=<"+user+">") && (mech == "" || strings.Contains(l, "method="+mech)) {
			n++
		}
	}
	return n
}
