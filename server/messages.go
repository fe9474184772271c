package server

import (
	"context"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// messageService implements MessageService. Delivery arrives with mailbox sessions; until then
// every RPC answers Unimplemented.
type messageService struct {
	mailintakev1.UnimplementedMessageServiceServer
	s *Server
}

func (m *messageService) StreamMessages(*mailintakev1.StreamMessagesRequest, mailintakev1.MessageService_StreamMessagesServer) error {
	return unimplemented("StreamMessages", "message delivery arrives with mailbox sessions")
}

func (m *messageService) AckMessages(context.Context, *mailintakev1.AckMessagesRequest) (*mailintakev1.AckMessagesResponse, error) {
	return nil, unimplemented("AckMessages", "message delivery arrives with mailbox sessions")
}

func (m *messageService) GetAttachment(*mailintakev1.GetAttachmentRequest, mailintakev1.MessageService_GetAttachmentServer) error {
	return unimplemented("GetAttachment", "message delivery arrives with mailbox sessions")
}

func (m *messageService) GetRawMessage(*mailintakev1.GetRawMessageRequest, mailintakev1.MessageService_GetRawMessageServer) error {
	return unimplemented("GetRawMessage", "message delivery arrives with mailbox sessions")
}
