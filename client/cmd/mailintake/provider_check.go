package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailintake/mailintake/plugins/authplugin/authplugintest"
)

// providerCmd is `provider`: commands for provider authors.
func (a *app) providerCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "provider",
		Short: "Check an auth provider executable (for provider authors)",
		Long: `Commands for authors of auth providers. 'mailintake providers' lists the providers a
server has installed; 'mailintake provider check' checks an executable before it is installed.`,
		Example: `  mailintake provider check ./mailintake-auth-mytoken`,
		Args:    noArgs("provider needs a subcommand: check"),
		RunE: func(*cobra.Command, []string) error {
			return usagef("provider needs a subcommand: check")
		},
	}
	c.AddCommand(a.providerCheckCmd())
	return c
}

// providerCheckCmd is `provider check PATH`.
func (a *app) providerCheckCmd() *cobra.Command {
	var slow time.Duration
	c := &cobra.Command{
		Use:   "check PATH",
		Short: "Start a provider as the server does and report what it gets wrong",
		Long: `Start the provider executable at PATH the way mailintaked does (the handshake environment,
automatic mutual TLS) and report, in words, each thing it gets wrong: its handshake line, its
certificate (the DNS name localhost), its health service, the go-plugin services the server calls
(controller, stdio), its Describe answer, an error without its typed detail, output on stdout after
the handshake, slow answers, and whether it stops when asked. No server is needed. The exit code is
0 when nothing is wrong, 1 otherwise.`,
		Example: `  mailintake provider check ./mailintake-auth-mytoken
  mailintake provider check --slow 500ms /srv/mailintake/bin/mailintake-auth-nodetoken`,
		Args: oneArg("provider check takes the provider executable's path"),
		RunE: func(cmd *cobra.Command, args []string) error {
			r := authplugintest.Run(cmd.Context(), args[0], authplugintest.Options{SlowAnswer: slow})
			fmt.Fprint(a.stdout, r.String())
			if !r.OK() {
				return &failure{msg: fmt.Sprintf("%s: %d problem(s) found", args[0], len(r.Findings))}
			}
			return nil
		},
	}
	c.Flags().DurationVar(&slow, "slow", 0, "the longest answer not reported as slow (default 2s)")
	return c
}
