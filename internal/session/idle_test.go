package session_test

import (
	"bytes"
	"context"
	"net"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// sessionGoroutines returns the stacks of the goroutines running session code.
func sessionGoroutines() []string {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 2)
	var out []string
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, "internal/session.(*session)") {
			out = append(out, g)
		}
	}
	return out
}

func noSessionGoroutines(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g := sessionGoroutines()
		if len(g) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d goroutines still run session code, e.g.\n%s", what, len(g), g[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Idle sessions hold no goroutine of their own (only the IMAP library's), yet notice new mail
// at once, re-issue IDLE when IdleRestart passes, answer the broker's wake-ups and stop when
// told.
func TestIdleSessionsHoldNoGoroutine(t *testing.T) {
	srv := newIMAP(t)
	opts := fastOpts
	opts.IdleRestart = 400 * time.Millisecond
	h := newHarnessWith(t, srv, opts)
	var ids []string
	for range 3 {
		ids = append(ids, h.addMailbox(nil).Id)
	}
	c := h.consume(10, 0)
	srv.Append(t, user, "INBOX", mail(1, "first"))
	c.ack(c.take(3)...) // the three mailboxes share the account
	eventually(t, "MARK_SEEN", func() bool { _, u := srv.Status(t, user, "INBOX"); return u == 0 })
	for _, id := range ids {
		eventually(t, "idle", func() bool {
			return h.sup.Status(context.Background(), id).GetState() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE
		})
	}
	noSessionGoroutines(t, "idle after traffic")

	// IDLE is re-issued every IdleRestart, on goroutines that end again.
	idles := srv.Commands("IDLE")
	time.Sleep(time.Second)
	if n := srv.Commands("IDLE") - idles; n < 3 {
		t.Errorf("IDLE re-issued %d times in 1 s by 3 sessions with IdleRestart 400 ms", n)
	}
	noSessionGoroutines(t, "idle after IDLE restarts")

	// New mail ends the IDLE at once.
	start := time.Now()
	srv.Append(t, user, "INBOX", mail(2, "second"))
	for _, m := range c.take(3) {
		if m.GetEnvelope().GetSubject() != "second" {
			t.Errorf("got %q", m.GetEnvelope().GetSubject())
		}
		c.ack(m)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("new mail took %s to arrive from idle sessions", d)
	}

	// A wake-up from the broker ends the IDLE: the session looks at the folder.
	noSessionGoroutines(t, "idle after the second message")
	searches := srv.Commands("UID SEARCH")
	h.sup.Wake(ids[0])
	eventually(t, "a round after Wake", func() bool { return srv.Commands("UID SEARCH") > searches })
	noSessionGoroutines(t, "idle after the wake-up")

	// Stopping idle sessions ends them (and their connections) promptly.
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the supervisor did not stop idle sessions")
	}
}

// A session waiting for its next attempt after an error holds no goroutine either, and stops
// when told.
func TestBackoffHoldsNoGoroutine(t *testing.T) {
	srv := newIMAP(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there: connections are refused
	opts := fastOpts
	opts.MinBackoff, opts.MaxBackoff = time.Hour, time.Hour
	h := newHarnessWith(t, srv, opts)
	mb := h.addMailbox(func(m *mailintakev1.Mailbox) { m.Port = uint32(closedPort) })
	eventually(t, "error state", func() bool {
		return h.sup.Status(context.Background(), mb.Id).GetState() == mailintakev1.MailboxState_MAILBOX_STATE_ERROR
	})
	noSessionGoroutines(t, "in backoff")
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the supervisor did not stop a session in backoff")
	}
}
