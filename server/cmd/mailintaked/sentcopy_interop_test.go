//go:build interop

package main

import (
	"crypto/tls"
	"strconv"
	"strings"
	"testing"

	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	"github.com/mailintake/mailintake/internal/fakes/smtptest"
)

// TestInteropSentCopy: a Dovecot mailbox with --save-sent-copy gets each sent message in the
// folder Dovecot marks \Sent (SPECIAL-USE), flagged \Seen, by APPEND with the mailbox's own
// login; with --sent-folder, in that folder (created when missing).
func TestInteropSentCopy(t *testing.T) {
	dv := dovecot.Start(t, map[string]string{dvUser: dvPass})
	if out, err := dv.Doveadm(nil, "mailbox", "create", "-u", dvUser, "Sent Messages"); err != nil {
		t.Fatalf("doveadm mailbox create: %v: %s", err, out)
	}
	// The submission server's certificate from Dovecot's CA: the mailbox's one --ca-file serves both.
	sub := smtptest.Start(t, smtptest.Options{TLS: &tls.Config{Certificates: []tls.Certificate{dv.CA.Issue(t, "127.0.0.1")}}, DSN: true})
	sub.AddUser(dvUser, dvPass)
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	id := addDovecotMailbox(t, g, dv, dvUser, "--smtp-host", "127.0.0.1", "--smtp-port", strconv.Itoa(sub.Port), "--smtp-security", "starttls",
		"--save-sent-copy")

	m, code, errs := send(t, g, "Fixed.\n", "--mailbox", id, "--to", "c@example.net", "--bcc", "boss@example.net", "--subject", "copy one", "--idempotency-key", "c1", "--wait")
	if code != 0 || m.State != "OUTBOUND_STATE_SENT" {
		t.Fatalf("send: exit %d %+v %s", code, m, errs)
	}
	eventually(t, "the copy in Sent Messages", func() bool { n, _ := dv.Status(t, dvUser, "Sent Messages"); return n == 1 })
	if _, unseen := dv.Status(t, dvUser, "Sent Messages"); unseen != 0 {
		t.Errorf("the copy is unseen")
	}
	if out, err := dv.Doveadm(nil, "fetch", "-u", dvUser, "hdr.message-id", "mailbox", "Sent Messages"); err != nil || !strings.Contains(out, m.MessageID) {
		t.Errorf("the copy's Message-ID: %v %s, want %s", err, out, m.MessageID)
	}
	// The blind copy: named in the sender's copy only.
	if out, err := dv.Doveadm(nil, "fetch", "-u", dvUser, "hdr.bcc", "mailbox", "Sent Messages"); err != nil || !strings.Contains(out, "boss@example.net") {
		t.Errorf("the copy's Bcc: %v %q, want boss@example.net", err, out)
	}
	if got := sub.Accepted(); len(got) != 1 || strings.Contains(string(got[0].Data), "boss@") {
		t.Errorf("the sent message (%d accepted) shows its blind recipient", len(got))
	}

	code, _, errs = cli(t, "", append(g, "mailbox", "update", id, "--sent-folder", "Archive/Sent")...)
	if code != 0 {
		t.Fatalf("mailbox update: %s", errs)
	}
	if m, code, errs := send(t, g, "Again.\n", "--mailbox", id, "--to", "c@example.net", "--subject", "copy two", "--idempotency-key", "c2", "--wait"); code != 0 {
		t.Fatalf("send: exit %d %+v %s", code, m, errs)
	}
	eventually(t, "the copy in Archive/Sent", func() bool {
		out, err := dv.Doveadm(nil, "-f", "flow", "mailbox", "status", "-u", dvUser, "messages", "Archive.Sent")
		return err == nil && strings.Contains(out, "messages=1")
	})
	if n, _ := dv.Status(t, dvUser, "Sent Messages"); n != 1 {
		t.Errorf("Sent Messages holds %d messages, want 1", n)
	}
}
