package smtptest

import (
	"encoding/base64"
	"errors"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func dial(t *testing.T, s *Server) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRelaySinkAcceptsWithoutLogin(t *testing.T) {
	s := Start(t, Options{NoAuthRequired: true})
	c := dial(t, s)
	if err := c.SendMail("a@example.com", []string{"b@example.org"}, strings.NewReader("Subject: x\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	m := s.WaitAccepted(1, time.Second)
	if len(m) != 1 || m[0].From != "a@example.com" || string(m[0].Data) != "Subject: x\r\n\r\nhi\r\n" || m[0].QueueID == "" {
		t.Errorf("%+v", m)
	}
}

func TestLoginRequired(t *testing.T) {
	s := Start(t, Options{InsecureAuth: true})
	s.AddUser("u", "p")
	c := dial(t, s)
	var se *smtp.SMTPError
	if err := c.Mail("a@example.com", nil); !errors.As(err, &se) || se.Code != 530 {
		t.Fatalf("MAIL without a login: %v", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "wrong")); !errors.As(err, &se) || se.Code != 535 {
		t.Fatalf("wrong password: %v", err)
	}
	if err := c.Auth(sasl.NewLoginClient("u", "p")); err != nil { // with an initial response
		t.Fatal(err)
	}
	if a := s.Auths(); len(a) != 2 || a[0].OK || !a[1].OK || a[1].Mechanism != "LOGIN" || !a[1].InitialResponse {
		t.Errorf("%+v", a)
	}
}

func TestAuthLineLimit(t *testing.T) {
	s := Start(t, Options{InsecureAuth: true, MaxAuthLine: 1024, ValidateToken: func(string, string) bool { return true }})
	conn, err := textproto.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.ReadResponse(220)
	conn.PrintfLine("EHLO test")
	conn.ReadResponse(250)
	ir := base64.StdEncoding.EncodeToString([]byte("user=u\x01auth=Bearer " + strings.Repeat("t", 2000) + "\x01\x01"))
	conn.PrintfLine("AUTH XOAUTH2 %s", ir)
	if code, msg, _ := conn.ReadResponse(235); code != 500 {
		t.Errorf("a long AUTH line: %d %s", code, msg)
	}
	if a := s.Auths(); len(a) != 1 || a[0].LineLength != len("AUTH XOAUTH2 ")+len(ir) || a[0].OK {
		t.Errorf("%+v", a)
	}
}

func TestFaultsStrikeAsOftenAsAsked(t *testing.T) {
	s := Start(t, Options{NoAuthRequired: true})
	s.Inject(Fault{Step: StepGreeting, Code: 421, Enhanced: "4.3.2", Text: "busy", Times: 1})
	s.Inject(Fault{Step: StepRcpt, Recipient: "x@example.org", Code: 550, Enhanced: "5.1.1", Text: "no"})
	c := dial(t, s)
	var se *smtp.SMTPError
	if err := c.Hello("test"); !errors.As(err, &se) || se.Code != 421 || se.Message != "busy" {
		t.Fatalf("greeting: %v", err)
	}
	c = dial(t, s)
	if err := c.Mail("a@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("y@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("X@example.org", nil); !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Errorf("RCPT: %v", err)
	}
	if n := s.Connections.Load(); n != 2 {
		t.Errorf("%d connections", n)
	}
}

func TestStallForThenAnswer(t *testing.T) {
	s := Start(t, Options{NoAuthRequired: true})
	s.Inject(Fault{Step: StepEndOfData, Action: Stall, StallFor: 100 * time.Millisecond})
	c := dial(t, s)
	start := time.Now()
	if err := c.SendMail("a@example.com", []string{"b@example.org"}, strings.NewReader("Subject: x\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("answered after %s", took)
	}
	if len(s.Accepted()) != 1 {
		t.Error("not accepted after the stall")
	}
}

func TestCloseEndsStalls(t *testing.T) {
	s, err := Listen("127.0.0.1:0", Options{NoAuthRequired: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Inject(Fault{Step: StepGreeting, Action: Stall})
	done := make(chan error)
	go func() {
		c, err := smtp.Dial(s.Addr())
		if err == nil {
			err = c.Hello("test")
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a stalled greeting succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close left the client hanging")
	}
}
