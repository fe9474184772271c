package pop3

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/mailintake/mailintake/internal/fakes/pop3test"
)

// Dial reaches each security mode, reports every step in order, and knows the capabilities.
func TestDialSecurityModes(t *testing.T) {
	for _, tc := range []struct {
		sec   Security
		steps []StepKind
	}{
		{TLS, []StepKind{StepDNS, StepTCP, StepTLS, StepGreeting, StepCapabilities}},
		{StartTLS, []StepKind{StepDNS, StepTCP, StepGreeting, StepCapabilities, StepTLS, StepCapabilities}},
		{Plaintext, []StepKind{StepDNS, StepTCP, StepGreeting, StepTLS, StepCapabilities}},
	} {
		t.Run(tc.sec.String(), func(t *testing.T) {
			_, target := serve(t, tc.sec, pop3test.Options{})
			var steps []Step
			c, err := Dial(context.Background(), target, func(s Step) { steps = append(steps, s) })
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var kinds []StepKind
			for _, s := range steps {
				if s.Err != nil {
					t.Errorf("step %s: %v", s.Kind, s.Err)
				}
				kinds = append(kinds, s.Kind)
			}
			if !equal(kinds, tc.steps) {
				t.Errorf("steps %v, want %v", kinds, tc.steps)
			}
			_, encrypted := c.TLS()
			if encrypted != (tc.sec != Plaintext) {
				t.Errorf("TLS() = %v", encrypted)
			}
			caps := c.Capabilities()
			if !caps.Known || !caps.Has("UIDL") || !caps.Has("top") || !caps.SupportsSASL("plain") {
				t.Errorf("capabilities %s", caps)
			}
			if caps.Has("STLS") {
				t.Errorf("STLS still listed after TLS: %s", caps)
			}
			if !strings.Contains(c.Greeting(), "ready") {
				t.Errorf("greeting %q", c.Greeting())
			}
			if err := c.Authenticate(context.Background(), Credential{Mechanism: MechPlain, Identity: alice, Secret: password}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Quit(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A server that does not offer STLS is refused before any credential is sent.
func TestSTLSNotOffered(t *testing.T) {
	srv, target := serve(t, Plaintext, pop3test.Options{})
	target.Security = StartTLS
	_, err := Dial(context.Background(), target, nil)
	if !errors.Is(err, ErrNoSTLS) || !strings.Contains(err.Error(), "995") {
		t.Fatalf("Dial = %v, want ErrNoSTLS with advice", err)
	}
	if n := srv.Commands("STLS") + srv.Commands("USER") + srv.Commands("AUTH"); n != 0 {
		t.Errorf("%d STLS/USER/AUTH commands sent", n)
	}
}

// Bytes sent after +OK to STLS, before the handshake, are refused as an injection.
func TestSTLSInjection(t *testing.T) {
	srv, target := serve(t, StartTLS, pop3test.Options{})
	srv.Inject(pop3test.Fault{Command: "STLS", Action: pop3test.Trailing, Reply: "+OK injected\r\n"})
	_, err := Dial(context.Background(), target, nil)
	var pe *ProtocolError
	if !errors.As(err, &pe) || !strings.Contains(pe.Problem, "injecting") {
		t.Fatalf("Dial = %v, want a ProtocolError about injection", err)
	}
	if srv.Commands("USER")+srv.Commands("AUTH") != 0 {
		t.Error("a login was sent")
	}
}

// A certificate from an unknown CA is named as such.
func TestDialUnknownCA(t *testing.T) {
	_, target := serve(t, TLS, pop3test.Options{})
	target.RootCAs = x509.NewCertPool()
	var failed Step
	_, err := Dial(context.Background(), target, func(s Step) {
		if s.Err != nil {
			failed = s
		}
	})
	if err == nil || !strings.Contains(err.Error(), "trusted authority") || failed.Kind != StepTLS {
		t.Fatalf("Dial = %v (step %v), want an unknown-authority TLS error", err, failed.Kind)
	}
}

// A -ERR greeting is a ServerError with its response code.
func TestGreetingRefused(t *testing.T) {
	srv, target := serve(t, Plaintext, pop3test.Options{})
	srv.Inject(pop3test.Fault{Command: "greeting", Action: pop3test.Refuse, Reply: "-ERR [SYS/TEMP] Too many connections"})
	_, err := Dial(context.Background(), target, nil)
	se, ok := IsServerError(err)
	if !ok || se.Code != CodeSysTemp || !se.Temporary() || se.Command != "greeting" {
		t.Fatalf("Dial = %v, want a temporary ServerError", err)
	}
}

// An RFC 1939 server without CAPA: capabilities are unknown, USER/PASS is used, UIDL tried.
func TestNoCAPA(t *testing.T) {
	srv, target := serve(t, Plaintext, pop3test.Options{NoCAPA: true})
	srv.Add(alice, msg("one", "hello"))
	c := login(t, target)
	if c.Capabilities().Known || c.Capabilities().String() != "no CAPA (an RFC 1939 server)" {
		t.Errorf("capabilities %s", c.Capabilities())
	}
	if a := srv.AuthAttempts(); len(a) != 1 || a[0].Mechanism != "USER" || !a[0].OK {
		t.Errorf("auth attempts %+v", a)
	}
	l, err := c.UIDL(context.Background())
	if err != nil || len(l.Entries) != 1 {
		t.Fatalf("UIDL = %v, %v", l, err)
	}
}

// A port where nothing listens is named; a server speaking no TLS on a TLS port is named.
func TestDialErrorsNamed(t *testing.T) {
	_, target := serve(t, Plaintext, pop3test.Options{})
	target.Security = TLS
	_, err := Dial(context.Background(), target, nil)
	if err == nil {
		t.Fatal("TLS to a plaintext server succeeded")
	}
	target.Port = 1
	_, err = Dial(context.Background(), target, nil)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Dial to a closed port = %v", err)
	}
}
