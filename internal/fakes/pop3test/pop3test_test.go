package pop3test

import (
	"bufio"
	"encoding/base64"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// wire is a raw client for checking what the fake puts on the wire.
type wire struct {
	t *testing.T
	c net.Conn
	r *textproto.Reader
}

func dialWire(t *testing.T, s *Server) *wire {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	w := &wire{t: t, c: c, r: textproto.NewReader(bufio.NewReader(c))}
	w.expect("+OK")
	return w
}

// do sends a line and returns the answer's first line, which must start with want.
func (w *wire) do(line, want string) string {
	w.t.Helper()
	if _, err := w.c.Write([]byte(line + "\r\n")); err != nil {
		w.t.Fatal(err)
	}
	return w.expect(want)
}

func (w *wire) expect(want string) string {
	w.t.Helper()
	l, err := w.r.ReadLine()
	if err != nil || !strings.HasPrefix(l, want) {
		w.t.Fatalf("got %q, %v; want %q", l, err, want)
	}
	return l
}

// lines reads a multi-line answer's lines as sent (still dot-stuffed), without the final dot.
func (w *wire) lines() []string {
	w.t.Helper()
	var out []string
	for {
		l, err := w.r.ReadLine()
		if err != nil {
			w.t.Fatal(err)
		}
		if l == "." {
			return out
		}
		out = append(out, l)
	}
}

// The wire format: dot-stuffing, LIST and UIDL lines, DELE applied at QUIT only, the lock.
func TestWire(t *testing.T) {
	s := Start(t, Options{})
	s.AddUser("u", "p")
	uid := s.Add("u", []byte("Subject: x\n\n.\n.hidden\nend"))
	w := dialWire(t, s)
	w.do("USER u", "+OK")
	w.do("PASS p", "+OK")
	other := dialWire(t, s)
	other.do("USER u", "+OK")
	other.do("PASS p", "-ERR [IN-USE]")
	w.do("STAT", "+OK 1 31")
	w.do("LIST", "+OK")
	if l := w.lines(); strings.Join(l, "|") != "1 31" {
		t.Errorf("LIST %q", l)
	}
	w.do("UIDL", "+OK")
	if l := w.lines(); strings.Join(l, "|") != "1 "+uid {
		t.Errorf("UIDL %q", l)
	}
	w.do("RETR 1", "+OK 31 octets")
	if l := w.lines(); strings.Join(l, "|") != "Subject: x||..|..hidden|end" {
		t.Errorf("RETR %q", l)
	}
	w.do("TOP 1 1", "+OK")
	if l := w.lines(); strings.Join(l, "|") != "Subject: x||.." {
		t.Errorf("TOP %q", l)
	}
	w.do("DELE 1", "+OK")
	w.do("RETR 1", "-ERR")
	w.do("RSET", "+OK")
	w.do("DELE 1", "+OK")
	if len(s.Messages("u")) != 1 {
		t.Fatal("DELE deleted before QUIT")
	}
	w.do("QUIT", "+OK")
	if len(s.Messages("u")) != 0 || s.Updates.Load() != 1 {
		t.Fatal("QUIT did not delete")
	}
}

// The command line limit (RFC 2449's 255 octets) refuses an initial response that is too
// long, as Exchange does; the same token after "+" is accepted.
func TestCommandLineLimit(t *testing.T) {
	token := strings.Repeat("t", 300)
	s := Start(t, Options{ValidateToken: func(tok, user string) bool { return tok == token && user == "u" }, Exchange: true})
	s.AddUser("u", "")
	ir := base64.StdEncoding.EncodeToString([]byte("user=u\x01auth=Bearer " + token + "\x01\x01"))
	w := dialWire(t, s)
	w.do("AUTH XOAUTH2 "+ir, "-ERR")
	w.do("AUTH XOAUTH2", "+")
	w.do(ir, "+OK User successfully authenticated.")
	if a := s.AuthAttempts(); len(a) != 1 || !a[0].OK || a[0].InitialResponse {
		t.Errorf("attempts %+v", a)
	}
}
