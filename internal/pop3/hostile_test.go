package pop3

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/pop3test"
)

// A line that never ends is cut off at the line limit, wherever it comes.
func TestEndlessLine(t *testing.T) {
	for _, cmd := range []string{"greeting", "CAPA", "PASS", "STAT", "LIST", "UIDL"} {
		t.Run(cmd, func(t *testing.T) {
			srv, target := serve(t, TLS, pop3test.Options{Mechanisms: []string{}})
			srv.Add(alice, msg("one"))
			srv.Inject(pop3test.Fault{Command: cmd, Action: pop3test.EndlessLine})
			start := time.Now()
			c, err := Dial(ctx, target, nil)
			if err == nil {
				defer c.Close()
				err = c.Authenticate(ctx, Credential{Mechanism: MechPlain, Identity: alice, Secret: password})
			}
			if err == nil {
				_, _, err = c.Stat(ctx)
			}
			if err == nil {
				_, err = c.List(ctx)
			}
			if err == nil {
				_, err = c.UIDL(ctx)
			}
			var pe *ProtocolError
			if !errors.As(err, &pe) || !strings.Contains(pe.Problem, "longer than 8192") {
				t.Fatalf("err = %v, want a ProtocolError for the long line", err)
			}
			if time.Since(start) > 3*time.Second {
				t.Errorf("took %s", time.Since(start))
			}
		})
	}
}

// A message that never ends is read up to the limit and the discard bound, then the
// connection is closed.
func TestEndlessBody(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	srv.Add(alice, msg("one"))
	srv.Inject(pop3test.Fault{Command: "RETR", Action: pop3test.EndlessBody})
	target.Limits.MaxDiscard = 1 << 20
	c := login(t, target)
	_, err := c.Retr(ctx, 1, 64<<10)
	var tl *TooLargeError
	if !errors.As(err, &tl) || !tl.Closed || tl.Size <= 64<<10+1<<20 || c.Usable() {
		t.Fatalf("Retr = %v, want a TooLargeError that closed the connection", err)
	}
	if _, err := c.List(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("List after = %v, want ErrClosed", err)
	}
}

// TOP is bounded by Limits.MaxTop.
func TestTopBounded(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	srv.Add(alice, msg("one"))
	srv.Inject(pop3test.Fault{Command: "TOP", Action: pop3test.EndlessBody})
	target.Limits.MaxTop, target.Limits.MaxDiscard = 1000, -1
	c := login(t, target)
	_, err := c.Top(ctx, 1, 0)
	var tl *TooLargeError
	if !errors.As(err, &tl) || !tl.Closed || tl.Command != "TOP" {
		t.Fatalf("Top = %v", err)
	}
}

// A server that stalls is cut off after the command's deadline.
func TestStall(t *testing.T) {
	for _, cmd := range []string{"greeting", "PASS", "RETR"} {
		t.Run(cmd, func(t *testing.T) {
			srv, target := serve(t, TLS, pop3test.Options{Mechanisms: []string{}})
			srv.Add(alice, msg("one"))
			srv.Inject(pop3test.Fault{Command: cmd, Action: pop3test.Stall})
			target.DialTimeout, target.CommandTimeout, target.TransferTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
			start := time.Now()
			c, err := Dial(ctx, target, nil)
			if err == nil {
				defer c.Close()
				err = c.Authenticate(ctx, Credential{Mechanism: MechPlain, Identity: alice, Secret: password})
			}
			if err == nil {
				_, err = c.Retr(ctx, 1, 1<<20)
			}
			var te *TimeoutError
			if !errors.As(err, &te) || te.After != 300*time.Millisecond {
				t.Fatalf("err = %v, want a TimeoutError", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
			if c != nil && c.Usable() {
				t.Error("connection still usable after a timeout")
			}
		})
	}
}

// A server that trickles a message slower than the transfer deadline allows is cut off too.
func TestStallMidBody(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	srv.Add(alice, msg("one", "two"))
	srv.Inject(pop3test.Fault{Command: "RETR", Action: pop3test.Stall, StallFor: time.Second})
	target.TransferTimeout = 200 * time.Millisecond
	c := login(t, target)
	_, err := c.Retr(ctx, 1, 1<<20)
	var te *TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("Retr = %v, want a TimeoutError", err)
	}
}

// A cancelled context ends a stalled command at once.
func TestCancel(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	srv.Add(alice, msg("one"))
	srv.Inject(pop3test.Fault{Command: "LIST", Action: pop3test.Stall})
	c := login(t, target)
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.List(cctx)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second || c.Usable() {
		t.Fatalf("List = %v after %s, usable %v", err, time.Since(start), c.Usable())
	}
}

// A connection cut in the middle of a message is a ConnError; the connection is closed and
// nothing marked is deleted.
func TestCutMidRetr(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	srv.Add(alice, msg("one", strings.Repeat("body ", 1000)))
	srv.Add(alice, msg("two"))
	srv.Inject(pop3test.Fault{Command: "RETR", Action: pop3test.CutMidBody, Times: 1})
	c := login(t, target)
	if err := c.Dele(ctx, 2); err != nil {
		t.Fatal(err)
	}
	_, err := c.Retr(ctx, 1, 1<<20)
	var ce *ConnError
	if !errors.As(err, &ce) || !errors.Is(err, io.ErrUnexpectedEOF) || c.Usable() {
		t.Fatalf("Retr = %v, want a ConnError (unexpected EOF)", err)
	}
	if _, err := c.Quit(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Quit = %v", err)
	}
	if len(srv.Messages(alice)) != 2 {
		t.Error("a deletion was applied")
	}
	// The next session reads it whole.
	c = login(t, target)
	if _, err := c.Retr(ctx, 1, 1<<20); err != nil {
		t.Fatal(err)
	}
}

// Lines the server did not dot-stuff: leading dots are removed and counted; a lone "." ends
// the answer early, and the rest left unread is a protocol violation.
func TestUnstuffed(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	srv.Add(alice, msg("one", ".leading", "..two", "end"))
	srv.Add(alice, msg("two", "before", ".", "after"))
	srv.Inject(pop3test.Fault{Command: "RETR", Action: pop3test.Unstuffed})
	c := login(t, target)
	m, err := c.Retr(ctx, 1, 1<<20)
	// "..two" sent as is reads as a stuffed ".two": only ".leading" can be told.
	if err != nil || m.Unstuffed != 1 || !strings.Contains(string(m.Raw), "\r\nleading\r\n.two\r\n") {
		t.Fatalf("Retr = %+v, %v", m, err)
	}
	_, err = c.Retr(ctx, 2, 1<<20)
	var pe *ProtocolError
	if !errors.As(err, &pe) || c.Usable() {
		t.Fatalf("Retr of a message with an unstuffed lone dot = %v, want a ProtocolError", err)
	}
}

// Garbage instead of a status line, or an extra answer, is a protocol violation.
func TestGarbage(t *testing.T) {
	for _, f := range []pop3test.Fault{
		{Command: "STAT", Action: pop3test.Garbage, Reply: "HTTP/1.1 400 Bad Request\r\n\r\n"},
		{Command: "STAT", Action: pop3test.Garbage, Reply: "+OK 1\r\n"},
		{Command: "DELE", Action: pop3test.Trailing, Reply: "+OK and another\r\n"},
		{Command: "LIST", Action: pop3test.Garbage, Reply: "+OK\r\nnot a number\r\n.\r\n"},
		{Command: "LIST", Action: pop3test.Garbage, Reply: "+OK\r\n2 10\r\n1 10\r\n.\r\n"},
		{Command: "UIDL", Action: pop3test.Garbage, Reply: "+OK\r\n1 has space\r\n.\r\n"},
		{Command: "UIDL", Action: pop3test.Garbage, Reply: "+OK\r\n1 " + strings.Repeat("u", MaxUIDLen+1) + "\r\n.\r\n"},
	} {
		t.Run(f.Command+" "+strings.ReplaceAll(f.Reply[:min(12, len(f.Reply))], "\r\n", " "), func(t *testing.T) {
			srv, target := serve(t, TLS, pop3test.Options{})
			srv.Add(alice, msg("one"))
			srv.Inject(f)
			c := login(t, target)
			var err error
			switch f.Command {
			case "STAT":
				_, _, err = c.Stat(ctx)
			case "DELE":
				err = c.Dele(ctx, 1)
			case "LIST":
				_, err = c.List(ctx)
			case "UIDL":
				_, err = c.UIDL(ctx)
			}
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Command != f.Command || c.Usable() {
				t.Fatalf("err = %v, want a ProtocolError that closed", err)
			}
		})
	}
}

// A list longer than its bound, or a CAPA with too many lines, is refused.
func TestListBounds(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	for range 5 {
		srv.Add(alice, msg("m"))
	}
	target.Limits.MaxMessages = 3
	c := login(t, target)
	_, err := c.UIDL(ctx)
	var pe *ProtocolError
	if !errors.As(err, &pe) || !strings.Contains(pe.Problem, "longer than 3 lines") {
		t.Fatalf("UIDL = %v", err)
	}

	srv.Inject(pop3test.Fault{Command: "CAPA", Action: pop3test.Garbage, Reply: "+OK\r\n" + strings.Repeat("X-CAP\r\n", 200) + ".\r\n"})
	if _, err := Dial(ctx, target, nil); !errors.As(err, &pe) || !strings.Contains(pe.Problem, "100 lines") {
		t.Fatalf("Dial = %v", err)
	}
}

// -ERR with response codes: the connection stays usable.
func TestServerErrorCodes(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	srv.Add(alice, msg("one"))
	srv.Inject(pop3test.Fault{Command: "RETR", Action: pop3test.Refuse, Reply: "-ERR [SYS/TEMP] Try again later", Times: 1})
	c := login(t, target)
	_, err := c.Retr(ctx, 1, 1<<20)
	se, ok := IsServerError(err)
	if !ok || se.Code != CodeSysTemp || !se.Temporary() || se.Text != "Try again later" || se.Command != "RETR" {
		t.Fatalf("Retr = %v", err)
	}
	if _, err := c.Retr(ctx, 1, 1<<20); err != nil {
		t.Fatalf("Retr again = %v", err)
	}
}

// Target.Allow refuses every command, QUIT included, before it is sent.
func TestAllow(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	srv.Add(alice, msg("one"))
	allowed := true
	target.Allow = func() bool { return allowed }
	c := login(t, target)
	if err := c.Dele(ctx, 1); err != nil {
		t.Fatal(err)
	}
	allowed = false
	if _, err := c.List(ctx); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("List = %v", err)
	}
	if deleted, err := c.Quit(ctx); !errors.Is(err, ErrNotAllowed) || deleted != nil {
		t.Fatalf("Quit = %v, %v", deleted, err)
	}
	if srv.Commands("QUIT") != 0 || srv.Commands("LIST") != 0 || len(srv.Messages(alice)) != 1 {
		t.Error("a refused command reached the server")
	}
}

// A server that keeps challenging cannot keep a login going.
func TestEndlessChallenges(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{ValidateToken: tokens{}.valid})
	srv.Inject(pop3test.Fault{Command: "AUTH", Action: pop3test.Garbage, Reply: strings.Repeat("+ \r\n", 20)})
	c := dial(t, target)
	err := c.Authenticate(ctx, Credential{Mechanism: MechXOAuth2, Identity: alice, Secret: "t"})
	var pe *ProtocolError
	if !errors.As(err, &pe) || !strings.Contains(pe.Problem, "challenges") || c.Usable() {
		t.Fatalf("Authenticate = %v", err)
	}
}
