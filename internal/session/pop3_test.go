package session_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/fakes/pop3test"
	"github.com/mailintake/mailintake/internal/imapconn"
	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/session"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/testutil"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

func newPOP3(t *testing.T) *pop3test.Server {
	srv := pop3test.Start(t, pop3test.Options{})
	srv.AddUser(user, password)
	return srv
}

// addPOP3Mailbox adds a POP3 mailbox on srv (plaintext, as asked, polled every 100 ms).
func (h *harness) addPOP3Mailbox(srv *pop3test.Server, edit func(*mailintakev1.Mailbox)) *mailintakev1.Mailbox {
	h.t.Helper()
	now := timestamppb.Now()
	mb := &mailintakev1.Mailbox{
		Id: fmt.Sprintf("pop-%d", time.Now().UnixNano()), Tenant: "acme", Enabled: true,
		Protocol: mailintakev1.Protocol_PROTOCOL_POP3, Host: srv.Host, Port: uint32(srv.Port),
		Security: mailintakev1.Security_SECURITY_NONE, Username: user, AuthProvider: "basic",
		AfterAck:  &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE},
		StartFrom: mailintakev1.StartFrom_START_FROM_ALL, PollInterval: durationpb.New(100 * time.Millisecond),
		CreateTime: now, UpdateTime: now,
	}
	if edit != nil {
		edit(mb)
	}
	sec := map[string]secrets.Secret{"password": secrets.Secret(password)}
	if err := h.st.CreateMailbox(context.Background(), &store.Mailbox{Spec: mb, Secrets: sec}); err != nil {
		h.t.Fatal(err)
	}
	h.sup.Reload(context.Background(), mb.Id)
	return mb
}

func onServer(srv *pop3test.Server) []string {
	var out []string
	for _, m := range srv.Messages(user) {
		out = append(out, m.UID)
	}
	return out
}

// A POP3 mailbox delivers what the maildrop holds (backfill), then new mail at the next poll;
// an acknowledged message is deleted by the next session's DELE and clean QUIT, and an
// unacknowledged one stays on the server.
func TestPOP3DeliversAndDeletesAcknowledged(t *testing.T) {
	srv := newPOP3(t)
	u1 := srv.Add(user, mail(1, "old 1"))
	u2 := srv.Add(user, mail(2, "old 2"))
	h := newHarness(t, nil)
	mb := h.addPOP3Mailbox(srv, nil)
	c := h.consume(10, 0)
	msgs := c.take(2)
	if got := subjects(msgs); !slices.Equal(got, []string{"old 1", "old 2"}) {
		t.Fatalf("subjects = %v", got)
	}
	for _, m := range msgs {
		if !m.GetBackfill() || m.GetMailboxId() != mb.Id || m.GetUidValidity() != store.POP3UIDValidity ||
			m.GetId() != fmt.Sprintf("%s:%d:%d", mb.Id, store.POP3UIDValidity, m.GetUid()) || len(m.GetSha256()) != 64 {
			t.Errorf("message fields: %v", m)
		}
	}
	if got := onServer(srv); !slices.Equal(got, []string{u1, u2}) {
		t.Fatalf("before the ack the server holds %v", got)
	}
	first := msgs[0]
	if first.GetEnvelope().GetSubject() != "old 1" {
		first = msgs[1]
	}
	c.ack(first)
	eventually(t, "the acknowledged message deleted", func() bool { return slices.Equal(onServer(srv), []string{u2}) })

	srv.Add(user, mail(3, "new 3"))
	m := c.take(1)[0]
	if m.GetEnvelope().GetSubject() != "new 3" || m.GetBackfill() {
		t.Errorf("new message = %q backfill %v", m.GetEnvelope().GetSubject(), m.GetBackfill())
	}
	if m := c.next(500 * time.Millisecond); m != nil {
		t.Errorf("delivered again: %q", m.GetEnvelope().GetSubject())
	}
	st := h.sup.Status(context.Background(), mb.Id)
	if st.GetState() != mailintakev1.MailboxState_MAILBOX_STATE_IDLE || !strings.Contains(st.GetMessage(), "polling every") {
		t.Errorf("status = %v %q", st.GetState(), st.GetMessage())
	}
	evs, _ := h.st.ListEvents(context.Background(), mb.Id, 0, 100)
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind+": "+e.Message)
	}
	if !slices.ContainsFunc(kinds, func(s string) bool { return s == "ack: 1 acknowledged message deleted (UID 1)" }) {
		t.Errorf("events = %q", kinds)
	}
}

// A deletion whose QUIT did not answer is not counted as done: the next session marks it again
// and its clean QUIT deletes it; the message is not delivered again meanwhile.
func TestPOP3DeleteAppliedOnNextCleanQuit(t *testing.T) {
	srv := newPOP3(t)
	srv.Add(user, mail(1, "one"))
	h := newHarness(t, nil)
	mb := h.addPOP3Mailbox(srv, nil)
	c := h.consume(10, 0)
	m := c.take(1)[0]
	srv.Inject(pop3test.Fault{Command: "QUIT", Action: pop3test.Cut, Times: 1})
	updates := srv.Updates.Load()
	c.ack(m)
	eventually(t, "the message deleted by a later clean QUIT", func() bool { return len(onServer(srv)) == 0 })
	if srv.Updates.Load() <= updates {
		t.Error("no clean QUIT counted")
	}
	if m := c.next(300 * time.Millisecond); m != nil {
		t.Errorf("delivered again: %q", m.GetEnvelope().GetSubject())
	}
	acks, err := h.st.UnappliedAcks(context.Background(), mb.Id)
	if err != nil || len(acks) != 0 {
		t.Errorf("unapplied acks after the deletion = %v, %v", acks, err)
	}
}

// With after_ack KEEP the messages stay; across a restart the acknowledged message is not
// delivered again and the other comes again under the same id, even when the server numbers
// the messages differently.
func TestPOP3KeepAndRestart(t *testing.T) {
	srv := pop3test.Start(t, pop3test.Options{RotateEachSession: true})
	srv.AddUser(user, password)
	for i := 1; i <= 3; i++ {
		srv.Add(user, mail(i, fmt.Sprintf("m %d", i)))
	}
	h := newHarness(t, nil)
	h.addPOP3Mailbox(srv, func(mb *mailintakev1.Mailbox) {
		mb.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}
	})
	c := h.consume(10, 0)
	msgs := c.take(3)
	ids := map[string]string{}
	for _, m := range msgs {
		ids[m.GetEnvelope().GetSubject()] = m.GetId()
	}
	var acked []*mailintakev1.Message
	for _, m := range msgs {
		if m.GetEnvelope().GetSubject() != "m 2" {
			acked = append(acked, m)
		}
	}
	c.ack(acked...)
	time.Sleep(300 * time.Millisecond) // a few polls
	if n := len(onServer(srv)); n != 3 {
		t.Errorf("KEEP left %d messages, want 3", n)
	}
	h.restart()
	c = h.consume(10, 0)
	again := c.take(1)[0]
	if again.GetEnvelope().GetSubject() != "m 2" || again.GetId() != ids["m 2"] {
		t.Errorf("after the restart: %q %s, want m 2 %s", again.GetEnvelope().GetSubject(), again.GetId(), ids["m 2"])
	}
	if m := c.next(500 * time.Millisecond); m != nil {
		t.Errorf("an acknowledged message came again: %q", m.GetEnvelope().GetSubject())
	}
}

// A message over the size limit is quarantined by its LIST size, with the header TOP gives,
// without RETR; the others are delivered.
func TestPOP3OversizedQuarantinedWithoutDownload(t *testing.T) {
	srv := newPOP3(t)
	big := append(mail(1, "big"), []byte(strings.Repeat("x", 4000)+"\r\n")...)
	srv.Add(user, big)
	srv.Add(user, mail(2, "small"))
	h := newHarness(t, nil)
	mb := h.addPOP3Mailbox(srv, func(mb *mailintakev1.Mailbox) {
		mb.Limits = &mailintakev1.MailboxLimits{MaxMessageBytes: 1000}
	})
	c := h.consume(10, 0)
	if m := c.take(1)[0]; m.GetEnvelope().GetSubject() != "small" {
		t.Errorf("delivered %q", m.GetEnvelope().GetSubject())
	}
	var qs []*store.Quarantined
	eventually(t, "the quarantine entry", func() bool {
		qs, _ = h.st.ListQuarantine(context.Background(), mb.Id)
		return len(qs) == 1
	})
	if !strings.Contains(qs[0].Headers, "Subject: big") || !strings.Contains(qs[0].Reason, "over the mailbox's limit") || qs[0].Size < 4000 {
		t.Errorf("quarantined: %+v", qs[0])
	}
	if n := srv.Commands("RETR"); n != 1 {
		t.Errorf("RETR sent %d times, want 1 (the small message only)", n)
	}
	if m := c.next(300 * time.Millisecond); m != nil {
		t.Errorf("delivered again: %q", m.GetEnvelope().GetSubject())
	}
}

// start_from NEW delivers only what arrives after the first sync.
func TestPOP3StartFromNew(t *testing.T) {
	srv := newPOP3(t)
	srv.Add(user, mail(1, "old"))
	h := newHarness(t, nil)
	mb := h.addPOP3Mailbox(srv, func(mb *mailintakev1.Mailbox) { mb.StartFrom = mailintakev1.StartFrom_START_FROM_NEW })
	c := h.consume(10, 0)
	eventually(t, "the first sync", func() bool {
		st, _ := h.st.SyncState(context.Background(), mb.Id)
		return st != nil
	})
	srv.Add(user, mail(2, "new"))
	m := c.take(1)[0]
	if m.GetEnvelope().GetSubject() != "new" || m.GetBackfill() {
		t.Errorf("delivered %q backfill %v", m.GetEnvelope().GetSubject(), m.GetBackfill())
	}
	if m := c.next(300 * time.Millisecond); m != nil {
		t.Errorf("delivered %q too", m.GetEnvelope().GetSubject())
	}
}

// Messages sharing a unique-id are not delivered (they cannot be told apart between
// sessions) and the status says why; the others are.
func TestPOP3DuplicateUIDLs(t *testing.T) {
	srv := newPOP3(t)
	srv.AddWithUID(user, "same", mail(1, "dup a"))
	srv.AddWithUID(user, "same", mail(2, "dup b"))
	srv.Add(user, mail(3, "fine"))
	h := newHarness(t, nil)
	mb := h.addPOP3Mailbox(srv, nil)
	c := h.consume(10, 0)
	if m := c.take(1)[0]; m.GetEnvelope().GetSubject() != "fine" {
		t.Errorf("delivered %q", m.GetEnvelope().GetSubject())
	}
	if m := c.next(300 * time.Millisecond); m != nil {
		t.Errorf("delivered %q too", m.GetEnvelope().GetSubject())
	}
	st := h.sup.Status(context.Background(), mb.Id)
	if !slices.ContainsFunc(st.GetWarnings(), func(w string) bool { return strings.Contains(w, "one unique-id to more than one message") }) {
		t.Errorf("warnings = %q", st.GetWarnings())
	}
	// Once the copies are gone the warning is withdrawn, and the message left is delivered.
	if n := srv.Remove(user, "same"); n != 2 {
		t.Fatalf("removed %d", n)
	}
	srv.AddWithUID(user, "same", mail(1, "dup a"))
	if m := c.take(1)[0]; m.GetEnvelope().GetSubject() != "dup a" {
		t.Errorf("delivered %q", m.GetEnvelope().GetSubject())
	}
	eventually(t, "the warning withdrawn", func() bool { return len(h.sup.Status(context.Background(), mb.Id).GetWarnings()) == 0 })
}

// A wrong password is a refused login (AUTH_FAILED) with POP3's explanation, not retried in a
// tight loop.
func TestPOP3RefusedLogin(t *testing.T) {
	srv := pop3test.Start(t, pop3test.Options{})
	srv.AddUser(user, "another password")
	h := newHarness(t, nil)
	mb := h.addPOP3Mailbox(srv, nil)
	var st *mailintakev1.MailboxStatus
	eventually(t, "AUTH_FAILED", func() bool {
		st = h.sup.Status(context.Background(), mb.Id)
		return st.GetState() == mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED
	})
	af := st.GetAuthFailure()
	if af.GetReason() != mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_INVALID_CREDENTIALS || !strings.Contains(af.GetAction(), "username and password") {
		t.Errorf("auth failure = %v", af)
	}
	time.Sleep(300 * time.Millisecond)
	if n := srv.FailedLogins.Load(); n != 2 {
		t.Errorf("%d refused logins, want 2 (one more with a fresh credential, then the auth backoff)", n)
	}
}

func pop3Definition(srv *pop3test.Server) *mailintakev1.Mailbox {
	return &mailintakev1.Mailbox{Tenant: "acme", Protocol: mailintakev1.Protocol_PROTOCOL_POP3, Host: srv.Host, Port: uint32(srv.Port),
		Security: mailintakev1.Security_SECURITY_NONE, Username: user, AuthProvider: "basic",
		AfterAck: &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE}, StartFrom: mailintakev1.StartFrom_START_FROM_ALL}
}

// The connection test of a POP3 mailbox goes through DNS, TCP, the greeting with CAPA, the
// login and STAT, and deletes nothing; a wrong password fails the login step with POP3's
// explanation and skips STAT. The first-sync preview counts the maildrop.
func TestPOP3ConnectionTestAndPreview(t *testing.T) {
	srv := newPOP3(t)
	srv.Add(user, mail(1, "one"))
	srv.Add(user, mail(2, "two"))
	h := newHarness(t, nil)
	ctx := context.Background()
	mb := pop3Definition(srv)
	resp := h.sup.Test(ctx, mb, map[string]string{"password": password})
	results := map[mailintakev1.TestStepKind]*mailintakev1.TestStep{}
	for _, st := range resp.GetSteps() {
		results[st.GetKind()] = st
	}
	if !resp.GetOk() || results[mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT].GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_OK ||
		!strings.Contains(results[mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT].GetDetail(), "2 messages") ||
		!strings.Contains(results[mailintakev1.TestStepKind_TEST_STEP_KIND_GREETING].GetDetail(), "CAPA") ||
		results[mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH].GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_OK {
		t.Errorf("test = %v", resp)
	}
	if len(onServer(srv)) != 2 || srv.Locked(user) {
		t.Errorf("after the test: %d messages, locked %v", len(onServer(srv)), srv.Locked(user))
	}

	bad := h.sup.Test(ctx, mb, map[string]string{"password": "wrong"})
	results = map[mailintakev1.TestStepKind]*mailintakev1.TestStep{}
	for _, st := range bad.GetSteps() {
		results[st.GetKind()] = st
	}
	auth := results[mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH]
	if bad.GetOk() || auth.GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED ||
		auth.GetAuthFailure().GetReason() != mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_INVALID_CREDENTIALS ||
		results[mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT].GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_SKIPPED {
		t.Errorf("test with a wrong password = %v", bad)
	}

	p, err := h.sup.Preview(ctx, mb, map[string]string{"password": password})
	if err != nil || p.GetFolderMessages() != 2 || p.GetWouldDeliver() != 2 || p.GetAlreadySynced() {
		t.Errorf("preview (ALL) = %v, %v", p, err)
	}
	mb.StartFrom = mailintakev1.StartFrom_START_FROM_NEW
	if p, err := h.sup.Preview(ctx, mb, map[string]string{"password": password}); err != nil || p.GetWouldDeliver() != 0 {
		t.Errorf("preview (NEW) = %v, %v", p, err)
	}
	if len(onServer(srv)) != 2 {
		t.Errorf("the preview changed the maildrop: %v", onServer(srv))
	}
}

// A consumer that takes two messages at a time gets the whole maildrop, in order of arrival,
// each message once, as its acknowledgements free slots.
func TestPOP3DeliversWithinDemand(t *testing.T) {
	srv := newPOP3(t)
	for i := 1; i <= 7; i++ {
		srv.Add(user, mail(i, fmt.Sprintf("m%d", i)))
	}
	h := newHarness(t, nil)
	mb := h.addPOP3Mailbox(srv, nil)
	c := h.consume(2, 0)
	var got []string
	for len(got) < 7 {
		m := c.next(10 * time.Second)
		if m == nil {
			t.Fatalf("got %v (status %v)", got, h.statusAll())
		}
		got = append(got, m.GetEnvelope().GetSubject())
		c.ack(m)
	}
	if want := []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7"}; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	eventually(t, "every message deleted", func() bool { return len(onServer(srv)) == 0 })
	if m := c.next(300 * time.Millisecond); m != nil {
		t.Errorf("delivered again: %q", m.GetEnvelope().GetSubject())
	}
	st, _ := h.st.SyncState(context.Background(), mb.Id)
	if st.AckedThrough != 7 {
		t.Errorf("acked_through = %d, want 7", st.AckedThrough)
	}
}

// A POP3 message's raw bytes are fetched by its id (its unique-id from the checkpoint, RETR in
// a session of its own that deletes nothing); a message gone from the server is ErrGone.
func TestPOP3StreamRaw(t *testing.T) {
	srv := newPOP3(t)
	uid := srv.Add(user, mail(1, "raw"))
	srv.Add(user, mail(2, "other"))
	h := newHarness(t, nil)
	mb := h.addPOP3Mailbox(srv, func(mb *mailintakev1.Mailbox) {
		mb.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}
	})
	c := h.consume(10, 0)
	var m *mailintakev1.Message
	for _, got := range c.take(2) {
		if got.GetEnvelope().GetSubject() == "raw" {
			m = got
		}
	}
	ctx := context.Background()
	stored, err := h.st.GetMailbox(ctx, mb.Id)
	if err != nil {
		t.Fatal(err)
	}
	key, err := delivery.ParseKey(m.GetId())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := h.sup.StreamRaw(ctx, stored, key, &buf)
	if err != nil || n != int64(buf.Len()) || !bytes.Equal(buf.Bytes(), srv.Messages(user)[0].Raw) {
		t.Fatalf("StreamRaw = %d, %v: %q", n, err, buf.String())
	}
	if len(onServer(srv)) != 2 {
		t.Errorf("StreamRaw changed the maildrop: %v", onServer(srv))
	}
	srv.Remove(user, uid)
	if _, err := h.sup.StreamRaw(ctx, stored, key, io.Discard); !errors.Is(err, imapconn.ErrGone) {
		t.Errorf("StreamRaw of a message gone = %v, want ErrGone", err)
	}
	key.UID = 99
	if _, err := h.sup.StreamRaw(ctx, stored, key, io.Discard); !errors.Is(err, imapconn.ErrGone) {
		t.Errorf("StreamRaw of an unknown UID = %v, want ErrGone", err)
	}
}

// A DELE the server refuses leaves the message acknowledged and on the server: the mailbox is
// AFTER_ACK_FAILING with the server's words, delivery goes on, and once the server accepts the
// deletion the state clears.
func TestPOP3DeleteRefused(t *testing.T) {
	srv := newPOP3(t)
	srv.Add(user, mail(1, "one"))
	h := newHarness(t, nil)
	mb := h.addPOP3Mailbox(srv, nil)
	c := h.consume(10, 0)
	m := c.take(1)[0]
	srv.Inject(pop3test.Fault{Command: "DELE", Action: pop3test.Refuse, Reply: "-ERR [SYS/PERM] maildrop is read-only"})
	c.ack(m)
	var st *mailintakev1.MailboxStatus
	eventually(t, "AFTER_ACK_FAILING", func() bool {
		st = h.sup.Status(context.Background(), mb.Id)
		return st.GetState() == mailintakev1.MailboxState_MAILBOX_STATE_AFTER_ACK_FAILING
	})
	if !strings.Contains(st.GetLastError(), "read-only") || !strings.Contains(st.GetMessage(), "refuses to delete") {
		t.Errorf("status = %q %q", st.GetMessage(), st.GetLastError())
	}
	srv.Add(user, mail(2, "two"))
	if m := c.take(1)[0]; m.GetEnvelope().GetSubject() != "two" {
		t.Errorf("delivered %q", m.GetEnvelope().GetSubject())
	}
	if len(onServer(srv)) != 2 {
		t.Errorf("server holds %v", onServer(srv))
	}
	srv.ClearFaults()
	eventually(t, "the deletion done", func() bool { return len(onServer(srv)) == 1 })
	eventually(t, "the state cleared", func() bool {
		return h.sup.Status(context.Background(), mb.Id).GetState() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE
	})
}

// A connection cut in the middle of RETR, and garbage instead of the UIDL listing, cost a
// reconnection each: every message is delivered once, and nothing is deleted before its ack.
func TestPOP3CutMidRETRAndGarbage(t *testing.T) {
	srv := newPOP3(t)
	for i := 1; i <= 3; i++ {
		srv.Add(user, mail(i, fmt.Sprintf("m%d", i)))
	}
	srv.Inject(pop3test.Fault{Command: "RETR", Action: pop3test.CutMidBody, Times: 1})
	srv.Inject(pop3test.Fault{Command: "UIDL", Action: pop3test.Garbage, Reply: "\x00\x01 not a POP3 answer\r\n", Times: 1})
	h := newHarness(t, nil)
	mb := h.addPOP3Mailbox(srv, nil)
	c := h.consume(10, 0)
	msgs := c.take(3)
	if got := subjects(msgs); !slices.Equal(got, []string{"m1", "m2", "m3"}) {
		t.Fatalf("subjects = %v", got)
	}
	if m := c.next(500 * time.Millisecond); m != nil {
		t.Errorf("delivered again: %q", m.GetEnvelope().GetSubject())
	}
	if n := len(onServer(srv)); n != 3 {
		t.Errorf("%d messages on the server before any ack, want 3", n)
	}
	evs, _ := h.st.ListEvents(context.Background(), mb.Id, 0, 100)
	errs := 0
	for _, e := range evs {
		if e.Kind == "error" {
			errs += max(1, e.Count)
		}
	}
	if errs < 2 {
		t.Errorf("%d error events, want the cut and the garbage", errs)
	}
	c.ack(msgs...)
	eventually(t, "the maildrop emptied", func() bool { return len(onServer(srv)) == 0 })
}

// A server that gives its messages new unique-ids (Dovecot does when the folder's UIDVALIDITY
// changes) does not make acknowledged messages come again: they are recognised by their hash
// (and, with DELETE, deleted), while an unacknowledged one is delivered again.
func TestPOP3NewUniqueIDsRecognisedByHash(t *testing.T) {
	srv := newPOP3(t)
	raws := [][]byte{mail(1, "acked"), mail(2, "not acked")}
	uids := []string{srv.Add(user, raws[0]), srv.Add(user, raws[1])}
	h := newHarness(t, nil)
	mb := h.addPOP3Mailbox(srv, func(mb *mailintakev1.Mailbox) {
		mb.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}
	})
	c := h.consume(10, 0)
	var acked *mailintakev1.Message
	for _, m := range c.take(2) {
		if m.GetEnvelope().GetSubject() == "acked" {
			acked = m
		}
	}
	c.ack(acked)
	eventually(t, "the ack applied", func() bool {
		a, _ := h.st.UnappliedAcks(context.Background(), mb.Id)
		return len(a) == 0
	})
	h.stop()
	for i, u := range uids {
		srv.Remove(user, u)
		srv.AddWithUID(user, fmt.Sprintf("renumbered-%d", i), raws[i])
	}
	h.start()
	c = h.consume(10, 0)
	if m := c.take(1)[0]; m.GetEnvelope().GetSubject() != "not acked" {
		t.Errorf("delivered %q", m.GetEnvelope().GetSubject())
	}
	if m := c.next(500 * time.Millisecond); m != nil {
		t.Errorf("delivered again: %q", m.GetEnvelope().GetSubject())
	}
	evs, _ := h.st.ListEvents(context.Background(), mb.Id, 0, 100)
	if !slices.ContainsFunc(evs, func(e store.Event) bool { return e.Kind == "resync" && strings.Contains(e.Message, "SHA-256") }) {
		t.Errorf("no resync event: %v", evs)
	}
}

// The connection test over STLS (110) and implicit TLS (995) with the mailbox's CA: the steps
// come in the order of the security, each once, the TLS step says the handshake, and delivery
// works the same over both.
func TestPOP3ConnectionTestTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	for _, c := range []struct {
		name     string
		implicit bool
		security mailintakev1.Security
		order    []mailintakev1.TestStepKind
	}{
		{"STLS", false, mailintakev1.Security_SECURITY_STARTTLS, []mailintakev1.TestStepKind{1, 2, 4, 3, 5, 6}},
		{"implicit TLS", true, mailintakev1.Security_SECURITY_TLS, []mailintakev1.TestStepKind{1, 2, 3, 4, 5, 6}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := pop3test.Start(t, pop3test.Options{TLS: &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1")}}, ImplicitTLS: c.implicit})
			srv.AddUser(user, password)
			srv.Add(user, mail(1, "over TLS"))
			h := newHarness(t, nil)
			mb := pop3Definition(srv)
			mb.Security, mb.CaPem = c.security, string(ca.PEM)
			var streamed []string
			resp := h.sup.TestSteps(context.Background(), mb, map[string]string{"password": password}, func(st *mailintakev1.TestStep) {
				streamed = append(streamed, st.GetKind().String()+" "+st.GetResult().String())
			})
			var kinds []mailintakev1.TestStepKind
			for _, st := range resp.GetSteps() {
				kinds = append(kinds, st.GetKind())
			}
			if !resp.GetOk() || !slices.Equal(kinds, c.order) {
				t.Errorf("steps %v, want %v: %v", kinds, c.order, resp)
			}
			if plan := session.PlanTest(mb); !slices.Equal(plan, c.order) {
				t.Errorf("plan %v, want %v", plan, c.order)
			}
			for _, st := range resp.GetSteps() {
				if st.GetKind() == mailintakev1.TestStepKind_TEST_STEP_KIND_TLS && !strings.Contains(st.GetDetail(), "TLS") {
					t.Errorf("TLS step: %q", st.GetDetail())
				}
			}
			if len(streamed) != 2*len(c.order) { // each step running, then its result
				t.Errorf("streamed %q", streamed)
			}
			h.addPOP3Mailbox(srv, func(m *mailintakev1.Mailbox) { m.Security, m.CaPem = c.security, string(ca.PEM) })
			if m := h.consume(10, 0).take(1)[0]; m.GetEnvelope().GetSubject() != "over TLS" {
				t.Errorf("delivered %q", m.GetEnvelope().GetSubject())
			}
		})
	}
}
