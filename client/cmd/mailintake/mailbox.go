package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// mailboxCmd is `mailintake mailbox`: the mailboxes the server reads mail from.
func (a *app) mailboxCmd() *cobra.Command {
	cmd := subcommandsOnly(&cobra.Command{
		Use:     "mailbox",
		Aliases: []string{"mailboxes"},
		Short:   "Manage mailboxes",
		Long: `Add, change, enable, disable and remove the mailboxes the server reads mail from; test a
connection, preview a first sync, show a mailbox's state and event log, and run an interactive
sign-in for providers that need one.`,
		Example: `  printf '%s' 'the-password' | mailintake --data-dir data mailbox add --tenant acme \
      --name Support --host imap.example.com --username support@example.com \
      --provider basic --password-stdin
  mailintake --data-dir data mailbox list
  mailintake --data-dir data mailbox status MAILBOX_ID`,
	})
	cmd.AddCommand(a.mailboxAddCmd(), a.mailboxListCmd(), a.mailboxGetCmd(), a.mailboxUpdateCmd(),
		a.mailboxEnableCmd(true), a.mailboxEnableCmd(false), a.mailboxRmCmd(), a.mailboxStatusCmd(),
		a.mailboxEventsCmd(), a.mailboxDryRunCmd(), a.mailboxTestCmd(), a.mailboxAuthorizeCmd())
	return cmd
}

// mailboxAddCmd is `mailbox add`.
func (a *app) mailboxAddCmd() *cobra.Command {
	var d defFlags
	cmd := &cobra.Command{
		Use:     "add --name N --host H --username U --provider P",
		Aliases: []string{"create"},
		Short:   "Add a mailbox and print it (with its id)",
		Long: `Add a mailbox and print it, with the id the other commands take.

Secrets are never taken from the command line: --password-stdin or --secret-stdin reads one from
standard input; otherwise the provider's required secrets are asked for at the terminal.
--start-from new (the default) delivers only mail arriving from now on; unseen and all also
deliver what is there, marked as backfill. --disabled creates the mailbox disabled, to look first
with 'mailbox dry-run'.

--protocol pop3 reads a POP3 maildrop instead (port 995 with tls, 110 with starttls): it is polled
every --poll-interval (default 1m), and --after-ack is delete (at the next clean QUIT) or keep.`,
		Example: `  printf '%s' 'the-password' | mailintake --data-dir data mailbox add --tenant acme \
      --name Support --host imap.example.com --username support@example.com \
      --provider basic --password-stdin
  mailintake --data-dir data mailbox add --tenant acme --name Help --host outlook.office365.com \
      --username help@contoso.com --provider o365 --config client_id=APPLICATION_ID \
      --config tenant_id=DIRECTORY_ID --config flow=device_code \
      --after-ack move:Processed --start-from unseen
  printf '%s' 'the-password' | mailintake --data-dir data mailbox add --tenant acme \
      --name 'Support POP' --protocol pop3 --host pop.example.com --username support@example.com \
      --provider basic --password-stdin --after-ack delete --poll-interval 30s`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("mailbox add takes no arguments, got %q", args[0])
			}
			return nil
		},
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mb, _, err := d.build(cmd.Flags(), a, true)
			if err != nil {
				return err
			}
			if !d.passwordStdin && !d.secretStdin {
				if err := a.promptSecrets(cmd.Context(), mb); err != nil {
					return err
				}
			}
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			resp, err := cl.Mailboxes.CreateMailbox(rctx, &mailintakev1.CreateMailboxRequest{Mailbox: mb})
			if err != nil {
				return err
			}
			return a.printMailbox(resp.GetMailbox())
		},
	}
	d.register(cmd.Flags())
	a.completeDefFlags(cmd)
	return cmd
}

// mailboxListCmd is `mailbox list`.
func (a *app) mailboxListCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the mailboxes",
		Long:    "List the mailboxes the token sees: a tenant's token its tenant's, the admin token every tenant's.",
		Example: `  mailintake --data-dir data mailbox list
  mailintake --data-dir data mailbox list --tenant acme --json`,
		Args:              noArgs("mailbox list takes no arguments"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			all := &mailintakev1.ListMailboxesResponse{}
			token := ""
			for {
				rctx, cancel := a.rpcCtx(cmd.Context())
				resp, err := cl.Mailboxes.ListMailboxes(rctx, &mailintakev1.ListMailboxesRequest{Tenant: tenant, PageToken: token, PageSize: 500})
				cancel()
				if err != nil {
					return err
				}
				all.Mailboxes = append(all.Mailboxes, resp.GetMailboxes()...)
				if token = resp.GetNextPageToken(); token == "" {
					break
				}
			}
			if a.g.json {
				return a.printJSON(all)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTENANT\tNAME\tENABLED\tSERVER\tUSERNAME\tPROVIDER")
			for _, mb := range all.GetMailboxes() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\n", mb.GetId(), mb.GetTenant(), mb.GetDisplayName(), mb.GetEnabled(),
					server(mb), mb.GetUsername(), mb.GetAuthProvider())
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant (admin token)")
	_ = cmd.RegisterFlagCompletionFunc("tenant", a.completeTenants)
	return cmd
}

// mailboxGetCmd is `mailbox get ID`.
func (a *app) mailboxGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "get ID",
		Aliases: []string{"show"},
		Short:   "Print a mailbox",
		Long:    "Print a mailbox's definition; secrets are never shown, only which ones are set.",
		Example: `  mailintake --data-dir data mailbox get MAILBOX_ID
  mailintake --data-dir data mailbox get MAILBOX_ID --json`,
		Args:              oneArg("mailbox get takes one mailbox ID"),
		ValidArgsFunction: a.completeMailboxID,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			resp, err := cl.Mailboxes.GetMailbox(rctx, &mailintakev1.GetMailboxRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return a.printMailbox(resp.GetMailbox())
		},
	}
}

// mailboxUpdateCmd is `mailbox update ID [flags]`: only the flags given change.
func (a *app) mailboxUpdateCmd() *cobra.Command {
	var d defFlags
	cmd := &cobra.Command{
		Use:     "update ID",
		Aliases: []string{"set"},
		Short:   "Change a mailbox: only the flags given",
		Long: `Change a mailbox: only the fields whose flags are given, with the flags of 'mailbox add'
(and --enabled=true|false). The changed mailbox is printed.`,
		Example: `  mailintake --data-dir data mailbox update MAILBOX_ID --folder Support
  printf '%s' 'the-new-password' | mailintake --data-dir data mailbox update MAILBOX_ID --password-stdin`,
		Args:              oneArg("mailbox update takes one mailbox ID"),
		ValidArgsFunction: a.completeMailboxID,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			mb, mask, err := d.build(fs, a, false)
			if err != nil {
				return err
			}
			if fs.Changed("enabled") {
				mb.Enabled, _ = fs.GetBool("enabled")
				mask = append(mask, "enabled")
			}
			if len(mask) == 0 {
				return usagef("mailbox update needs at least one flag to change")
			}
			return a.updateMailbox(cmd, args[0], mb, mask)
		},
	}
	d.register(cmd.Flags())
	cmd.Flags().Bool("enabled", false, "enable (true) or disable (false) the mailbox")
	a.completeDefFlags(cmd)
	return cmd
}

// mailboxEnableCmd is `mailbox enable ID` (on) or `mailbox disable ID`.
func (a *app) mailboxEnableCmd(on bool) *cobra.Command {
	name, short := "enable", "Enable a mailbox: the server starts reading it"
	if !on {
		name, short = "disable", "Disable a mailbox: the server stops reading it, keeping its state"
	}
	return &cobra.Command{
		Use:               name + " ID",
		Short:             short,
		Long:              "The same as 'mailbox update ID --enabled=" + fmt.Sprint(on) + "'; the changed mailbox is printed.",
		Example:           "  mailintake --data-dir data mailbox " + name + " MAILBOX_ID",
		Args:              oneArg("mailbox " + name + " takes one mailbox ID"),
		ValidArgsFunction: a.completeMailboxID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.updateMailbox(cmd, args[0], &mailintakev1.Mailbox{Enabled: on}, []string{"enabled"})
		},
	}
}

// updateMailbox changes the fields of mailbox id named by mask and prints the result.
func (a *app) updateMailbox(cmd *cobra.Command, id string, mb *mailintakev1.Mailbox, mask []string) error {
	mb.Id = id
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(cmd.Context())
	defer cancel()
	resp, err := cl.Mailboxes.UpdateMailbox(rctx, &mailintakev1.UpdateMailboxRequest{Mailbox: mb, UpdateMask: &fieldmaskpb.FieldMask{Paths: mask}})
	if err != nil {
		return err
	}
	return a.printMailbox(resp.GetMailbox())
}

// mailboxRmCmd is `mailbox rm ID`.
func (a *app) mailboxRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "rm ID",
		Aliases:           []string{"delete"},
		Short:             "Remove a mailbox",
		Long:              "Remove a mailbox; the mail on the mail server stays where it is.",
		Example:           "  mailintake --data-dir data mailbox rm MAILBOX_ID",
		Args:              oneArg("mailbox rm takes one mailbox ID"),
		ValidArgsFunction: a.completeMailboxID,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			if _, err := cl.Mailboxes.DeleteMailbox(rctx, &mailintakev1.DeleteMailboxRequest{Id: args[0]}); err != nil {
				return err
			}
			if !a.g.json {
				fmt.Fprintf(a.stdout, "deleted mailbox %s\n", args[0])
			}
			return nil
		},
	}
}
