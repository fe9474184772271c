package main

import (
	"bufio"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// outboundCmd is `mailintake outbound`: the messages sent (or to be sent) as the mailboxes.
func (a *app) outboundCmd() *cobra.Command {
	cmd := subcommandsOnly(&cobra.Command{
		Use:   "outbound",
		Short: "Messages sent as the mailboxes, and what became of them",
		Long: `List and show the messages queued with 'mailintake send' (or the API's SendMessage): their state
(queued, sending, sent, failed, unknown), attempts, the submission server's answer and, for a failure,
what happened and what to do. Unknown means the connection broke after the whole message was
written: it may have been sent, and it is never sent again on its own.`,
		Example: `  mailintake --data-dir data outbound list --mailbox MAILBOX_ID
  mailintake --data-dir data outbound list --state failed --json
  mailintake --data-dir data outbound get OUTBOUND_ID`,
	})
	cmd.AddCommand(a.outboundListCmd(), a.outboundGetCmd())
	return cmd
}

var outboundStateFlags = map[string]mailintakev1.OutboundState{
	"queued": mailintakev1.OutboundState_OUTBOUND_STATE_QUEUED, "sending": mailintakev1.OutboundState_OUTBOUND_STATE_SENDING,
	"sent": mailintakev1.OutboundState_OUTBOUND_STATE_SENT, "failed": mailintakev1.OutboundState_OUTBOUND_STATE_FAILED,
	"unknown": mailintakev1.OutboundState_OUTBOUND_STATE_UNKNOWN, "bounced": mailintakev1.OutboundState_OUTBOUND_STATE_BOUNCED,
}

// outboundListCmd is `outbound list`.
func (a *app) outboundListCmd() *cobra.Command {
	var mailbox, state, tenant string
	cmd := &cobra.Command{
		Use:     "list [--mailbox ID] [--state S]",
		Aliases: []string{"ls"},
		Short:   "List outbound messages, oldest first",
		Long: `List the outbound messages the token sees (a tenant's token its tenant's), oldest first: id,
mailbox, state, attempts, when queued, recipients, subject, and the last error's reason.`,
		Example: `  mailintake --data-dir data outbound list
  mailintake --data-dir data outbound list --mailbox MAILBOX_ID --state queued`,
		Args:              noArgs("outbound list takes no arguments"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &mailintakev1.ListOutboundMessagesRequest{MailboxId: mailbox, Tenant: tenant, PageSize: 500}
			if state != "" {
				st, ok := outboundStateFlags[strings.ToLower(state)]
				if !ok {
					return usagef("--state %q is not one of queued, sending, sent, failed, unknown, bounced", state)
				}
				req.State = st
			}
			cl, err := a.connect()
			if err != nil {
				return err
			}
			out := mailintakev1.NewOutboundServiceClient(cl.Conn())
			all := &mailintakev1.ListOutboundMessagesResponse{}
			for {
				rctx, cancel := a.rpcCtx(cmd.Context())
				resp, err := out.ListOutboundMessages(rctx, req)
				cancel()
				if err != nil {
					return err
				}
				all.OutboundMessages = append(all.OutboundMessages, resp.GetOutboundMessages()...)
				if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
					break
				}
			}
			if a.g.json {
				return a.printJSON(all)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tMAILBOX\tSTATE\tATTEMPTS\tQUEUED\tTO\tSUBJECT\tERROR")
			for _, m := range all.GetOutboundMessages() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", m.GetId(), m.GetMailboxId(), stateName(m.GetState()), m.GetAttempts(),
					when(m.GetCreateTime().AsTime()), abbreviate(strings.Join(m.GetRecipients(), ","), 40), abbreviate(m.GetSubject(), 40),
					abbreviate(errorLine(m.GetError()), 60))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&mailbox, "mailbox", "", "only this mailbox's messages")
	cmd.Flags().StringVar(&state, "state", "", "only messages in this state: queued, sending, sent, failed, unknown or bounced")
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant (admin token)")
	_ = cmd.RegisterFlagCompletionFunc("mailbox", a.completeMailboxID)
	_ = cmd.RegisterFlagCompletionFunc("tenant", a.completeTenants)
	_ = cmd.RegisterFlagCompletionFunc("state", cobra.FixedCompletions([]cobra.Completion{"queued", "sending", "sent", "failed", "unknown", "bounced"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// outboundGetCmd is `outbound get ID`.
func (a *app) outboundGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "get ID",
		Aliases: []string{"show"},
		Short:   "Show an outbound message: its state, attempts and error",
		Long: `Show an outbound message: state, Message-ID, sender and recipients, attempts, the next attempt
(queued), the submission server's answer and queue id (sent), or the last error with what to do.`,
		Example: `  mailintake --data-dir data outbound get OUTBOUND_ID
  mailintake --data-dir data outbound get OUTBOUND_ID --json`,
		Args:              oneArg("outbound get takes one outbound message id"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			resp, err := mailintakev1.NewOutboundServiceClient(cl.Conn()).GetOutboundMessage(rctx, &mailintakev1.GetOutboundMessageRequest{Id: args[0]})
			if err != nil {
				return err
			}
			if a.g.json {
				return a.printJSON(resp.GetOutboundMessage())
			}
			return a.printOutbound(resp.GetOutboundMessage())
		},
	}
}

// when formats a time for the tables and listings.
func when(t time.Time) string {
	if t.IsZero() || t.Unix() == 0 {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// abbreviate shortens s to at most n characters.
func abbreviate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// errorLine is an outbound error on one line: the server's reply, else the explanation.
func errorLine(e *mailintakev1.OutboundError) string {
	if e == nil {
		return ""
	}
	if e.GetCode() != 0 {
		return strings.TrimSpace(fmt.Sprintf("%d %s %s", e.GetCode(), e.GetEnhancedCode(), e.GetServerText()))
	}
	return e.GetExplanation()
}

// printOutbound prints an outbound message as an aligned list of its fields.
func (a *app) printOutbound(m *mailintakev1.OutboundMessage) error {
	w := bufio.NewWriter(a.stdout)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-14s %s\n", k+":", v)
		}
	}
	line("id", m.GetId())
	line("mailbox", m.GetMailboxId())
	line("state", stateName(m.GetState()))
	line("message-id", "<"+m.GetMessageId()+">")
	line("from", m.GetFrom())
	line("to", strings.Join(m.GetRecipients(), ", "))
	line("subject", m.GetSubject())
	if m.GetInReplyTo() != "" {
		line("in reply to", "<"+m.GetInReplyTo()+">")
	}
	line("key", m.GetIdempotencyKey())
	line("size", fmt.Sprintf("%d bytes", m.GetSize()))
	line("attempts", fmt.Sprint(m.GetAttempts()))
	line("queued", when(m.GetCreateTime().AsTime()))
	if m.GetState() == mailintakev1.OutboundState_OUTBOUND_STATE_QUEUED && m.GetNextAttemptTime() != nil {
		line("next attempt", when(m.GetNextAttemptTime().AsTime()))
	}
	if m.GetSentTime() != nil {
		line("sent", when(m.GetSentTime().AsTime()))
	}
	line("server said", m.GetSmtpResponse())
	line("queue id", m.GetSmtpQueueId())
	if c := m.GetSentCopy(); c != nil {
		if c.GetSaved() {
			line("sent copy", fmt.Sprintf("saved in %q", c.GetFolder()))
		} else {
			line("sent copy", fmt.Sprintf("not saved in %q: %s", c.GetFolder(), c.GetError()))
		}
	}
	if m.GetBounceMessageId() != "" || len(m.GetBouncedRecipients()) > 0 {
		line("bounced", strings.TrimSpace(when(m.GetBounceTime().AsTime())+" (report "+m.GetBounceMessageId()+")"))
		for _, r := range m.GetBouncedRecipients() {
			line("  failed", strings.Join(strings.Fields(fmt.Sprintf("<%s> %s %s", r.GetAddress(), r.GetStatus(), r.GetDiagnostic())), " "))
		}
	}
	if e := m.GetError(); e != nil {
		kind := strings.ToLower(strings.TrimPrefix(e.GetKind().String(), "OUTBOUND_ERROR_KIND_"))
		head := kind
		if e.GetStep() != "" {
			head += " failure at " + e.GetStep()
		}
		if r := errorLine(e); r != "" && e.GetCode() != 0 {
			head += ": " + r
		}
		line("error", head)
		line("  what to do", e.GetExplanation())
		for _, r := range e.GetRecipients() {
			line("  refused", strings.TrimSpace(fmt.Sprintf("<%s> %d %s %s", r.GetAddress(), r.GetCode(), r.GetEnhancedCode(), r.GetText())))
		}
	}
	for _, warn := range m.GetWarnings() {
		line("warning", warn)
	}
	return w.Flush()
}
