package smtpsend

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/smtptest"
	"github.com/mailintake/mailintake/internal/testutil"
)

// startServer starts a test submission server protected as sec, with the user "agent@example.com"
// (password "pw"), and returns it with a Target that trusts its CA and has short deadlines.
func startServer(t *testing.T, sec Security, opts smtptest.Options) (*smtptest.Server, Target) {
	t.Helper()
	ca := testutil.NewCA(t)
	switch sec {
	case TLS, StartTLS:
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1")}}
		opts.ImplicitTLS = sec == TLS
	case Plaintext:
		opts.InsecureAuth = true
	}
	srv := smtptest.Start(t, opts)
	srv.AddUser("agent@example.com", "pw")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return srv, Target{Host: srv.Host, Port: srv.Port, Security: sec, RootCAs: pool, LocalName: "client.example.com",
		DialTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second, FinalTimeout: 5 * time.Second}
}

var password = &Credential{Mechanism: MechPlain, Identity: "agent@example.com", Secret: "pw"}

// testMessage composes a small reply.
func testMessage(t *testing.T) *Outgoing {
	t.Helper()
	o, err := Compose(Draft{From: "Support <support@example.com>", To: []string{"customer@example.org"}, Subject: "Your ticket", Text: "Hello,\nit is fixed.\n"})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// sendErr sends msg and returns the *Error it must fail with.
func sendErr(t *testing.T, target Target, cred *Credential, o *Outgoing) *Error {
	t.Helper()
	res, err := Send(t.Context(), target, cred, o.Envelope("out-1"), o.Bytes)
	if err == nil {
		t.Fatalf("sent (%+v), want an error", res)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	return e
}

// headerOf returns the header part of a message.
func headerOf(msg []byte) string {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return string(msg[:i+2])
	}
	return string(msg)
}

func wantContains(t *testing.T, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("%s %q does not contain %q", what, s, sub)
	}
}
