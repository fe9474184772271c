package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/fakes/smtptest"
	"github.com/mailintake/mailintake/internal/outbox"
	"github.com/mailintake/mailintake/internal/parse"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// withOutbox starts a sender on the env's store and plugins, as the daemon does.
func (e *env) withOutbox(t *testing.T) mailintakev1.OutboundServiceClient {
	t.Helper()
	s := outbox.New(outbox.Options{Store: e.srv.store, Credentials: e.srv.plugins, SentCopies: e.srv.sessions, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		PollInterval: 200 * time.Millisecond, DialTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second, FinalTimeout: 5 * time.Second})
	e.srv.outbox = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return mailintakev1.NewOutboundServiceClient(e.conn)
}

// sink is a submission server that takes the basic provider's PLAIN login of imapUser, without
// TLS (the mailbox's smtp_security NONE).
func sink(t *testing.T) *smtptest.Server {
	srv := smtptest.Start(t, smtptest.Options{InsecureAuth: true, DSN: true})
	srv.AddUser(imapUser, imapPass)
	return srv
}

// sendingEnv is an env with its sender, an IMAP server with imapUser and a submission sink.
func sendingEnv(t *testing.T) (*env, mailintakev1.OutboundServiceClient, *imaptest.Server, *smtptest.Server) {
	e := newEnv(t)
	out := e.withOutbox(t)
	imap := imaptest.Start(t, imaptest.Options{})
	imap.AddUser(t, imapUser, imapPass)
	return e, out, imap, sink(t)
}

func sendingMailbox(imap *imaptest.Server, smtp *smtptest.Server, tenant string) *mailintakev1.Mailbox {
	mb := imapMailbox(imap, tenant)
	mb.SendingEnabled, mb.SmtpHost, mb.SmtpPort, mb.SmtpSecurity = true, smtp.Host, uint32(smtp.Port), mailintakev1.Security_SECURITY_NONE
	return mb
}

func waitOutbound(t *testing.T, c mailintakev1.OutboundServiceClient, token, id string, want mailintakev1.OutboundState) *mailintakev1.OutboundMessage {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := c.GetOutboundMessage(as(token), &mailintakev1.GetOutboundMessageRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		m := r.GetOutboundMessage()
		if m.GetState() == want {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s, want %s: %v", id, m.GetState(), want, m.GetError())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSendMessage(t *testing.T) {
	e, out, imap, smtp := sendingEnv(t)
	acme := e.tenantToken("acme")
	mb := e.create(acme, sendingMailbox(imap, smtp, ""))
	if mb.GetSmtpPort() != uint32(smtp.Port) || !mb.GetSendingEnabled() {
		t.Fatalf("mailbox %v", mb)
	}

	req := &mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "ticket-1-reply-1",
		Content: &mailintakev1.SendMessageRequest_Draft{Draft: &mailintakev1.Draft{To: []string{"Customer <c@example.net>"}, Bcc: []string{"audit@example.com"},
			Subject: "Your printer [#1]", TextBody: "It is fixed.\n", Headers: []*mailintakev1.OutboundHeader{{Name: "X-Ticket-ID", Value: "1"}},
			Attachments: []*mailintakev1.OutboundAttachment{{Filename: "report.txt", Data: []byte("all good")}}}}}
	resp, err := out.SendMessage(as(acme), req)
	if err != nil {
		t.Fatal(err)
	}
	m := resp.GetOutboundMessage()
	if m.GetState() != mailintakev1.OutboundState_OUTBOUND_STATE_QUEUED || m.GetId() == "" || !strings.HasSuffix(m.GetMessageId(), "@example.com") ||
		m.GetFrom() != imapUser || strings.Join(m.GetRecipients(), ",") != "c@example.net,audit@example.com" || m.GetSubject() != "Your printer [#1]" || resp.GetReplayed() {
		t.Fatalf("queued %v", resp)
	}
	sent := waitOutbound(t, out, acme, m.GetId(), mailintakev1.OutboundState_OUTBOUND_STATE_SENT)
	if sent.GetAttempts() != 1 || sent.GetSmtpQueueId() == "" || !sent.GetDsnRequested() || sent.GetSentTime() == nil || sent.GetError() != nil {
		t.Errorf("sent %v", sent)
	}
	got := smtp.Accepted()
	if len(got) != 1 || got[0].User != imapUser || got[0].From != imapUser || got[0].MailOptions.EnvelopeID != m.GetId() {
		t.Fatalf("the server got %+v", got)
	}
	p := parse.Parse(got[0].Data, parse.Options{})
	if p.GetEnvelope().GetMessageId() != m.GetMessageId() || p.GetEnvelope().GetSubject() != "Your printer [#1]" || len(p.GetAttachments()) != 1 ||
		strings.Contains(string(got[0].Data), "audit@example.com") {
		t.Errorf("the message sent: %s", got[0].Data)
	}

	// The same call again: the same message, not sent again.
	again, err := out.SendMessage(as(acme), req)
	if err != nil || again.GetOutboundMessage().GetId() != m.GetId() || !again.GetReplayed() ||
		again.GetOutboundMessage().GetState() != mailintakev1.OutboundState_OUTBOUND_STATE_SENT {
		t.Errorf("repeated call: %v, %v", again, err)
	}
	// The same key for other content: refused, naming the field.
	other := &mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "ticket-1-reply-1",
		Content: &mailintakev1.SendMessageRequest_Draft{Draft: &mailintakev1.Draft{To: []string{"c@example.net"}, TextBody: "something else"}}}
	_, err = out.SendMessage(as(acme), other)
	wantCode(t, "same key, other content", err, codes.AlreadyExists)
	if f := badFields(err); len(f) != 1 || f[0] != "idempotency_key" || !strings.Contains(err.Error(), m.GetId()) {
		t.Errorf("fields %v: %v", f, err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(smtp.Messages()); n != 1 {
		t.Errorf("the server received %d messages, want 1", n)
	}

	// A raw message, and listing.
	raw := "From: Help <help@example.com>\r\nTo: c@example.net\r\nSubject: raw one\r\n\r\nbody\r\n"
	r2, err := out.SendMessage(as(acme), &mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "raw-1",
		Content: &mailintakev1.SendMessageRequest_Raw{Raw: []byte(raw)}})
	if err != nil {
		t.Fatal(err)
	}
	waitOutbound(t, out, acme, r2.GetOutboundMessage().GetId(), mailintakev1.OutboundState_OUTBOUND_STATE_SENT)
	if r2.GetOutboundMessage().GetSubject() != "raw one" || r2.GetOutboundMessage().GetMessageId() == "" {
		t.Errorf("raw: %v", r2)
	}
	list, err := out.ListOutboundMessages(as(acme), &mailintakev1.ListOutboundMessagesRequest{MailboxId: mb.GetId(), PageSize: 1})
	if err != nil || len(list.GetOutboundMessages()) != 1 || list.GetOutboundMessages()[0].GetId() != m.GetId() || list.GetNextPageToken() == "" {
		t.Fatalf("list page 1: %v, %v", list, err)
	}
	list, err = out.ListOutboundMessages(as(acme), &mailintakev1.ListOutboundMessagesRequest{PageToken: list.GetNextPageToken(), PageSize: 1})
	if err != nil || len(list.GetOutboundMessages()) != 1 || list.GetOutboundMessages()[0].GetId() != r2.GetOutboundMessage().GetId() {
		t.Fatalf("list page 2: %v, %v", list, err)
	}
	list, err = out.ListOutboundMessages(as(acme), &mailintakev1.ListOutboundMessagesRequest{State: mailintakev1.OutboundState_OUTBOUND_STATE_QUEUED})
	if err != nil || len(list.GetOutboundMessages()) != 0 {
		t.Errorf("queued: %v, %v", list, err)
	}
	// Another tenant sees none of it.
	globex := e.tenantToken("globex")
	list, err = out.ListOutboundMessages(as(globex), &mailintakev1.ListOutboundMessagesRequest{})
	if err != nil || len(list.GetOutboundMessages()) != 0 {
		t.Errorf("globex's list: %v, %v", list, err)
	}
	_, err = out.GetOutboundMessage(as(globex), &mailintakev1.GetOutboundMessageRequest{Id: m.GetId()})
	wantCode(t, "globex's get", err, codes.NotFound)
}

// A reply to a delivered message carries the original's thread: In-Reply-To its Message-ID,
// References its References and its Message-ID, and "Re: " its subject.
func TestReplyToADeliveredMessage(t *testing.T) {
	e := newEnv(t)
	out := e.withOutbox(t)
	imap := imaptest.Start(t, imaptest.Options{})
	imap.AddUser(t, imapUser, imapPass)
	imap.Append(t, imapUser, "INBOX", []byte("From: Customer <c@example.net>\r\nTo: help@example.com\r\nSubject: AW: [#7] Printer\r\n"+
		"Message-ID: <orig-2@example.net>\r\nReferences: <root-1@example.com>\r\nIn-Reply-To: <root-1@example.com>\r\n\r\nStill broken.\r\n"))
	smtp := sink(t)
	mb := e.create(e.admin, sendingMailbox(imap, smtp, "acme"))
	msg := e.stream(t, e.admin)()

	resp, err := out.SendMessage(as(e.admin), &mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "r1",
		InReplyTo: &mailintakev1.InReplyTo{Original: &mailintakev1.InReplyTo_DeliveredMessageId{DeliveredMessageId: msg.GetId()}},
		Content:   &mailintakev1.SendMessageRequest_Draft{Draft: &mailintakev1.Draft{To: []string{"c@example.net"}, TextBody: "On it."}}})
	if err != nil {
		t.Fatal(err)
	}
	if m := resp.GetOutboundMessage(); m.GetInReplyTo() != "orig-2@example.net" || m.GetSubject() != "Re: [#7] Printer" {
		t.Errorf("queued %v", m)
	}
	waitOutbound(t, out, e.admin, resp.GetOutboundMessage().GetId(), mailintakev1.OutboundState_OUTBOUND_STATE_SENT)
	env := parse.Parse(smtp.Accepted()[0].Data, parse.Options{}).GetEnvelope()
	if strings.Join(env.GetInReplyTo(), " ") != "orig-2@example.net" || strings.Join(env.GetReferences(), " ") != "root-1@example.com orig-2@example.net" ||
		env.GetSubject() != "Re: [#7] Printer" {
		t.Errorf("sent In-Reply-To %v, References %v, Subject %q", env.GetInReplyTo(), env.GetReferences(), env.GetSubject())
	}

	// By Message-ID, with the references the caller kept.
	resp, err = out.SendMessage(as(e.admin), &mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "r2",
		InReplyTo: &mailintakev1.InReplyTo{Original: &mailintakev1.InReplyTo_RfcMessageId{RfcMessageId: "<orig-2@example.net>"},
			References: []string{"<root-1@example.com>"}, Subject: "Printer"},
		Content: &mailintakev1.SendMessageRequest_Draft{Draft: &mailintakev1.Draft{To: []string{"c@example.net"}, TextBody: "Again."}}})
	if err != nil {
		t.Fatal(err)
	}
	waitOutbound(t, out, e.admin, resp.GetOutboundMessage().GetId(), mailintakev1.OutboundState_OUTBOUND_STATE_SENT)
	env = parse.Parse(smtp.Accepted()[1].Data, parse.Options{}).GetEnvelope()
	if strings.Join(env.GetReferences(), " ") != "root-1@example.com orig-2@example.net" || env.GetSubject() != "Re: Printer" {
		t.Errorf("by Message-ID: References %v, Subject %q", env.GetReferences(), env.GetSubject())
	}

	// A message that is gone: NotFound, saying what to do.
	_, err = out.SendMessage(as(e.admin), &mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "r3",
		InReplyTo: &mailintakev1.InReplyTo{Original: &mailintakev1.InReplyTo_DeliveredMessageId{DeliveredMessageId: fmt.Sprintf("%s:%d:999", mb.GetId(), 1)}},
		Content:   &mailintakev1.SendMessageRequest_Draft{Draft: &mailintakev1.Draft{To: []string{"c@example.net"}, TextBody: "x"}}})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "rfc_message_id") {
		t.Errorf("a gone original: %v", err)
	}
}

func TestSendMessageValidation(t *testing.T) {
	e := newEnv(t)
	out := e.withOutbox(t)
	imap := imaptest.Start(t, imaptest.Options{})
	smtp := sink(t)
	mb := e.create(e.admin, sendingMailbox(imap, smtp, "acme"))
	off := imapMailbox(imap, "acme")
	off.Username = "helpdesk" // not an address
	offMb := e.create(e.admin, off)
	draft := func(d *mailintakev1.Draft) *mailintakev1.SendMessageRequest_Draft {
		return &mailintakev1.SendMessageRequest_Draft{Draft: d}
	}
	ok := draft(&mailintakev1.Draft{To: []string{"c@example.net"}, TextBody: "x"})
	for _, c := range []struct {
		req   *mailintakev1.SendMessageRequest
		code  codes.Code
		field string
	}{
		{&mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), Content: ok}, codes.InvalidArgument, "idempotency_key"},
		{&mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "k\n", Content: ok}, codes.InvalidArgument, "idempotency_key"},
		{&mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: strings.Repeat("k", 201), Content: ok}, codes.InvalidArgument, "idempotency_key"},
		{&mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "k"}, codes.InvalidArgument, "content"},
		{&mailintakev1.SendMessageRequest{IdempotencyKey: "k", Content: ok}, codes.InvalidArgument, "mailbox_id"},
		{&mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "k", Content: draft(&mailintakev1.Draft{To: []string{"not an address"}})}, codes.InvalidArgument, "draft.to[0]"},
		{&mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "k", Content: draft(&mailintakev1.Draft{TextBody: "x"})}, codes.InvalidArgument, "draft"},
		{&mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "k", Content: draft(&mailintakev1.Draft{To: []string{"c@example.net"},
			Headers: []*mailintakev1.OutboundHeader{{Name: "Message-ID", Value: "<x@y>"}}})}, codes.InvalidArgument, "draft.headers"},
		{&mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "k", From: "nobody", Content: ok}, codes.InvalidArgument, "from"},
		{&mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "k", Content: &mailintakev1.SendMessageRequest_Raw{Raw: []byte("no header")}}, codes.InvalidArgument, "raw"},
		{&mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "k", Content: &mailintakev1.SendMessageRequest_Raw{Raw: []byte("From: a@example.com\r\nTo: b@example.com\r\n\r\nx")},
			InReplyTo: &mailintakev1.InReplyTo{Original: &mailintakev1.InReplyTo_RfcMessageId{RfcMessageId: "a@b"}}}, codes.InvalidArgument, "in_reply_to"},
		{&mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "k", Content: ok,
			InReplyTo: &mailintakev1.InReplyTo{Original: &mailintakev1.InReplyTo_RfcMessageId{RfcMessageId: "no id"}}}, codes.InvalidArgument, "in_reply_to.rfc_message_id"},
		{&mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "k", Content: ok,
			InReplyTo: &mailintakev1.InReplyTo{Original: &mailintakev1.InReplyTo_DeliveredMessageId{DeliveredMessageId: "junk"}}}, codes.InvalidArgument, "in_reply_to.delivered_message_id"},
		{&mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: "k", Content: ok,
			InReplyTo: &mailintakev1.InReplyTo{Original: &mailintakev1.InReplyTo_DeliveredMessageId{DeliveredMessageId: "other:1:1"}}}, codes.NotFound, ""},
		{&mailintakev1.SendMessageRequest{MailboxId: offMb.GetId(), IdempotencyKey: "k", Content: ok}, codes.FailedPrecondition, ""},
		{&mailintakev1.SendMessageRequest{MailboxId: "nope", IdempotencyKey: "k", Content: ok}, codes.NotFound, ""},
	} {
		_, err := out.SendMessage(as(e.admin), c.req)
		if status.Code(err) != c.code {
			t.Errorf("%v: %v, want %v", c.req, err, c.code)
			continue
		}
		if c.field != "" {
			if f := badFields(err); len(f) == 0 || f[0] != c.field {
				t.Errorf("%v: fields %v, want %s (%v)", c.req, f, c.field, err)
			}
		}
	}
	// Without smtp_from, a username that is not an address needs a From.
	if _, err := e.mailbox.UpdateMailbox(as(e.admin), &mailintakev1.UpdateMailboxRequest{
		Mailbox:    &mailintakev1.Mailbox{Id: offMb.GetId(), SendingEnabled: true, SmtpHost: smtp.Host, SmtpPort: uint32(smtp.Port), SmtpSecurity: mailintakev1.Security_SECURITY_NONE},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"sending_enabled", "smtp_host", "smtp_port", "smtp_security"}}}); err != nil {
		t.Fatal(err)
	}
	_, err := out.SendMessage(as(e.admin), &mailintakev1.SendMessageRequest{MailboxId: offMb.GetId(), IdempotencyKey: "k", Content: ok})
	if f := badFields(err); len(f) != 1 || f[0] != "from" {
		t.Errorf("no From: %v", err)
	}
	if _, err := out.SendMessage(as(e.admin), &mailintakev1.SendMessageRequest{MailboxId: offMb.GetId(), IdempotencyKey: "k", From: "Help <help@example.com>", Content: ok}); err != nil {
		t.Errorf("with a From: %v", err)
	}
	_, err = out.ListOutboundMessages(as(e.admin), &mailintakev1.ListOutboundMessagesRequest{PageSize: -1, PageToken: "!", State: 99})
	if f := badFields(err); strings.Join(f, ",") != "page_size,page_token,state" {
		t.Errorf("list fields %v", f)
	}
}

func TestMailboxSendingSettings(t *testing.T) {
	e := newEnv(t)
	w := newO365World(t)
	// o365 with sending on: Microsoft 365's submission server filled in.
	spec := w.mailbox("ropc", publicApp, map[string]string{"password": o365Password})
	spec.Enabled, spec.SendingEnabled = false, true
	mb := e.create(e.admin, spec)
	if mb.GetSmtpHost() != "smtp.office365.com" || mb.GetSmtpPort() != 587 || mb.GetSmtpSecurity() != mailintakev1.Security_SECURITY_STARTTLS {
		t.Errorf("o365 defaults: %v", mb)
	}
	// Exchange Online files the Sent copy itself: an APPEND would make a second one.
	spec = w.mailbox("ropc", publicApp, map[string]string{"password": o365Password})
	spec.Enabled, spec.SendingEnabled, spec.SaveSentCopy = false, true, true
	_, err := e.mailbox.CreateMailbox(as(e.admin), &mailintakev1.CreateMailboxRequest{Mailbox: spec})
	if f := badFields(err); len(f) != 1 || f[0] != "mailbox.save_sent_copy" || !strings.Contains(err.Error(), "Microsoft 365") {
		t.Errorf("o365 with save_sent_copy: %v", err)
	}
	// Port and security go together.
	for _, c := range []struct {
		port uint32
		sec  mailintakev1.Security
		want uint32
		ws   mailintakev1.Security
	}{
		{0, mailintakev1.Security_SECURITY_UNSPECIFIED, 587, mailintakev1.Security_SECURITY_STARTTLS},
		{465, mailintakev1.Security_SECURITY_UNSPECIFIED, 465, mailintakev1.Security_SECURITY_TLS},
		{0, mailintakev1.Security_SECURITY_TLS, 465, mailintakev1.Security_SECURITY_TLS},
		{2525, mailintakev1.Security_SECURITY_NONE, 2525, mailintakev1.Security_SECURITY_NONE},
	} {
		s := validMailbox("acme")
		s.Enabled, s.SendingEnabled, s.SmtpHost, s.SmtpPort, s.SmtpSecurity = false, true, "smtp.example.com", c.port, c.sec
		got := e.create(e.admin, s)
		if got.GetSmtpPort() != c.want || got.GetSmtpSecurity() != c.ws {
			t.Errorf("%d/%v: %d/%v", c.port, c.sec, got.GetSmtpPort(), got.GetSmtpSecurity())
		}
	}
	for _, c := range []struct {
		f     func(*mailintakev1.Mailbox)
		field string
	}{
		{func(m *mailintakev1.Mailbox) { m.SendingEnabled = true }, "mailbox.smtp_host"},
		{func(m *mailintakev1.Mailbox) { m.SmtpHost = "bad host" }, "mailbox.smtp_host"},
		{func(m *mailintakev1.Mailbox) { m.SmtpHost, m.SmtpPort = "h.example.com", 70000 }, "mailbox.smtp_port"},
		{func(m *mailintakev1.Mailbox) { m.SmtpHost, m.SmtpSecurity = "h.example.com", 9 }, "mailbox.smtp_security"},
		{func(m *mailintakev1.Mailbox) { m.SmtpFrom = "not an address" }, "mailbox.smtp_from"},
		{func(m *mailintakev1.Mailbox) { m.SmtpMaxPerMinute = 1 << 20 }, "mailbox.smtp_max_per_minute"},
		{func(m *mailintakev1.Mailbox) { m.SaveSentCopy, m.Host = true, "outlook.office365.com" }, "mailbox.save_sent_copy"},
		{func(m *mailintakev1.Mailbox) { m.SaveSentCopy, m.SmtpHost = true, "smtp.gmail.com" }, "mailbox.save_sent_copy"},
		{func(m *mailintakev1.Mailbox) { m.SentFolder = "Sent\r\nItems" }, "mailbox.sent_folder"},
		{func(m *mailintakev1.Mailbox) {
			m.AuthProvider, m.AuthConfig, m.AuthSecrets = "fake", map[string]string{"behavior": "ok"}, nil
			m.SendingEnabled, m.SmtpHost = true, "h.example.com"
		}, "mailbox.sending_enabled"},
	} {
		s := validMailbox("acme")
		s.Enabled = false
		c.f(s)
		_, err := e.mailbox.CreateMailbox(as(e.admin), &mailintakev1.CreateMailboxRequest{Mailbox: s})
		if f := badFields(err); len(f) != 1 || f[0] != c.field {
			t.Errorf("want %s: %v", c.field, err)
		}
	}
	// Updatable.
	upd, err := e.mailbox.UpdateMailbox(as(e.admin), &mailintakev1.UpdateMailboxRequest{
		Mailbox:    &mailintakev1.Mailbox{Id: mb.GetId(), SmtpFrom: "Shared <shared@contoso.onmicrosoft.com>", SmtpMaxPerMinute: 10},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"smtp_from", "smtp_max_per_minute"}}})
	if err != nil || upd.GetMailbox().GetSmtpFrom() != "Shared <shared@contoso.onmicrosoft.com>" || upd.GetMailbox().GetSmtpMaxPerMinute() != 10 {
		t.Errorf("update: %v, %v", upd, err)
	}
}

// A mailbox with save_sent_copy gets each message the submission server accepted in its Sent
// folder by IMAP APPEND, flagged \Seen (the folder created when missing, or the one the mailbox
// names); a copy that cannot be saved is reported on the message and as an event, and the
// message is not sent again.
func TestSentCopy(t *testing.T) {
	e, out, imap, smtp := sendingEnv(t)
	spec := sendingMailbox(imap, smtp, "acme")
	spec.SaveSentCopy = true
	mb := e.create(e.admin, spec)
	send := func(key string, bcc ...string) *mailintakev1.OutboundMessage {
		resp, err := out.SendMessage(as(e.admin), &mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: key,
			Content: &mailintakev1.SendMessageRequest_Draft{Draft: &mailintakev1.Draft{To: []string{"c@example.net"}, Bcc: bcc, Subject: "copy " + key, TextBody: "Fixed."}}})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetOutboundMessage().GetId()
		deadline := time.Now().Add(20 * time.Second)
		for {
			m := waitOutbound(t, out, e.admin, id, mailintakev1.OutboundState_OUTBOUND_STATE_SENT)
			if m.GetSentCopy() != nil {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no sent_copy recorded", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	m := send("k1")
	if c := m.GetSentCopy(); !c.GetSaved() || c.GetFolder() != "Sent" || c.GetError() != "" || c.GetTime() == nil {
		t.Fatalf("sent copy %v", c)
	}
	if n, unseen := imap.Status(t, imapUser, "Sent"); n != 1 || unseen != 0 {
		t.Errorf("Sent holds %d messages, %d unseen; want 1, 0", n, unseen)
	}

	// The folder the mailbox names.
	_, err := e.mailbox.UpdateMailbox(as(e.admin), &mailintakev1.UpdateMailboxRequest{Mailbox: &mailintakev1.Mailbox{Id: mb.GetId(), SentFolder: "Sent Copies"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"sent_folder"}}})
	if err != nil {
		t.Fatal(err)
	}
	// With a blind copy: the recipients never see it, the sender's copy names it.
	if m := send("k2", "boss@example.com"); m.GetSentCopy().GetFolder() != "Sent Copies" || !m.GetSentCopy().GetSaved() {
		t.Errorf("sent copy %v", m.GetSentCopy())
	}
	copies := imap.Messages(t, imapUser, imapPass, "Sent Copies")
	if len(copies) != 1 {
		t.Fatalf("Sent Copies holds %d messages", len(copies))
	}
	if got := parse.Parse(copies[0], parse.Options{}).GetEnvelope().GetBcc(); len(got) != 1 || got[0].GetAddress() != "boss@example.com" {
		t.Errorf("the Sent copy's Bcc: %v\n%s", got, copies[0])
	}
	if sent := smtp.Accepted(); len(sent) != 2 || strings.Contains(string(sent[1].Data), "boss@") || !slices.Contains(sent[1].To, "boss@example.com") {
		t.Errorf("the message sent with a Bcc: %+v", sent)
	}

	// The IMAP server is down: sent all the same, the copy's failure reported, nothing resent.
	imap.Stop()
	m = send("k3")
	if c := m.GetSentCopy(); c.GetSaved() || c.GetError() == "" || c.GetFolder() != "Sent Copies" {
		t.Errorf("a copy that failed: %v", c)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(smtp.Accepted()); n != 3 {
		t.Errorf("the sink accepted %d messages, want 3", n)
	}
	if got := waitOutbound(t, out, e.admin, m.GetId(), mailintakev1.OutboundState_OUTBOUND_STATE_SENT); got.GetAttempts() != 1 {
		t.Errorf("attempts %d", got.GetAttempts())
	}
	ev, err := e.mailbox.ListMailboxEvents(as(e.admin), &mailintakev1.ListMailboxEventsRequest{MailboxId: mb.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range ev.GetEvents() {
		found = found || (x.GetKind() == "send" && strings.Contains(x.GetMessage(), "could not be saved in the Sent folder"))
	}
	if !found {
		t.Errorf("no event for the failed copy: %v", ev.GetEvents())
	}
}

// A mailbox whose sending fails says so in its status, not only in its event log: the session's
// state is about fetching and stays "watching" while every reply is refused.
func TestSendingTroubleInStatus(t *testing.T) {
	e, out, imap, smtp := sendingEnv(t)
	acme := e.tenantToken("acme")
	mb := e.create(acme, sendingMailbox(imap, smtp, ""))
	send := func(key string) string {
		t.Helper()
		r, err := out.SendMessage(as(acme), &mailintakev1.SendMessageRequest{MailboxId: mb.GetId(), IdempotencyKey: key,
			Content: &mailintakev1.SendMessageRequest_Draft{Draft: &mailintakev1.Draft{To: []string{"c@example.net"}, TextBody: key}}})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetOutboundMessage().GetId()
	}
	sendingWarnings := func() []string {
		t.Helper()
		st, err := e.mailbox.GetMailboxStatus(as(acme), &mailintakev1.GetMailboxStatusRequest{Id: mb.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		var w []string
		for _, s := range st.GetStatus().GetWarnings() {
			if strings.HasPrefix(s, "sending: ") {
				w = append(w, s)
			}
		}
		return w
	}
	waitOutbound(t, out, acme, send("fine"), mailintakev1.OutboundState_OUTBOUND_STATE_SENT)
	if w := sendingWarnings(); len(w) != 0 {
		t.Errorf("after a message sent: %q", w)
	}

	// Refused for good: failed, counted for a day.
	smtp.Inject(smtptest.Fault{Step: smtptest.StepRcpt, Code: 550, Enhanced: "5.1.1", Text: "no such user", Times: 1})
	failed := waitOutbound(t, out, acme, send("refused"), mailintakev1.OutboundState_OUTBOUND_STATE_FAILED)
	w := sendingWarnings()
	if len(w) != 2 || !strings.Contains(w[0], "1 message failed in the last 24 hours") || !strings.Contains(w[0], "outbound list --mailbox "+mb.GetId()) ||
		!strings.Contains(w[1], "failed): "+failed.GetError().GetExplanation()) {
		t.Errorf("after a failed message: %q (its error: %q)", w, failed.GetError().GetExplanation())
	}

	// Refused for now, every time: the message waits, and its error is the latest.
	smtp.Inject(smtptest.Fault{Step: smtptest.StepMail, Code: 451, Enhanced: "4.3.0", Text: "mailbox server busy"})
	id := send("later")
	var retry *mailintakev1.OutboundMessage
	deadline := time.Now().Add(20 * time.Second)
	for retry.GetError() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s never failed an attempt: %v", id, retry)
		}
		time.Sleep(20 * time.Millisecond)
		r, err := out.GetOutboundMessage(as(acme), &mailintakev1.GetOutboundMessageRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		retry = r.GetOutboundMessage()
	}
	w = sendingWarnings()
	if len(w) != 3 || w[0] != "sending: 1 message waits for another attempt after a failed one" || !strings.Contains(w[1], "1 message failed") ||
		!strings.Contains(w[2], ", queued): "+retry.GetError().GetExplanation()) || !strings.Contains(w[2], "(the server said: 451 4.3.0 mailbox server busy)") {
		t.Errorf("with a message waiting: %q (its error: %q)", w, retry.GetError().GetExplanation())
	}
	for _, s := range w {
		if strings.Contains(s, imapPass) {
			t.Errorf("a warning holds the password: %q", s)
		}
	}
}
