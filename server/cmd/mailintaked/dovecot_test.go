//go:build interop || faults || ha

package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/dovecot"
)

// Helpers of the suites that run the real binaries against a real Dovecot (make test-interop,
// make test-faults).

const (
	dvUser = "help@example.com"
	dvPass = "dovecot-pw-1"
)

func interopMail(i int, subject string) []byte {
	return []byte(fmt.Sprintf("From: Customer %d <c%d@example.net>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <i%d.%d@example.net>\r\n\r\nBody %d\r\n",
		i, i, dvUser, subject, i, time.Now().UnixNano(), i))
}

// addDovecotMailbox adds a basic mailbox for user over implicit TLS, trusting the test CA.
func addDovecotMailbox(t *testing.T, g []string, dv *dovecot.Server, user string, extra ...string) string {
	t.Helper()
	return addMailboxAt(t, g, dv, user, dv.IMAPSPort, dvPass, append([]string{"--provider", "basic", "--password-stdin"}, extra...)...)
}

// addMailboxAt adds a mailbox of tenant acme for user on Dovecot reached at port (its implicit
// TLS port, or a proxy in front of it), trusting the test CA. stdin feeds the provider flags'
// --password-stdin or --secret-stdin. It returns the mailbox id.
func addMailboxAt(t *testing.T, g []string, dv *dovecot.Server, user string, port int, stdin string, extra ...string) string {
	t.Helper()
	args := append(append([]string{}, g...), "mailbox", "add", "--tenant", "acme", "--name", "Help "+user, "--host", "127.0.0.1",
		"--port", strconv.Itoa(port), "--security", "tls", "--ca-file", dv.CACertFile(t), "--username", user, "--json")
	code, out, errs := cli(t, stdin, append(args, extra...)...)
	if code != 0 {
		t.Fatalf("mailbox add %s: %s", user, errs)
	}
	var mb struct {
		ID string `json:"id"`
	}
	if err := jsonUnmarshal(out, &mb); err != nil {
		t.Fatal(err)
	}
	return mb.ID
}

func freePort(t *testing.T) int {
	a := freeAddr(t)
	_, p, _ := strings.Cut(a, ":")
	n, _ := strconv.Atoi(p)
	return n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
