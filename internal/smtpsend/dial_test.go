package smtpsend

import (
	"bufio"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/smtptest"
)

// A reply injected right after "220 ready to start TLS", in the clear, is refused (the
// STARTTLS command injection attacks of CVE-2011-0411's kind).
func TestStartTLSResponseInjectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		c.Write([]byte("220 evil ESMTP\r\n"))
		r.ReadString('\n')
		c.Write([]byte("250-evil\r\n250 STARTTLS\r\n"))
		r.ReadString('\n')
		c.Write([]byte("220 2.0.0 go ahead\r\n250 2.0.0 injected\r\n"))
		time.Sleep(time.Second)
	}()
	port, _ := strconv.Atoi(strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:"))
	_, err = Dial(t.Context(), Target{Host: "127.0.0.1", Port: port, Security: StartTLS, DialTimeout: 5 * time.Second}, nil)
	e, ok := err.(*Error)
	if !ok || e.Kind != Permanent || e.Step != StepTLS || !strings.Contains(e.Explanation, "injecting") {
		t.Fatalf("got %v", err)
	}
}

func TestDefaultEHLOName(t *testing.T) {
	srv, target := startServer(t, TLS, smtptest.Options{})
	target.LocalName = ""
	c, err := Dial(t.Context(), target, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Quit()
	want := "EHLO [127.0.0.1]\r\n"
	if h, err := os.Hostname(); err == nil && strings.Contains(h, ".") && validHostname(h) {
		want = "EHLO " + h + "\r\n"
	}
	wantContains(t, "transcript", srv.Transcript(), want)
}

func TestConnectionRefused(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port, _ := strconv.Atoi(strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:"))
	ln.Close()
	_, err := Dial(t.Context(), Target{Host: "127.0.0.1", Port: port, Security: TLS}, nil)
	if e, ok := err.(*Error); !ok || e.Kind != Temporary || e.Step != StepTCP || !strings.Contains(e.Explanation, "refused") {
		t.Fatalf("got %v", err)
	}
}
