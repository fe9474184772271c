package imapconn

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/imapscript"
)

func dialScript(t *testing.T, mode imapscript.Mode) *Conn {
	t.Helper()
	s := imapscript.Start(t, mode)
	ctx := context.Background()
	c, err := Dial(ctx, Target{Host: s.Host, Port: s.Port, Security: Plaintext, CommandTimeout: 20 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Authenticate(ctx, Credential{Mechanism: "PLAIN", Identity: "u", Secret: "p"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select(ctx, "INBOX"); err != nil {
		t.Fatal(err)
	}
	return c
}

// A server that announces a small size and sends a huge body cannot make FetchRaw read (or
// allocate) more than the limit: it gets a TooLargeError with the body's first bytes, quickly.
func TestFetchRawBoundsTheBody(t *testing.T) {
	for _, mode := range []imapscript.Mode{imapscript.LyingSize, imapscript.HugeLiteral} {
		c := dialScript(t, mode)
		start := time.Now()
		_, err := c.FetchRaw(context.Background(), 1, 1<<20)
		var tl *TooLargeError
		if !errors.As(err, &tl) || tl.Limit != 1<<20 || len(tl.Head) == 0 || tl.Size <= 1<<20 {
			t.Fatalf("%s: FetchRaw = %v, want a TooLargeError", mode, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: FetchRaw took %s to give up", mode, d)
		}
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("%s: the connection is still open after an abandoned literal", mode)
		}
	}
}

// Responses for UIDs that were not asked for are not taken for the message asked for.
func TestFetchRawIgnoresOtherUIDs(t *testing.T) {
	c := dialScript(t, imapscript.WrongUIDs)
	if _, err := c.FetchRaw(context.Background(), 1, 1<<20); !errors.Is(err, ErrGone) {
		t.Errorf("FetchRaw = %v, want ErrGone", err)
	}
}
