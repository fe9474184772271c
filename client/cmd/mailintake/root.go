package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// rootCmd builds the command tree of one run.
func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "mailintake",
		Short: "The command-line client of the mailintake server",
		Long: `mailintake manages a mailintake server: its mailboxes, API tokens and quarantine; follows the
message stream as JSON lines; sends mail as a mailbox and shows what became of it; shows the
cluster's replicas; and parses a message offline.

The global flags are accepted before or after the command. The API token comes from --token,
MAILINTAKE_TOKEN, --token-file, or --data-dir of a local server (its admin.token).

Exit codes: 0 success, 1 the operation failed (the server said no), 2 usage error, 3 the server
cannot be reached or the caller is not authenticated.`,
		Example: `  mailintake --data-dir data providers
  mailintake --data-dir data mailbox list
  mailintake --data-dir data tail --ack
  mailintake --data-dir data cluster status
  mailintake parse message.eml
  source <(mailintake completion bash)`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		// Every command runs this hook first: what fails before it is a usage error.
		PersistentPreRun: func(*cobra.Command, []string) { a.started = true },
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				fmt.Fprint(a.stderr, c.UsageString())
				return errUsageShown
			}
			return usagef("unknown command %q (commands: %s)%s", args[0], subcommandNames(c), suggestions(c, args[0]))
		},
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	a.g.register(root.PersistentFlags())
	a.completeGlobals(root)
	root.AddCommand(a.mailboxCmd(), a.tailCmd(), a.sendCmd(), a.outboundCmd(), a.parseCmd(), a.providersCmd(), a.providerCmd(), a.quarantineCmd(),
		a.tokenCmd(), a.clusterCmd())
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			completionExamples(subcommandsOnly(c))
		}
	}
	return root
}

// shellExamples are how to load each shell's completion script.
var shellExamples = map[string]string{
	"bash":       "  source <(mailintake completion bash)",
	"zsh":        "  mailintake completion zsh > \"${fpath[1]}/_mailintake\"",
	"fish":       "  mailintake completion fish | source",
	"powershell": "  mailintake completion powershell | Out-String | Invoke-Expression",
}

// completionExamples gives cobra's completion command and its subcommands examples, for the
// same help layout as the other commands.
func completionExamples(cmd *cobra.Command) {
	var all []string
	for _, sub := range cmd.Commands() {
		if ex, ok := shellExamples[sub.Name()]; ok {
			sub.Example = ex
			all = append(all, ex)
		}
	}
	cmd.Example = strings.Join(all, "\n")
}

// subcommandsOnly makes cmd a command that only holds subcommands: run without one, or with
// one it does not have, it is a usage error that names them.
func subcommandsOnly(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.ValidArgsFunction = cobra.NoFileCompletions
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usagef("%s needs a subcommand: %s", c.Name(), subcommandNames(c))
		}
		return usagef("unknown %s subcommand %q: %s%s", c.Name(), args[0], subcommandNames(c), suggestions(c, args[0]))
	}
	return cmd
}

// subcommandNames lists cmd's subcommands, as its help does.
func subcommandNames(cmd *cobra.Command) string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return strings.Join(names, ", ")
}

// suggestions is cobra's "did you mean" for a mistyped subcommand of cmd, or "".
func suggestions(cmd *cobra.Command, typed string) string {
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default for its own suggestions
	}
	s := cmd.SuggestionsFor(typed)
	if len(s) == 0 {
		return ""
	}
	return "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
}

// noArgs rejects positional arguments with the usage error msg.
func noArgs(msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > 0 {
			return &usageError{msg}
		}
		return nil
	}
}

// oneArg requires exactly one positional argument, or fails with the usage error msg.
func oneArg(msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return &usageError{msg}
		}
		return nil
	}
}
