//go:build interop

package dovecot_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	"github.com/mailintake/mailintake/internal/smtpsend"
)

func smtpTarget(e *env, port int, sec smtpsend.Security) smtpsend.Target {
	return smtpsend.Target{Host: "127.0.0.1", Port: port, Security: sec, RootCAs: e.pool, LocalName: "client.example.com",
		DialTimeout: 10 * time.Second, CommandTimeout: 10 * time.Second, FinalTimeout: 30 * time.Second}
}

// reply composes a reply from the Microsoft 365 (or basic) mailbox whose body has lines SMTP
// must dot-stuff.
func reply(t *testing.T, from, subject string) *smtpsend.Outgoing {
	t.Helper()
	out, err := smtpsend.Compose(smtpsend.Draft{
		From: "Help Desk <" + from + ">", To: []string{"Customer <customer@example.net>"}, Cc: []string{"boss@example.org"},
		Bcc:     []string{"audit@example.com"},
		Subject: subject, Text: "Hello,\n.\n.a line with a dot\n..two\nit is fixed.\n",
		Reply: &smtpsend.Original{MessageID: "orig.1@example.net", References: []string{"root.0@example.net"}, Subject: "Printer"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSubmission sends through Dovecot's submission service with every login on both TLS modes:
// the message reaches the relay sink byte for byte with its envelope (Bcc only there), and DSN
// parameters go through as Dovecot offers them (it offers DSN when its relay does).
func TestSubmission(t *testing.T) {
	e := start(t, dovecot.Options{Submission: true, SinkDSN: true})
	sink := e.dv.Sink()
	ctx := context.Background()
	tok := e.token(t, "https://outlook.office.com/SMTP.Send offline_access")

	sent := 0
	for i, tc := range []struct {
		name string
		sec  smtpsend.Security
		port int
		cred smtpsend.Credential
	}{
		{"plain-starttls", smtpsend.StartTLS, e.dv.SubmissionPort, smtpsend.Credential{Mechanism: smtpsend.MechPlain, Identity: basicUser, Secret: basicPass}},
		{"login-465", smtpsend.TLS, e.dv.SubmissionSPort, smtpsend.Credential{Mechanism: smtpsend.MechLogin, Identity: basicUser, Secret: basicPass}},
		{"xoauth2-starttls", smtpsend.StartTLS, e.dv.SubmissionPort, smtpsend.Credential{Mechanism: smtpsend.MechXOAuth2, Identity: m365User, Secret: tok}},
		{"xoauth2-465", smtpsend.TLS, e.dv.SubmissionSPort, smtpsend.Credential{Mechanism: smtpsend.MechXOAuth2, Identity: m365User, Secret: tok}},
		{"oauthbearer-465", smtpsend.TLS, e.dv.SubmissionSPort, smtpsend.Credential{Mechanism: smtpsend.MechOAuthBearer, Identity: m365User, Secret: tok}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := reply(t, tc.cred.Identity, "Re: "+tc.name)
			id := "ob_" + strconv.Itoa(i)
			before := len(sink.Accepted())
			res, err := smtpsend.Send(ctx, smtpTarget(e, tc.port, tc.sec), &tc.cred, out.Envelope(id), out.Bytes)
			if err != nil {
				t.Fatalf("send with %s: %v", tc.cred.Mechanism, err)
			}
			sent++
			if res.Code != 250 || !res.DSN {
				t.Errorf("result %+v: want 250 and DSN (the sink offers it, so Dovecot does)", res)
			}
			got := sink.WaitAccepted(before+1, 10*time.Second)
			if len(got) != before+1 {
				t.Fatalf("the sink received %d messages, want %d", len(got), before+1)
			}
			m := got[before]
			if m.From != tc.cred.Identity || strings.Join(m.To, ",") != "customer@example.net,boss@example.org,audit@example.com" {
				t.Errorf("envelope at the sink: MAIL FROM %q RCPT %v", m.From, m.To)
			}
			if rest, ok := withoutReceived(m.Data); !ok || !bytes.Equal(rest, out.Bytes) {
				t.Errorf("the sink received\n%q\nwant Dovecot's Received field and the message sent\n%q", m.Data, out.Bytes)
			}
			if m.User != "" || m.TLS {
				t.Errorf("Dovecot relayed with login %q, TLS %v; the sink is a plain relay without auth", m.User, m.TLS)
			}
			if bytes.Contains(m.Data, []byte("audit@example.com")) {
				t.Errorf("the Bcc recipient shows in the message")
			}
			if m.MailOptions.Return != smtp.DSNReturnHeaders || m.MailOptions.EnvelopeID != id {
				t.Errorf("DSN MAIL parameters at the sink: RET %q ENVID %q, want HDRS and %q", m.MailOptions.Return, m.MailOptions.EnvelopeID, id)
			}
			if len(m.RcptOptions) != 3 || len(m.RcptOptions[0].Notify) != 2 {
				t.Errorf("DSN RCPT parameters at the sink: %+v, want NOTIFY=FAILURE,DELAY on each", m.RcptOptions)
			}
		})
	}

	t.Run("wrong-password", func(t *testing.T) {
		_, err := smtpsend.Send(ctx, smtpTarget(e, e.dv.SubmissionSPort, smtpsend.TLS),
			&smtpsend.Credential{Mechanism: smtpsend.MechPlain, Identity: basicUser, Secret: "wrong"}, smtpsend.Envelope{From: basicUser, To: []string{"x@example.net"}}, []byte("Subject: x\r\n\r\nx\r\n"))
		var ae *smtpsend.AuthError
		if !errors.As(err, &ae) || smtpsend.KindOf(err) != smtpsend.Permanent {
			t.Fatalf("a wrong password: %v, want a permanent *AuthError", err)
		}
		// Dovecot: 535 5.7.8 Authentication failed
		if ae.Code != 535 || ae.Enhanced != "5.7.8" || !strings.Contains(ae.Text, "Authentication failed") {
			t.Errorf("refusal %d %s %q, want Dovecot's 535 5.7.8 Authentication failed", ae.Code, ae.Enhanced, ae.Text)
		}
	})

	t.Run("rejected-token", func(t *testing.T) {
		bad := strings.Repeat("y", tokenLen)
		_, err := smtpsend.Send(ctx, smtpTarget(e, e.dv.SubmissionSPort, smtpsend.TLS),
			&smtpsend.Credential{Mechanism: smtpsend.MechXOAuth2, Identity: m365User, Secret: bad}, smtpsend.Envelope{From: m365User, To: []string{"x@example.net"}}, []byte("Subject: x\r\n\r\nx\r\n"))
		var ae *smtpsend.AuthError
		if !errors.As(err, &ae) {
			t.Fatalf("a bad token: %v, want an *AuthError", err)
		}
		if !ae.TokenRejected || ae.Code != 535 || !ae.RetryWithFreshToken() {
			t.Errorf("refusal %+v: want the XOAUTH2 error challenge seen, 535, and worth one fresh token", ae)
		}
		if strings.Contains(err.Error(), bad[:40]) {
			t.Errorf("the error shows the token: %v", err)
		}
	})

	// The reason the token must follow a bare AUTH XOAUTH2: Dovecot refuses a command line over
	// about 1 KiB, so the same token on the AUTH line fails before any login.
	t.Run("inline-token-refused", func(t *testing.T) {
		ir := base64.StdEncoding.EncodeToString([]byte("user=" + m365User + "\x01auth=Bearer " + tok + "\x01\x01"))
		code, msg := rawAuth(t, e, "AUTH XOAUTH2 "+ir)
		t.Logf("AUTH XOAUTH2 with its %d-octet initial response on the line: %d %s", len(ir), code, msg)
		if code < 500 || code > 502 {
			t.Errorf("an AUTH line of %d octets got %d %s; want Dovecot's line-too-long refusal", len(ir)+13, code, msg)
		}
	})
	if n := len(sink.Accepted()); n != sent {
		t.Errorf("the sink accepted %d messages, want the %d sent", n, sent)
	}
}

// TestSubmissionWithoutDSN sends where the relay, and so Dovecot, offers no DSN: no DSN
// parameters go out and the message still arrives.
func TestSubmissionWithoutDSN(t *testing.T) {
	e := start(t, dovecot.Options{Submission: true})
	out := reply(t, basicUser, "Re: no DSN")
	res, err := smtpsend.Send(context.Background(), smtpTarget(e, e.dv.SubmissionPort, smtpsend.StartTLS),
		&smtpsend.Credential{Mechanism: smtpsend.MechPlain, Identity: basicUser, Secret: basicPass}, out.Envelope("ob_1"), out.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if res.DSN {
		t.Errorf("DSN asked for though Dovecot does not offer it")
	}
	got := e.dv.Sink().WaitAccepted(1, 10*time.Second)
	if len(got) != 1 || got[0].MailOptions.EnvelopeID != "" || got[0].MailOptions.Return != "" {
		t.Fatalf("the sink received %+v", got)
	}
	if rest, ok := withoutReceived(got[0].Data); !ok || !bytes.Equal(rest, out.Bytes) {
		t.Errorf("the sink received\n%q\nwant Dovecot's Received field and the message sent\n%q", got[0].Data, out.Bytes)
	}
}

// withoutReceived removes the Received field Dovecot's submission service puts first (folded
// over several lines), and says whether it was there.
func withoutReceived(data []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(data, []byte("Received: from client.example.com "))
	if !ok {
		return data, false
	}
	for {
		_, after, found := bytes.Cut(rest, []byte("\r\n"))
		if !found {
			return data, false
		}
		rest = after
		if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
			return rest, true
		}
	}
}

// rawAuth logs in over implicit TLS with one raw AUTH line and returns Dovecot's reply.
func rawAuth(t *testing.T, e *env, line string) (int, string) {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(e.dv.SubmissionSPort)), &tls.Config{RootCAs: e.pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := textproto.NewConn(nc)
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	if err := c.PrintfLine("EHLO client.example.com"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadResponse(250); err != nil {
		t.Fatal(err)
	}
	if err := c.PrintfLine("%s", line); err != nil {
		t.Fatal(err)
	}
	code, msg, err := c.ReadResponse(0)
	if err != nil && code == 0 {
		t.Fatal(err)
	}
	return code, msg
}
