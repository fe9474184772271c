package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mailintake/mailintake/client"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// mailboxTestCmd is `mailbox test ID`, or `mailbox test` with the add flags.
func (a *app) mailboxTestCmd() *cobra.Command {
	var d defFlags
	cmd := &cobra.Command{
		Use:   "test [ID]",
		Short: "Test a mailbox's connection, step by step",
		Long: `Test a saved mailbox's connection (ID), or an unsaved definition given with the flags of
'mailbox add' instead of an ID: DNS, TCP, TLS, greeting, login and folder, then, when sending is
on, the SMTP server's connection, TLS, EHLO and login. Each step is printed as it ends, with its
duration and, when it fails, the error and what to do. Exits 1 when a step fails.`,
		Example: `  mailintake --data-dir data mailbox test MAILBOX_ID
  printf '%s' 'the-password' | mailintake --data-dir data mailbox test --tenant acme \
      --host imap.example.com --username support@example.com --provider basic --password-stdin`,
		Args:              maxOneArg("mailbox test takes one mailbox ID, or the mailbox add flags"),
		ValidArgsFunction: a.completeMailboxID,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, mb, err := a.idOrDefinition(cmd, &d, args)
			if err != nil {
				return err
			}
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			resp, err := a.runTest(rctx, cl.Mailboxes, id, mb)
			if err != nil {
				return err
			}
			if a.g.json {
				if err := a.printJSON(resp); err != nil {
					return err
				}
			}
			if !resp.GetOk() {
				return &failure{msg: "the connection test failed"}
			}
			return nil
		},
	}
	d.register(cmd.Flags())
	a.completeDefFlags(cmd)
	return cmd
}

// mailboxDryRunCmd is `mailbox dry-run ID`, or `mailbox dry-run` with the add flags.
func (a *app) mailboxDryRunCmd() *cobra.Command {
	var d defFlags
	cmd := &cobra.Command{
		Use:     "dry-run [ID]",
		Aliases: []string{"preview"},
		Short:   "How many messages a first sync would deliver",
		Long: `Say how many messages the first sync of a saved mailbox (ID), or of an unsaved definition given
with the flags of 'mailbox add', would deliver, by its --start-from; nothing is delivered.`,
		Example: `  mailintake --data-dir data mailbox dry-run MAILBOX_ID
  mailintake --data-dir data mailbox dry-run --tenant acme --host imap.example.com \
      --username support@example.com --provider basic --start-from unseen --password-stdin < pw`,
		Args:              maxOneArg("mailbox dry-run takes one mailbox ID, or the mailbox add flags"),
		ValidArgsFunction: a.completeMailboxID,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, mb, err := a.idOrDefinition(cmd, &d, args)
			if err != nil {
				return err
			}
			req := &mailintakev1.PreviewFirstSyncRequest{Target: &mailintakev1.PreviewFirstSyncRequest_Id{Id: id}}
			if mb != nil {
				req.Target = &mailintakev1.PreviewFirstSyncRequest_Mailbox{Mailbox: mb}
			}
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			resp, err := cl.Mailboxes.PreviewFirstSync(rctx, req)
			if err != nil {
				return err
			}
			if a.g.json {
				return a.printJSON(resp)
			}
			from := strings.ToLower(strings.TrimPrefix(resp.GetStartFrom().String(), "START_FROM_"))
			fmt.Fprintf(a.stdout, "folder: %d messages, %d unseen\n", resp.GetFolderMessages(), resp.GetFolderUnseen())
			if resp.GetAlreadySynced() {
				fmt.Fprintln(a.stdout, "the mailbox has synchronised before: only new mail will be delivered")
				return nil
			}
			fmt.Fprintf(a.stdout, "start from %s: the first sync would deliver %d messages (marked as backfill), then new mail\n", from, resp.GetWouldDeliver())
			return nil
		},
	}
	d.register(cmd.Flags())
	a.completeDefFlags(cmd)
	return cmd
}

// runTest runs a connection test of a saved mailbox (id) or a definition (mb) and prints each
// step as it ends (not with --json, which prints the result as a whole). It streams the test
// (StreamConnectionTest); a server without it (Unimplemented) answers TestConnection, whose
// steps are printed at the end.
func (a *app) runTest(ctx context.Context, c mailintakev1.MailboxServiceClient, id string, mb *mailintakev1.Mailbox) (*mailintakev1.TestConnectionResponse, error) {
	req := &mailintakev1.StreamConnectionTestRequest{Target: &mailintakev1.StreamConnectionTestRequest_Id{Id: id}}
	if mb != nil {
		req.Target = &mailintakev1.StreamConnectionTestRequest_Mailbox{Mailbox: mb}
	}
	return client.TestConnection(ctx, c, req, func(r *mailintakev1.StreamConnectionTestResponse) {
		if s := r.GetStep(); s != nil && !a.g.json && s.GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_RUNNING {
			a.printTestStep(s)
		}
	})
}

// printTestStep prints an ended step of a connection test on one line, and its error and what
// to do on the next ones.
func (a *app) printTestStep(s *mailintakev1.TestStep) {
	mark := map[mailintakev1.TestStepResult]string{
		mailintakev1.TestStepResult_TEST_STEP_RESULT_OK:      "[ok]  ",
		mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED:  "[FAIL]",
		mailintakev1.TestStepResult_TEST_STEP_RESULT_SKIPPED: "[skip]",
	}[s.GetResult()]
	step := client.StepName(s.GetKind())
	line := fmt.Sprintf("%s %-12s %6dms  %s", mark, step, s.GetDuration().AsDuration().Milliseconds(), s.GetDetail())
	fmt.Fprintln(a.stdout, strings.TrimRight(line, " "))
	if s.GetError() != "" {
		fmt.Fprintf(a.stdout, "       %s\n", s.GetError())
	}
	if af := s.GetAuthFailure(); af != nil && af.GetAction() != "" {
		fmt.Fprintf(a.stdout, "       what to do: %s\n", af.GetAction())
	}
}

// idOrDefinition reads the target of test and dry-run: a saved mailbox's id, or an unsaved
// definition from the add flags (with its secrets).
func (a *app) idOrDefinition(cmd *cobra.Command, d *defFlags, args []string) (string, *mailintakev1.Mailbox, error) {
	if len(args) == 1 {
		return args[0], nil, nil
	}
	mb, _, err := d.build(cmd.Flags(), a, true)
	if err != nil {
		return "", nil, err
	}
	if !d.passwordStdin && !d.secretStdin {
		if err := a.promptSecrets(cmd.Context(), mb); err != nil {
			return "", nil, err
		}
	}
	return "", mb, nil
}

// maxOneArg allows at most one positional argument, or fails with the usage error msg.
func maxOneArg(msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > 1 {
			return &usageError{msg}
		}
		return nil
	}
}
