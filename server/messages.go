package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/imapconn"
	"github.com/mailintake/mailintake/internal/parse"
	"github.com/mailintake/mailintake/internal/session"
	"github.com/mailintake/mailintake/internal/store"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// messageService implements MessageService on the delivery broker.
type messageService struct {
	mailintakev1.UnimplementedMessageServiceServer
	s *Server
}

// chunkSize is the size of GetRawMessage and GetAttachment chunks.
const chunkSize = 64 << 10

// maxAckIDs bounds one AckMessages call.
const maxAckIDs = 10000

func (m *messageService) StreamMessages(req *mailintakev1.StreamMessagesRequest, stream mailintakev1.MessageService_StreamMessagesServer) error {
	ctx := stream.Context()
	p := caller(ctx)
	var v violations
	n := int(req.GetMaxInFlight())
	switch {
	case n == 0:
		n = delivery.DefaultMaxInFlight
	case n > delivery.MaxMaxInFlight:
		v.add("max_in_flight", "must be between 1 and %d", delivery.MaxMaxInFlight)
	}
	deadline := delivery.DefaultAckDeadline
	if d := req.GetAckDeadline(); d != nil {
		deadline = d.AsDuration()
		if deadline < delivery.MinAckDeadline || deadline > delivery.MaxAckDeadline {
			v.add("ack_deadline", "must be between %s and %s", delivery.MinAckDeadline, delivery.MaxAckDeadline)
		}
	}
	if err := v.err(); err != nil {
		return err
	}
	wanted := map[string]bool{}
	for i, id := range req.GetMailboxIds() {
		if _, err := (&mailboxService{s: m.s}).load(ctx, fmt.Sprintf("mailbox_ids[%d]", i), id); err != nil {
			return err
		}
		wanted[id] = true
	}
	filter := func(mailboxID, tenant string) bool {
		if len(wanted) > 0 {
			return wanted[mailboxID]
		}
		return p.canSee(tenant)
	}
	if m.s.cluster != nil {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-m.s.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := m.s.cluster.Edge.Serve(ctx, scope(p, req.GetMailboxIds()), n, deadline, func(msg *mailintakev1.Message) error {
			return stream.Send(&mailintakev1.StreamMessagesResponse{Message: msg})
		})
		select {
		case <-m.s.closing:
			return status.Error(codes.Unavailable, "the server is shutting down; reconnect (unacknowledged messages are delivered again)")
		default:
		}
		return err
	}
	s := m.s.broker.Open(filter, n, deadline)
	defer m.s.broker.CloseStream(s)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.s.closing:
			return status.Error(codes.Unavailable, "the server is shutting down; reconnect (unacknowledged messages are delivered again)")
		case msg := <-s.Out():
			if err := stream.Send(&mailintakev1.StreamMessagesResponse{Message: msg}); err != nil {
				return err
			}
		}
	}
}

func (m *messageService) AckMessages(ctx context.Context, req *mailintakev1.AckMessagesRequest) (*mailintakev1.AckMessagesResponse, error) {
	ids := req.GetMessageIds()
	switch {
	case len(ids) == 0:
		return nil, violations{{Field: "message_ids", Description: "is required"}}.err()
	case len(ids) > maxAckIDs:
		return nil, violations{{Field: "message_ids", Description: fmt.Sprintf("at most %d ids per call", maxAckIDs)}}.err()
	}
	p := caller(ctx)
	res, err := m.s.ack(ctx, ids, p)
	if err != nil {
		return nil, err
	}
	return &mailintakev1.AckMessagesResponse{AcknowledgedIds: res.Acknowledged, UnknownIds: res.Unknown}, nil
}

// messageKey parses a message id of a mailbox the caller may see.
func (m *messageService) messageKey(ctx context.Context, id string) (delivery.Key, *store.Mailbox, error) {
	k, err := delivery.ParseKey(id)
	if err != nil {
		return delivery.Key{}, nil, violations{{Field: "message_id", Description: err.Error()}}.err()
	}
	mb, err := (&mailboxService{s: m.s}).load(ctx, "message_id", k.MailboxID)
	if err != nil {
		return delivery.Key{}, nil, err
	}
	return k, mb, nil
}

// chunker sends what is written to it in chunks.
type chunker struct {
	buf  []byte
	send func([]byte) error
}

func (c *chunker) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), chunkSize-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == chunkSize {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunker) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.send(c.buf)
	c.buf = c.buf[:0]
	return err
}

// fetchError maps a failure to fetch a message from the mail server: a message that is gone
// (expunged, or its folder recreated) is NotFound; anything else is a connection problem.
func fetchError(err error) error {
	if errors.Is(err, session.ErrStaleMessage) || errors.Is(err, imapconn.ErrGone) {
		return status.Error(codes.NotFound, err.Error())
	}
	return connectionFailed(err)
}

// pipeClosed reports whether a fetch ended only because its reader stopped reading.
func pipeClosed(err error) bool {
	return err == nil || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, context.Canceled)
}

func (m *messageService) GetRawMessage(req *mailintakev1.GetRawMessageRequest, stream mailintakev1.MessageService_GetRawMessageServer) error {
	ctx := stream.Context()
	k, mb, err := m.messageKey(ctx, req.GetMessageId())
	if err != nil {
		return err
	}
	c := &chunker{buf: make([]byte, 0, chunkSize), send: func(b []byte) error {
		return stream.Send(&mailintakev1.GetRawMessageResponse{Chunk: b})
	}}
	if err := m.s.streamRaw(ctx, mb, k, c); err != nil {
		return fetchError(err)
	}
	return c.flush()
}

func (m *messageService) GetAttachment(req *mailintakev1.GetAttachmentRequest, stream mailintakev1.MessageService_GetAttachmentServer) error {
	ctx := stream.Context()
	k, mb, err := m.messageKey(ctx, req.GetMessageId())
	if err != nil {
		return err
	}
	if req.GetAttachmentId() == "" {
		return violations{{Field: "attachment_id", Description: "is required"}}.err()
	}
	// The raw message streams through a pipe into the MIME walker, so only one chunk of it is
	// in memory at a time.
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fetched := make(chan error, 1)
	go func() {
		err := m.s.streamRaw(ctx, mb, k, pw)
		pw.CloseWithError(err)
		fetched <- err
	}()
	// stop ends the fetch and returns its error, if it failed on its own.
	stop := func() error {
		pr.Close()
		cancel()
		if ferr := <-fetched; !pipeClosed(ferr) {
			return ferr
		}
		return nil
	}
	att, body, err := parse.OpenPart(pr, req.GetAttachmentId())
	if err != nil {
		if ferr := stop(); ferr != nil {
			return fetchError(ferr)
		}
		if errors.Is(err, parse.ErrNoSuchPart) {
			return status.Errorf(codes.NotFound, "message %s has no attachment %q", k, req.GetAttachmentId())
		}
		return fetchError(err)
	}
	first := true
	c := &chunker{buf: make([]byte, 0, chunkSize), send: func(b []byte) error {
		resp := &mailintakev1.GetAttachmentResponse{Chunk: b}
		if first {
			resp.Attachment, first = att, false
		}
		return stream.Send(resp)
	}}
	// The hash is computed here, as the bytes stream past, not when the message is delivered:
	// an attachment over the inline limit is delivered without its data or its hash.
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(c, sum), body)
	if ferr := stop(); ferr != nil {
		return fetchError(ferr)
	}
	if err != nil {
		return fetchError(err)
	}
	if err := c.flush(); err != nil {
		return err
	}
	last := &mailintakev1.GetAttachmentResponse{Sha256: hex.EncodeToString(sum.Sum(nil)), Size: uint64(n)}
	if first {
		last.Attachment = att
	}
	return stream.Send(last)
}

// quarantined loads a quarantine entry of a mailbox the caller may see.
func (m *messageService) quarantined(ctx context.Context, id string) (*store.Quarantined, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 {
		return nil, violations{{Field: "id", Description: "is not a quarantine entry id"}}.err()
	}
	q, err := m.s.store.GetQuarantined(ctx, n)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("quarantined message", id)
	}
	if err != nil {
		return nil, err
	}
	if _, err := (&mailboxService{s: m.s}).load(ctx, "id", q.MailboxID); err != nil {
		return nil, notFound("quarantined message", id)
	}
	return q, nil
}

func quarantinedToProto(q *store.Quarantined) *mailintakev1.QuarantinedMessage {
	out := &mailintakev1.QuarantinedMessage{
		Id: strconv.FormatInt(q.ID, 10), MailboxId: q.MailboxID, UidValidity: q.UIDValidity, Uid: q.UID,
		MessageId: delivery.Key{MailboxID: q.MailboxID, UIDValidity: q.UIDValidity, UID: q.UID}.String(),
		Reason:    q.Reason, Size: uint64(q.Size), CreateTime: timestamppb.New(q.CreateTime),
		State: mailintakev1.QuarantineState_QUARANTINE_STATE_HELD,
	}
	if q.State == store.QuarantineReplay {
		out.State = mailintakev1.QuarantineState_QUARANTINE_STATE_REPLAY
	}
	if q.Headers != "" {
		hdr := parse.Parse([]byte(q.Headers), parse.Options{})
		out.Headers = hdr.GetHeaders()
		out.Subject = hdr.GetEnvelope().GetSubject()
		out.From = hdr.GetEnvelope().GetFrom()
	}
	return out
}

func (m *messageService) ListQuarantinedMessages(ctx context.Context, req *mailintakev1.ListQuarantinedMessagesRequest) (*mailintakev1.ListQuarantinedMessagesResponse, error) {
	mb, err := (&mailboxService{s: m.s}).load(ctx, "mailbox_id", req.GetMailboxId())
	if err != nil {
		return nil, err
	}
	qs, err := m.s.store.ListQuarantine(ctx, mb.Spec.Id)
	if err != nil {
		return nil, err
	}
	resp := &mailintakev1.ListQuarantinedMessagesResponse{}
	for _, q := range qs {
		resp.Messages = append(resp.Messages, quarantinedToProto(q))
	}
	return resp, nil
}

func (m *messageService) ReplayQuarantinedMessage(ctx context.Context, req *mailintakev1.ReplayQuarantinedMessageRequest) (*mailintakev1.ReplayQuarantinedMessageResponse, error) {
	q, err := m.quarantined(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if err := m.s.store.SetQuarantineState(ctx, q.ID, store.QuarantineReplay); err != nil {
		return nil, err
	}
	q.State = store.QuarantineReplay
	m.s.addEvent(ctx, q.MailboxID, "quarantine", fmt.Sprintf("UID %d to be delivered again (replay)", q.UID))
	m.s.wake(ctx, q.MailboxID)
	return &mailintakev1.ReplayQuarantinedMessageResponse{Message: quarantinedToProto(q)}, nil
}

func (m *messageService) ReleaseQuarantinedMessage(ctx context.Context, req *mailintakev1.ReleaseQuarantinedMessageRequest) (*mailintakev1.ReleaseQuarantinedMessageResponse, error) {
	q, err := m.quarantined(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	// Released: treated as acknowledged, so the after-ack action applies to it.
	if err := m.s.store.RecordAcks(ctx, map[string][]store.Ack{q.MailboxID: {{UIDValidity: q.UIDValidity, UID: q.UID, AckTime: time.Now()}}}); err != nil {
		return nil, err
	}
	if err := m.s.store.DeleteQuarantined(ctx, q.ID); err != nil {
		return nil, err
	}
	m.s.addEvent(ctx, q.MailboxID, "quarantine", fmt.Sprintf("UID %d released by %s", q.UID, caller(ctx).TokenID))
	m.s.wake(ctx, q.MailboxID)
	return &mailintakev1.ReleaseQuarantinedMessageResponse{}, nil
}
