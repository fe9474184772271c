package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// TestCompletionScripts checks that `completion SHELL` prints that shell's script.
func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{
		"bash":       "# bash completion V2 for mailintake",
		"zsh":        "#compdef mailintake",
		"fish":       "# fish completion for mailintake",
		"powershell": "# powershell completion for mailintake",
	} {
		code, out, errOut := runCLI(t, "127.0.0.1:1", adminToken, "completion", shell)
		if code != exitOK || errOut != "" || !strings.HasPrefix(out, want) || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: exit %d, stderr %q, output starts %q", shell, code, errOut, out[:min(len(out), 80)])
		}
	}
}

// fakeMailboxList answers ListMailboxes with its mailboxes.
type fakeMailboxList struct {
	mailintakev1.UnimplementedMailboxServiceServer
	mailboxes []*mailintakev1.Mailbox
}

func (f *fakeMailboxList) ListMailboxes(context.Context, *mailintakev1.ListMailboxesRequest) (*mailintakev1.ListMailboxesResponse, error) {
	return &mailintakev1.ListMailboxesResponse{Mailboxes: f.mailboxes}, nil
}

// complete runs the shell's completion request for args and returns the suggestions.
func complete(t *testing.T, addr string, args ...string) []string {
	t.Helper()
	code, out, _ := runCLI(t, addr, adminToken, append([]string{"__complete"}, args...)...)
	if code != exitOK {
		t.Fatalf("__complete %v: exit %d", args, code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[:len(lines)-1] // the last line is the directive
}

func TestCompletionDynamic(t *testing.T) {
	addr := serve(t, nil, &fakeMailboxList{mailboxes: []*mailintakev1.Mailbox{
		{Id: "mb-1", DisplayName: "Support", Tenant: "acme"},
		{Id: "mb-2", DisplayName: "Sales", Tenant: "acme"},
		{Id: "xx-3", DisplayName: "Help", Tenant: "globex"},
	}})
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"mailbox", "get", ""}, "mb-1\tSupport mb-2\tSales xx-3\tHelp"},
		{[]string{"mailbox", "delete", "mb"}, "mb-1\tSupport mb-2\tSales"},
		{[]string{"mailbox", "status", "mb-1", ""}, ""}, // one ID only
		{[]string{"quarantine", "list", "xx"}, "xx-3\tHelp"},
		{[]string{"tail", "--mailbox", "mb-2"}, "mb-2\tSales"},
		{[]string{"mailbox", "add", "--tenant", ""}, "acme globex"},
		{[]string{"mailbox", "add", "--security", ""}, "tls starttls none"},
		{[]string{"mailbox", "add", "--protocol", ""}, "imap pop3"},
		{[]string{"mailbox", ""}, "add\t"},
	}
	for _, tc := range tests {
		got := strings.Join(complete(t, addr, tc.args...), " ")
		if !strings.HasPrefix(got, tc.want) || (tc.want == "" && got != "") {
			t.Errorf("complete %q: got %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestCompletionServerDown checks that completion gives nothing, quickly, when the server is
// not there or does not answer.
func TestCompletionServerDown(t *testing.T) {
	// A listener that accepts and never speaks HTTP/2.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open until the listener closes
		}
	}()
	for _, addr := range []string{"127.0.0.1:1", lis.Addr().String()} {
		start := time.Now()
		if got := complete(t, addr, "mailbox", "get", ""); len(got) != 0 {
			t.Errorf("%s: suggestions %q without a server", addr, got)
		}
		if d := time.Since(start); d > completionTimeout+time.Second {
			t.Errorf("%s: completion took %s", addr, d)
		}
	}
}
