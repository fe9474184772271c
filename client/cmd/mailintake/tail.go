package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mailintake/mailintake/client"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// tailFlags are the flags of `mailintake tail`.
type tailFlags struct {
	mailboxes   []string
	ack, quiet  bool
	limit       int
	timeout     time.Duration
	maxInFlight uint
}

// ackWindow is tail --ack's max_in_flight unless --max-in-flight is given: acknowledgements go out
// in batches of half of it while the server keeps sending. With the server's default of 16 the
// server spends about 15% more CPU per message (more, smaller ack calls and store commits; `make
// bench` measured it), and a drain is slower for it.
const ackWindow = 64

// ackDelay is how long tail --ack lets an acknowledgement wait for others: a batch goes out once
// it holds half the window, or ackDelay after its first id. Each batch is one AckMessages call
// and one durable store commit; with the Acker's default of 10 ms, batches held about 8
// messages (251 commits per 2,000 in make bench), not the 32 the window allows. A message
// acknowledged 100 ms later is only delivered again if the command dies meanwhile (at least
// once, as before), and the window keeps the server sending while a batch fills.
const ackDelay = 100 * time.Millisecond

// tailCmd is `tail`: the message stream as JSON lines.
func (a *app) tailCmd() *cobra.Command {
	var t tailFlags
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Follow the message stream as JSON lines",
		Long: `Follow the message stream: one parsed message per line as protobuf JSON (the message type the
stream carries), from every mailbox the token sees or only those given with --mailbox.

A message stays unacknowledged (and is delivered again) unless --ack is given. tail exits 0 after
--limit messages, or when --timeout passes with nothing new; --quiet prints only a final line with
the count, bytes and rate, for draining and measuring.`,
		Example: `  mailintake --data-dir data tail --ack
  mailintake --data-dir data tail --mailbox MAILBOX_ID --limit 1
  mailintake --data-dir data tail --ack --quiet --timeout 5s`,
		Args:              noArgs("tail takes no arguments"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tail(cmd.Context(), &t)
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&t.mailboxes, "mailbox", nil, "only this mailbox `ID` (repeatable)")
	fs.BoolVar(&t.ack, "ack", false, "acknowledge each message after printing it")
	fs.IntVar(&t.limit, "limit", 0, "exit after this many messages")
	fs.DurationVar(&t.timeout, "timeout", 0, "exit when nothing new arrives for this long")
	fs.BoolVar(&t.quiet, "quiet", false, "print only a final line with the count, bytes and rate")
	fs.UintVar(&t.maxInFlight, "max-in-flight", 0, "unacknowledged messages the server may send ahead (default: 64 with --ack, else the server's)")
	_ = cmd.RegisterFlagCompletionFunc("mailbox", a.completeMailboxIDs)
	return cmd
}

// tail prints the message stream until t's limit or idle timeout.
func (a *app) tail(ctx context.Context, t *tailFlags) error {
	cl, err := a.connect()
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := time.AfterFunc(time.Duration(1<<62), cancel)
	if t.timeout > 0 {
		idle.Reset(t.timeout)
	}
	defer idle.Stop()
	inFlight := t.maxInFlight
	if inFlight == 0 && t.ack {
		inFlight = ackWindow
	}
	stream, err := cl.Messages.StreamMessages(sctx, &mailintakev1.StreamMessagesRequest{MailboxIds: t.mailboxes, MaxInFlight: uint32(inFlight)})
	if err != nil {
		return err
	}
	line := protojson.MarshalOptions{}
	start := time.Now()
	var count, bytes int
	// Acknowledged in batches (one call for many messages); what is queued goes out before the
	// command returns.
	batch := 0
	if inFlight > 0 {
		batch = max(1, int(inFlight)/2)
	}
	acks := cl.NewAcker(context.WithoutCancel(ctx), client.AckerOptions{MaxBatch: batch, Delay: ackDelay})
	defer acks.Flush()
	finish := func() error {
		if err := acks.Flush(); err != nil {
			return err
		}
		if t.quiet {
			secs := time.Since(start).Seconds()
			fmt.Fprintf(a.stdout, "%d messages, %d bytes in %.2fs (%.1f msg/s, %.2f MB/s)\n", count, bytes, secs, float64(count)/secs, float64(bytes)/secs/1e6)
		}
		return nil
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || (sctx.Err() != nil && ctx.Err() == nil && status.Code(err) == codes.Canceled) {
				return finish()
			}
			return err
		}
		msg := resp.GetMessage()
		count++
		bytes += int(msg.GetRawSize())
		if !t.quiet {
			b, err := line.Marshal(msg)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, string(b))
		}
		if t.ack {
			if err := acks.Ack(msg.GetId()); err != nil {
				return err
			}
		}
		if t.limit > 0 && count >= t.limit {
			return finish()
		}
		if t.timeout > 0 {
			idle.Reset(t.timeout)
		}
	}
}
