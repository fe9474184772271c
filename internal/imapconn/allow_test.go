package imapconn_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/imapconn"
)

// TestAllowGatesEveryCommand: once Target.Allow says no (a replica that may have lost its
// lease), no command reaches the server but LOGOUT.
func TestAllowGatesEveryCommand(t *testing.T) {
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, "a@example.com", "pw")
	var allowed atomic.Bool
	allowed.Store(true)
	ctx := context.Background()
	c, err := imapconn.Dial(ctx, imapconn.Target{Host: srv.Host, Port: srv.Port, Security: imapconn.Plaintext, Allow: allowed.Load}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Authenticate(ctx, imapconn.Credential{Mechanism: "PLAIN", Identity: "a@example.com", Secret: "pw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select(ctx, "INBOX"); err != nil {
		t.Fatal(err)
	}
	allowed.Store(false)
	before := srv.CommandTotal()
	if _, err := c.SearchUIDs(ctx, 1, false); !errors.Is(err, imapconn.ErrNotAllowed) {
		t.Errorf("SearchUIDs when not allowed: %v, want ErrNotAllowed", err)
	}
	if err := c.Noop(ctx); !errors.Is(err, imapconn.ErrNotAllowed) {
		t.Errorf("Noop when not allowed: %v, want ErrNotAllowed", err)
	}
	if n := srv.CommandTotal() - before; n != 0 {
		t.Errorf("%d commands reached the server after Allow said no", n)
	}
	c.Logout()
	if srv.Commands("LOGOUT") != 1 {
		t.Errorf("LOGOUT must still be sent (%d)", srv.Commands("LOGOUT"))
	}
}

// TestAllowStillEndsIdle: a replica that may have lost its lease still ends a running IDLE
// (DONE changes nothing on the server), so it can log out at once instead of leaving the
// connection to its watchdog while the stopping replica keeps holding its leases.
func TestAllowStillEndsIdle(t *testing.T) {
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, "a@example.com", "pw")
	var allowed atomic.Bool
	allowed.Store(true)
	ctx := context.Background()
	c, err := imapconn.Dial(ctx, imapconn.Target{Host: srv.Host, Port: srv.Port, Security: imapconn.Plaintext, Allow: allowed.Load}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(ctx, imapconn.Credential{Mechanism: "PLAIN", Identity: "a@example.com", Secret: "pw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select(ctx, "INBOX"); err != nil {
		t.Fatal(err)
	}
	idling, err := c.StartIdle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	allowed.Store(false)
	if err := idling.Stop(ctx); err != nil {
		t.Fatalf("DONE refused once Allow says no: %v", err)
	}
	if err := c.Noop(ctx); !errors.Is(err, imapconn.ErrNotAllowed) {
		t.Errorf("Noop after DONE when not allowed: %v, want ErrNotAllowed", err)
	}
	c.Logout()
	if srv.Commands("LOGOUT") != 1 {
		t.Errorf("LOGOUT must still be sent (%d)", srv.Commands("LOGOUT"))
	}
}
