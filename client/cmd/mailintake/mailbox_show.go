package main

import (
	"bufio"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// mailboxStatusCmd is `mailbox status ID`.
func (a *app) mailboxStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status ID",
		Short: "Show what a mailbox is doing",
		Long: `Show a mailbox's state, the last sync, the last error and the next retry, a sign-in failure
with what to do, the token's health, the message counts, and the replica that holds it.`,
		Example: `  mailintake --data-dir data mailbox status MAILBOX_ID
  mailintake --data-dir data mailbox status MAILBOX_ID --json`,
		Args:              oneArg("mailbox status takes one mailbox ID"),
		ValidArgsFunction: a.completeMailboxID,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			resp, err := cl.Mailboxes.GetMailboxStatus(rctx, &mailintakev1.GetMailboxStatusRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.printStatus(resp.GetStatus())
		},
	}
}

// printStatus prints a mailbox's status as JSON or as an aligned list.
func (a *app) printStatus(st *mailintakev1.MailboxStatus) error {
	if a.g.json {
		return a.printJSON(st)
	}
	w := bufio.NewWriter(a.stdout)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-14s %s\n", k+":", v)
		}
	}
	when := func(ts interface{ AsTime() time.Time }, ok bool) string {
		if !ok {
			return ""
		}
		t := ts.AsTime().Local()
		return t.Format("2006-01-02 15:04:05") + " (" + humanSince(t) + ")"
	}
	line("state", strings.ToLower(strings.TrimPrefix(st.GetState().String(), "MAILBOX_STATE_")))
	line("detail", st.GetMessage())
	line("since", when(st.GetStateTime(), st.GetStateTime() != nil))
	if id := st.GetOwnerReplicaId(); id != "" {
		owner := "replica " + id
		if e := st.GetOwnerEpoch(); e > 0 {
			owner += fmt.Sprintf(" (lease epoch %d)", e)
		}
		line("owner", owner)
	}
	line("last sync", when(st.GetLastSyncTime(), st.GetLastSyncTime() != nil))
	if af := st.GetAuthFailure(); af != nil {
		reason := strings.ToLower(strings.TrimPrefix(af.GetReason().String(), "AUTH_FAILURE_REASON_"))
		if af.GetProviderCode() != "" {
			reason += " (" + af.GetProviderCode() + ")"
		}
		line("auth failure", reason)
		line("what to do", af.GetAction())
	}
	for _, w := range st.GetWarnings() {
		line("warning", w)
	}
	line("last error", st.GetLastError())
	line("error at", when(st.GetLastErrorTime(), st.GetLastErrorTime() != nil))
	line("next retry", when(st.GetNextRetryTime(), st.GetNextRetryTime() != nil))
	if th := st.GetTokenHealth(); th != nil {
		line("token expires", when(th.GetAccessTokenExpireTime(), th.GetAccessTokenExpireTime() != nil))
		line("token issued", when(th.GetLastRefreshTime(), th.GetLastRefreshTime() != nil))
		line("refresh token", when(th.GetStateRotateTime(), th.GetStateRotateTime() != nil))
		for _, warn := range th.GetWarnings() {
			line("warning", warn)
		}
	}
	c := st.GetCounts()
	line("messages", fmt.Sprintf("%d delivered, %d acknowledged, %d pending, %d quarantined", c.GetDelivered(), c.GetAcknowledged(), c.GetPending(), c.GetQuarantined()))
	return w.Flush()
}

// humanSince says how long ago (or how far ahead) t is.
func humanSince(t time.Time) string {
	d := time.Since(t).Round(time.Second)
	if d < 0 {
		return "in " + (-d).String()
	}
	return d.String() + " ago"
}

// mailboxEventsCmd is `mailbox events ID`.
func (a *app) mailboxEventsCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:     "events ID",
		Aliases: []string{"log"},
		Short:   "Show a mailbox's event log, newest first",
		Long:    "Show a mailbox's event log, newest first; repeats are folded into one entry with a count.",
		Example: `  mailintake --data-dir data mailbox events MAILBOX_ID
  mailintake --data-dir data mailbox events MAILBOX_ID --limit 200 --json`,
		Args:              oneArg("mailbox events takes one mailbox ID"),
		ValidArgsFunction: a.completeMailboxID,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			resp, err := cl.Mailboxes.ListMailboxEvents(rctx, &mailintakev1.ListMailboxEventsRequest{MailboxId: args[0], PageSize: int32(min(max(limit, 1), 500))})
			if err != nil {
				return err
			}
			if a.g.json {
				return a.printJSON(resp)
			}
			for _, e := range resp.GetEvents() {
				msg := e.GetMessage()
				if e.GetCount() > 1 {
					msg = fmt.Sprintf("%s (%d times since %s)", msg, e.GetCount(), e.GetFirstTime().AsTime().Local().Format("2006-01-02 15:04:05"))
				}
				fmt.Fprintf(a.stdout, "%s  %-10s %s\n", e.GetTime().AsTime().Local().Format("2006-01-02 15:04:05"), e.GetKind(), msg)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "how many events, newest first")
	return cmd
}

// server describes a mailbox's mail server as host:port (security).
func server(mb *mailintakev1.Mailbox) string {
	sec := strings.ToLower(strings.TrimPrefix(mb.GetSecurity().String(), "SECURITY_"))
	return fmt.Sprintf("%s:%d (%s)", mb.GetHost(), mb.GetPort(), sec)
}

// smtpServer is a mailbox's submission server as host:port (security).
func smtpServer(mb *mailintakev1.Mailbox) string {
	sec := strings.ToLower(strings.TrimPrefix(mb.GetSmtpSecurity().String(), "SECURITY_"))
	return fmt.Sprintf("%s:%d (%s)", mb.GetSmtpHost(), mb.GetSmtpPort(), sec)
}

// printMailbox prints a mailbox as JSON or as an aligned list of its fields.
func (a *app) printMailbox(mb *mailintakev1.Mailbox) error {
	if a.g.json {
		return a.printJSON(mb)
	}
	w := bufio.NewWriter(a.stdout)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-14s %s\n", k+":", v)
		}
	}
	line("id", mb.GetId())
	line("tenant", mb.GetTenant())
	line("name", mb.GetDisplayName())
	line("enabled", fmt.Sprint(mb.GetEnabled()))
	line("protocol", strings.ToLower(strings.TrimPrefix(mb.GetProtocol().String(), "PROTOCOL_")))
	line("server", server(mb))
	if d := mb.GetPollInterval(); d != nil {
		line("poll interval", d.AsDuration().String())
	}
	line("username", mb.GetUsername())
	line("provider", mb.GetAuthProvider())
	keys := make([]string, 0, len(mb.GetAuthConfig()))
	for k := range mb.GetAuthConfig() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		line("  "+k, mb.GetAuthConfig()[k])
	}
	if len(mb.GetAuthSecretsSet()) > 0 {
		line("secrets set", strings.Join(mb.GetAuthSecretsSet(), ", "))
	}
	line("folder", mb.GetFolder())
	aa := strings.ToLower(strings.TrimPrefix(mb.GetAfterAck().GetAction().String(), "AFTER_ACK_ACTION_"))
	if f := mb.GetAfterAck().GetFolder(); f != "" {
		aa += " to " + f
	}
	line("after ack", aa)
	line("start from", strings.ToLower(strings.TrimPrefix(mb.GetStartFrom().String(), "START_FROM_")))
	line("ticket pattern", mb.GetTicketPattern())
	switch {
	case mb.GetSendingEnabled() && mb.GetSmtpHost() != "":
		line("sending", "on, via "+smtpServer(mb))
	case mb.GetSmtpHost() != "":
		line("sending", "off (server "+smtpServer(mb)+")")
	default:
		line("sending", "off")
	}
	line("send as", mb.GetSmtpFrom())
	if n := mb.GetSmtpMaxPerMinute(); n > 0 {
		line("send rate", fmt.Sprintf("at most %d a minute", n))
	}
	if mb.GetSaveSentCopy() {
		f := mb.GetSentFolder()
		if f == "" {
			f = `the server's \Sent folder, else "Sent"`
		}
		line("sent copy", "saved in "+f)
	}
	if mb.GetCreateTime() != nil {
		line("created", mb.GetCreateTime().AsTime().Format("2006-01-02 15:04:05 MST"))
	}
	return w.Flush()
}
