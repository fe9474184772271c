package main

import (
	"io"
	"os"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/mailintake/mailintake/internal/parse"
)

// parseCmd is `parse FILE|-`: the parsed message, offline.
func (a *app) parseCmd() *cobra.Command {
	var ticket string
	cmd := &cobra.Command{
		Use:   "parse FILE|-",
		Short: "Parse a message offline and print it as JSON",
		Long: `Parse a message (RFC 5322, as the mail server stores it) from FILE, or from standard input
with -, without a server, and print it as protobuf JSON: the same message type the stream carries.`,
		Example: `  mailintake parse message.eml
  mailintake parse --ticket-pattern '\[#(\d+)\]' - < message.eml`,
		Args: oneArg("parse takes one file name, or - for standard input"),
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveDefault
		},
		RunE: func(_ *cobra.Command, args []string) error {
			var raw []byte
			var err error
			if args[0] == "-" {
				raw, err = io.ReadAll(a.stdin)
			} else {
				raw, err = os.ReadFile(args[0])
			}
			if err != nil {
				return &failure{msg: err.Error()}
			}
			opts := parse.Options{}
			if ticket != "" {
				re, err := regexp.Compile(ticket)
				if err != nil {
					return usagef("--ticket-pattern: %v", err)
				}
				opts.TicketPattern = re
			}
			return a.printJSON(parse.Parse(raw, opts))
		},
	}
	cmd.Flags().StringVar(&ticket, "ticket-pattern", "", "regular expression finding a ticket reference in the subject")
	return cmd
}
