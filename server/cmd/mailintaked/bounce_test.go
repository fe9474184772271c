package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/fakes/smtptest"
)

// TestBounceEndToEnd: the real daemon sends through the submission server; the DSN the
// recipient's server sends back (with the outbound id as Original-Envelope-Id) arrives in the
// mailbox; the delivered report names the outbound id and `outbound get` shows it BOUNCED with
// the failed recipient.
func TestBounceEndToEnd(t *testing.T) {
	imap := imaptest.Start(t, imaptest.Options{})
	imap.AddUser(t, "help@example.com", "pw-1")
	sub := startSubmission(t, smtptest.Options{})
	sub.AddUser("help@example.com", "pw-1")
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	code, out, errs := cli(t, "pw-1", append(g, "mailbox", "add", "--json", "--tenant", "acme", "--name", "Help", "--host", "127.0.0.1",
		"--port", strconv.Itoa(imap.Port), "--security", "none", "--username", "help@example.com", "--provider", "basic", "--password-stdin",
		"--start-from", "all", "--smtp-host", "127.0.0.1", "--smtp-port", strconv.Itoa(sub.Port), "--smtp-security", "starttls", "--ca-file", sub.caFile)...)
	if code != 0 {
		t.Fatalf("mailbox add: %s", errs)
	}
	var mb struct {
		ID string `json:"id"`
	}
	jsonUnmarshal(out, &mb)
	m, code, errs := send(t, g, "Fixed.\n", "--mailbox", mb.ID, "--to", "gone@customer.example", "--subject", "Your printer", "--idempotency-key", "b1", "--wait")
	if code != 0 || m.State != "OUTBOUND_STATE_SENT" {
		t.Fatalf("send: exit %d %+v %s", code, m, errs)
	}
	if acc := sub.Accepted(); len(acc) != 1 || acc[0].MailOptions.EnvelopeID != m.ID {
		t.Fatalf("the submission server got %+v", acc)
	}
	imap.Append(t, "help@example.com", "INBOX", []byte("From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nTo: help@example.com\r\n"+
		"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"rep\"\r\n\r\n"+
		"--rep\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"+
		"--rep\r\nContent-Type: message/delivery-status\r\n\r\nOriginal-Envelope-Id: "+m.ID+"\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"+
		"Final-Recipient: rfc822; gone@customer.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"+
		"Diagnostic-Code: smtp; 550 5.1.1 <gone@customer.example>: Recipient address rejected: User unknown\r\n\r\n"+
		"--rep\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: help@example.com\r\nSubject: Your printer\r\nMessage-ID: <"+m.MessageID+">\r\n\r\n--rep--\r\n"))
	code, out, errs = cli(t, "", append(g, "tail", "--ack", "--limit", "1")...)
	if code != 0 || !strings.Contains(out, `"outboundId":"`+m.ID+`"`) {
		t.Fatalf("the delivered report (exit %d, %s): %s", code, errs, out)
	}
	if got := outboundGet(t, g, m.ID); got.State != "OUTBOUND_STATE_BOUNCED" {
		t.Fatalf("after the report: %+v", got)
	}
	code, out, errs = cli(t, "", append(g, "outbound", "get", m.ID)...)
	flat := strings.Join(strings.Fields(out), " ")
	if code != 0 || !strings.Contains(flat, "state: bounced") || !strings.Contains(flat, "failed: <gone@customer.example> 5.1.1 550 5.1.1") {
		t.Errorf("outbound get (exit %d, %s):\n%s", code, errs, out)
	}
	code, out, _ = cli(t, "", append(g, "outbound", "list", "--state", "bounced")...)
	if code != 0 || !strings.Contains(out, m.ID) {
		t.Errorf("outbound list --state bounced (exit %d):\n%s", code, out)
	}
}
