package server

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// FuzzRequests sends arbitrary requests (protobuf bytes decoded into each request type) through
// the real gRPC server, interceptors and validation, with the admin token. None may panic the
// server, and each must get an answer a client can act on: OK or a request error, never
// Internal or Unknown. Mailboxes are created disabled so that no input makes the server dial out.
func FuzzRequests(f *testing.F) {
	seed := func(kind byte, m proto.Message) {
		b, _ := proto.Marshal(m)
		f.Add(kind, b)
	}
	valid := validMailbox("acme")
	seed(0, &mailintakev1.CreateMailboxRequest{Mailbox: valid})
	seed(0, &mailintakev1.CreateMailboxRequest{Mailbox: &mailintakev1.Mailbox{Tenant: "acme", Host: "-bad host-", Port: 70000, AuthProvider: "../../bin/sh"}})
	seed(1, &mailintakev1.UpdateMailboxRequest{Mailbox: &mailintakev1.Mailbox{Id: "x", Port: 1}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"port", "auth_secrets.password", "no_such_field"}}})
	seed(2, &mailintakev1.StreamMessagesRequest{MailboxIds: []string{"", "x"}, MaxInFlight: 5000, AckDeadline: durationpb.New(-time.Second)})
	seed(3, &mailintakev1.AckMessagesRequest{MessageIds: []string{"a:b:c", "::", "x:1:-1"}})
	seed(4, &mailintakev1.ListMailboxEventsRequest{MailboxId: "x", PageSize: -1, PageToken: "zz"})
	seed(5, &mailintakev1.GetAttachmentRequest{MessageId: "m:1:1", AttachmentId: "1:x"})
	seed(6, &mailintakev1.ListMailboxesRequest{PageSize: -5, PageToken: "\xff", Tenant: "../x"})
	seed(7, &mailintakev1.CreateTokenRequest{Tenant: "acme\x00", Name: string(make([]byte, 300))})
	seed(8, &mailintakev1.SendMessageRequest{MailboxId: "x", IdempotencyKey: "k\x00", From: "<>",
		Content: &mailintakev1.SendMessageRequest_Draft{Draft: &mailintakev1.Draft{To: []string{"a@b", "\r\n"}, Attachments: []*mailintakev1.OutboundAttachment{{Filename: "a\nb"}}}}})
	seed(8, &mailintakev1.SendMessageRequest{IdempotencyKey: "k", Content: &mailintakev1.SendMessageRequest_Raw{Raw: []byte("From: x\r\n\r\n")},
		InReplyTo: &mailintakev1.InReplyTo{Original: &mailintakev1.InReplyTo_RfcMessageId{RfcMessageId: "<>"}}})
	seed(9, &mailintakev1.ListOutboundMessagesRequest{PageSize: 5000, PageToken: "\xff", State: 42, MailboxId: "nope"})
	e := newEnv(f)
	ctx := as(e.admin)
	out := mailintakev1.NewOutboundServiceClient(e.conn)
	f.Fuzz(func(t *testing.T, kind byte, b []byte) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		switch kind % 10 {
		case 0:
			req := &mailintakev1.CreateMailboxRequest{}
			if proto.Unmarshal(b, req) != nil {
				return
			}
			if req.Mailbox != nil {
				req.Mailbox.Enabled = false
			}
			_, err = e.mailbox.CreateMailbox(cctx, req)
		case 1:
			req := &mailintakev1.UpdateMailboxRequest{}
			if proto.Unmarshal(b, req) != nil {
				return
			}
			if req.Mailbox != nil {
				req.Mailbox.Enabled = false
			}
			_, err = e.mailbox.UpdateMailbox(cctx, req)
		case 2:
			req := &mailintakev1.StreamMessagesRequest{}
			if proto.Unmarshal(b, req) != nil {
				return
			}
			scctx, scancel := context.WithTimeout(cctx, 50*time.Millisecond)
			defer scancel()
			var s mailintakev1.MessageService_StreamMessagesClient
			if s, err = e.msgs.StreamMessages(scctx, req); err == nil {
				_, err = s.Recv()
				if status.Code(err) == codes.DeadlineExceeded {
					err = nil // a valid stream with nothing to deliver
				}
			}
		case 3:
			req := &mailintakev1.AckMessagesRequest{}
			if proto.Unmarshal(b, req) != nil {
				return
			}
			_, err = e.msgs.AckMessages(cctx, req)
		case 4:
			req := &mailintakev1.ListMailboxEventsRequest{}
			if proto.Unmarshal(b, req) != nil {
				return
			}
			_, err = e.mailbox.ListMailboxEvents(cctx, req)
		case 5:
			req := &mailintakev1.GetAttachmentRequest{}
			if proto.Unmarshal(b, req) != nil {
				return
			}
			var s mailintakev1.MessageService_GetAttachmentClient
			if s, err = e.msgs.GetAttachment(cctx, req); err == nil {
				if _, err = s.Recv(); err == io.EOF {
					err = nil
				}
			}
		case 6:
			req := &mailintakev1.ListMailboxesRequest{}
			if proto.Unmarshal(b, req) != nil {
				return
			}
			_, err = e.mailbox.ListMailboxes(cctx, req)
		case 7:
			req := &mailintakev1.CreateTokenRequest{}
			if proto.Unmarshal(b, req) != nil {
				return
			}
			_, err = e.tokens.CreateToken(cctx, req)
		case 8:
			req := &mailintakev1.SendMessageRequest{}
			if proto.Unmarshal(b, req) != nil {
				return
			}
			if req.GetInReplyTo().GetDeliveredMessageId() != "" {
				req.InReplyTo = nil // reading the original would dial out
			}
			_, err = out.SendMessage(cctx, req)
		case 9:
			req := &mailintakev1.ListOutboundMessagesRequest{}
			if proto.Unmarshal(b, req) != nil {
				return
			}
			_, err = out.ListOutboundMessages(cctx, req)
		}
		switch status.Code(err) {
		case codes.OK, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied, codes.FailedPrecondition:
		default:
			t.Fatalf("request kind %d: %v", kind%10, err)
		}
	})
}
