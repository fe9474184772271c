package session_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/metrics"
	"github.com/mailintake/mailintake/internal/pluginhost"
	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/session"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/sqlite"
	"github.com/mailintake/mailintake/internal/testutil"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

const (
	user     = "support@example.com"
	password = "imap-password-1"
)

// harness is the delivery stack over a real store, real plugins and an in-process IMAP server.
type harness struct {
	t       *testing.T
	imap    *imaptest.Server
	dir     string
	st      *sqlite.Store
	plugins *pluginhost.Host
	broker  *delivery.Broker
	sup     *session.Supervisor
	cancel  context.CancelFunc
	opts    session.Options
}

func newHarness(t *testing.T, srv *imaptest.Server) *harness {
	t.Helper()
	return newHarnessWith(t, srv, fastOpts)
}

func newHarnessWith(t *testing.T, srv *imaptest.Server, opts session.Options) *harness {
	t.Helper()
	h := &harness{t: t, imap: srv, dir: t.TempDir(), opts: opts}
	h.start()
	t.Cleanup(h.stop)
	return h
}

var fastOpts = session.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	AuthBackoff: time.Hour, PollInterval: 200 * time.Millisecond, CommandTimeout: 10 * time.Second}

// start (re)starts the server side on the same data directory, as a restart would.
func (h *harness) start() {
	ctx := context.Background()
	box, _ := secrets.NewBox(bytes.Repeat([]byte{9}, secrets.KeySize))
	st, err := sqlite.Open(ctx, h.dir, box)
	if err != nil {
		h.t.Fatal(err)
	}
	h.st = st
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("MAILINTAKE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h.plugins = pluginhost.New(pluginhost.Options{Dir: testutil.PluginDir(h.t), State: st, Logger: log})
	h.broker = delivery.New(st)
	h.sup = session.NewSupervisor(st, h.plugins, h.broker, metrics.New(), log, h.opts)
	sctx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	if err := h.sup.Start(sctx); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.sup.Wait()
	h.broker.Close()
	h.plugins.Close()
	h.st.Close()
	h.cancel = nil
}

func (h *harness) restart() {
	h.stop()
	h.start()
}

func (h *harness) addMailbox(edit func(*mailintakev1.Mailbox)) *mailintakev1.Mailbox {
	h.t.Helper()
	return h.addMailboxFull(edit, password)
}

func (h *harness) addMailboxWithPassword(pw string) *mailintakev1.Mailbox {
	h.t.Helper()
	return h.addMailboxFull(nil, pw)
}

func (h *harness) addMailboxFull(edit func(*mailintakev1.Mailbox), pw string) *mailintakev1.Mailbox {
	h.t.Helper()
	now := timestamppb.Now()
	mb := &mailintakev1.Mailbox{
		Id: fmt.Sprintf("mb-%d", time.Now().UnixNano()), Tenant: "acme", Enabled: true,
		Protocol: mailintakev1.Protocol_PROTOCOL_IMAP, Host: h.imap.Host, Port: uint32(h.imap.Port),
		Security: mailintakev1.Security_SECURITY_NONE, Username: user, AuthProvider: "basic",
		Folder: "INBOX", AfterAck: &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MARK_SEEN},
		StartFrom: mailintakev1.StartFrom_START_FROM_ALL, CreateTime: now, UpdateTime: now,
	}
	if edit != nil {
		edit(mb)
	}
	sec := map[string]secrets.Secret{"password": secrets.Secret(pw)}
	if err := h.st.CreateMailbox(context.Background(), &store.Mailbox{Spec: mb, Secrets: sec}); err != nil {
		h.t.Fatal(err)
	}
	h.sup.Reload(context.Background(), mb.Id)
	return mb
}

// consumer reads a stream.
type consumer struct {
	h *harness
	s *delivery.Stream
}

func (h *harness) consume(maxInFlight int, deadline time.Duration) *consumer {
	if deadline == 0 {
		deadline = time.Hour
	}
	return &consumer{h: h, s: h.broker.Open(func(string, string) bool { return true }, maxInFlight, deadline)}
}

func (c *consumer) close() { c.h.broker.CloseStream(c.s) }

// next waits for a message.
func (c *consumer) next(timeout time.Duration) *mailintakev1.Message {
	c.h.t.Helper()
	select {
	case m := <-c.s.Out():
		return m
	case <-time.After(timeout):
		return nil
	}
}

// take reads n messages or fails.
func (c *consumer) take(n int) []*mailintakev1.Message {
	c.h.t.Helper()
	var out []*mailintakev1.Message
	for len(out) < n {
		m := c.next(10 * time.Second)
		if m == nil {
			c.h.t.Fatalf("got %d messages, want %d (status: %v)", len(out), n, c.h.statusAll())
		}
		out = append(out, m)
	}
	return out
}

func (c *consumer) ack(msgs ...*mailintakev1.Message) {
	c.h.t.Helper()
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.GetId())
	}
	res, err := c.h.broker.Ack(context.Background(), ids, func(string) bool { return true })
	if err != nil || len(res.Unknown) != 0 {
		c.h.t.Fatalf("ack: %v, unknown %v", err, res.Unknown)
	}
}

func (h *harness) statusAll() string {
	var b strings.Builder
	mbs, _ := h.st.ListMailboxes(context.Background(), store.MailboxQuery{})
	for _, mb := range mbs {
		st := h.sup.Status(context.Background(), mb.Spec.Id)
		fmt.Fprintf(&b, "%s: %v %q %q; ", mb.Spec.Id, st.GetState(), st.GetMessage(), st.GetLastError())
	}
	return b.String()
}

func mail(n int, subject string) []byte {
	return []byte(fmt.Sprintf("From: Customer %d <c%d@example.net>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <m%d-%d@example.net>\r\nDate: Tue, 03 Mar 2026 10:15:00 +0100\r\n\r\nBody of message %d.\r\n",
		n, n, user, subject, n, time.Now().UnixNano(), n))
}

func subjects(msgs []*mailintakev1.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.GetEnvelope().GetSubject())
	}
	slices.Sort(out)
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newIMAP(t *testing.T) *imaptest.Server {
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, user, password)
	return srv
}

func TestDeliversBackfillThenNewMailAndMarksSeen(t *testing.T) {
	srv := newIMAP(t)
	for i := 1; i <= 3; i++ {
		srv.Append(t, user, "INBOX", mail(i, fmt.Sprintf("old %d", i)))
	}
	h := newHarness(t, srv)
	mb := h.addMailbox(nil)
	c := h.consume(10, 0)
	msgs := c.take(3)
	if got := subjects(msgs); !slices.Equal(got, []string{"old 1", "old 2", "old 3"}) {
		t.Fatalf("subjects = %v", got)
	}
	for _, m := range msgs {
		if !m.GetBackfill() || m.GetMailboxId() != mb.Id || m.GetTenant() != "acme" || m.GetDeliveryAttempt() != 1 ||
			m.GetId() != fmt.Sprintf("%s:%d:%d", mb.Id, m.GetUidValidity(), m.GetUid()) || len(m.GetSha256()) != 64 {
			t.Errorf("message fields: %v", m)
		}
	}
	// Not acknowledged yet: nothing changed on the server (BODY.PEEK[]).
	if _, unseen := srv.Status(t, user, "INBOX"); unseen != 3 {
		t.Errorf("unseen before ack = %d, want 3", unseen)
	}
	c.ack(msgs...)
	eventually(t, "MARK_SEEN after ack", func() bool { _, u := srv.Status(t, user, "INBOX"); return u == 0 })

	// New mail arrives through IDLE, not as backfill.
	start := time.Now()
	srv.Append(t, user, "INBOX", mail(4, "new 4"))
	m := c.take(1)[0]
	if m.GetEnvelope().GetSubject() != "new 4" || m.GetBackfill() {
		t.Errorf("new message = %q backfill %v", m.GetEnvelope().GetSubject(), m.GetBackfill())
	}
	t.Logf("push latency with IDLE: %s", time.Since(start))
	c.ack(m)
	if nothing := c.next(300 * time.Millisecond); nothing != nil {
		t.Errorf("an acknowledged message came again: %q", nothing.GetEnvelope().GetSubject())
	}
	eventually(t, "idle", func() bool {
		return h.sup.Status(context.Background(), mb.Id).GetState() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE
	})
	st := h.sup.Status(context.Background(), mb.Id)
	if st.GetLastSyncTime() == nil ||
		st.GetCounts().GetDelivered() != 4 || st.GetCounts().GetAcknowledged() != 4 || st.GetCounts().GetPending() != 0 {
		t.Errorf("status = %v", st)
	}
	evs, _ := h.st.ListEvents(context.Background(), mb.Id, 0, 100)
	kinds := map[string]bool{}
	for _, e := range evs {
		kinds[e.Kind] = true
	}
	for _, k := range []string{"connect", "sync", "deliver", "ack"} {
		if !kinds[k] {
			t.Errorf("event log lacks %q: %v", k, evs)
		}
	}
}

func TestStartFromNewAndUnseen(t *testing.T) {
	srv := newIMAP(t)
	srv.Append(t, user, "INBOX", mail(1, "old seen"), imap.FlagSeen)
	srv.Append(t, user, "INBOX", mail(2, "old unseen"))
	h := newHarness(t, srv)
	h.addMailbox(func(m *mailintakev1.Mailbox) { m.StartFrom = mailintakev1.StartFrom_START_FROM_NEW })
	c := h.consume(10, 0)
	if m := c.next(500 * time.Millisecond); m != nil {
		t.Fatalf("start_from NEW delivered old mail: %q", m.GetEnvelope().GetSubject())
	}
	srv.Append(t, user, "INBOX", mail(3, "brand new"))
	if m := c.take(1)[0]; m.GetEnvelope().GetSubject() != "brand new" || m.GetBackfill() {
		t.Errorf("got %q backfill %v", m.GetEnvelope().GetSubject(), m.GetBackfill())
	}
	c.close()

	srv2 := newIMAP(t)
	srv2.Append(t, user, "INBOX", mail(1, "old seen"), imap.FlagSeen)
	srv2.Append(t, user, "INBOX", mail(2, "old unseen"))
	h2 := newHarness(t, srv2)
	h2.addMailbox(func(m *mailintakev1.Mailbox) { m.StartFrom = mailintakev1.StartFrom_START_FROM_UNSEEN })
	c2 := h2.consume(10, 0)
	got := c2.take(1)
	if got[0].GetEnvelope().GetSubject() != "old unseen" || !got[0].GetBackfill() {
		t.Errorf("UNSEEN delivered %q backfill %v", got[0].GetEnvelope().GetSubject(), got[0].GetBackfill())
	}
	if m := c2.next(300 * time.Millisecond); m != nil {
		t.Errorf("UNSEEN delivered a seen message: %q", m.GetEnvelope().GetSubject())
	}
}

func TestRedeliveryOnStreamEndDeadlineAndRestart(t *testing.T) {
	srv := newIMAP(t)
	for i := 1; i <= 5; i++ {
		srv.Append(t, user, "INBOX", mail(i, fmt.Sprintf("m%d", i)))
	}
	h := newHarness(t, srv)
	h.addMailbox(func(m *mailintakev1.Mailbox) {
		m.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}
	})
	c := h.consume(10, 0)
	first := c.take(5)
	c.ack(first[0], first[1])
	c.close() // three in flight return

	c2 := h.consume(10, 0)
	again := c2.take(3)
	if got := subjects(again); !slices.Equal(got, subjects(first[2:])) {
		t.Fatalf("redelivered %v, want %v", got, subjects(first[2:]))
	}
	for _, m := range again {
		if m.GetDeliveryAttempt() != 2 || m.GetId() == "" {
			t.Errorf("redelivery attempt = %d", m.GetDeliveryAttempt())
		}
	}
	c2.ack(again[0])
	c2.close()

	// A restart: what was acknowledged stays acknowledged, the rest comes again.
	h.restart()
	c3 := h.consume(10, 0)
	after := c3.take(2)
	if got := subjects(after); !slices.Equal(got, subjects(again[1:])) {
		t.Fatalf("after restart %v, want %v", got, subjects(again[1:]))
	}
	if m := c3.next(300 * time.Millisecond); m != nil {
		t.Errorf("an acknowledged message came back after restart: %q", m.GetEnvelope().GetSubject())
	}
	// Ack deadline: a message not acknowledged in time goes to another consumer.
	c3.close()
	slow := h.consume(1, 300*time.Millisecond)
	m := slow.take(1)[0]
	other := h.consume(10, 0)
	again2 := other.take(2)
	found := false
	for _, x := range again2 {
		found = found || x.GetId() == m.GetId()
	}
	if !found {
		t.Errorf("the expired message %s was not delivered to the other consumer (%v)", m.GetId(), subjects(again2))
	}
	// A late ack of the expired delivery still counts.
	slow.ack(m)
}

func TestAfterAckActions(t *testing.T) {
	for _, c := range []struct {
		name   string
		action *mailintakev1.AfterAck
		check  func(t *testing.T, srv *imaptest.Server)
	}{
		{"move", &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MOVE, Folder: "Processed"}, func(t *testing.T, srv *imaptest.Server) {
			eventually(t, "move", func() bool { n, _ := srv.Status(t, user, "INBOX"); return n == 0 })
			if n, _ := srv.Status(t, user, "Processed"); n != 2 {
				t.Errorf("Processed has %d messages, want 2", n)
			}
		}},
		{"delete", &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE}, func(t *testing.T, srv *imaptest.Server) {
			eventually(t, "delete", func() bool { n, _ := srv.Status(t, user, "INBOX"); return n == 0 })
		}},
		{"keep", &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}, func(t *testing.T, srv *imaptest.Server) {
			time.Sleep(300 * time.Millisecond)
			if n, u := srv.Status(t, user, "INBOX"); n != 2 || u != 2 {
				t.Errorf("KEEP changed the folder: %d messages, %d unseen", n, u)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := newIMAP(t)
			srv.Append(t, user, "INBOX", mail(1, "a"))
			srv.Append(t, user, "INBOX", mail(2, "b"))
			h := newHarness(t, srv)
			h.addMailbox(func(m *mailintakev1.Mailbox) { m.AfterAck = c.action })
			cons := h.consume(10, 0)
			cons.ack(cons.take(2)...)
			c.check(t, srv)
			if m := cons.next(300 * time.Millisecond); m != nil {
				t.Errorf("a message came again after %s: %q", c.name, m.GetEnvelope().GetSubject())
			}
		})
	}
}

func TestMemoryBoundedByMaxInFlight(t *testing.T) {
	srv := newIMAP(t)
	const waiting = 10000
	for i := range waiting {
		srv.Append(t, user, "INBOX", mail(i, fmt.Sprintf("bulk %d", i)))
	}
	h := newHarness(t, srv)
	h.addMailbox(nil)
	const maxInFlight = 4
	c := h.consume(maxInFlight, 0)
	c.take(maxInFlight)
	time.Sleep(time.Second)
	// The session fetched what the consumer can hold, plus at most one it keeps ready.
	if n := srv.BodiesAsked.Load(); n > maxInFlight+1 {
		t.Errorf("the session fetched %d message bodies for a consumer that holds %d", n, maxInFlight)
	}
	if m := c.next(200 * time.Millisecond); m != nil {
		t.Errorf("a consumer at its in-flight limit received another message")
	}
}

// Bodies are fetched in batches (one UID FETCH for many messages) and parsed in parallel, yet
// delivered in UID order; a message the server cannot read fails only itself: the rest of its
// batch is delivered and it is quarantined with the server's answer.
func TestBatchedFetchKeepsOrderAndQuarantinesOnlyTheUnreadable(t *testing.T) {
	srv := newIMAP(t)
	const n = 80
	for i := 1; i <= n; i++ {
		raw := mail(i, fmt.Sprintf("batch %02d", i))
		if i%7 == 0 {
			// Some larger messages with an attachment, so parse times differ between workers.
			raw = append(raw[:len(raw)-2], []byte("\r\n--\r\n"+strings.Repeat("attachment line\r\n", 5000))...)
		}
		srv.Append(t, user, "INBOX", raw)
	}
	srv.MakeUnreadable(17)
	h := newHarness(t, srv)
	mb := h.addMailbox(nil)
	c := h.consume(1000, 0)
	got := c.take(n - 1)
	for i, m := range got {
		if i > 0 && m.GetUid() <= got[i-1].GetUid() {
			t.Fatalf("UID %d delivered after UID %d: not in order", m.GetUid(), got[i-1].GetUid())
		}
		if m.GetUid() == 17 {
			t.Fatalf("the unreadable message was delivered")
		}
		if want := fmt.Sprintf("batch %02d", m.GetUid()); m.GetEnvelope().GetSubject() != want {
			t.Fatalf("UID %d carries %q, want %q", m.GetUid(), m.GetEnvelope().GetSubject(), want)
		}
	}
	if f := srv.BodyFetches.Load(); f > 10 {
		t.Errorf("%d FETCH commands for %d messages: not batched", f, n)
	}
	var qs []*store.Quarantined
	eventually(t, "the unreadable message quarantined", func() bool {
		qs, _ = h.st.ListQuarantine(context.Background(), mb.Id)
		return len(qs) == 1
	})
	if qs[0].UID != 17 || !strings.Contains(qs[0].Reason, "Internal error") {
		t.Errorf("quarantined %+v; want UID 17 with the server's answer", qs[0])
	}
	c.ack(got...)
	eventually(t, "all but the unreadable seen", func() bool { _, u := srv.Status(t, user, "INBOX"); return u == 1 })
}

// Sessions sharing a stream fetch only the slots they reserved on it: together, no more
// messages than the consumer can take, not that many each.
func TestSessionsSharingAStreamFetchOnlyItsFreeSlots(t *testing.T) {
	srv := newIMAP(t)
	const boxes, each, maxInFlight = 6, 100, 8
	users := make([]string, boxes)
	for b := range boxes {
		users[b] = fmt.Sprintf("shared%d@example.com", b)
		srv.AddUser(t, users[b], password)
		for i := range each {
			srv.Append(t, users[b], "INBOX", mail(i, fmt.Sprintf("box %d message %d", b, i)))
		}
	}
	h := newHarness(t, srv)
	var ids []string
	for b := range boxes {
		ids = append(ids, h.addMailbox(func(m *mailintakev1.Mailbox) { m.Username = users[b] }).Id)
	}
	// Every session waits for a consumer; the stream's slots then appear to all at once.
	eventually(t, "every session waiting for a consumer", func() bool {
		for _, id := range ids {
			if h.sup.Status(context.Background(), id).GetMessage() != "waiting for a consumer to take more messages" {
				return false
			}
		}
		return true
	})
	c := h.consume(maxInFlight, 0)
	first := c.take(maxInFlight)
	time.Sleep(time.Second)
	if n := srv.BodiesAsked.Load(); n > maxInFlight+1 {
		t.Errorf("%d sessions sharing a stream of %d slots fetched %d message bodies", boxes, maxInFlight, n)
	}
	// Acknowledging frees slots: the mailboxes share them and everything arrives.
	got := map[string]bool{}
	for _, m := range first {
		got[m.GetEnvelope().GetSubject()] = true
	}
	c.ack(first...)
	for len(got) < boxes*each {
		m := c.next(10 * time.Second)
		if m == nil {
			t.Fatalf("got %d of %d messages (status: %v)", len(got), boxes*each, h.statusAll())
		}
		got[m.GetEnvelope().GetSubject()] = true
		c.ack(m)
	}
}

func TestQuarantineOversizedReplayAndRelease(t *testing.T) {
	srv := newIMAP(t)
	big := append(mail(1, "huge"), bytes.Repeat([]byte("x"), 5000)...)
	srv.Append(t, user, "INBOX", big)
	srv.Append(t, user, "INBOX", mail(2, "small"))
	srv.Append(t, user, "INBOX", append(mail(3, "huge too"), bytes.Repeat([]byte("y"), 5000)...))
	h := newHarness(t, srv)
	mb := h.addMailbox(func(m *mailintakev1.Mailbox) { m.Limits = &mailintakev1.MailboxLimits{MaxMessageBytes: 2000} })
	c := h.consume(10, 0)
	m := c.take(1)[0]
	if m.GetEnvelope().GetSubject() != "small" {
		t.Fatalf("got %q, want the small message (the big ones quarantined, not blocking)", m.GetEnvelope().GetSubject())
	}
	c.ack(m)
	var qs []*store.Quarantined
	eventually(t, "two quarantined", func() bool { qs, _ = h.st.ListQuarantine(context.Background(), mb.Id); return len(qs) == 2 })
	if !strings.Contains(qs[0].Reason, "over the mailbox's limit") || !strings.Contains(qs[0].Headers, "Subject: huge") {
		t.Errorf("quarantine entry = %+v", qs[0])
	}
	if st := h.sup.Status(context.Background(), mb.Id); st.GetCounts().GetQuarantined() != 2 {
		t.Errorf("status counts = %v", st.GetCounts())
	}
	// Replay: delivered as its header with a problem.
	if err := h.st.SetQuarantineState(context.Background(), qs[0].ID, store.QuarantineReplay); err != nil {
		t.Fatal(err)
	}
	h.sup.Wake(mb.Id)
	r := c.take(1)[0]
	if r.GetEnvelope().GetSubject() != "huge" || len(r.GetProblems()) == 0 || r.GetRawSize() < 5000 {
		t.Errorf("replayed = %q problems %v size %d", r.GetEnvelope().GetSubject(), r.GetProblems(), r.GetRawSize())
	}
	c.ack(r)
	// Release: the other one is acknowledged without delivery; MARK_SEEN applies.
	if err := h.st.RecordAcks(context.Background(), map[string][]store.Ack{mb.Id: {{UIDValidity: qs[1].UIDValidity, UID: qs[1].UID, AckTime: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	h.st.DeleteQuarantined(context.Background(), qs[1].ID)
	h.sup.Wake(mb.Id)
	eventually(t, "all seen", func() bool { _, u := srv.Status(t, user, "INBOX"); return u == 0 })
	// The replayed entry is deleted once its delivery is offered, which may come after the flags.
	eventually(t, "the quarantine emptied", func() bool {
		left, _ := h.st.ListQuarantine(context.Background(), mb.Id)
		return len(left) == 0
	})
}

func TestUIDValidityChangeResyncsWithoutDuplicates(t *testing.T) {
	srv := newIMAP(t)
	srv.CreateFolder(t, user, "Support")
	raws := [][]byte{mail(1, "one"), mail(2, "two"), mail(3, "three")}
	for _, r := range raws {
		srv.Append(t, user, "Support", r)
	}
	h := newHarness(t, srv)
	h.addMailbox(func(m *mailintakev1.Mailbox) {
		m.Folder = "Support"
		m.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}
	})
	c := h.consume(10, 0)
	got := c.take(3)
	var oldValidity uint32
	for _, m := range got {
		oldValidity = m.GetUidValidity()
		if m.GetEnvelope().GetSubject() != "three" {
			c.ack(m)
		}
	}
	c.close()
	h.stop()

	// The folder is recreated with the same messages (new UIDVALIDITY) and one new message.
	srv.DeleteFolder(t, user, "Support")
	srv.CreateFolder(t, user, "Support")
	for _, r := range raws {
		srv.Append(t, user, "Support", r)
	}
	srv.Append(t, user, "Support", mail(4, "four"))
	h.start()
	c2 := h.consume(10, 0)
	after := c2.take(2)
	if s := subjects(after); !slices.Equal(s, []string{"four", "three"}) {
		t.Fatalf("after the UIDVALIDITY change got %v, want [four three] (acknowledged ones not again, nothing skipped)", s)
	}
	if after[0].GetUidValidity() == oldValidity {
		t.Errorf("UIDVALIDITY did not change in the test (%d)", oldValidity)
	}
	if m := c2.next(300 * time.Millisecond); m != nil {
		t.Errorf("an acknowledged message came again: %q", m.GetEnvelope().GetSubject())
	}
}

func TestAuthFailureSetsStatusWithoutLooping(t *testing.T) {
	srv := newIMAP(t)
	h := newHarness(t, srv)
	mb := h.addMailboxWithPassword("wrong-password")
	eventually(t, "auth_failed", func() bool {
		return h.sup.Status(context.Background(), mb.Id).GetState() == mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED
	})
	st := h.sup.Status(context.Background(), mb.Id)
	if st.GetAuthFailure().GetAction() == "" || st.GetNextRetryTime() == nil || st.GetLastError() == "" {
		t.Errorf("status = %v", st)
	}
	time.Sleep(500 * time.Millisecond)
	// One login with the cached credential, one with a fresh one; then it waits (an hour here).
	if n := srv.FailedLogins.Load(); n != 2 {
		t.Errorf("failed logins = %d, want 2 (no tight retry loop)", n)
	}
}

func TestReconnectsAfterConnectionLoss(t *testing.T) {
	srv := newIMAP(t)
	srv.Append(t, user, "INBOX", mail(1, "before"))
	h := newHarness(t, srv)
	mb := h.addMailbox(nil)
	c := h.consume(10, 0)
	c.ack(c.take(1)...)
	srv.Stop()
	eventually(t, "error state", func() bool {
		return h.sup.Status(context.Background(), mb.Id).GetState() == mailintakev1.MailboxState_MAILBOX_STATE_ERROR
	})
	srv.Restart(t)
	srv.Append(t, user, "INBOX", mail(2, "after"))
	if m := c.take(1)[0]; m.GetEnvelope().GetSubject() != "after" {
		t.Errorf("after reconnect got %q", m.GetEnvelope().GetSubject())
	}
	if m := c.next(300 * time.Millisecond); m != nil {
		t.Errorf("an acknowledged message came again after the reconnect: %q", m.GetEnvelope().GetSubject())
	}
}

// While a consumer is behind and acknowledges in small batches, the rounds its acknowledgements
// wake deliver from the last search's list instead of searching the folder every time, and the
// session waits for them without IDLE; every message is still delivered once, in order, and
// mail that arrives meanwhile follows.
func TestBacklogRoundsDoNotSearchPerAck(t *testing.T) {
	srv := newIMAP(t)
	const n = 120
	for i := range n {
		srv.Append(t, user, "INBOX", mail(i, fmt.Sprintf("backlog %d", i)))
	}
	h := newHarness(t, srv)
	h.addMailbox(func(mb *mailintakev1.Mailbox) {
		mb.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}
	})
	c := h.consume(4, 0)
	var subjects []string
	searches0 := srv.Commands("UID SEARCH") + srv.Commands("SEARCH")
	idles0 := srv.Commands("IDLE")
	for len(subjects) < n+1 {
		if len(subjects) == n/2 {
			srv.Append(t, user, "INBOX", mail(n, "arrived meanwhile"))
		}
		msgs := c.take(min(2, n+1-len(subjects))) // acknowledged two at a time: a round per pair
		for _, m := range msgs {
			subjects = append(subjects, m.GetEnvelope().GetSubject())
		}
		c.ack(msgs...)
	}
	for i, s := range subjects[:n] {
		if want := fmt.Sprintf("backlog %d", i); s != want {
			t.Fatalf("message %d: %q, want %q", i, s, want)
		}
	}
	if subjects[n] != "arrived meanwhile" {
		t.Errorf("last: %q", subjects[n])
	}
	if m := c.next(500 * time.Millisecond); m != nil {
		t.Errorf("delivered again: %q", m.GetEnvelope().GetSubject())
	}
	searches := srv.Commands("UID SEARCH") + srv.Commands("SEARCH") - searches0
	if searches > n/2/4 {
		t.Errorf("%d searches for %d acknowledgement batches", searches, n/2)
	}
	// Nor an IDLE (and its DONE) per batch: a session waiting for consumer slots waits for the
	// broker alone.
	idles := srv.Commands("IDLE") - idles0
	if idles > n/2/4 {
		t.Errorf("%d IDLE commands for %d acknowledgement batches", idles, n/2)
	}
	t.Logf("%d searches and %d IDLE commands for %d acknowledgement batches", searches, idles, (n+1)/2)
}
