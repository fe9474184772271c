package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestHelpEveryCommand runs --help on each command: exit 0, the help on standard output with
// the same layout (description, usage, examples, flags), and the command's own flags listed.
func TestHelpEveryCommand(t *testing.T) {
	tests := []struct {
		path  string
		flags []string // flags the help must list, beside the global ones
	}{
		{"", []string{"--addr string", "--token string", "--token-file string", "--data-dir string", "--json", "--tls", "--server-ca", "--client-cert", "--client-key", "--insecure", "--rpc-timeout duration"}},
		{"mailbox", nil},
		{"mailbox add", []string{"--name", "--host", "--port", "--security", "--username", "--provider", "--config key=value", "--password-stdin", "--secret-stdin", "--ca-file", "--folder", "--after-ack", "--start-from", "--tenant", "--disabled",
			"--sending", "--smtp-host", "--smtp-port", "--smtp-security", "--smtp-from", "--smtp-max-per-minute"}},
		{"mailbox list", []string{"--tenant"}},
		{"mailbox get", nil},
		{"mailbox update", []string{"--folder", "--enabled", "--password-stdin", "--sending", "--smtp-host", "--smtp-port", "--smtp-security"}},
		{"mailbox enable", nil},
		{"mailbox disable", nil},
		{"mailbox rm", nil},
		{"mailbox status", nil},
		{"mailbox events", []string{"--limit int"}},
		{"mailbox dry-run", []string{"--start-from", "--host"}},
		{"mailbox test", []string{"--host", "--password-stdin"}},
		{"mailbox authorize", []string{"--no-wait"}},
		{"tail", []string{"--mailbox ID", "--ack", "--limit int", "--timeout duration", "--quiet", "--max-in-flight"}},
		{"send", []string{"--mailbox", "--to ADDRESS", "--cc", "--bcc", "--subject", "--in-reply-to ID", "--reference", "--attach FILE", "--html-file FILE", "--raw-file FILE", "--idempotency-key", "--from", "--wait"}},
		{"outbound", nil},
		{"outbound list", []string{"--mailbox", "--state", "--tenant"}},
		{"outbound get", nil},
		{"parse", []string{"--ticket-pattern"}},
		{"providers", nil},
		{"quarantine", nil},
		{"quarantine list", nil},
		{"quarantine replay", nil},
		{"quarantine release", nil},
		{"token", nil},
		{"token create", []string{"--tenant", "--name", "--expires-in duration"}},
		{"token list", []string{"--all"}},
		{"token revoke", nil},
		{"cluster", nil},
		{"cluster status", nil},
		{"completion", nil},
		{"completion bash", nil},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			for _, helpArgs := range [][]string{append(strings.Fields(tc.path), "--help"), append(strings.Fields(tc.path), "-h"), append([]string{"help"}, strings.Fields(tc.path)...)} {
				code, out, errOut := runCLI(t, "127.0.0.1:1", adminToken, helpArgs...)
				if code != exitOK || errOut != "" {
					t.Fatalf("%v: exit %d, stderr %q", helpArgs, code, errOut)
				}
				want := []string{"\n\nUsage:\n  " + strings.TrimSpace("mailintake "+tc.path), "\n\nExamples:\n  "}
				if tc.path != "" {
					want = append(want, "\n\nGlobal Flags:\n", "--addr string")
				}
				for _, w := range append(want, tc.flags...) {
					if !strings.Contains(out, w) {
						t.Errorf("%v: help lacks %q:\n%s", helpArgs, w, out)
					}
				}
			}
		})
	}
}

// TestEveryCommandDocumented walks the command tree: every command has a short and a long
// description and examples.
func TestEveryCommandDocumented(t *testing.T) {
	a := &app{}
	root := a.rootCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Hidden || c.Name() == "help" {
			return // cobra's own
		}
		if c.Short == "" || c.Long == "" || c.Example == "" {
			t.Errorf("%s: Short %q, Long %q, Example %q: each command has all three", c.CommandPath(), c.Short, c.Long, c.Example)
		}
	}
	walk(root)
}

// TestAliases checks that the other names the CLI always accepted still reach their command.
func TestAliases(t *testing.T) {
	for alias, want := range map[string]string{
		"mailboxes list": "mailbox list", "mailbox create": "mailbox add", "mailbox ls": "mailbox list",
		"mailbox show": "mailbox get", "mailbox set": "mailbox update", "mailbox delete": "mailbox rm",
		"mailbox log": "mailbox events", "mailbox preview": "mailbox dry-run", "tokens list": "token list",
		"quarantine ls": "quarantine list",
	} {
		code, out, errOut := runCLI(t, "127.0.0.1:1", adminToken, append(strings.Fields(alias), "--help")...)
		if code != exitOK || !strings.Contains(out, "Usage:\n  mailintake "+want+" ") {
			t.Errorf("%s --help: exit %d, stderr %q, not the help of %s:\n%s", alias, code, errOut, want, out)
		}
	}
}
