package pop3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/pop3test"
	"github.com/mailintake/mailintake/internal/testutil"
)

const (
	alice    = "alice@example.com"
	password = "correct horse"
)

// serve starts a fake POP3 server for a security mode (its TLS options set accordingly),
// with the user alice, and returns it and a target for it that trusts its CA.
func serve(t *testing.T, sec Security, opts pop3test.Options) (*pop3test.Server, Target) {
	t.Helper()
	ca := testutil.NewCA(t)
	switch sec {
	case TLS:
		opts.TLS, opts.ImplicitTLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1", "localhost")}}, true
	case StartTLS:
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1", "localhost")}}
	}
	srv := pop3test.Start(t, opts)
	srv.AddUser(alice, password)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return srv, Target{Host: srv.Host, Port: srv.Port, Security: sec, RootCAs: pool,
		InsecureAuth: sec == Plaintext, DialTimeout: 5 * time.Second,
		CommandTimeout: 5 * time.Second, TransferTimeout: 10 * time.Second}
}

// dial connects or fails the test; the connection is closed when the test ends.
func dial(t *testing.T, target Target) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), target, nil)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// login dials and logs alice in with her password.
func login(t *testing.T, target Target) *Conn {
	t.Helper()
	c := dial(t, target)
	if err := c.Authenticate(context.Background(), Credential{Mechanism: MechPlain, Identity: alice, Secret: password}); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	return c
}

// msg builds a small message with LF line endings (the fake stores CRLF).
func msg(subject string, body ...string) []byte {
	return []byte("From: bob@example.com\nTo: alice@example.com\nSubject: " + subject + "\n\n" + strings.Join(body, "\n") + "\n")
}

// crlf returns a message as the server stores it.
func crlf(b []byte) []byte { return []byte(strings.ReplaceAll(string(b), "\n", "\r\n")) }
