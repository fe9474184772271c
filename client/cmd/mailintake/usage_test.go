package main

import (
	"strings"
	"testing"
)

// TestUsageErrors checks that a mistake in the command line exits 2 with the message that names
// it and where to look, before anything is sent to the server.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"frob"}, `unknown command "frob" (commands: cluster, completion, mailbox, outbound, parse, provider, providers, quarantine, send, tail, token)`},
		{[]string{"mailbx"}, "Did you mean this?\n\tmailbox"},
		{[]string{"--frob", "mailbox", "list"}, "unknown flag: --frob"},
		{[]string{"mailbox", "list", "--frob"}, "unknown flag: --frob\nRun 'mailintake mailbox list --help' for usage."},
		{[]string{"tail", "--limit", "many"}, `invalid argument "many" for "--limit" flag`},
		{[]string{"tail", "--limit"}, "flag needs an argument: --limit"},
		{[]string{"tail", "extra"}, "tail takes no arguments"},
		{[]string{"mailbox"}, "mailbox needs a subcommand: add, authorize, disable, dry-run, enable, events, get, list, rm, status, test, update"},
		{[]string{"mailbox", "frobnicate"}, `unknown mailbox subcommand "frobnicate"`},
		{[]string{"mailbox", "get"}, "mailbox get takes one mailbox ID\nRun 'mailintake mailbox get --help' for usage."},
		{[]string{"mailbox", "rm", "a", "b"}, "mailbox rm takes one mailbox ID"},
		{[]string{"mailbox", "add", "x"}, `mailbox add takes no arguments, got "x"`},
		{[]string{"mailbox", "update", "mb1"}, "mailbox update needs at least one flag to change"},
		{[]string{"mailbox", "test", "a", "b"}, "mailbox test takes one mailbox ID, or the mailbox add flags"},
		{[]string{"mailbox", "add", "--config", "novalue"}, `--config takes key=value, not "novalue"`},
		{[]string{"mailbox", "add", "--password-stdin", "--secret-stdin"}, "--password-stdin and --secret-stdin both read standard input; give one"},
		{[]string{"token"}, "token needs a subcommand: create, list, revoke"},
		{[]string{"token", "create"}, "token create needs --tenant"},
		{[]string{"token", "revoke"}, "token revoke takes one token ID"},
		{[]string{"quarantine", "replay"}, "quarantine replay takes one id"},
		{[]string{"cluster", "frob"}, `unknown cluster subcommand "frob": status`},
		{[]string{"parse"}, "parse takes one file name, or - for standard input"},
		{[]string{"completion"}, "completion needs a subcommand: bash, fish, powershell, zsh"},
		{[]string{"completion", "tcsh"}, `unknown completion subcommand "tcsh"`},
		{[]string{"-json", "mailbox", "list"}, "unknown shorthand flag: 'j' in -json"},
	}
	for _, tc := range tests {
		code, out, errOut := runCLI(t, "127.0.0.1:1", adminToken, tc.args...)
		if code != exitUsage || out != "" || !strings.HasPrefix(errOut, "mailintake: ") || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
}

// TestNoCommand checks that mailintake alone prints its usage to standard error and exits 2.
func TestNoCommand(t *testing.T) {
	code, out, errOut := runCLI(t, "127.0.0.1:1", adminToken)
	if code != exitUsage || out != "" || !strings.HasPrefix(errOut, "Usage:\n  mailintake") || !strings.Contains(errOut, "Available Commands:") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestExitCodes checks the codes of PRODUCT.md section 8 past the command line: 3 when the server
// cannot be reached or no token is given, 1 when the operation fails.
func TestExitCodes(t *testing.T) {
	t.Setenv("MAILINTAKE_TOKEN", "")
	code, _, errOut := runCLI(t, "127.0.0.1:1", adminToken, "mailbox", "list")
	if code != exitUnreachable || !strings.Contains(errOut, "cannot reach the server at 127.0.0.1:1") {
		t.Errorf("unreachable: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "127.0.0.1:1", "", "mailbox", "list")
	if code != exitUnreachable || !strings.Contains(errOut, "no API token") {
		t.Errorf("no token: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "127.0.0.1:1", adminToken, "parse", "/does/not/exist.eml")
	if code != exitFailed || !strings.Contains(errOut, "no such file") {
		t.Errorf("parse of a missing file: exit %d, stderr %q", code, errOut)
	}
}
