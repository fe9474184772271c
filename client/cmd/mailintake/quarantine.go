package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// quarantineCmd is `mailintake quarantine`: the messages that could not be delivered.
func (a *app) quarantineCmd() *cobra.Command {
	cmd := subcommandsOnly(&cobra.Command{
		Use:   "quarantine",
		Short: "Messages that could not be delivered, and what to do with them",
		Long:  `List a mailbox's quarantined messages (too large, or not fetchable), with the reason; deliver one again (replay), or drop it and treat it as acknowledged (release).`,
		Example: `  mailintake --data-dir data quarantine list MAILBOX_ID
  mailintake --data-dir data quarantine replay QUARANTINE_ID
  mailintake --data-dir data quarantine release QUARANTINE_ID`,
	})
	cmd.AddCommand(a.quarantineListCmd(), a.quarantineReplayCmd(), a.quarantineReleaseCmd())
	return cmd
}

// quarantineListCmd is `quarantine list MAILBOX_ID`.
func (a *app) quarantineListCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "list MAILBOX_ID",
		Aliases:           []string{"ls"},
		Short:             "List a mailbox's quarantined messages with the reason",
		Long:              "List a mailbox's quarantined messages: id, UID, size, state (held or replay), sender, subject and reason.",
		Example:           "  mailintake --data-dir data quarantine list MAILBOX_ID --json",
		Args:              oneArg("quarantine list takes one id"),
		ValidArgsFunction: a.completeMailboxID,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			resp, err := cl.Messages.ListQuarantinedMessages(rctx, &mailintakev1.ListQuarantinedMessagesRequest{MailboxId: args[0]})
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
		},
	}
}

// quarantineReplayCmd is `quarantine replay ID`.
func (a *app) quarantineReplayCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "replay ID",
		Short: "Deliver a quarantined message again",
		Long: `Deliver a quarantined message again. An oversized one is delivered as its parsed header with a
problem attached.`,
		Example:           "  mailintake --data-dir data quarantine replay QUARANTINE_ID",
		Args:              oneArg("quarantine replay takes one id"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			resp, err := cl.Messages.ReplayQuarantinedMessage(rctx, &mailintakev1.ReplayQuarantinedMessageRequest{Id: args[0]})
			if err != nil {
				return err
			}
			if a.g.json {
				return a.printJSON(resp)
			}
			fmt.Fprintf(a.stdout, "quarantined message %s (UID %d) will be delivered again\n", args[0], resp.GetMessage().GetUid())
			return nil
		},
	}
}

// quarantineReleaseCmd is `quarantine release ID`.
func (a *app) quarantineReleaseCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "release ID",
		Short:             "Drop a quarantined message: treat it as acknowledged",
		Long:              "Drop a quarantined message: it is treated as acknowledged, and the mailbox's --after-ack applies.",
		Example:           "  mailintake --data-dir data quarantine release QUARANTINE_ID",
		Args:              oneArg("quarantine release takes one id"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			if _, err := cl.Messages.ReleaseQuarantinedMessage(rctx, &mailintakev1.ReleaseQuarantinedMessageRequest{Id: args[0]}); err != nil {
				return err
			}
			if !a.g.json {
				fmt.Fprintf(a.stdout, "released quarantined message %s: treated as acknowledged\n", args[0])
			}
			return nil
		},
	}
}
