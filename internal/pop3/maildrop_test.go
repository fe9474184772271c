package pop3

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mailintake/mailintake/internal/fakes/pop3test"
)

// STAT, LIST, UIDL, TOP and RETR; RETR returns the message's bytes as stored, CRLF kept and
// dot-stuffing undone (a line that is a lone dot, lines starting with dots).
func TestReadMaildrop(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	raws := [][]byte{
		msg("plain", "hello"),
		msg("dots", ".", "..", ".leading dot", "end"),
		msg("long line", strings.Repeat("z", 100_000)),
	}
	var uids []string
	for _, r := range raws {
		uids = append(uids, srv.Add(alice, r))
	}
	c := login(t, target)
	var steps []Step
	c.report = func(s Step) { steps = append(steps, s) }

	count, size, err := c.Stat(ctx)
	var total int64
	for _, r := range raws {
		total += int64(len(crlf(r)))
	}
	if err != nil || count != 3 || size != total {
		t.Fatalf("Stat = %d, %d, %v; want 3, %d", count, size, err, total)
	}
	if len(steps) != 1 || steps[0].Kind != StepMaildrop || steps[0].Detail != "3 messages, "+strconv.FormatInt(total, 10)+" octets" {
		t.Errorf("Stat step %+v", steps)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 3 || list[1] != (ListEntry{Msg: 2, Size: int64(len(crlf(raws[1])))}) {
		t.Fatalf("List = %v, %v", list, err)
	}
	ul, err := c.UIDL(ctx)
	if err != nil || len(ul.Entries) != 3 || ul.Duplicates != nil {
		t.Fatalf("UIDL = %+v, %v", ul, err)
	}
	for i, u := range uids {
		if n, ok := ul.ByUID(u); !ok || n != i+1 {
			t.Errorf("ByUID(%s) = %d, %v", u, n, ok)
		}
	}
	for i, r := range raws {
		m, err := c.Retr(ctx, i+1, 1<<20)
		if err != nil {
			t.Fatalf("Retr %d: %v", i+1, err)
		}
		if !bytes.Equal(m.Raw, crlf(r)) || m.Size != int64(len(m.Raw)) || m.Announced != m.Size || m.Unstuffed != 0 {
			t.Errorf("Retr %d = %q (size %d, announced %d, unstuffed %d), want %q", i+1, trunc(m.Raw), m.Size, m.Announced, m.Unstuffed, trunc(crlf(r)))
		}
	}
	top, err := c.Top(ctx, 2, 1)
	if want := "From: bob@example.com\r\nTo: alice@example.com\r\nSubject: dots\r\n\r\n.\r\n"; err != nil || string(top) != want {
		t.Errorf("Top = %q, %v; want %q", top, err, want)
	}
	var buf bytes.Buffer
	if m, err := c.RetrTo(ctx, 3, &buf, 1<<20); err != nil || m.Raw != nil || !bytes.Equal(buf.Bytes(), crlf(raws[2])) {
		t.Errorf("RetrTo = %+v, %v", m, err)
	}
	if _, err := c.Retr(ctx, 9, 1<<20); err == nil {
		t.Error("Retr of a message that does not exist succeeded")
	} else if se, ok := IsServerError(err); !ok || !c.Usable() {
		t.Errorf("Retr 9 = %v (%v), usable %v", err, se, c.Usable())
	}
}

func trunc(b []byte) []byte { return b[:min(len(b), 120)] }

// DELE only marks: Close, a dropped connection, or RSET leave the messages; only a clean
// QUIT deletes them, and says which.
func TestDeleAppliesOnlyOnQuit(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	u1 := srv.Add(alice, msg("one"))
	srv.Add(alice, msg("two"))
	srv.Add(alice, msg("three"))

	c := login(t, target)
	if err := c.Dele(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Dele(ctx, 1); err == nil {
		t.Error("a second DELE of the same message succeeded")
	}
	if p := c.Pending(); !slices.Equal(p, []int{1}) {
		t.Errorf("Pending = %v", p)
	}
	c.Close()
	if n := len(srv.Messages(alice)); n != 3 {
		t.Fatalf("after Close: %d messages, want 3", n)
	}

	c = login(t, target)
	c.Dele(ctx, 2)
	if err := c.Rset(ctx); err != nil || len(c.Pending()) != 0 {
		t.Fatalf("Rset = %v, pending %v", err, c.Pending())
	}
	if deleted, err := c.Quit(ctx); err != nil || len(deleted) != 0 {
		t.Fatalf("Quit after Rset = %v, %v", deleted, err)
	}
	if n := len(srv.Messages(alice)); n != 3 {
		t.Fatalf("after RSET and QUIT: %d messages, want 3", n)
	}

	c = login(t, target)
	c.Dele(ctx, 3)
	c.Dele(ctx, 1)
	if count, _, _ := c.Stat(ctx); count != 1 {
		t.Errorf("STAT after two DELEs: %d", count)
	}
	deleted, err := c.Quit(ctx)
	if err != nil || !slices.Equal(deleted, []int{3, 1}) {
		t.Fatalf("Quit = %v, %v", deleted, err)
	}
	if m := srv.Messages(alice); len(m) != 1 || m[0].UID == u1 {
		t.Fatalf("after QUIT: %+v", m)
	}
	if c.Usable() || !errors.Is(c.Noop(ctx), ErrClosed) {
		t.Error("the connection is usable after QUIT")
	}
}

// A QUIT whose answer never comes: the server may have deleted (here it did), and Quit says
// nothing was confirmed; the caller deletes again next time by unique-id.
func TestQuitWithoutAnswer(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	srv.Add(alice, msg("one"))
	srv.Inject(pop3test.Fault{Command: "QUIT", Action: pop3test.Drop})
	c := login(t, target)
	c.Dele(ctx, 1)
	deleted, err := c.Quit(ctx)
	var ce *ConnError
	if deleted != nil || !errors.As(err, &ce) {
		t.Fatalf("Quit = %v, %v; want a ConnError and nothing confirmed", deleted, err)
	}
	if len(srv.Messages(alice)) != 0 {
		t.Error("the fake did not apply the deletion before dropping")
	}
}

// Duplicate unique-ids are reported, not hidden, and ByUID does not answer for them.
func TestDuplicateUIDLs(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	srv.AddWithUID(alice, "same", msg("a"))
	srv.AddWithUID(alice, "other", msg("b"))
	srv.AddWithUID(alice, "same", msg("c"))
	srv.AddWithUID(alice, "same", msg("d"))
	c := login(t, target)
	ul, err := c.UIDL(ctx)
	if err != nil || len(ul.Entries) != 4 {
		t.Fatalf("UIDL = %+v, %v", ul, err)
	}
	if d := ul.Duplicates["same"]; !slices.Equal(d, []int{1, 3, 4}) || len(ul.Duplicates) != 1 {
		t.Errorf("Duplicates = %v", ul.Duplicates)
	}
	if _, ok := ul.ByUID("same"); ok {
		t.Error("ByUID answered for a duplicated unique-id")
	}
	if n, ok := ul.ByUID("other"); !ok || n != 2 {
		t.Errorf("ByUID(other) = %d, %v", n, ok)
	}
}

// Message numbers change between sessions (the fake rotates them, and removals renumber):
// unique-ids find the same message again.
func TestMessageNumbersChange(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{RotateEachSession: true})
	for _, s := range []string{"a", "b", "c"} {
		srv.AddWithUID(alice, "uid-"+s, msg(s))
	}
	numbers := func() map[string]int {
		c := login(t, target)
		defer c.Quit(ctx)
		ul, err := c.UIDL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, e := range ul.Entries {
			out[e.UID] = e.Msg
			m, err := c.Retr(ctx, e.Msg, 1<<20)
			if err != nil || !bytes.Contains(m.Raw, []byte("Subject: "+strings.TrimPrefix(e.UID, "uid-")+"\r\n")) {
				t.Fatalf("message %d (%s): %v", e.Msg, e.UID, err)
			}
		}
		return out
	}
	first, second := numbers(), numbers()
	if first["uid-a"] == second["uid-a"] {
		t.Errorf("numbers did not change: %v, %v", first, second)
	}
	srv.Remove(alice, "uid-b")
	third := numbers()
	if len(third) != 2 || third["uid-b"] != 0 {
		t.Errorf("after a removal: %v", third)
	}
}

// A server that lists small sizes and sends more: Retr holds at most the limit, keeps the
// head, discards the rest and keeps the connection (and its marked deletions).
func TestLyingSizes(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{ListedSize: func(pop3test.Message) int64 { return 100 }})
	big := msg("big", strings.Repeat("0123456789", 10_000))
	srv.Add(alice, big)
	srv.Add(alice, msg("small"))
	c := login(t, target)
	if l, _ := c.List(ctx); l[0].Size != 100 {
		t.Fatalf("List = %v", l)
	}
	c.Dele(ctx, 2)
	_, err := c.Retr(ctx, 1, 4096)
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Closed || tl.Limit != 4096 || tl.Size != int64(len(crlf(big))) || tl.Announced != 100 ||
		!bytes.HasPrefix(tl.Head, []byte("From: bob")) || len(tl.Head) != 4096 {
		t.Fatalf("Retr = %v (%+v)", err, tl)
	}
	if !c.Usable() {
		t.Fatal("connection closed after discarding")
	}
	if deleted, err := c.Quit(ctx); err != nil || !slices.Equal(deleted, []int{2}) {
		t.Fatalf("Quit = %v, %v", deleted, err)
	}

	// Past MaxDiscard the connection is closed instead of reading on; the marks are lost.
	target.Limits.MaxDiscard = 1000
	srv.Add(alice, msg("third"))
	c = login(t, target)
	if err := c.Dele(ctx, 2); err != nil {
		t.Fatal(err)
	}
	_, err = c.Retr(ctx, 1, 4096)
	if !errors.As(err, &tl) || !tl.Closed || c.Usable() {
		t.Fatalf("Retr = %v, usable %v; want a TooLargeError that closed", err, c.Usable())
	}
	if _, err := c.Quit(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Quit after close = %v", err)
	}
	if len(srv.Messages(alice)) != 2 {
		t.Error("a deletion was applied without QUIT")
	}
}

// Commands before a login are refused without being sent.
func TestMaildropNeedsLogin(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	c := dial(t, target)
	if _, _, err := c.Stat(ctx); err == nil {
		t.Fatal("STAT before login succeeded")
	}
	if srv.Commands("STAT") != 0 {
		t.Error("STAT was sent")
	}
	if deleted, err := c.Quit(ctx); err != nil || deleted != nil {
		t.Errorf("Quit before login = %v, %v", deleted, err)
	}
}

// failingWriter fails after n bytes.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		return w.n, errors.New("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

// A writer that fails ends RetrTo with its error; the connection is closed.
func TestRetrToWriterFails(t *testing.T) {
	srv, target := serve(t, TLS, pop3test.Options{})
	srv.Add(alice, msg("one", strings.Repeat("x", 10_000)))
	c := login(t, target)
	_, err := c.RetrTo(ctx, 1, &failingWriter{n: 100}, 1<<20)
	if err == nil || !strings.Contains(err.Error(), "disk full") || c.Usable() {
		t.Fatalf("RetrTo = %v, usable %v", err, c.Usable())
	}
}
