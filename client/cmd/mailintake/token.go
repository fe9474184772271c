package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// tokenCmd is `mailintake token`: API tokens, managed with the admin token.
func (a *app) tokenCmd() *cobra.Command {
	cmd := subcommandsOnly(&cobra.Command{
		Use:     "token",
		Aliases: []string{"tokens"},
		Short:   "Manage API tokens (admin token)",
		Long: `Create, list and revoke API tokens. A token is scoped to a tenant (a PSA customer) and sees only
that tenant's mailboxes and messages. Managing tokens needs the admin token (--data-dir of a local
server uses its admin.token).`,
		Example: `  mailintake --data-dir data token create --tenant acme --name psa-backend
  MAILINTAKE_TOKEN=mit_... mailintake mailbox list
  mailintake --data-dir data token list
  mailintake --data-dir data token revoke TOKEN_ID`,
	})
	cmd.AddCommand(a.tokenCreateCmd(), a.tokenListCmd(), a.tokenRevokeCmd())
	return cmd
}

// tokenCreateCmd is `token create --tenant T`.
func (a *app) tokenCreateCmd() *cobra.Command {
	var tenant, name string
	var expiresIn time.Duration
	cmd := &cobra.Command{
		Use:   "create --tenant T",
		Short: "Create a token for a tenant and print it once",
		Long: `Create an API token scoped to a tenant. The token is printed on standard output, this once only;
its id and expiry go to standard error. Without --expires-in it is valid until revoked.`,
		Example: `  mailintake --data-dir data token create --tenant acme --name psa-backend
  mailintake --data-dir data token create --tenant acme --expires-in 2160h`,
		Args:              noArgs("token create takes no arguments"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tenant == "" {
				return usagef("token create needs --tenant")
			}
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			req := &mailintakev1.CreateTokenRequest{Tenant: tenant, Name: name}
			if expiresIn != 0 {
				req.Ttl = durationpb.New(expiresIn)
			}
			resp, err := cl.Tokens.CreateToken(rctx, req)
			if err != nil {
				return err
			}
			if a.g.json {
				return a.printJSON(resp)
			}
			fmt.Fprintln(a.stdout, resp.GetSecret())
			expiry := "valid until revoked"
			if e := resp.GetToken().GetExpireTime(); e != nil {
				expiry = "expires " + e.AsTime().Format(time.RFC3339)
			}
			fmt.Fprintf(a.stderr, "token %s for tenant %s (%s); this is the only time it is shown\n", resp.GetToken().GetId(), resp.GetToken().GetTenant(), expiry)
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "the tenant the token is scoped to")
	cmd.Flags().StringVar(&name, "name", "", "a name for the token")
	cmd.Flags().DurationVar(&expiresIn, "expires-in", 0, "how long the token is valid, e.g. 2160h (default: until revoked)")
	return cmd
}

// tokenListCmd is `token list`.
func (a *app) tokenListCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:               "list",
		Short:             "List the API tokens",
		Long:              "List the API tokens (never their secrets), without the revoked ones unless --all is given.",
		Example:           "  mailintake --data-dir data token list --all",
		Args:              cobra.ArbitraryArgs, // extra arguments have always been ignored
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			resp, err := cl.Tokens.ListTokens(rctx, &mailintakev1.ListTokensRequest{IncludeRevoked: all})
			if err != nil {
				return err
			}
			if a.g.json {
				return a.printJSON(resp)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tTENANT\tADMIN\tCREATED\tEXPIRES\tREVOKED")
			for _, t := range resp.GetTokens() {
				revoked, expires := "", "never"
				if t.GetRevokeTime() != nil {
					revoked = t.GetRevokeTime().AsTime().Format(time.RFC3339)
				}
				if t.GetExpireTime() != nil {
					expires = t.GetExpireTime().AsTime().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\n", t.GetId(), t.GetName(), t.GetTenant(), t.GetAdmin(),
					t.GetCreateTime().AsTime().Format(time.RFC3339), expires, revoked)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include revoked tokens")
	return cmd
}

// tokenRevokeCmd is `token revoke ID`.
func (a *app) tokenRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "revoke ID",
		Short:             "Revoke an API token",
		Long:              "Revoke an API token: calls made with it are refused from now on.",
		Example:           "  mailintake --data-dir data token revoke TOKEN_ID",
		Args:              oneArg("token revoke takes one token ID"),
		ValidArgsFunction: a.completeTokenID,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			if _, err := cl.Tokens.RevokeToken(rctx, &mailintakev1.RevokeTokenRequest{Id: args[0]}); err != nil {
				return err
			}
			if !a.g.json {
				fmt.Fprintf(a.stdout, "revoked token %s\n", args[0])
			}
			return nil
		},
	}
}
