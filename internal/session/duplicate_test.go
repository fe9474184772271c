package session_test

import (
	"fmt"
	"testing"
	"time"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// delivered is a mail as it reaches one mailbox: the customer's message with the header fields
// the receiving side adds for that mailbox in front (a Received, Delivered-To and Return-Path
// each delivery writes differently).
func delivered(to, msgID, subject, body string) []byte {
	return []byte(fmt.Sprintf("Return-Path: <customer@example.net>\r\nDelivered-To: %s\r\n"+
		"Received: from mx.example.com by imap.example.com with LMTP id %d for <%s>; Tue, 03 Mar 2026 10:15:01 +0100\r\n"+
		"From: Customer <customer@example.net>\r\nTo: sales@example.com, support@example.com\r\nSubject: %s\r\n"+
		"Message-ID: %s\r\nDate: Tue, 03 Mar 2026 10:15:00 +0100\r\n\r\n%s\r\n",
		to, time.Now().UnixNano(), to, subject, msgID, body))
}

// addUserMailbox adds mailbox id of tenant on the IMAP user username, keeping acknowledged mail.
func (h *harness) addUserMailbox(id, tenant, username string) {
	h.t.Helper()
	h.addMailbox(func(m *mailintakev1.Mailbox) {
		m.Id, m.Tenant, m.Username = id, tenant, username
		m.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}
	})
}

// byMailbox indexes messages by mailbox and subject.
func byMailbox(msgs []*mailintakev1.Message) map[string]*mailintakev1.Message {
	out := map[string]*mailintakev1.Message{}
	for _, m := range msgs {
		out[m.GetMailboxId()+"/"+m.GetEnvelope().GetSubject()] = m
	}
	return out
}

// A mail that reaches two mailboxes of one tenant is delivered from both, the later one naming
// the earlier as its duplicate; not so in another tenant, nor for another mail under the same
// Message-ID, nor for mails without a Message-ID; and the answers stay the same after a
// restart, when every unacknowledged message is delivered again.
func TestCopyInTwoMailboxesNamesTheFirst(t *testing.T) {
	srv := newIMAP(t)
	for _, u := range []string{"sales@example.com", "help@globex.example"} {
		srv.AddUser(t, u, password)
	}
	const mid = "<order-4711@example.net>"
	body := "Please send the invoice for order 4711."
	srv.Append(t, "sales@example.com", "INBOX", delivered("sales@example.com", mid, "order 4711", body))
	srv.Append(t, "sales@example.com", "INBOX", []byte("From: a@example.net\r\nSubject: no id\r\n\r\nsame body\r\n"))
	h := newHarness(t, srv)
	// support@ exists, still empty, when the mail reaches sales@: a tenant with one mailbox
	// claims nothing (no copy can arrive), so copies are recognised among the mailboxes that
	// exist when the mail arrives.
	h.addUserMailbox("support", "acme", user)
	h.addUserMailbox("sales", "acme", "sales@example.com")
	c := h.consume(20, 0)
	first := byMailbox(c.take(2))
	orig := first["sales/order 4711"]
	if orig == nil || orig.GetDuplicateOf() != "" || orig.GetContentFingerprint() == "" {
		t.Fatalf("the first copy: %v", orig)
	}

	// The same mail reaches support@ (another delivery: other trace fields), the same
	// Message-ID with another content too, and a mail without a Message-ID in both.
	srv.Append(t, user, "INBOX", delivered(user, mid, "order 4711", body))
	srv.Append(t, user, "INBOX", delivered(user, mid, "order 4711 again", "Another text under the same Message-ID."))
	srv.Append(t, user, "INBOX", []byte("From: a@example.net\r\nSubject: no id\r\n\r\nsame body\r\n"))
	// And a mailbox of another tenant.
	srv.Append(t, "help@globex.example", "INBOX", delivered("help@globex.example", mid, "order 4711", body))
	h.addUserMailbox("globex", "globex", "help@globex.example")
	got := byMailbox(c.take(4))
	want := map[string]string{
		"support/order 4711":       orig.GetId(),
		"support/order 4711 again": "",
		"support/no id":            "",
		"globex/order 4711":        "",
	}
	check := func(when string, got map[string]*mailintakev1.Message) {
		t.Helper()
		for k, dup := range want {
			m := got[k]
			if m == nil {
				t.Errorf("%s: %s was not delivered (got %v)", when, k, got)
				continue
			}
			if m.GetDuplicateOf() != dup {
				t.Errorf("%s: %s (%s) duplicate_of = %q, want %q", when, k, m.GetId(), m.GetDuplicateOf(), dup)
			}
		}
	}
	check("first delivery", got)
	if got["support/order 4711"].GetContentFingerprint() != orig.GetContentFingerprint() {
		t.Errorf("the copies' fingerprints differ: %q, %q", got["support/order 4711"].GetContentFingerprint(), orig.GetContentFingerprint())
	}

	// After a restart every message comes again (none was acknowledged), with the same answers:
	// the first copy does not name itself, the second still names the first.
	c.close()
	h.restart()
	c = h.consume(20, 0)
	defer c.close()
	again := byMailbox(c.take(6))
	want["sales/order 4711"] = ""
	want["sales/no id"] = ""
	check("after the restart", again)
	if m := again["sales/order 4711"]; m.GetId() != orig.GetId() {
		t.Errorf("the first copy came back as %s, was %s", m.GetId(), orig.GetId())
	}
}

// Two mailboxes of one tenant that receive the same mail at once, synchronised at the same
// time: one copy is first, the other names it.
func TestCopiesDeliveredAtOnceAgreeOnTheFirst(t *testing.T) {
	srv := newIMAP(t)
	srv.AddUser(t, "sales@example.com", password)
	h := newHarness(t, srv)
	h.addUserMailbox("sales", "acme", "sales@example.com")
	h.addUserMailbox("support", "acme", user)
	c := h.consume(20, 0)
	defer c.close()
	for i := range 5 {
		mid := fmt.Sprintf("<burst-%d@example.net>", i)
		subject := fmt.Sprintf("burst %d", i)
		srv.Append(t, "sales@example.com", "INBOX", delivered("sales@example.com", mid, subject, "Both at once."))
		srv.Append(t, user, "INBOX", delivered(user, mid, subject, "Both at once."))
	}
	got := byMailbox(c.take(10))
	for i := range 5 {
		subject := fmt.Sprintf("burst %d", i)
		a, b := got["sales/"+subject], got["support/"+subject]
		if a == nil || b == nil {
			t.Fatalf("%s: delivered %v", subject, got)
		}
		if !(a.GetDuplicateOf() == "" && b.GetDuplicateOf() == a.GetId()) && !(b.GetDuplicateOf() == "" && a.GetDuplicateOf() == b.GetId()) {
			t.Errorf("%s: sales %s duplicate_of %q, support %s duplicate_of %q; want one first, named by the other",
				subject, a.GetId(), a.GetDuplicateOf(), b.GetId(), b.GetDuplicateOf())
		}
	}
}
