package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// providersCmd is `providers`: the installed auth providers.
func (a *app) providersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "providers",
		Short: "List the installed auth providers and their fields",
		Long: `List the auth providers the server has installed (plugins named mailintake-auth-NAME), each
with its SASL mechanisms and the config fields 'mailbox add --config key=value' takes. A provider
that is installed but cannot be used (a pin mismatch, a failed start) is listed as BROKEN with
the reason.`,
		Example: `  mailintake --data-dir data providers
  mailintake --data-dir data providers --json`,
		Args:              noArgs("providers takes no arguments"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.rpcCtx(cmd.Context())
			defer cancel()
			resp, err := cl.Providers.ListAuthProviders(rctx, &mailintakev1.ListAuthProvidersRequest{})
			if err != nil {
				return err
			}
			return a.printProviders(resp)
		},
	}
}

// printProviders prints the providers as JSON, or each with its fields in a table.
func (a *app) printProviders(resp *mailintakev1.ListAuthProvidersResponse) error {
	if a.g.json {
		return a.printJSON(resp)
	}
	for i, p := range resp.GetProviders() {
		if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		if p.GetError() != "" {
			// Installed but unusable: say so and why instead of its fields.
			fmt.Fprintf(a.stdout, "%s — BROKEN\n  %s\n", p.GetName(), p.GetError())
			continue
		}
		fmt.Fprintf(a.stdout, "%s %s — %s\n", p.GetName(), p.GetVersion(), p.GetDisplayName())
		if p.GetDescription() != "" {
			fmt.Fprintf(a.stdout, "  %s\n", p.GetDescription())
		}
		fmt.Fprintf(a.stdout, "  SASL: %s\n", strings.Join(p.GetSaslMechanisms(), ", "))
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  FIELD\tKIND\tLABEL\tHELP")
		for _, f := range p.GetFields() {
			var kind []string
			if f.GetRequired() {
				kind = append(kind, "required")
			}
			if f.GetSecret() {
				kind = append(kind, "secret")
			}
			if len(f.GetOptions()) > 0 {
				kind = append(kind, strings.Join(f.GetOptions(), "|"))
			}
			if f.GetDefaultValue() != "" {
				kind = append(kind, "default "+f.GetDefaultValue())
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", f.GetName(), strings.Join(kind, ", "), f.GetLabel(), f.GetHelp())
		}
		tw.Flush()
	}
	return nil
}
