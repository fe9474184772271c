package outbox

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/smtptest"
	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/smtpsend"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/sqlite"
	"github.com/mailintake/mailintake/internal/testutil"
	"github.com/mailintake/mailintake/plugins/authplugin"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// fakeCreds issues credentials as a provider would: a password, or a token that the server
// accepts only when it was issued with force (a revoked cached token), counting each call.
type fakeCreds struct {
	mu       sync.Mutex
	calls    []bool // force, per call
	accounts []authplugin.Account
	issue    func(force bool) (authplugin.Credential, error)
}

func (f *fakeCreds) Credential(_ context.Context, _ string, acct authplugin.Account, force bool) (authplugin.Credential, error) {
	f.mu.Lock()
	f.calls = append(f.calls, force)
	f.accounts = append(f.accounts, acct)
	f.mu.Unlock()
	return f.issue(force)
}

func (f *fakeCreds) forced() (n, forced int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c {
			forced++
		}
	}
	return len(f.calls), forced
}

// world is a store with one mailbox whose submission server is an in-process SMTP server
// (STARTTLS with a private CA, given as the mailbox's ca_pem), and a sender.
type world struct {
	t     *testing.T
	st    *sqlite.Store
	srv   *smtptest.Server
	creds *fakeCreds
	mb    *store.Mailbox
	s     *Sender
	logs  *bytes.Buffer
	stop  func()
	n     int
}

func newWorld(t *testing.T, srvOpts smtptest.Options, tune func(*Options, *mailintakev1.Mailbox)) *world {
	t.Helper()
	box, _ := secrets.NewBox(bytes.Repeat([]byte{7}, secrets.KeySize))
	st, err := sqlite.Open(t.Context(), t.TempDir(), box)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca := testutil.NewCA(t)
	srvOpts.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1")}}
	srvOpts.DSN = true
	srv := smtptest.Start(t, srvOpts)
	srv.AddUser("agent@example.com", "pw")
	spec := &mailintakev1.Mailbox{Id: "mb1", Tenant: "acme", Host: "imap.example.com", Port: 993, Username: "agent@example.com",
		AuthProvider: "basic", SendingEnabled: true, SmtpHost: srv.Host, SmtpPort: uint32(srv.Port),
		SmtpSecurity: mailintakev1.Security_SECURITY_STARTTLS, CaPem: string(ca.PEM)}
	w := &world{t: t, st: st, srv: srv, logs: &bytes.Buffer{}, creds: &fakeCreds{issue: func(bool) (authplugin.Credential, error) {
		return authplugin.Credential{Mechanism: "PLAIN", Identity: "agent@example.com", Secret: "pw"}, nil
	}}}
	opts := Options{Store: st, Credentials: w.creds, Logger: slog.New(slog.NewTextHandler(&syncWriter{w: w.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, PollInterval: 100 * time.Millisecond,
		DialTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second, FinalTimeout: 2 * time.Second, LocalName: "client.example.com"}
	if tune != nil {
		tune(&opts, spec)
	}
	w.mb = &store.Mailbox{Spec: spec}
	if err := st.CreateMailbox(t.Context(), w.mb); err != nil {
		t.Fatal(err)
	}
	w.s = New(opts)
	return w
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// run starts the sender until the test ends (or stop is called).
func (w *world) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.s.Run(ctx); close(done) }()
	var once sync.Once
	w.stop = func() { once.Do(func() { cancel(); <-done }) }
	w.t.Cleanup(w.stop)
}

// queue queues a message and wakes the sender.
func (w *world) queue(subject string) *store.Outbound {
	w.t.Helper()
	w.n++
	out, err := smtpsend.Compose(smtpsend.Draft{From: "Support <support@example.com>", To: []string{"customer@example.org"}, Subject: subject, Text: "Hello"})
	if err != nil {
		w.t.Fatal(err)
	}
	now := time.Now()
	o := &store.Outbound{ID: fmt.Sprintf("out-%d", w.n), MailboxID: "mb1", Tenant: "acme", IdempotencyKey: fmt.Sprintf("k%d", w.n), RequestHash: []byte("h"),
		State: store.OutboundQueued, MessageID: out.MessageID, From: out.From, Recipients: out.Recipients, Subject: subject, Raw: out.Bytes,
		NextAttemptTime: now, CreateTime: now, UpdateTime: now}
	if _, created, err := w.st.CreateOutbound(w.t.Context(), o); err != nil || !created {
		w.t.Fatalf("CreateOutbound: %v %v", created, err)
	}
	w.s.Wake()
	return o
}

// wait waits until the message is in one of the states, and returns it.
func (w *world) wait(id string, states ...store.OutboundState) *store.Outbound {
	w.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		o, err := w.st.GetOutbound(w.t.Context(), id, false)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, s := range states {
			if o.State == s {
				return o
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s is %s after 15 s, want %v (error %+v)\nlogs:\n%s", id, o.State, states, o.Error, w.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// subjects returns the subjects of the messages the server accepted, in order.
func (w *world) accepted() []string {
	var out []string
	for _, m := range w.srv.Accepted() {
		_, rest, _ := strings.Cut(string(m.Data), "Subject: ")
		subj, _, _ := strings.Cut(rest, "\r\n")
		out = append(out, subj)
	}
	return out
}

func TestSendsAQueuedMessage(t *testing.T) {
	w := newWorld(t, smtptest.Options{}, nil)
	w.run()
	o := w.queue("first")
	got := w.wait(o.ID, store.OutboundSent)
	if got.Attempts != 1 || got.Error != nil || got.SentTime.IsZero() || got.Result == nil || !got.Result.DSN || !strings.HasPrefix(got.Result.Response, "250") {
		t.Errorf("sent message: %+v (result %+v)", got, got.Result)
	}
	msgs := w.srv.Accepted()
	if len(msgs) != 1 || msgs[0].From != "support@example.com" || strings.Join(msgs[0].To, ",") != "customer@example.org" || !msgs[0].TLS || msgs[0].User != "agent@example.com" {
		t.Fatalf("server accepted %+v", msgs)
	}
	if msgs[0].MailOptions.EnvelopeID != o.ID || got.Result.QueueID == "" || got.Result.QueueID != msgs[0].QueueID {
		t.Errorf("ENVID %q, queue id %q (server %q)", msgs[0].MailOptions.EnvelopeID, got.Result.QueueID, msgs[0].QueueID)
	}
	if a := w.creds.accounts[0]; a.Protocol != "smtp" || a.Host != w.srv.Host || a.Port != w.srv.Port || a.MailboxID != "mb1" {
		t.Errorf("the provider was asked for %+v", a)
	}
	var evs []store.Event
	for deadline := time.Now().Add(5 * time.Second); len(evs) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		evs, _ = w.st.ListEvents(t.Context(), "mb1", 0, 10)
	}
	if len(evs) == 0 || evs[0].Kind != "send" || !strings.Contains(evs[0].Message, "sent (Message-ID <"+o.MessageID+">)") {
		t.Errorf("events %+v", evs)
	}
}

// Many queued messages go out in order on one connection.
func TestOneConnectionForTheQueue(t *testing.T) {
	w := newWorld(t, smtptest.Options{}, nil)
	var ids []string
	for i := range 5 {
		ids = append(ids, w.queue(fmt.Sprintf("m%d", i)).ID)
	}
	w.run()
	for _, id := range ids {
		w.wait(id, store.OutboundSent)
	}
	if got := strings.Join(w.accepted(), " "); got != "m0 m1 m2 m3 m4" {
		t.Errorf("accepted %s", got)
	}
	if n := w.srv.Connections.Load(); n != 1 {
		t.Errorf("%d connections for 5 messages, want 1", n)
	}
}

func TestTemporaryFailuresAreRetried(t *testing.T) {
	for _, f := range []smtptest.Fault{
		{Step: smtptest.StepMail, Code: 451, Enhanced: "4.3.0", Text: "try again later", Times: 1},
		{Step: smtptest.StepRcpt, Action: smtptest.Cut, Times: 1},             // the connection lost before DATA
		{Step: smtptest.StepGreeting, Code: 421, Enhanced: "4.3.2", Times: 1}, // too many connections
		{Step: smtptest.StepEndOfData, Code: 452, Enhanced: "4.3.1", Text: "insufficient storage", Times: 1},
	} {
		t.Run(fmt.Sprintf("%s-%d", f.Step, f.Code), func(t *testing.T) {
			// No polling: the retry's time alone wakes the sender.
			w := newWorld(t, smtptest.Options{}, func(o *Options, _ *mailintakev1.Mailbox) { o.PollInterval = time.Hour })
			w.srv.Inject(f)
			w.run()
			o := w.queue("retried")
			got := w.wait(o.ID, store.OutboundSent, store.OutboundFailed, store.OutboundUnknown)
			if got.State != store.OutboundSent || got.Attempts != 2 {
				t.Fatalf("state %s after %d attempts, error %+v", got.State, got.Attempts, got.Error)
			}
			time.Sleep(200 * time.Millisecond)
			if n := len(w.srv.Accepted()); n != 1 {
				t.Errorf("accepted %d times, want once", n)
			}
		})
	}
}

// A temporary failure is recorded with the server's words and the next attempt, and a message
// that keeps failing is given up after GiveUpAfter.
func TestGivesUpAfterTheRetryPeriod(t *testing.T) {
	w := newWorld(t, smtptest.Options{}, func(o *Options, _ *mailintakev1.Mailbox) { o.GiveUpAfter = 500 * time.Millisecond })
	w.srv.Inject(smtptest.Fault{Step: smtptest.StepMail, Code: 451, Enhanced: "4.7.1", Text: "greylisted"})
	w.run()
	o := w.queue("never")
	got := w.wait(o.ID, store.OutboundQueued)
	for got.Error == nil {
		got = w.wait(o.ID, store.OutboundQueued, store.OutboundFailed)
	}
	got = w.wait(o.ID, store.OutboundFailed)
	if got.Attempts < 1 || got.Error.Kind != "permanent" || got.Error.Code != 451 || got.Error.Enhanced != "4.7.1" || got.Error.Text != "greylisted" || got.Error.Step != "MAIL FROM" ||
		!strings.HasPrefix(got.Error.Explanation, fmt.Sprintf("given up after %d attempts", got.Attempts)) {
		t.Errorf("given up: attempts %d, error %+v", got.Attempts, got.Error)
	}
}

func TestPermanentRefusalsFail(t *testing.T) {
	for _, c := range []struct {
		fault smtptest.Fault
		step  string
		says  string
	}{
		{smtptest.Fault{Step: smtptest.StepEndOfData, Code: 554, Enhanced: "5.2.252", Text: "SendAsDenied; agent@example.com not allowed to send as support@example.com"}, "end of data", "Send As"},
		{smtptest.Fault{Step: smtptest.StepRcpt, Code: 550, Enhanced: "5.1.1", Text: "User unknown"}, "RCPT TO", "customer@example.org"},
		{smtptest.Fault{Step: smtptest.StepAuth, Code: 535, Enhanced: "5.7.139", Text: "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."}, "AUTH", "SmtpClientAuthenticationDisabled"},
		{smtptest.Fault{Step: smtptest.StepMail, Code: 550, Enhanced: "5.7.60", Text: "SMTP; Client does not have permissions to send as this sender"}, "MAIL FROM", "send as"},
	} {
		t.Run(c.fault.Enhanced, func(t *testing.T) {
			w := newWorld(t, smtptest.Options{}, nil)
			w.srv.Inject(c.fault)
			w.run()
			o := w.queue("refused")
			got := w.wait(o.ID, store.OutboundFailed, store.OutboundSent, store.OutboundUnknown)
			e := got.Error
			if got.State != store.OutboundFailed || got.Attempts != 1 || e == nil || e.Kind != "permanent" || e.Code != c.fault.Code ||
				e.Enhanced != c.fault.Enhanced || e.Step != c.step || !strings.Contains(strings.ToLower(e.Explanation), strings.ToLower(c.says)) {
				t.Errorf("%s after %d attempts, error %+v", got.State, got.Attempts, e)
			}
			if c.step == "RCPT TO" && (len(e.Recipients) != 1 || e.Recipients[0].Address != "customer@example.org" || e.Recipients[0].Enhanced != "5.1.1") {
				t.Errorf("refused recipients %+v", e.Recipients)
			}
		})
	}
}

// No answer after the final dot: UNKNOWN, never sent again.
func TestCutAfterTheFinalDotIsUnknown(t *testing.T) {
	w := newWorld(t, smtptest.Options{}, nil)
	w.srv.Inject(smtptest.Fault{Step: smtptest.StepEndOfData, Action: smtptest.Cut, Times: 1})
	w.run()
	o := w.queue("maybe")
	next := w.queue("next")
	got := w.wait(o.ID, store.OutboundUnknown, store.OutboundSent, store.OutboundFailed)
	if got.State != store.OutboundUnknown || got.Error == nil || got.Error.Kind != "unknown" || !strings.Contains(got.Error.Explanation, "not sent again") {
		t.Fatalf("%s, error %+v", got.State, got.Error)
	}
	w.wait(next.ID, store.OutboundSent) // the queue goes on
	time.Sleep(300 * time.Millisecond)
	n := 0
	for _, m := range w.srv.Messages() {
		if bytes.Contains(m.Data, []byte("Subject: maybe")) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the server received the unknown message %d times, want once", n)
	}
	if w.wait(o.ID, store.OutboundUnknown).Attempts != 1 {
		t.Errorf("attempted again")
	}
}

// A stalled server after the final dot: UNKNOWN once FinalTimeout passed.
func TestStallAfterTheFinalDotIsUnknown(t *testing.T) {
	w := newWorld(t, smtptest.Options{}, func(o *Options, _ *mailintakev1.Mailbox) { o.FinalTimeout = 300 * time.Millisecond })
	w.srv.Inject(smtptest.Fault{Step: smtptest.StepEndOfData, Action: smtptest.Stall, StallFor: 3 * time.Second, Times: 1})
	w.run()
	o := w.queue("stalled")
	if got := w.wait(o.ID, store.OutboundUnknown, store.OutboundSent, store.OutboundFailed); got.State != store.OutboundUnknown {
		t.Fatalf("%s, error %+v", got.State, got.Error)
	}
}

// A message found SENDING when a worker starts (its sender crashed) is UNKNOWN and never sent;
// what was queued is sent.
func TestSendingAtStartIsUnknown(t *testing.T) {
	w := newWorld(t, smtptest.Options{}, nil)
	crashed := w.queue("was being sent")
	if err := w.st.TransitionOutbound(t.Context(), crashed, store.OutboundUpdate{State: store.OutboundSending, Attempts: 1, UpdateTime: time.Now()}); err != nil {
		t.Fatal(err)
	}
	queued := w.queue("queued")
	w.run()
	w.wait(queued.ID, store.OutboundSent)
	got := w.wait(crashed.ID, store.OutboundUnknown)
	if got.Error == nil || !strings.Contains(got.Error.Explanation, "not sent again") {
		t.Errorf("error %+v", got.Error)
	}
	if subj := w.accepted(); len(subj) != 1 || subj[0] != "queued" {
		t.Errorf("accepted %v", subj)
	}
}

// A cached token refused for good: one more login with a fresh one. A fresh token refused: FAILED.
func TestRefusedCachedTokenIsRetriedFresh(t *testing.T) {
	for _, fresh := range []bool{true, false} {
		t.Run(fmt.Sprintf("fresh-accepted-%v", fresh), func(t *testing.T) {
			var issued atomic.Int64
			w := newWorld(t, smtptest.Options{ValidateToken: func(tok, user string) bool { return fresh && strings.HasPrefix(tok, "fresh-") }}, nil)
			w.creds.issue = func(force bool) (authplugin.Credential, error) {
				n := issued.Add(1)
				tok := fmt.Sprintf("cached-%d", n)
				if force {
					tok = fmt.Sprintf("fresh-%d", n)
				}
				return authplugin.Credential{Mechanism: "XOAUTH2", Identity: "agent@example.com", Secret: tok}, nil
			}
			w.run()
			o := w.queue("token")
			got := w.wait(o.ID, store.OutboundSent, store.OutboundFailed)
			calls, forced := w.creds.forced()
			if calls != 2 || forced != 1 {
				t.Errorf("credential calls %d (forced %d), want 2 (1)", calls, forced)
			}
			if fresh && got.State != store.OutboundSent {
				t.Errorf("with a fresh token accepted: %s %+v", got.State, got.Error)
			}
			if !fresh && (got.State != store.OutboundFailed || got.Error.Code != 535 || !strings.Contains(got.Error.Explanation, "issued just now")) {
				t.Errorf("with a fresh token refused: %s %+v", got.State, got.Error)
			}
		})
	}
}

// A provider that refuses fails the message with its words; one that is down is retried.
func TestProviderFailures(t *testing.T) {
	w := newWorld(t, smtptest.Options{}, nil)
	var n atomic.Int64
	w.creds.issue = func(bool) (authplugin.Credential, error) {
		switch n.Add(1) {
		case 1:
			return authplugin.Credential{}, &authplugin.Error{Reason: authplugin.ReasonTemporary, Message: "the identity platform is down"}
		case 2:
			return authplugin.Credential{Mechanism: "PLAIN", Identity: "agent@example.com", Secret: "pw"}, nil
		}
		return authplugin.Credential{}, &authplugin.Error{Reason: authplugin.ReasonInvalidCredentials, Message: "wrong password", Action: "Enter the right one."}
	}
	w.run()
	o := w.queue("after a provider outage")
	if got := w.wait(o.ID, store.OutboundSent, store.OutboundFailed); got.State != store.OutboundSent || got.Attempts != 2 {
		t.Errorf("%s after %d attempts: %+v", got.State, got.Attempts, got.Error)
	}
	time.Sleep(300 * time.Millisecond) // the worker closed its connection: the next message logs in again
	o = w.queue("wrong password")
	got := w.wait(o.ID, store.OutboundFailed, store.OutboundSent)
	if got.State != store.OutboundFailed || got.Error.Step != "credential" || !strings.Contains(got.Error.Explanation, "wrong password") {
		t.Errorf("%s: %+v", got.State, got.Error)
	}
}

// A failure to connect is every due message's: the server is dialled once, not once per message.
func TestConnectFailureIsEveryDueMessages(t *testing.T) {
	w := newWorld(t, smtptest.Options{}, nil)
	w.srv.Inject(smtptest.Fault{Step: smtptest.StepGreeting, Code: 421, Enhanced: "4.3.2", Text: "Service not available", Times: 1})
	var ids []string
	for i := range 3 {
		ids = append(ids, w.queue(fmt.Sprintf("m%d", i)).ID)
	}
	w.run()
	for _, id := range ids {
		if got := w.wait(id, store.OutboundSent); got.Attempts != 2 {
			t.Errorf("%s: %d attempts, want 2", id, got.Attempts)
		}
	}
	if n := w.srv.Connections.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the refused one, then one for all three)", n)
	}
}

// At most smtp_max_per_minute messages are taken in a minute.
func TestRatePerMailbox(t *testing.T) {
	w := newWorld(t, smtptest.Options{}, func(_ *Options, mb *mailintakev1.Mailbox) { mb.SmtpMaxPerMinute = 2 })
	var ids []string
	for i := range 3 {
		ids = append(ids, w.queue(fmt.Sprintf("m%d", i)).ID)
	}
	w.run()
	w.wait(ids[0], store.OutboundSent)
	w.wait(ids[1], store.OutboundSent)
	time.Sleep(500 * time.Millisecond)
	if got := w.wait(ids[2], store.OutboundQueued); got.Attempts != 0 {
		t.Errorf("the third message was tried within the minute: %+v", got)
	}
	if wait := w.s.rateWait("mb1", 2, time.Now()); wait < 50*time.Second || wait > time.Minute {
		t.Errorf("rate wait %s", wait)
	}
}

// Sending turned off: messages wait (QUEUED, with the reason), and go out once it is on.
func TestSendingOffWaits(t *testing.T) {
	w := newWorld(t, smtptest.Options{}, func(_ *Options, mb *mailintakev1.Mailbox) { mb.SendingEnabled = false })
	w.run()
	o := w.queue("waits")
	got := w.wait(o.ID, store.OutboundQueued)
	for got.Error == nil {
		time.Sleep(10 * time.Millisecond)
		got = w.wait(o.ID, store.OutboundQueued)
	}
	if !strings.Contains(got.Error.Explanation, "sending is turned off") || w.srv.Connections.Load() != 0 {
		t.Errorf("error %+v, %d connections", got.Error, w.srv.Connections.Load())
	}
	w.mb.Spec.SendingEnabled = true
	if err := w.st.UpdateMailbox(t.Context(), w.mb); err != nil {
		t.Fatal(err)
	}
	w.wait(o.ID, store.OutboundSent)
}

// Mailboxes this process does not own are left alone.
func TestOnlyOwnedMailboxes(t *testing.T) {
	var owned atomic.Bool
	w := newWorld(t, smtptest.Options{}, func(o *Options, _ *mailintakev1.Mailbox) {
		o.Owns = func(id string) (store.Lease, bool) { return store.Lease{}, owned.Load() }
	})
	w.run()
	o := w.queue("owned later")
	time.Sleep(300 * time.Millisecond)
	if got := w.wait(o.ID, store.OutboundQueued); got.Attempts != 0 || w.srv.Connections.Load() != 0 {
		t.Fatalf("sent for a mailbox it does not own: %+v", got)
	}
	owned.Store(true)
	w.wait(o.ID, store.OutboundSent)
}

// A stop in the middle of a send lets it finish within StopGrace.
func TestStopLetsASendFinish(t *testing.T) {
	w := newWorld(t, smtptest.Options{}, nil)
	w.srv.Inject(smtptest.Fault{Step: smtptest.StepEndOfData, Action: smtptest.Stall, StallFor: 400 * time.Millisecond, Times: 1})
	w.run()
	o := w.queue("finishing")
	w.wait(o.ID, store.OutboundSending)
	w.stop()
	if got := w.wait(o.ID, store.OutboundSent, store.OutboundUnknown); got.State != store.OutboundSent {
		t.Errorf("%s: %+v", got.State, got.Error)
	}
}

func TestBackoff(t *testing.T) {
	s := New(Options{MinBackoff: time.Second, MaxBackoff: 30 * time.Second})
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 4 * time.Second, 3: 16 * time.Second, 4: 30 * time.Second, 10: 30 * time.Second} {
		if d := s.backoff(attempts); d < want*8/10 || d > want*12/10 {
			t.Errorf("backoff(%d) = %s, want about %s", attempts, d, want)
		}
	}
}

func TestMailboxDefaults(t *testing.T) {
	for _, c := range []struct {
		mb   *mailintakev1.Mailbox
		port int
		sec  smtpsend.Security
	}{
		{&mailintakev1.Mailbox{SmtpHost: "h"}, 587, smtpsend.StartTLS},
		{&mailintakev1.Mailbox{SmtpHost: "h", SmtpPort: 465}, 465, smtpsend.TLS},
		{&mailintakev1.Mailbox{SmtpHost: "h", SmtpSecurity: mailintakev1.Security_SECURITY_TLS}, 465, smtpsend.TLS},
		{&mailintakev1.Mailbox{SmtpHost: "h", SmtpSecurity: mailintakev1.Security_SECURITY_NONE}, 25, smtpsend.Plaintext},
		{&mailintakev1.Mailbox{SmtpHost: "h", SmtpPort: 2525, SmtpSecurity: mailintakev1.Security_SECURITY_NONE}, 2525, smtpsend.Plaintext},
	} {
		tg, err := Target(c.mb)
		if err != nil || tg.Port != c.port || tg.Security != c.sec {
			t.Errorf("%v: %+v, %v", c.mb, tg, err)
		}
	}
	for mb, want := range map[*mailintakev1.Mailbox]string{
		{Username: "agent@example.com"}: "agent@example.com",
		{Username: "agent"}:             "",
		{Username: "agent", SmtpFrom: "Support <support@example.com>"}: "Support <support@example.com>",
	} {
		if got := From(mb); got != want {
			t.Errorf("From(%v) = %q, want %q", mb, got, want)
		}
	}
	if _, err := Target(&mailintakev1.Mailbox{SmtpHost: "h", CaPem: "garbage"}); err == nil {
		t.Error("a bad ca_pem was accepted")
	}
}
