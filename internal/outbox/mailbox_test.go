package outbox

import (
	"testing"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Microsoft 365 and Gmail file the Sent copy themselves (by provider or by host); other servers
// get one by APPEND when the mailbox asks, and POP3 mailboxes never.
func TestFilesSentCopy(t *testing.T) {
	for _, c := range []struct {
		mb   *mailintakev1.Mailbox
		want string
		save bool
	}{
		{&mailintakev1.Mailbox{AuthProvider: "o365", SaveSentCopy: true}, "Microsoft 365", false},
		{&mailintakev1.Mailbox{AuthProvider: "google", SaveSentCopy: true}, "Gmail", false},
		{&mailintakev1.Mailbox{AuthProvider: "basic", Host: "outlook.office365.com", SaveSentCopy: true}, "Microsoft 365", false},
		{&mailintakev1.Mailbox{AuthProvider: "basic", Host: "imap.example.com", SmtpHost: "SMTP.Office365.com.", SaveSentCopy: true}, "Microsoft 365", false},
		{&mailintakev1.Mailbox{AuthProvider: "basic", Host: "imap-mail.outlook.com", SaveSentCopy: true}, "Microsoft 365", false},
		{&mailintakev1.Mailbox{AuthProvider: "basic", Host: "imap.gmail.com", SaveSentCopy: true}, "Gmail", false},
		{&mailintakev1.Mailbox{AuthProvider: "basic", SmtpHost: "smtp.googlemail.com", SaveSentCopy: true}, "Gmail", false},
		{&mailintakev1.Mailbox{AuthProvider: "basic", Host: "mail.notgmail.com", SaveSentCopy: true}, "", true},
		{&mailintakev1.Mailbox{AuthProvider: "basic", Host: "imap.example.com", SaveSentCopy: true}, "", true},
		{&mailintakev1.Mailbox{AuthProvider: "basic", Host: "imap.example.com"}, "", false},
		{&mailintakev1.Mailbox{AuthProvider: "basic", Host: "pop.example.com", Protocol: mailintakev1.Protocol_PROTOCOL_POP3, SaveSentCopy: true}, "", false},
	} {
		if got := FilesSentCopy(c.mb); got != c.want {
			t.Errorf("FilesSentCopy(%v) = %q, want %q", c.mb, got, c.want)
		}
		if got := SaveSentCopyOn(c.mb); got != c.save {
			t.Errorf("SaveSentCopyOn(%v) = %v, want %v", c.mb, got, c.save)
		}
	}
}

// A message queued for a mailbox whose worker is sending needs no scan of the outbox: the worker
// takes it; otherwise the scanner is woken.
func TestWakeFor(t *testing.T) {
	s := New(Options{})
	s.running["busy"] = true
	s.WakeFor("busy")
	select {
	case <-s.wake:
		t.Errorf("woken for a mailbox whose worker runs")
	default:
	}
	s.WakeFor("idle")
	select {
	case <-s.wake:
	default:
		t.Errorf("not woken for a mailbox without a worker")
	}
	var none *Sender
	none.WakeFor("any") // sending not wired: nothing happens
}
