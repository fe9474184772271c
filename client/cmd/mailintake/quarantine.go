package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

func (a *app) quarantine(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("quarantine needs a subcommand: list MAILBOX_ID, replay ID, release ID")
	}
	sub := args[0]
	fs := a.newFlags("quarantine "+sub, "quarantine list MAILBOX_ID | quarantine replay ID | quarantine release ID")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("quarantine %s takes one id", sub)
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	defer cancel()
	switch sub {
	case "list", "ls":
		resp, err := cl.Messages.ListQuarantinedMessages(rctx, &mailintakev1.ListQuarantinedMessagesRequest{MailboxId: pos[0]})
		if err != nil {
			return err
		}
		if a.g.json {
			return a.printJSON(resp)
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUID\tSIZE\tSTATE\tFROM\tSUBJECT\tREASON")
		for _, q := range resp.GetMessages() {
			from := ""
			if f := q.GetFrom(); len(f) > 0 {
				from = f[0].GetAddress()
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\n", q.GetId(), q.GetUid(), q.GetSize(),
				map[mailintakev1.QuarantineState]string{mailintakev1.QuarantineState_QUARANTINE_STATE_HELD: "held", mailintakev1.QuarantineState_QUARANTINE_STATE_REPLAY: "replay"}[q.GetState()],
				from, q.GetSubject(), q.GetReason())
		}
		return tw.Flush()
	case "replay":
		resp, err := cl.Messages.ReplayQuarantinedMessage(rctx, &mailintakev1.ReplayQuarantinedMessageRequest{Id: pos[0]})
		if err != nil {
			return err
		}
		if a.g.json {
			return a.printJSON(resp)
		}
		fmt.Fprintf(a.stdout, "quarantined message %s (UID %d) will be delivered again\n", pos[0], resp.GetMessage().GetUid())
		return nil
	case "release":
		if _, err := cl.Messages.ReleaseQuarantinedMessage(rctx, &mailintakev1.ReleaseQuarantinedMessageRequest{Id: pos[0]}); err != nil {
			return err
		}
		if !a.g.json {
			fmt.Fprintf(a.stdout, "released quarantined message %s: treated as acknowledged\n", pos[0])
		}
		return nil
	}
	return usagef("unknown quarantine subcommand %q: list, replay, release", sub)
}
