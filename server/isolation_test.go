package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/mailintake/mailintake/internal/fakes/fakeprovider"
	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// recvErr returns a server stream's error: the call's, or its first Recv's.
func recvErr[T any](s interface{ Recv() (T, error) }, err error) error {
	if err != nil {
		return err
	}
	_, err = s.Recv()
	return err
}

// TestTenantIsolationEveryRPC calls every RPC of the API with another tenant's token against
// acme's mailbox, its delivered message, attachment and quarantine entry, and checks that each
// one refuses without revealing anything. The matrix is checked against the service
// descriptors: an RPC added without a row here fails the test.
func TestTenantIsolationEveryRPC(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, imapUser, imapPass)
	srv.Append(t, imapUser, "INBOX", []byte(fmt.Sprintf(withAttachment, 1)))
	srv.Append(t, imapUser, "INBOX", []byte("Subject: too big\r\n\r\n"+strings.Repeat("x", 4096)+"\r\n"))
	acme := e.tenantToken("acme")
	globex := e.tenantToken("globex")
	spec := imapMailbox(srv, "")
	spec.Limits = &mailintakev1.MailboxLimits{MaxMessageBytes: 2048}
	spec.SendingEnabled, spec.SmtpHost, spec.SmtpSecurity = true, "127.0.0.1", mailintakev1.Security_SECURITY_NONE
	mb := e.create(acme, spec)
	id := mb.GetId()
	// acme queued a message (no sender runs: it stays queued).
	outbound := mailintakev1.NewOutboundServiceClient(e.conn)
	sent, err := outbound.SendMessage(as(acme), &mailintakev1.SendMessageRequest{MailboxId: id, IdempotencyKey: "k",
		Content: &mailintakev1.SendMessageRequest_Draft{Draft: &mailintakev1.Draft{To: []string{"c@example.net"}, TextBody: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	outboundID := sent.GetOutboundMessage().GetId()

	// acme receives its message (held unacknowledged) and has a quarantined one.
	ctx, cancel := context.WithTimeout(as(acme), 30*time.Second)
	defer cancel()
	stream, err := e.msgs.StreamMessages(ctx, &mailintakev1.StreamMessagesRequest{MaxInFlight: 5})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	msg := resp.GetMessage()
	var quarantineID string
	for deadline := time.Now().Add(20 * time.Second); quarantineID == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		q, err := e.msgs.ListQuarantinedMessages(as(acme), &mailintakev1.ListQuarantinedMessagesRequest{MailboxId: id})
		if err == nil && len(q.GetMessages()) > 0 {
			quarantineID = q.GetMessages()[0].GetId()
		}
	}
	if quarantineID == "" {
		t.Fatal("no quarantined message for the matrix")
	}

	g := as(globex)
	// Each row: the call as globex, and the code it must get. NotFound where the resource is
	// named by id (its existence is not revealed), PermissionDenied for tenant-wide calls.
	rows := map[string]struct {
		call func() error
		want codes.Code
	}{
		"MailboxService.CreateMailbox": {func() error {
			_, err := e.mailbox.CreateMailbox(g, &mailintakev1.CreateMailboxRequest{Mailbox: validMailbox("acme")})
			return err
		}, codes.PermissionDenied},
		"MailboxService.GetMailbox": {func() error {
			_, err := e.mailbox.GetMailbox(g, &mailintakev1.GetMailboxRequest{Id: id})
			return err
		}, codes.NotFound},
		"MailboxService.ListMailboxes": {func() error {
			_, err := e.mailbox.ListMailboxes(g, &mailintakev1.ListMailboxesRequest{Tenant: "acme"})
			return err
		}, codes.PermissionDenied},
		"MailboxService.UpdateMailbox": {func() error {
			_, err := e.mailbox.UpdateMailbox(g, &mailintakev1.UpdateMailboxRequest{Mailbox: &mailintakev1.Mailbox{Id: id, DisplayName: "x"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}})
			return err
		}, codes.NotFound},
		"MailboxService.DeleteMailbox": {func() error {
			_, err := e.mailbox.DeleteMailbox(g, &mailintakev1.DeleteMailboxRequest{Id: id})
			return err
		}, codes.NotFound},
		"MailboxService.TestConnection": {func() error {
			_, err := e.mailbox.TestConnection(g, &mailintakev1.TestConnectionRequest{Target: &mailintakev1.TestConnectionRequest_Id{Id: id}})
			return err
		}, codes.NotFound},
		"MailboxService.StreamConnectionTest": {func() error {
			return recvErr(e.mailbox.StreamConnectionTest(g, &mailintakev1.StreamConnectionTestRequest{Target: &mailintakev1.StreamConnectionTestRequest_Id{Id: id}}))
		}, codes.NotFound},
		"MailboxService.GetMailboxStatus": {func() error {
			_, err := e.mailbox.GetMailboxStatus(g, &mailintakev1.GetMailboxStatusRequest{Id: id})
			return err
		}, codes.NotFound},
		"MailboxService.PreviewFirstSync": {func() error {
			_, err := e.mailbox.PreviewFirstSync(g, &mailintakev1.PreviewFirstSyncRequest{Target: &mailintakev1.PreviewFirstSyncRequest_Id{Id: id}})
			return err
		}, codes.NotFound},
		"MailboxService.ListMailboxEvents": {func() error {
			_, err := e.mailbox.ListMailboxEvents(g, &mailintakev1.ListMailboxEventsRequest{MailboxId: id})
			return err
		}, codes.NotFound},
		"MessageService.StreamMessages": {func() error {
			return recvErr(e.msgs.StreamMessages(g, &mailintakev1.StreamMessagesRequest{MailboxIds: []string{id}}))
		}, codes.NotFound},
		"MessageService.AckMessages": {func() error {
			r, err := e.msgs.AckMessages(g, &mailintakev1.AckMessagesRequest{MessageIds: []string{msg.GetId()}})
			if err == nil && len(r.GetAcknowledgedIds()) > 0 {
				return fmt.Errorf("acknowledged %v", r.GetAcknowledgedIds())
			}
			if err == nil && len(r.GetUnknownIds()) == 1 {
				return status.Error(codes.NotFound, "the id is unknown to this tenant")
			}
			return err
		}, codes.NotFound},
		"MessageService.GetAttachment": {func() error {
			return recvErr(e.msgs.GetAttachment(g, &mailintakev1.GetAttachmentRequest{MessageId: msg.GetId(), AttachmentId: msg.GetAttachments()[0].GetId()}))
		}, codes.NotFound},
		"MessageService.GetRawMessage": {func() error {
			return recvErr(e.msgs.GetRawMessage(g, &mailintakev1.GetRawMessageRequest{MessageId: msg.GetId()}))
		}, codes.NotFound},
		"MessageService.ListQuarantinedMessages": {func() error {
			_, err := e.msgs.ListQuarantinedMessages(g, &mailintakev1.ListQuarantinedMessagesRequest{MailboxId: id})
			return err
		}, codes.NotFound},
		"MessageService.ReplayQuarantinedMessage": {func() error {
			_, err := e.msgs.ReplayQuarantinedMessage(g, &mailintakev1.ReplayQuarantinedMessageRequest{Id: quarantineID})
			return err
		}, codes.NotFound},
		"MessageService.ReleaseQuarantinedMessage": {func() error {
			_, err := e.msgs.ReleaseQuarantinedMessage(g, &mailintakev1.ReleaseQuarantinedMessageRequest{Id: quarantineID})
			return err
		}, codes.NotFound},
		"AuthProviderService.ListAuthProviders": {func() error {
			_, err := e.provs.ListAuthProviders(g, &mailintakev1.ListAuthProvidersRequest{})
			return err
		}, codes.OK}, // the installed providers are no tenant's data
		"AuthProviderService.BeginAuthorization": {func() error {
			_, err := e.provs.BeginAuthorization(g, &mailintakev1.BeginAuthorizationRequest{MailboxId: id})
			return err
		}, codes.NotFound},
		"AuthProviderService.GetAuthorization": {func() error {
			_, err := e.provs.GetAuthorization(g, &mailintakev1.GetAuthorizationRequest{MailboxId: id})
			return err
		}, codes.NotFound},
		"OutboundService.SendMessage": {func() error {
			_, err := outbound.SendMessage(g, &mailintakev1.SendMessageRequest{MailboxId: id, IdempotencyKey: "k",
				Content: &mailintakev1.SendMessageRequest_Draft{Draft: &mailintakev1.Draft{To: []string{"c@example.net"}, TextBody: "x"}}})
			return err
		}, codes.NotFound},
		"OutboundService.GetOutboundMessage": {func() error {
			_, err := outbound.GetOutboundMessage(g, &mailintakev1.GetOutboundMessageRequest{Id: outboundID})
			return err
		}, codes.NotFound},
		"OutboundService.ListOutboundMessages": {func() error {
			r, err := outbound.ListOutboundMessages(g, &mailintakev1.ListOutboundMessagesRequest{})
			if err == nil && len(r.GetOutboundMessages()) > 0 {
				return fmt.Errorf("listed %v", r.GetOutboundMessages())
			}
			if err != nil {
				return err
			}
			_, err = outbound.ListOutboundMessages(g, &mailintakev1.ListOutboundMessagesRequest{MailboxId: id})
			if status.Code(err) != codes.NotFound {
				return fmt.Errorf("listing acme's mailbox: %v", err)
			}
			_, err = outbound.ListOutboundMessages(g, &mailintakev1.ListOutboundMessagesRequest{Tenant: "acme"})
			return err
		}, codes.PermissionDenied},
		"TokenService.CreateToken": {func() error {
			_, err := e.tokens.CreateToken(g, &mailintakev1.CreateTokenRequest{Tenant: "acme"})
			return err
		}, codes.PermissionDenied},
		"TokenService.ListTokens": {func() error {
			_, err := e.tokens.ListTokens(g, &mailintakev1.ListTokensRequest{})
			return err
		}, codes.PermissionDenied},
		"TokenService.RevokeToken": {func() error {
			_, err := e.tokens.RevokeToken(g, &mailintakev1.RevokeTokenRequest{Id: "anything"})
			return err
		}, codes.PermissionDenied},
	}

	// Every RPC of every service has a row.
	files := []protoreflect.FileDescriptor{
		mailintakev1.File_mailintake_v1_mailbox_proto, mailintakev1.File_mailintake_v1_message_proto,
		mailintakev1.File_mailintake_v1_auth_provider_proto, mailintakev1.File_mailintake_v1_token_proto,
		mailintakev1.File_mailintake_v1_outbound_proto,
	}
	for _, f := range files {
		for i := range f.Services().Len() {
			s := f.Services().Get(i)
			for j := range s.Methods().Len() {
				name := string(s.Name()) + "." + string(s.Methods().Get(j).Name())
				if _, ok := rows[name]; !ok {
					t.Errorf("%s has no row in the tenant isolation matrix", name)
				}
			}
		}
	}
	for name, r := range rows {
		err := r.call()
		got := status.Code(err)
		if got != r.want {
			t.Errorf("%s as another tenant: %v, want %v", name, err, r.want)
		}
		if err != nil && (strings.Contains(err.Error(), imapUser) || strings.Contains(err.Error(), "Help")) {
			t.Errorf("%s: the refusal reveals acme's mailbox: %v", name, err)
		}
	}

	// Nothing changed for acme: its mailbox, message, attachment and quarantine are intact.
	if _, err := e.mailbox.GetMailbox(as(acme), &mailintakev1.GetMailboxRequest{Id: id}); err != nil {
		t.Errorf("acme's mailbox after the matrix: %v", err)
	}
	r, err := e.msgs.AckMessages(as(acme), &mailintakev1.AckMessagesRequest{MessageIds: []string{msg.GetId()}})
	if err != nil || len(r.GetAcknowledgedIds()) != 1 {
		t.Errorf("acme's own ack after globex tried: %v, %v", r, err)
	}
	q, err := e.msgs.ListQuarantinedMessages(as(acme), &mailintakev1.ListQuarantinedMessagesRequest{MailboxId: id})
	if err != nil || len(q.GetMessages()) != 1 {
		t.Errorf("acme's quarantine after the matrix: %v, %v", q, err)
	}
	list, err := outbound.ListOutboundMessages(as(acme), &mailintakev1.ListOutboundMessagesRequest{})
	if err != nil || len(list.GetOutboundMessages()) != 1 || list.GetOutboundMessages()[0].GetId() != outboundID {
		t.Errorf("acme's outbox after the matrix: %v, %v", list, err)
	}
}

// TestPluginsReceiveOnlyTheirMailbox: each credential request carries the account of the one
// mailbox it is for (its username, config and secrets), never another mailbox's.
func TestPluginsReceiveOnlyTheirMailbox(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.Start(t, imaptest.Options{})
	type box struct{ user, marker, secret, id string }
	boxes := []*box{{"a@example.com", "marker-a", "secret-a-111", ""}, {"b@example.com", "marker-b", "secret-b-222", ""}}
	for _, b := range boxes {
		srv.AddUser(t, b.user, b.secret)
		mb := &mailintakev1.Mailbox{
			Tenant: "t-" + b.marker, DisplayName: b.marker, Enabled: true, Host: srv.Host, Port: uint32(srv.Port),
			Security: mailintakev1.Security_SECURITY_NONE, Username: b.user, AuthProvider: "fake",
			AuthConfig: map[string]string{"behavior": "ok", "ttl": "1h", "marker": b.marker}, AuthSecrets: map[string]string{"login_password": b.secret},
		}
		b.id = e.create(e.admin, mb).GetId()
	}
	type received struct {
		Msg      string `json:"msg"`
		Mailbox  string `json:"mailbox"`
		Username string `json:"username"`
		Config   string `json:"config"`
		Secrets  string `json:"secrets"`
	}
	var got []received
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got = got[:0]
		for _, line := range strings.Split(e.logs.String(), "\n") {
			var r received
			if json.Unmarshal([]byte(line), &r) == nil && r.Msg == "account received" {
				got = append(got, r)
			}
		}
		seen := map[string]bool{}
		for _, r := range got {
			seen[r.Mailbox] = true
		}
		if seen[boxes[0].id] && seen[boxes[1].id] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fake provider was not asked for both mailboxes: %v", got)
		}
	}
	for _, r := range got {
		for _, b := range boxes {
			if r.Mailbox != b.id {
				continue
			}
			if r.Username != b.user || !strings.Contains(r.Config, b.marker) || r.Secrets != fakeprovider.SecretsFingerprint(map[string]string{"login_password": b.secret}) {
				t.Errorf("the request for %s carried %+v", b.marker, r)
			}
			for _, o := range boxes {
				if o != b && (strings.Contains(r.Config, o.marker) || r.Username == o.user) {
					t.Errorf("the request for %s carried the other mailbox's account: %+v", b.marker, r)
				}
			}
		}
	}
}
