package session_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// These tests hold the session to how servers other than Dovecot behave (Courier: no MOVE,
// personal folders under "INBOX."; servers without UIDPLUS or IDLE), counted at the server.

func newIMAPWith(t *testing.T, opts imaptest.Options) *imaptest.Server {
	srv := imaptest.Start(t, opts)
	srv.AddUser(t, user, password)
	return srv
}

func moveTo(folder string) func(*mailintakev1.Mailbox) {
	return func(m *mailintakev1.Mailbox) {
		m.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MOVE, Folder: folder}
	}
}

// An idle session that has delivered mail goes back to sleep: it sends no more than a few
// commands a minute, counted at the server (it used to end every IDLE at once, for ever).
func TestIdleSessionSleepsAfterTraffic(t *testing.T) {
	srv := newIMAPWith(t, imaptest.Options{})
	h := newHarness(t, srv)
	mb := h.addMailbox(nil)
	c := h.consume(10, 0)
	for i := 1; i <= 3; i++ {
		srv.Append(t, user, "INBOX", mail(i, fmt.Sprintf("m%d", i)))
		c.ack(c.take(1)...)
	}
	eventually(t, "MARK_SEEN", func() bool { _, u := srv.Status(t, user, "INBOX"); return u == 0 })
	eventually(t, "idle", func() bool {
		return h.sup.Status(context.Background(), mb.Id).GetState() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE
	})
	time.Sleep(200 * time.Millisecond) // the last round's own updates settle
	before, idles := srv.CommandTotal(), srv.Commands("IDLE")
	time.Sleep(2 * time.Second)
	sent, idled := srv.CommandTotal()-before, srv.Commands("IDLE")-idles
	t.Logf("commands in 2 s at rest after traffic: %d (IDLE %d)", sent, idled)
	if sent > 2 {
		t.Errorf("an idle session sent %d commands in 2 s after traffic (IDLE %d): it does not go back to sleep", sent, idled)
	}
	// And it still wakes for new mail.
	srv.Append(t, user, "INBOX", mail(9, "after rest"))
	if m := c.take(1)[0]; m.GetEnvelope().GetSubject() != "after rest" {
		t.Errorf("got %q", m.GetEnvelope().GetSubject())
	}
}

// Without IDLE the session polls: new mail arrives within the poll interval, and at rest it
// sends about one NOOP per interval and nothing else.
func TestPollingWithoutIdle(t *testing.T) {
	srv := newIMAPWith(t, imaptest.Options{NoIdle: true})
	srv.Append(t, user, "INBOX", mail(1, "old"))
	h := newHarness(t, srv)
	h.addMailbox(nil)
	c := h.consume(10, 0)
	c.ack(c.take(1)...)
	start := time.Now()
	srv.Append(t, user, "INBOX", mail(2, "polled"))
	m := c.take(1)[0]
	if m.GetEnvelope().GetSubject() != "polled" {
		t.Fatalf("got %q", m.GetEnvelope().GetSubject())
	}
	c.ack(m)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("new mail took %s with a poll interval of %s", d, fastOpts.PollInterval)
	}
	if n := srv.Commands("IDLE"); n != 0 {
		t.Errorf("the session sent IDLE %d times to a server that does not offer it", n)
	}
	eventually(t, "MARK_SEEN", func() bool { _, u := srv.Status(t, user, "INBOX"); return u == 0 })
	time.Sleep(300 * time.Millisecond)
	before, noops := srv.CommandTotal(), srv.Commands("NOOP")
	time.Sleep(2 * time.Second)
	sent, polled := srv.CommandTotal()-before, srv.Commands("NOOP")-noops
	// Each poll is a NOOP and, when the NOOP reported nothing, nothing else is sent... except
	// the round's UID SEARCH: at most two commands per interval (200 ms → about 10 polls).
	t.Logf("at rest without IDLE: %d commands in 2 s, %d NOOPs", sent, polled)
	if polled < 5 || polled > 12 {
		t.Errorf("%d NOOPs in 2 s with a poll interval of 200 ms", polled)
	}
	if sent > 2*polled+2 {
		t.Errorf("%d commands for %d polls", sent, polled)
	}
}

// On a server without MOVE (Courier), move: copies first and removes the originals only once
// the copy succeeded; a first move into a folder that does not exist yet creates it and loses
// nothing.
func TestMoveWithoutMOVECopiesThenExpunges(t *testing.T) {
	srv := newIMAPWith(t, imaptest.Options{NoMove: true})
	for i := 1; i <= 3; i++ {
		srv.Append(t, user, "INBOX", mail(i, fmt.Sprintf("m%d", i)))
	}
	h := newHarness(t, srv)
	mb := h.addMailbox(moveTo("Processed/Tickets"))
	c := h.consume(10, 0)
	c.ack(c.take(3)...)
	eventually(t, "the move", func() bool { n, _ := srv.Status(t, user, "INBOX"); return n == 0 })
	if n, _ := srv.Status(t, user, "Processed/Tickets"); n != 3 {
		t.Errorf("Processed/Tickets has %d messages, want 3", n)
	}
	if srv.Commands("UID MOVE") != 0 || srv.Commands("UID COPY") == 0 || srv.Commands("UID EXPUNGE") == 0 || srv.Commands("EXPUNGE") != 0 {
		t.Errorf("commands: MOVE %d, COPY %d, UID EXPUNGE %d, EXPUNGE %d", srv.Commands("UID MOVE"), srv.Commands("UID COPY"), srv.Commands("UID EXPUNGE"), srv.Commands("EXPUNGE"))
	}
	if st := h.sup.Status(context.Background(), mb.Id); len(st.GetWarnings()) != 0 {
		t.Errorf("warnings with UIDPLUS: %v", st.GetWarnings())
	}
}

// A COPY the server refuses (over quota) leaves every message in place, flagged nothing; the
// failure is the mailbox's state and last error in the server's words; the event log folds the
// repeats; once the server accepts, the move completes.
func TestRefusedCopyLosesNothingAndShowsInStatus(t *testing.T) {
	srv := newIMAPWith(t, imaptest.Options{NoMove: true})
	srv.CreateFolder(t, user, "Done")
	for i := 1; i <= 2; i++ {
		srv.Append(t, user, "INBOX", mail(i, fmt.Sprintf("m%d", i)))
	}
	srv.RefuseCopies("Quota exceeded (mailbox for user is full)")
	h := newHarness(t, srv)
	mb := h.addMailbox(moveTo("Done"))
	c := h.consume(10, 0)
	c.ack(c.take(2)...)
	eventually(t, "the failure in the status", func() bool {
		return h.sup.Status(context.Background(), mb.Id).GetState() == mailintakev1.MailboxState_MAILBOX_STATE_AFTER_ACK_FAILING
	})
	st := h.sup.Status(context.Background(), mb.Id)
	if !strings.Contains(st.GetLastError(), "Quota exceeded") || !strings.Contains(st.GetMessage(), `"Done"`) || !strings.Contains(st.GetMessage(), "--after-ack") {
		t.Errorf("status: message %q, last error %q", st.GetMessage(), st.GetLastError())
	}
	// More rounds (new mail, acknowledged) retry the action, and fail again.
	for i := 3; i <= 5; i++ {
		srv.Append(t, user, "INBOX", mail(i, fmt.Sprintf("m%d", i)))
		c.ack(c.take(1)...)
	}
	time.Sleep(300 * time.Millisecond)
	if n, _ := srv.Status(t, user, "INBOX"); n != 5 {
		t.Fatalf("INBOX has %d messages after refused copies, want 5: mail was lost", n)
	}
	if d := srv.Deleted(t, user, "INBOX"); d != 0 {
		t.Errorf("%d messages flagged \\Deleted after refused copies", d)
	}
	evs, _ := h.st.ListEvents(context.Background(), mb.Id, 0, 500)
	var refused int
	for _, e := range evs {
		if e.Kind == "error" && strings.Contains(e.Message, "refused by the server") {
			refused++
			if e.Count < 2 {
				t.Errorf("the repeated failure was not folded: count %d", e.Count)
			}
		}
	}
	if refused != 1 {
		t.Errorf("%d entries for the same refusal, want 1 folded entry: %v", refused, evs)
	}
	// The server accepts again: everything moves, and the state clears.
	srv.RefuseCopies("")
	srv.Append(t, user, "INBOX", mail(6, "m6"))
	c.ack(c.take(1)...)
	eventually(t, "the move", func() bool { n, _ := srv.Status(t, user, "INBOX"); return n == 0 })
	if n, _ := srv.Status(t, user, "Done"); n != 6 {
		t.Errorf("Done has %d messages, want 6", n)
	}
	eventually(t, "the state to clear", func() bool {
		return h.sup.Status(context.Background(), mb.Id).GetState() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE
	})
}

// Without UIDPLUS, nothing is ever expunged (a plain EXPUNGE would erase other clients'
// \Deleted mail): moved and deleted messages stay flagged \Deleted \Seen, and the status says
// why.
func TestWithoutUIDPLUSNothingIsExpunged(t *testing.T) {
	for _, action := range []string{"move", "delete"} {
		t.Run(action, func(t *testing.T) {
			srv := newIMAPWith(t, imaptest.Options{NoMove: true, NoUIDPlus: true})
			// Another client's message, flagged \Deleted but not expunged: it must survive.
			srv.Append(t, user, "INBOX", mail(0, "someone else's"), `\Deleted`)
			for i := 1; i <= 2; i++ {
				srv.Append(t, user, "INBOX", mail(i, fmt.Sprintf("m%d", i)))
			}
			h := newHarness(t, srv)
			edit := moveTo("Processed")
			if action == "delete" {
				edit = func(m *mailintakev1.Mailbox) {
					m.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE}
				}
			}
			mb := h.addMailbox(edit)
			c := h.consume(10, 0)
			msgs := c.take(3) // the \Deleted one is delivered too: it is in the folder
			c.ack(msgs...)
			eventually(t, "the action", func() bool { return srv.Deleted(t, user, "INBOX") == 3 })
			if n, u := srv.Status(t, user, "INBOX"); n != 3 || u != 0 {
				t.Errorf("INBOX: %d messages, %d unseen; want 3 (flagged \\Deleted \\Seen, not expunged), 0", n, u)
			}
			if action == "move" {
				if n, _ := srv.Status(t, user, "Processed"); n != 3 {
					t.Errorf("Processed has %d messages, want 3", n)
				}
			}
			if srv.Commands("EXPUNGE")+srv.Commands("UID EXPUNGE") != 0 {
				t.Errorf("EXPUNGE sent to a server without UIDPLUS")
			}
			// The server has the flags before the session has its answer and warns.
			eventually(t, "the warning", func() bool { return len(h.sup.Status(context.Background(), mb.Id).GetWarnings()) > 0 })
			st := h.sup.Status(context.Background(), mb.Id)
			if len(st.GetWarnings()) != 1 || !strings.Contains(st.GetWarnings()[0], "UIDPLUS") {
				t.Errorf("warnings = %v", st.GetWarnings())
			}
			if m := c.next(300 * time.Millisecond); m != nil {
				t.Errorf("a message left flagged in the folder came again: %q", m.GetEnvelope().GetSubject())
			}
		})
	}
}

// Folder paths resolve inside the personal namespace: on a server whose folders live under
// "INBOX/" (as Courier's under "INBOX."), move:Processed/Tickets lands in INBOX/Processed/Tickets,
// and a path that already names the namespace is not prefixed twice; the watched folder too.
func TestFoldersResolveInThePersonalNamespace(t *testing.T) {
	srv := newIMAPWith(t, imaptest.Options{NoMove: true, InboxNamespace: true})
	srv.CreateFolder(t, user, "INBOX/Support")
	srv.Append(t, user, "INBOX/Support", mail(1, "m1"))
	h := newHarness(t, srv)
	h.addMailbox(func(m *mailintakev1.Mailbox) {
		m.Folder = "Support"
		moveTo("Processed/Tickets")(m)
	})
	c := h.consume(10, 0)
	c.ack(c.take(1)...)
	eventually(t, "the move", func() bool { n, _ := srv.Status(t, user, "INBOX/Support"); return n == 0 })
	if n, _ := srv.Status(t, user, "INBOX/Processed/Tickets"); n != 1 {
		t.Errorf("INBOX/Processed/Tickets has %d messages, want 1", n)
	}

	srv.Append(t, user, "INBOX", mail(2, "m2"))
	h2 := newHarness(t, srv)
	h2.addMailbox(moveTo("INBOX/Archive"))
	c2 := h2.consume(10, 0)
	c2.ack(c2.take(1)...)
	eventually(t, "the second move", func() bool { n, _ := srv.Status(t, user, "INBOX"); return n == 0 })
	if n, _ := srv.Status(t, user, "INBOX/Archive"); n != 1 {
		t.Errorf("INBOX/Archive has %d messages, want 1", n)
	}
}

// Many mailboxes receiving large mail at the same moment hold no more body bytes at once than
// the global budget, and every message is delivered.
func TestBodyBudgetBoundsLargeMailAcrossSessions(t *testing.T) {
	srv := newIMAPWith(t, imaptest.Options{})
	const mailboxes, size = 8, 1 << 20
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\r\n", size/76)
	opts := fastOpts
	opts.BodyBudget = 3 * size // room for about three bodies
	h := newHarnessWith(t, srv, opts)
	for i := range mailboxes {
		u := fmt.Sprintf("big%d@example.com", i)
		srv.AddUser(t, u, password)
		srv.Append(t, u, "INBOX", []byte(fmt.Sprintf("From: c@example.net\r\nTo: %s\r\nSubject: big %d\r\n\r\n%s", u, i, body)))
	}
	c := h.consume(100, 0)
	for i := range mailboxes {
		h.addMailbox(func(m *mailintakev1.Mailbox) { m.Username = fmt.Sprintf("big%d@example.com", i) })
	}
	msgs := c.take(mailboxes)
	c.ack(msgs...)
	now, peak, budget := h.sup.BodyBytes()
	t.Logf("body bytes: peak %d of a budget of %d (%d mailboxes, %d bytes each)", peak, budget, mailboxes, size)
	if peak > budget || peak < size {
		t.Errorf("peak body bytes %d, budget %d", peak, budget)
	}
	eventually(t, "the bodies to be released", func() bool { now, _, _ = h.sup.BodyBytes(); return now == 0 })
}
