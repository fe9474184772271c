package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailintake/mailintake/client"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// mailboxAuthorizeCmd is `mailbox authorize ID`: the interactive (device code) sign-in.
func (a *app) mailboxAuthorizeCmd() *cobra.Command {
	var noWait bool
	cmd := &cobra.Command{
		Use:   "authorize ID",
		Short: "Sign a mailbox in interactively (device code) and wait",
		Long: `Start an interactive sign-in for a mailbox whose provider needs one (such as o365 with
flow=device_code): print the URL and the code to enter there, then wait until the sign-in
completes, fails or expires. Ctrl-C stops waiting; the server keeps polling.`,
		Example: `  mailintake --data-dir data mailbox authorize MAILBOX_ID
  mailintake --data-dir data mailbox authorize MAILBOX_ID --no-wait --json`,
		Args:              oneArg("mailbox authorize takes one mailbox ID"),
		ValidArgsFunction: a.completeMailboxID,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			resp, err := cl.Providers.BeginAuthorization(rctx, &mailintakev1.BeginAuthorizationRequest{MailboxId: args[0]})
			cancel()
			if err != nil {
				return err
			}
			auth := resp.GetAuthorization()
			if a.g.json {
				if err := a.printJSON(auth); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(a.stdout, auth.GetMessage())
				fmt.Fprintf(a.stdout, "  URL:  %s\n", auth.GetVerificationUri())
				// A browser sign-in (Google's installed-app flow) has no code to enter: its
				// message says what to do.
				if auth.GetUserCode() != "" {
					fmt.Fprintf(a.stdout, "  code: %s\n", auth.GetUserCode())
					if auth.GetExpireTime() != nil {
						fmt.Fprintf(a.stdout, "  the code expires at %s\n", auth.GetExpireTime().AsTime().Local().Format("15:04:05"))
					}
				}
			}
			if noWait {
				return nil
			}
			if !a.g.json {
				fmt.Fprintln(a.stderr, "waiting for the sign-in (Ctrl-C stops waiting; the server keeps polling)…")
			}
			return a.waitAuthorization(cmd.Context(), cl, args[0])
		},
	}
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "print the sign-in instructions and return without waiting")
	return cmd
}

// waitAuthorization polls the sign-in of mailbox id until it completes (printing the result),
// fails or expires.
func (a *app) waitAuthorization(ctx context.Context, cl *client.Client, id string) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		rctx, cancel := a.rpcCtx(ctx)
		g, err := cl.Providers.GetAuthorization(rctx, &mailintakev1.GetAuthorizationRequest{MailboxId: id})
		cancel()
		if err != nil {
			return err
		}
		auth := g.GetAuthorization()
		switch auth.GetState() {
		case mailintakev1.AuthorizationState_AUTHORIZATION_STATE_COMPLETED:
			if a.g.json {
				return a.printJSON(auth)
			}
			fmt.Fprintln(a.stdout, "signed in: the mailbox connects now")
			return nil
		case mailintakev1.AuthorizationState_AUTHORIZATION_STATE_FAILED, mailintakev1.AuthorizationState_AUTHORIZATION_STATE_EXPIRED:
			f := auth.GetFailure()
			msg := "the sign-in did not complete: " + f.GetMessage()
			if f.GetAction() != "" {
				msg += "\n  what to do: " + f.GetAction()
			}
			return &failure{msg: msg}
		}
	}
}
