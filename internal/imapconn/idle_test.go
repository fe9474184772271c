package imapconn_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/imapconn"
)

func dialSelected(t *testing.T, srv *imaptest.Server) *imapconn.Conn {
	t.Helper()
	ctx := context.Background()
	c, err := imapconn.Dial(ctx, imapconn.Target{Host: srv.Host, Port: srv.Port, Security: imapconn.Plaintext}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Authenticate(ctx, imapconn.Credential{Mechanism: "PLAIN", Identity: "a@example.com", Secret: "pw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select(ctx, "INBOX"); err != nil {
		t.Fatal(err)
	}
	return c
}

func rawMail(n int) []byte {
	return []byte(fmt.Sprintf("From: c@example.net\r\nSubject: %d\r\n\r\nbody %d\r\n", n, n))
}

// waitCalled waits for a Notify callback.
func waitCalled(t *testing.T, called <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-called:
	case <-time.After(5 * time.Second):
		t.Fatalf("Notify's function was not called %s", what)
	}
}

// Notify tells of new mail reported while idling, of a report already waiting, and of the
// connection's end; a cancelled function is not called; StartIdle and Stop bracket IDLE.
func TestNotifyWhileIdling(t *testing.T) {
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, "a@example.com", "pw")
	ctx := context.Background()
	c := dialSelected(t, srv)
	defer c.Close()

	// New mail while idling.
	idling, err := c.StartIdle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	called := make(chan struct{}, 4)
	var calls atomic.Int32
	f := func() { calls.Add(1); called <- struct{}{} }
	c.Notify(f)
	srv.Append(t, "a@example.com", "INBOX", rawMail(1))
	waitCalled(t, called, "for new mail during IDLE")
	if err := idling.Stop(ctx); err != nil {
		t.Fatalf("DONE: %v", err)
	}
	if srv.Commands("IDLE") != 1 {
		t.Errorf("IDLE sent %d times", srv.Commands("IDLE"))
	}

	// The report is still waiting (not drained): a new function is called at once.
	c.Notify(f)
	waitCalled(t, called, "for a report not drained")
	c.DrainUpdates()

	// Cancelled: not called; the connection still works.
	cancel := c.Notify(f)
	if !cancel() {
		t.Fatal("cancel reported a function that was not called as called")
	}
	srv.Append(t, "a@example.com", "INBOX", rawMail(2))
	if err := c.Noop(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := calls.Load(); n != 2 {
		t.Fatalf("called %d times, want 2 (not after cancel)", n)
	}
	c.DrainUpdates()

	// The connection's end, from the server's side, while idling.
	if idling, err = c.StartIdle(ctx); err != nil {
		t.Fatal(err)
	}
	c.Notify(f)
	srv.Stop()
	waitCalled(t, called, "when the server closed the connection")
	if err := idling.Stop(ctx); err == nil {
		t.Error("DONE on a closed connection reported no error")
	}
	// Once ended, a new function is called at once.
	c.Notify(f)
	waitCalled(t, called, "on a connection that had ended")
}

// Closing the connection ourselves is an end too.
func TestNotifyOnClose(t *testing.T) {
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, "a@example.com", "pw")
	c := dialSelected(t, srv)
	called := make(chan struct{}, 1)
	c.Notify(func() { called <- struct{}{} })
	c.Close()
	waitCalled(t, called, "when the connection was closed")
}
