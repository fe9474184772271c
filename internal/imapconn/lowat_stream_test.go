package imapconn_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/imaptest"
)

// failingWriter takes n bytes, then fails.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errors.New("the consumer went away")
	}
	w.n -= len(p)
	return len(p), nil
}

// A large raw message whose reader stops early (the consumer of a raw download went away)
// leaves the connection as usable as a finished one: what follows is read at once, not held
// back by a receive low-water mark meant for the rest of the literal.
func TestStreamRawAbandonedLeavesConnUsable(t *testing.T) {
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, "a@example.com", "pw")
	big := []byte("From: c@example.net\r\nSubject: big\r\n\r\n" + strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstu\r\n", 3<<20/70))
	uid := srv.Append(t, "a@example.com", "INBOX", big)
	small := srv.Append(t, "a@example.com", "INBOX", rawMail(2))
	c := dialSelected(t, srv)
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.StreamRaw(ctx, uid, &failingWriter{n: 100 << 10}); err == nil {
		t.Fatal("StreamRaw into a failing writer succeeded")
	}
	// Each next command is answered in a few short lines.
	for i := range 3 {
		start := time.Now()
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.Noop(cctx)
		ccancel()
		if err != nil {
			t.Fatalf("NOOP %d after the abandoned raw message: %v (after %s)", i, err, time.Since(start))
		}
	}
	f, err := c.FetchRaw(ctx, small, 1<<20)
	if err != nil {
		t.Fatalf("fetch after the abandoned raw message: %v", err)
	}
	if !bytes.Equal(f.Raw, rawMail(2)) {
		t.Errorf("fetched %q", f.Raw)
	}
	f.Release()
	// And the large one again, whole.
	var buf bytes.Buffer
	if n, err := c.StreamRaw(ctx, uid, &buf); err != nil || !bytes.Equal(buf.Bytes(), big) {
		t.Fatalf("StreamRaw again: %d bytes of %d, %v", n, len(big), err)
	}
}
