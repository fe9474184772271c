package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/pop3test"
)

// TestPOP3EndToEnd runs a POP3 mailbox through the real daemon, CLI and basic provider against
// the in-process POP3 server: dry run and connection test of the definition, MARK_SEEN refused
// naming after_ack, delivery with acknowledgements deleting on the server, an oversized message
// quarantined without being downloaded, new mail at the next poll, status and events.
func TestPOP3EndToEnd(t *testing.T) {
	srv := pop3test.Start(t, pop3test.Options{})
	srv.AddUser("help@example.com", "pw-1")
	srv.Add("help@example.com", []byte("From: a@example.net\r\nSubject: first\r\n\r\nhello\r\n"))
	srv.Add("help@example.com", []byte("From: b@example.net\r\nSubject: too big\r\n\r\n"+strings.Repeat("x", 4000)+"\r\n"))
	srv.Add("help@example.com", []byte("From: c@example.net\r\nSubject: second\r\n\r\nhello again\r\n"))
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	def := []string{"--tenant", "acme", "--name", "Help POP", "--protocol", "pop3", "--host", "127.0.0.1", "--port", strconv.Itoa(srv.Port),
		"--security", "none", "--username", "help@example.com", "--provider", "basic", "--password-stdin", "--start-from", "all",
		"--poll-interval", "5s"}

	code, out, errs := cli(t, "pw-1", append(append(g, "mailbox", "dry-run"), def...)...)
	if code != 0 || !strings.Contains(out, "would deliver 3 messages") {
		t.Errorf("dry-run: exit %d %q %q", code, out, errs)
	}
	code, out, _ = cli(t, "pw-1", append(append(g, "mailbox", "test"), def...)...)
	if code != 0 || strings.Count(out, "[ok]") != 6 || !strings.Contains(out, "CAPA") {
		t.Errorf("mailbox test: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, "wrong", append(append(g, "mailbox", "test"), def...)...)
	if code != 1 || !strings.Contains(out, "[FAIL] auth") || !strings.Contains(out, "POP3") {
		t.Errorf("mailbox test with a wrong password: exit %d\n%s", code, out)
	}
	code, _, errs = cli(t, "pw-1", append(append(g, "mailbox", "add", "--after-ack", "mark-seen"), def...)...)
	if code != 1 || !strings.Contains(errs, "mailbox.after_ack.action") || !strings.Contains(errs, "no flags") {
		t.Errorf("add with mark-seen: exit %d %s", code, errs)
	}
	code, _, errs = cli(t, "pw-1", append(append(append(g, "mailbox", "add"), def...), "--poll-interval", "1s")...)
	if code != 1 || !strings.Contains(errs, "mailbox.poll_interval") {
		t.Errorf("add polled every second: exit %d %s", code, errs)
	}

	code, out, errs = cli(t, "pw-1", append(append(g, "mailbox", "add", "--json", "--max-message-size", "2000", "--after-ack", "delete"), def...)...)
	if code != 0 {
		t.Fatalf("add: %s", errs)
	}
	var mb struct {
		ID string `json:"id"`
	}
	jsonUnmarshal(out, &mb)
	code, out, _ = cli(t, "", append(g, "mailbox", "show", mb.ID)...)
	if code != 0 || !strings.Contains(out, "pop3") || !strings.Contains(out, "5s") || !strings.Contains(out, "delete") {
		t.Errorf("show: exit %d\n%s", code, out)
	}
	s, ids := tailLines(t, g, "--ack", "--limit", "2", "--timeout", "10s")
	if len(s) != 2 || s[0] != "first" || s[1] != "second" || !strings.HasPrefix(ids[0], mb.ID+":1:") {
		t.Fatalf("tail = %v %v", s, ids)
	}
	waitFor(t, "the acknowledged messages deleted", func() bool { return len(srv.Messages("help@example.com")) == 1 })
	if n := srv.Commands("RETR"); n != 2 {
		t.Errorf("RETR sent %d times, want 2 (not for the oversized message)", n)
	}
	code, out, _ = cli(t, "", append(g, "quarantine", "list", mb.ID)...)
	if code != 0 || !strings.Contains(out, "too big") || !strings.Contains(out, "over the mailbox's limit") {
		t.Errorf("quarantine list: exit %d\n%s", code, out)
	}
	srv.Add("help@example.com", []byte("From: d@example.net\r\nSubject: new\r\n\r\nnew mail\r\n"))
	if s, _ := tailLines(t, g, "--ack", "--limit", "1", "--timeout", "15s"); len(s) != 1 || s[0] != "new" {
		t.Errorf("new mail: tail = %v", s)
	}
	waitFor(t, "the new message deleted", func() bool { return len(srv.Messages("help@example.com")) == 1 })
	code, out, _ = cli(t, "", append(g, "mailbox", "status", mb.ID)...)
	if code != 0 || !strings.Contains(out, "3 delivered, 3 acknowledged, 0 pending, 1 quarantined") || !strings.Contains(out, "polling every 5s") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, "", append(g, "mailbox", "events", mb.ID)...)
	for _, want := range []string{"first sync", "deliver", "quarantine", "acknowledged messages deleted"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("events lack %q: exit %d\n%s", want, code, out)
		}
	}
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
