package smtpsend

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mailintake/mailintake/internal/fakes/smtptest"
)

func TestSendAcceptedOverEachSecurity(t *testing.T) {
	for _, sec := range []Security{StartTLS, TLS, Plaintext} {
		t.Run(sec.String(), func(t *testing.T) {
			srv, target := startServer(t, sec, smtptest.Options{})
			o := testMessage(t)
			var steps []Step
			c, err := Dial(t.Context(), target, func(s Step) { steps = append(steps, s) })
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Authenticate(t.Context(), *password); err != nil {
				t.Fatal(err)
			}
			res, err := c.Send(t.Context(), o.Envelope("out-1"), o.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Quit(); err != nil {
				t.Errorf("QUIT: %v", err)
			}
			got := srv.Accepted()
			if len(got) != 1 {
				t.Fatalf("server accepted %d messages, want 1", len(got))
			}
			m := got[0]
			if res.QueueID == "" || res.QueueID != m.QueueID || res.Code != 250 || res.Enhanced != "2.0.0" {
				t.Errorf("result %+v, server's queue id %q", res, m.QueueID)
			}
			if m.From != "support@example.com" || strings.Join(m.To, ",") != "customer@example.org" || m.User != "agent@example.com" {
				t.Errorf("envelope %q → %q as %q", m.From, m.To, m.User)
			}
			if m.TLS != (sec != Plaintext) {
				t.Errorf("server saw TLS=%v", m.TLS)
			}
			if !bytes.Equal(m.Data, o.Bytes) {
				t.Errorf("server got\n%s\nwant\n%s", m.Data, o.Bytes)
			}
			var kinds []string
			for _, s := range steps {
				if s.Err != nil {
					t.Errorf("step %s: %v", s.Kind, s.Err)
				}
				kinds = append(kinds, s.Kind.String())
			}
			want := map[Security]string{TLS: "DNS TCP TLS greeting EHLO AUTH", StartTLS: "DNS TCP greeting TLS EHLO AUTH", Plaintext: "DNS TCP greeting TLS EHLO AUTH"}[sec]
			if strings.Join(kinds, " ") != want {
				t.Errorf("steps %v", kinds)
			}
			wantContains(t, "transcript", srv.Transcript(), "EHLO client.example.com\r\n")
		})
	}
}

func TestStartTLSRefusedWhenNotOffered(t *testing.T) {
	srv, target := startServer(t, Plaintext, smtptest.Options{})
	target.Security = StartTLS
	e := sendErr(t, target, password, testMessage(t))
	if e.Kind != Permanent || e.Step != StepTLS {
		t.Fatalf("got %v", e)
	}
	wantContains(t, "explanation", e.Explanation, "does not offer STARTTLS")
	if tr := srv.Transcript(); strings.Contains(tr, "\nAUTH ") || strings.Contains(tr, "\nMAIL ") || len(srv.Messages()) != 0 {
		t.Errorf("credentials or mail went in the clear:\n%s", srv.Transcript())
	}
}

func TestUntrustedCertificateIsPermanent(t *testing.T) {
	for _, sec := range []Security{TLS, StartTLS} {
		_, target := startServer(t, sec, smtptest.Options{})
		target.RootCAs = nil // the system roots do not know the test CA
		e := sendErr(t, target, password, testMessage(t))
		if e.Kind != Permanent || e.Step != StepTLS {
			t.Fatalf("%s: got %v", sec, e)
		}
		wantContains(t, "explanation", e.Explanation, "ca_pem")
	}
}

func TestCertPoolFromPEM(t *testing.T) {
	if _, err := CertPool([]byte("not a certificate")); err == nil {
		t.Error("garbage PEM accepted")
	}
}

func TestBccOnlyInTheEnvelope(t *testing.T) {
	srv, target := startServer(t, StartTLS, smtptest.Options{})
	o, err := Compose(Draft{From: "support@example.com", To: []string{"a@example.org"}, Cc: []string{"B <b@example.org>"},
		Bcc: []string{"hidden@example.net", "A@example.org"}, Subject: "x", Text: "y"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Send(t.Context(), target, password, o.Envelope("out-2"), o.Bytes); err != nil {
		t.Fatal(err)
	}
	m := srv.Accepted()[0]
	if got := strings.Join(m.To, " "); got != "a@example.org b@example.org hidden@example.net" {
		t.Errorf("RCPT TO %s", got)
	}
	if strings.Contains(strings.ToLower(headerOf(m.Data)), "hidden") || strings.Contains(headerOf(m.Data), "Bcc") {
		t.Errorf("the Bcc shows in the header:\n%s", headerOf(m.Data))
	}
}

func TestDSNParameters(t *testing.T) {
	srv, target := startServer(t, StartTLS, smtptest.Options{DSN: true})
	o := testMessage(t)
	res, err := Send(t.Context(), target, password, o.Envelope("out+1=2 x"), o.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !res.DSN {
		t.Error("Result.DSN not set")
	}
	m := srv.Accepted()[0]
	if m.MailOptions.Return != "HDRS" || m.MailOptions.EnvelopeID != "out+1=2 x" {
		t.Errorf("MAIL options %+v", m.MailOptions)
	}
	if n := m.RcptOptions[0].Notify; len(n) != 2 || n[0] != "FAILURE" || n[1] != "DELAY" {
		t.Errorf("NOTIFY %v", n)
	}
	// On the wire the id is xtext: '+', '=' and ' ' as +XX.
	wantContains(t, "transcript", srv.Transcript(), "RET=HDRS ENVID=out+2B1+3D2+20x")
	wantContains(t, "transcript", srv.Transcript(), "NOTIFY=FAILURE,DELAY")

	// Without DSN offered, none of it is sent.
	srv2, target2 := startServer(t, StartTLS, smtptest.Options{})
	res, err = Send(t.Context(), target2, password, o.Envelope("out-3"), o.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if res.DSN || strings.Contains(srv2.Transcript(), "ENVID") || strings.Contains(srv2.Transcript(), "NOTIFY") {
		t.Errorf("DSN parameters sent to a server without DSN:\n%s", srv2.Transcript())
	}
}

func TestEnvelopeIDLimits(t *testing.T) {
	for id, ok := range map[string]bool{"out-1": true, "": false, strings.Repeat("a", 100): true, strings.Repeat("a", 101): false,
		strings.Repeat("+", 33): true, strings.Repeat("+", 34): false, "é": false, "a\tb": false} {
		if validEnvelopeID(id) != ok {
			t.Errorf("validEnvelopeID(%q) = %v", id, !ok)
		}
	}
}

func TestRawMessagePassesThrough(t *testing.T) {
	srv, target := startServer(t, StartTLS, smtptest.Options{})
	raw := "From: Support <support@example.com>\r\nTo: customer@example.org\r\nSubject: raw\r\n\r\n" +
		"Hello.\r\n.a line that starts with a dot\r\n.\r\nend\r\n"
	o, err := PrepareRaw([]byte(raw), RawOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Send(t.Context(), target, password, o.Envelope("out-4"), o.Bytes); err != nil {
		t.Fatal(err)
	}
	got := string(srv.Accepted()[0].Data)
	prefix := "Message-ID: <" + o.MessageID + ">\r\nDate: "
	if !strings.HasPrefix(got, prefix) || !strings.HasSuffix(got, "\r\n"+raw) || strings.Count(got, "\r\n") != strings.Count(raw, "\r\n")+2 {
		t.Errorf("the server got\n%q\nwant %q + Date + the raw message", got, prefix)
	}
}

func TestSMTPUTF8(t *testing.T) {
	o, err := Compose(Draft{From: "support@example.com", To: []string{"jürgen@example.org"}, Subject: "x", Text: "y"})
	if err != nil {
		t.Fatal(err)
	}
	_, target := startServer(t, StartTLS, smtptest.Options{})
	e := sendErr(t, target, password, o)
	if e.Kind != Permanent || !strings.Contains(e.Explanation, "SMTPUTF8") {
		t.Errorf("without SMTPUTF8: %v", e)
	}
	srv, target := startServer(t, StartTLS, smtptest.Options{SMTPUTF8: true})
	res, err := Send(t.Context(), target, password, o.Envelope("out-5"), o.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !res.UTF8 || !srv.Accepted()[0].MailOptions.UTF8 {
		t.Error("SMTPUTF8 not asked for")
	}
}

func TestTooLargeForSIZEIsRefusedBeforeMAIL(t *testing.T) {
	srv, target := startServer(t, StartTLS, smtptest.Options{MaxMessageBytes: 1000})
	o, err := Compose(Draft{From: "support@example.com", To: []string{"a@example.org"}, Subject: "big", Text: strings.Repeat("x", 5000)})
	if err != nil {
		t.Fatal(err)
	}
	e := sendErr(t, target, password, o)
	if e.Kind != Permanent || e.Step != StepMail || !strings.Contains(e.Explanation, "at most 1000") {
		t.Errorf("got %v", e)
	}
	if strings.Contains(srv.Transcript(), "MAIL FROM") {
		t.Error("MAIL sent for a message over the server's SIZE")
	}
}

func TestEnvelopeChecked(t *testing.T) {
	_, target := startServer(t, StartTLS, smtptest.Options{})
	for _, env := range []Envelope{{From: "", To: []string{"a@example.org"}}, {From: "a@example.org"},
		{From: "A <a@example.org>", To: []string{"b@example.org"}}, {From: "a@example.org", To: []string{"b@example.org\r\nRCPT TO:<c@x>"}}} {
		_, err := Send(t.Context(), target, password, env, []byte("Subject: x\r\n\r\ny\r\n"))
		var e *Error
		if !errors.As(err, &e) || e.Kind != Permanent {
			t.Errorf("envelope %+v: %v", env, err)
		}
	}
}
