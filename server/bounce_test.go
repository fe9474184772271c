package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/fakes/pop3test"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// dsnReport is a delivery status notification as a receiving MTA (here: the sink's relay)
// sends it back: RFC 3464 multipart/report with the per-message Original-Envelope-Id (when
// envID is set), one recipient block, and the returned headers (RET=HDRS) with the Message-ID.
func dsnReport(envID, messageID, rcpt, action, status, diagnostic string) []byte {
	per := "Reporting-MTA: dns; mx.example.net\r\n"
	if envID != "" {
		per = "Original-Envelope-Id: " + envID + "\r\n" + per
	}
	subject, text := "Undelivered Mail Returned to Sender", "Your message could not be delivered to one or more recipients."
	if action == "delayed" {
		subject, text = "Delayed Mail (still being retried)", "Your message could not be delivered for 4 hours. It will be retried until it is 5 days old."
	}
	return []byte("From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nTo: help@example.com\r\n" +
		"Subject: " + subject + "\r\nMessage-ID: <dsn-" + fmt.Sprint(time.Now().UnixNano()) + "@mx.example.net>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"rep\"\r\n\r\n" +
		"--rep\r\nContent-Type: text/plain\r\n\r\n" + text + "\r\n\r\n<" + rcpt + ">: " + diagnostic + "\r\n\r\n" +
		"--rep\r\nContent-Type: message/delivery-status\r\n\r\n" + per + "\r\n" +
		"Final-Recipient: rfc822; " + rcpt + "\r\nOriginal-Recipient: rfc822; " + rcpt + "\r\nAction: " + action + "\r\nStatus: " + status + "\r\n" +
		"Remote-MTA: dns; mx.customer.example\r\nDiagnostic-Code: smtp; " + diagnostic + "\r\n\r\n" +
		"--rep\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: help@example.com\r\nTo: " + rcpt + "\r\nSubject: Your printer\r\n" +
		"Message-ID: <" + messageID + ">\r\n\r\n--rep--\r\n")
}

// Bounces close the loop: mail sent through the submission server comes back as a delivery
// report to another mailbox of the tenant; the report names its outbound message, and a failure
// makes it BOUNCED with the failed recipient, matched by the envelope id or, when the report
// has none, by the returned Message-ID. A delay warning names it and changes nothing; a report
// in another tenant's mailbox matches nothing.
func TestBouncesCloseTheLoop(t *testing.T) {
	e := newEnv(t)
	out := e.withOutbox(t)
	imap := imaptest.Start(t, imaptest.Options{})
	imap.AddUser(t, imapUser, imapPass)
	imap.AddUser(t, "bounces@example.com", "bounce-pass")
	imap.AddUser(t, "other@example.org", "other-pass")
	smtp := sink(t)
	acme := e.tenantToken("acme")
	mb := e.create(acme, sendingMailbox(imap, smtp, ""))
	returns := imapMailbox(imap, "")
	returns.Username, returns.AuthSecrets = "bounces@example.com", map[string]string{"password": "bounce-pass"}
	e.create(acme, returns)
	foreign := imapMailbox(imap, "globex")
	foreign.Username, foreign.AuthSecrets = "other@example.org", map[string]string{"password": "other-pass"}
	e.create(e.admin, foreign)

	send := func(key, to string) *mailintakev1.OutboundMessage {
		resp, err := out.SendMessage(as(acme), &mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: key,
			Content: &mailintakev1.SendMessageRequest_Draft{Draft: &mailintakev1.Draft{To: []string{to}, Subject: "Your printer", TextBody: "Fixed."}}})
		if err != nil {
			t.Fatal(err)
		}
		return waitOutbound(t, out, acme, resp.GetOutboundMessage().GetId(), mailintakev1.OutboundState_OUTBOUND_STATE_SENT)
	}
	first, second := send("k1", "gone@customer.example"), send("k2", "slow@customer.example")
	if acc := smtp.Accepted(); len(acc) != 2 || acc[0].MailOptions.EnvelopeID != first.GetId() {
		t.Fatalf("the sink accepted %+v", acc)
	}
	next := e.stream(t, e.admin)
	get := func(id string) *mailintakev1.OutboundMessage {
		r, err := out.GetOutboundMessage(as(acme), &mailintakev1.GetOutboundMessageRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetOutboundMessage()
	}

	// Another tenant's mailbox receives a report carrying acme's envelope id: no match.
	imap.Append(t, "other@example.org", "INBOX", dsnReport(first.GetId(), first.GetMessageId(), "gone@customer.example", "failed", "5.1.1", "550 5.1.1 user unknown"))
	m := next()
	if b := m.GetSignals().GetBounceReport(); b.GetKind() != mailintakev1.BounceKind_BOUNCE_KIND_FAILURE || b.GetOutboundId() != "" || b.GetOriginalEnvelopeId() != first.GetId() {
		t.Fatalf("globex's report: %v", b)
	}
	if got := get(first.GetId()); got.GetState() != mailintakev1.OutboundState_OUTBOUND_STATE_SENT {
		t.Fatalf("after globex's report: %v", got.GetState())
	}

	// The failure of the first, by its envelope id, in acme's other mailbox.
	imap.Append(t, "bounces@example.com", "INBOX", dsnReport(first.GetId(), first.GetMessageId(), "gone@customer.example", "failed", "5.1.1", "550 5.1.1 <gone@customer.example>: user unknown"))
	m = next()
	if b := m.GetSignals().GetBounceReport(); b.GetOutboundId() != first.GetId() {
		t.Fatalf("the delivered report names %q, want %q: %v", b.GetOutboundId(), first.GetId(), b)
	}
	got := get(first.GetId())
	rs := got.GetBouncedRecipients()
	if got.GetState() != mailintakev1.OutboundState_OUTBOUND_STATE_BOUNCED || got.GetBounceMessageId() != m.GetId() || got.GetBounceTime() == nil ||
		len(rs) != 1 || rs[0].GetAddress() != "gone@customer.example" || rs[0].GetStatus() != "5.1.1" || rs[0].GetReason() != mailintakev1.BounceReason_BOUNCE_REASON_UNKNOWN_USER ||
		!strings.Contains(rs[0].GetDiagnostic(), "user unknown") || !rs[0].GetPermanent() {
		t.Fatalf("after the failure: %v", got)
	}
	if got.GetSmtpQueueId() == "" || got.GetSentTime() == nil {
		t.Errorf("the bounce lost what the send recorded: %v", got)
	}

	// A delay warning of the second names it and leaves it SENT.
	imap.Append(t, "bounces@example.com", "INBOX", dsnReport(second.GetId(), second.GetMessageId(), "slow@customer.example", "delayed", "4.4.7", "421 4.4.7 try again later"))
	m = next()
	if b := m.GetSignals().GetBounceReport(); b.GetKind() != mailintakev1.BounceKind_BOUNCE_KIND_DELAY || b.GetOutboundId() != second.GetId() {
		t.Fatalf("the delay warning: %v", b)
	}
	if got := get(second.GetId()); got.GetState() != mailintakev1.OutboundState_OUTBOUND_STATE_SENT || len(got.GetBouncedRecipients()) != 0 {
		t.Fatalf("after a delay warning: %v", got)
	}
	// Its failure, from a server that dropped the envelope id: by the returned Message-ID.
	imap.Append(t, "bounces@example.com", "INBOX", dsnReport("", second.GetMessageId(), "slow@customer.example", "failed", "4.4.7", "421 4.4.7 gave up after 5 days"))
	m = next()
	if b := m.GetSignals().GetBounceReport(); b.GetOutboundId() != second.GetId() || b.GetOriginalEnvelopeId() != "" {
		t.Fatalf("the failure by Message-ID: %v", b)
	}
	got = get(second.GetId())
	if got.GetState() != mailintakev1.OutboundState_OUTBOUND_STATE_BOUNCED || len(got.GetBouncedRecipients()) != 1 || got.GetBouncedRecipients()[0].GetStatus() != "4.4.7" {
		t.Fatalf("after the failure by Message-ID: %v", got)
	}

	// A report read from a POP3 mailbox of the tenant closes the loop the same way.
	third := send("k3", "left@customer.example")
	pop := pop3test.Start(t, pop3test.Options{})
	pop.AddUser("returns@example.com", "pop-pass")
	e.create(acme, &mailintakev1.Mailbox{
		Tenant: "acme", DisplayName: "Returns (POP3)", Enabled: true, Protocol: mailintakev1.Protocol_PROTOCOL_POP3,
		Host: pop.Host, Port: uint32(pop.Port), Security: mailintakev1.Security_SECURITY_NONE, Username: "returns@example.com",
		AuthProvider: "basic", AuthSecrets: map[string]string{"password": "pop-pass"}, StartFrom: mailintakev1.StartFrom_START_FROM_ALL,
		PollInterval: durationpb.New(5 * time.Second),
	})
	pop.Add("returns@example.com", dsnReport(third.GetId(), third.GetMessageId(), "left@customer.example", "failed", "5.1.1", "550 5.1.1 mailbox unavailable"))
	m = next()
	if b := m.GetSignals().GetBounceReport(); b.GetOutboundId() != third.GetId() {
		t.Fatalf("the report read over POP3 names %q, want %q: %v", b.GetOutboundId(), third.GetId(), b)
	}
	if got := get(third.GetId()); got.GetState() != mailintakev1.OutboundState_OUTBOUND_STATE_BOUNCED || got.GetBounceMessageId() != m.GetId() {
		t.Fatalf("after the report read over POP3: %v", got)
	}
	list, err := out.ListOutboundMessages(as(acme), &mailintakev1.ListOutboundMessagesRequest{State: mailintakev1.OutboundState_OUTBOUND_STATE_BOUNCED})
	if err != nil || len(list.GetOutboundMessages()) != 3 {
		t.Errorf("bounced: %v, %v", list, err)
	}
}
