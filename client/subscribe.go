package client

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Handler processes one delivered message. Returning nil acknowledges it; returning an error
// leaves it unacknowledged, so it is delivered again after the stream's ack deadline.
type Handler func(ctx context.Context, msg *mailintakev1.Message) error

// Subscribe follows the message stream and calls handle for each message, one at a time, in
// order, acknowledging each one handle accepts. When the stream breaks (the server restarts, the
// network drops) it reconnects with backoff; messages that were not acknowledged are delivered
// again. It returns when ctx ends, or on an error that reconnecting cannot fix (e.g. an invalid
// request or a revoked token).
func (c *Client) Subscribe(ctx context.Context, req *mailintakev1.StreamMessagesRequest, handle Handler) error {
	backoff := 500 * time.Millisecond
	for {
		err := c.subscribeOnce(ctx, req, handle, func() { backoff = 500 * time.Millisecond })
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch status.Code(err) {
		case codes.Unavailable, codes.Internal, codes.Unknown, codes.ResourceExhausted, codes.Aborted:
		default:
			if !errors.Is(err, io.EOF) {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (c *Client) subscribeOnce(ctx context.Context, req *mailintakev1.StreamMessagesRequest, handle Handler, connected func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Messages.StreamMessages(ctx, req)
	if err != nil {
		return err
	}
	// Acknowledged in batches; what is queued when the stream ends still goes out, so the
	// messages handled are not delivered again.
	acks := c.NewAcker(context.WithoutCancel(ctx), AckerOptions{MaxBatch: ackBatch(req)})
	defer acks.Flush()
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		connected()
		msg := resp.GetMessage()
		if err := handle(ctx, msg); err != nil {
			continue
		}
		if err := acks.Ack(msg.GetId()); err != nil {
			return err
		}
	}
}

// ackBatch is the batch size for a stream: half its max_in_flight (when set; else the Acker's
// default, half the server's default), so a full batch goes out while the server can still send.
func ackBatch(req *mailintakev1.StreamMessagesRequest) int {
	if n := int(req.GetMaxInFlight()); n > 0 {
		return max(1, n/2)
	}
	return 0
}
