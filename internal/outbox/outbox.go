// Package outbox sends the mail queued in the store's outbox (store.OutboxStore) through each
// mailbox's submission server, with the SMTP credential the mailbox's auth provider issues, and
// records what became of every message. It never sends a message twice on its own.
//
// # Who sends
//
// One Sender runs per process. It sends only for the mailboxes Options.Owns gives it: in a
// cluster, the mailboxes whose lease this replica holds (the same leases the IMAP sessions run
// under), so a mailbox's mail leaves from one replica at a time; alone (the embedded SQLite
// store), every mailbox. Every write a sender makes about a message (taking it, recording the
// outcome) carries the lease, and PostgreSQL refuses it once the lease is another replica's
// (store.ErrFenced): a replica that lost a mailbox cannot take one of its messages any more.
//
// A scanner asks the store what is there (OutboxWork) when woken (SendMessage queued something
// here), when the earliest message waiting for a retry falls due, and every PollInterval (a
// message queued on another replica); it starts one worker per mailbox with due messages. A
// worker sends its mailbox's due messages one at a time, oldest first, on one connection, until
// none is left.
//
// # Never twice
//
// A message is taken (QUEUED → SENDING, a compare-and-set on its state and attempt count) just
// before MAIL FROM, once the connection is up and logged in, and its outcome recorded after the
// server answered:
//
//   - accepted: SENT, with the server's queue id;
//   - refused for good (5xx): FAILED with the explanation;
//   - a temporary failure (4xx, or the connection failed before the final dot was written):
//     QUEUED again with backoff (Options.MinBackoff doubling twice per attempt up to
//     MaxBackoff, with jitter); after GiveUpAfter from its creation, FAILED;
//   - the connection broke, or no answer came, after the final dot: UNKNOWN. It may have been
//     accepted, so it is never sent again on its own.
//
// A worker that starts on a mailbox first marks every SENDING message of it UNKNOWN
// (store.InterruptOutbound): no worker of this process is sending for it, and in a cluster no
// other replica may (this one holds the lease), so such a message belonged to a process that
// crashed or a replica that lost the mailbox in the middle of a send. A restart therefore
// resumes what was QUEUED and never resends what was SENDING.
//
// # Limits
//
// Each mailbox sends at most smtp_max_per_minute messages in any minute (default 30, Exchange
// Online's limit), one connection at a time (Exchange refuses more than three at once with
// 432 4.3.2); all mailboxes together use at most Options.MaxConnections connections.
//
// # The Sent copy
//
// A mailbox with save_sent_copy (on a server that does not file one itself: not Microsoft 365,
// not Gmail) gets a copy of each message the submission server accepted in its Sent folder, by
// IMAP APPEND flagged \Seen (Options.SentCopies), right after SENT is recorded. A copy that
// cannot be saved is recorded on the message (sent_copy) and as an event: it is never a reason
// to send the message again.
//
// # Credentials
//
// The provider issues an SMTP credential (authplugin.Account.Protocol "smtp"). A token login
// refused for good with a credential from the cache is tried once more with one issued for the
// attempt (force); a freshly issued token refused is FAILED with the usual causes (SMTP AUTH
// turned off for the tenant or the mailbox, the wrong account, a shared mailbox used as the
// login). A provider that refuses (wrong password, consent missing, account locked) fails the
// message; a provider that is unavailable is a temporary failure.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/mailintake/mailintake/internal/pluginhost"
	"github.com/mailintake/mailintake/internal/smtpsend"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/plugins/authplugin"
)

// SentCopies saves a copy of a sent message in the mailbox's Sent folder by IMAP APPEND with the
// mailbox's IMAP credential: the session supervisor (session.Supervisor.SaveSentCopy). It returns
// the folder the copy went to (or was to go to).
type SentCopies interface {
	SaveSentCopy(ctx context.Context, mb *store.Mailbox, raw []byte, sent time.Time) (folder string, err error)
}

// Credentials issues a mailbox's credentials: the plugin host (pluginhost.Host.Credential).
type Credentials interface {
	Credential(ctx context.Context, provider string, acct authplugin.Account, force bool) (authplugin.Credential, error)
}

// Options configure a Sender. Zero values take the defaults.
type Options struct {
	Store       store.Store
	Credentials Credentials
	// SentCopies saves the copies of sent mail for mailboxes with save_sent_copy (SaveSentCopyOn).
	// Nil: none is saved.
	SentCopies SentCopies
	Logger     *slog.Logger
	// Owns says whether this process sends for a mailbox, and under which lease (its store
	// writes are fenced by it). Nil: every mailbox, without a lease (one process).
	Owns func(mailboxID string) (store.Lease, bool)
	// PollInterval is how often the store is asked for work without a wake-up (default 30 s;
	// a cluster sets about 1 s, for messages queued on other replicas).
	PollInterval time.Duration
	// MinBackoff is the first retry's delay after a temporary failure (default 2 s); each
	// further attempt waits four times longer, up to MaxBackoff (default 30 min).
	MinBackoff, MaxBackoff time.Duration
	// GiveUpAfter is how long after its creation a message that keeps failing temporarily is
	// given up (FAILED) (default 24 h).
	GiveUpAfter time.Duration
	// MaxConnections bounds the submission connections of all mailboxes at once (default 100).
	MaxConnections int
	// StopGrace is how long a send in progress may still finish after Run's context ended
	// (default 10 s); after that it is cut (UNKNOWN if the whole message was written).
	StopGrace time.Duration
	// DialTimeout, CommandTimeout and FinalTimeout override smtpsend's defaults (tests).
	DialTimeout, CommandTimeout, FinalTimeout time.Duration
	// LocalName is the name given in EHLO (default: smtpsend's choice).
	LocalName string
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.PollInterval, 30*time.Second)
	def(&o.MinBackoff, 2*time.Second)
	def(&o.MaxBackoff, 30*time.Minute)
	def(&o.GiveUpAfter, 24*time.Hour)
	def(&o.StopGrace, 10*time.Second)
	if o.MaxConnections <= 0 {
		o.MaxConnections = 100
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Owns == nil {
		o.Owns = func(string) (store.Lease, bool) { return store.Lease{}, true }
	}
}

// Sender sends the outbox's messages. Run runs it; Wake tells it a message was queued.
type Sender struct {
	opts  Options
	st    store.Store
	log   *slog.Logger
	wake  chan struct{}
	conns chan struct{} // MaxConnections slots

	mu      sync.Mutex
	running map[string]bool        // mailboxes with a worker
	pause   map[string]time.Time   // mailboxes whose last worker failed: no new one until then
	sent    map[string][]time.Time // per mailbox: when its recent messages were taken (rate)
	wg      sync.WaitGroup
}

// New returns a Sender.
func New(opts Options) *Sender {
	opts.defaults()
	return &Sender{opts: opts, st: opts.Store, log: opts.Logger, wake: make(chan struct{}, 1),
		conns: make(chan struct{}, opts.MaxConnections), running: map[string]bool{}, pause: map[string]time.Time{}, sent: map[string][]time.Time{}}
}

// Wake tells the sender that a message was queued (or a mailbox's sending changed): it looks
// at the outbox at once. Safe on a nil Sender (sending is not wired).
func (s *Sender) Wake() {
	if s == nil {
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// WakeFor tells the sender that a message of mailboxID was queued. While a worker of this process
// sends for the mailbox, nothing more is needed: the worker looks for the next due message after
// each one, and its end wakes the scanner, which then finds anything it missed. So a burst of
// messages for a busy mailbox costs no scan of the outbox per message (the scans were a fifth
// of the server's CPU in make bench's sending burst). Safe on a nil Sender.
func (s *Sender) WakeFor(mailboxID string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	running := s.running[mailboxID]
	s.mu.Unlock()
	if !running {
		s.Wake()
	}
}

// pruneEvery is how often the sender deletes old outbound messages (store.OutboundRetention).
const pruneEvery = time.Hour

// Run sends until ctx ends, then waits for the workers (a send in progress gets StopGrace to
// finish).
func (s *Sender) Run(ctx context.Context) {
	// Sends run on a context that ends StopGrace after ctx: a message being written is
	// usually finished rather than cut into UNKNOWN by a restart.
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(s.opts.StopGrace, cancelSends) })
	defer func() {
		stop()
		s.wg.Wait()
		cancelSends()
	}()
	var lastPrune time.Time
	for {
		now := time.Now()
		if now.Sub(lastPrune) >= pruneEvery {
			lastPrune = now
			if n, err := s.st.PruneOutbound(ctx, now.Add(-store.OutboundRetention)); err != nil {
				s.log.Warn("pruning old outbound messages", "err", err)
			} else if n > 0 {
				s.log.Info("pruned old outbound messages", "count", n)
			}
		}
		next := now.Add(s.opts.PollInterval)
		work, err := s.st.OutboxWork(ctx, now)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("reading the outbox", "err", err)
			next = now.Add(min(5*time.Second, s.opts.PollInterval))
		}
		for _, w := range work {
			if !w.NextDue.IsZero() && w.NextDue.Before(next) {
				next = w.NextDue
			}
			if !w.Due && !w.Sending {
				continue
			}
			lease, ok := s.opts.Owns(w.MailboxID)
			if !ok {
				continue
			}
			if until := s.start(ctx, sendCtx, w.MailboxID, lease); !until.IsZero() && until.Before(next) {
				next = until
			}
		}
		t := time.NewTimer(max(time.Until(next), 10*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// pauseAfterFailure is how long a mailbox whose worker met a store failure (or lost its lease)
// waits before the next worker.
const pauseAfterFailure = 5 * time.Second

// start starts a mailbox's worker unless one runs or it pauses after a failure; it returns
// when a paused mailbox may start again (zero: not paused).
func (s *Sender) start(ctx, sendCtx context.Context, mailboxID string, lease store.Lease) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if until, ok := s.pause[mailboxID]; ok {
		if time.Now().Before(until) {
			return until
		}
		delete(s.pause, mailboxID)
	}
	if s.running[mailboxID] {
		return time.Time{}
	}
	s.running[mailboxID] = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		failed := s.work(ctx, sendCtx, mailboxID, lease)
		s.mu.Lock()
		delete(s.running, mailboxID)
		if failed {
			// The store failed (or the lease moved): not again at once.
			s.pause[mailboxID] = time.Now().Add(pauseAfterFailure)
		}
		s.mu.Unlock()
		// The scanner looks again: the run may have left messages due later (a retry), or
		// stopped with some due (a lease moved, a store failure).
		s.Wake()
	}()
	return time.Time{}
}

// worker is one mailbox's sending run.
type worker struct {
	s      *Sender
	id     string
	lease  store.Lease
	wctx   context.Context // store writes: fenced by the lease, never cut by the stop
	mb     *store.Mailbox
	target smtpsend.Target
	conn   *smtpsend.Conn
	log    *slog.Logger
	failed bool // a store write or read failed, or the lease moved
}

// work sends the mailbox's due messages, one at a time, until none is due (or it must stop). It
// reports whether it stopped on a store failure or a lost lease.
func (s *Sender) work(ctx, sendCtx context.Context, mailboxID string, lease store.Lease) (failed bool) {
	w := &worker{s: s, id: mailboxID, lease: lease, wctx: context.WithoutCancel(ctx), log: s.log.With("mailbox_id", mailboxID)}
	if lease.MailboxID != "" {
		w.wctx = store.WithLease(w.wctx, lease)
	}
	defer w.close()
	defer func() { failed = w.failed }()
	// Whatever is SENDING was being sent by a process that is gone (see the package comment).
	ids, err := s.st.InterruptOutbound(w.wctx, mailboxID, store.OutboundError{Kind: smtpsend.Unknown.String(), Step: smtpsend.StepEndOfData.String(),
		Explanation: "the server stopped (or another replica took the mailbox over) while this message was being sent: the submission server may have " +
			"accepted it, so it is not sent again on its own; look in the mailbox's Sent folder, and send it again with a new idempotency key if it is not there",
		Time: time.Now()})
	if err != nil {
		w.storeFailed("marking interrupted sends", err)
		return
	}
	for _, id := range ids {
		w.log.Warn("an outbound message was being sent when its sender stopped: state unknown, not sent again", "outbound_id", id)
		w.event(fmt.Sprintf("message %s: the sender stopped while it was being sent; it may have been sent (state unknown), it is not sent again", id))
	}
	mb, err := s.st.GetMailbox(ctx, mailboxID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			w.storeFailed("reading the mailbox", err)
		}
		return
	}
	w.mb = mb
	for ctx.Err() == nil {
		if _, ok := s.opts.Owns(mailboxID); !ok {
			return
		}
		due, err := s.st.DueOutbound(ctx, mailboxID, time.Now(), 1)
		if err != nil {
			w.storeFailed("reading the due messages", err)
			return
		}
		if len(due) == 0 {
			return
		}
		if wait := s.rateWait(mailboxID, PerMinute(mb.Spec), time.Now()); wait > 0 {
			// Over the mailbox's rate: the connection is not held while it waits.
			w.closeConn()
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			continue
		}
		if !w.send(sendCtx, due[0]) {
			return
		}
	}
	return
}

// rateWait returns how long a mailbox must wait before its next message so that at most
// perMinute are taken in any minute; 0 when it may send now.
func (s *Sender) rateWait(mailboxID string, perMinute int, now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	recent := s.sent[mailboxID]
	for len(recent) > 0 && now.Sub(recent[0]) >= time.Minute {
		recent = recent[1:]
	}
	if len(recent) == 0 {
		delete(s.sent, mailboxID)
	} else {
		s.sent[mailboxID] = recent
	}
	if len(recent) >= perMinute {
		return recent[0].Add(time.Minute).Sub(now)
	}
	return 0
}

// counted notes that a mailbox took a message for sending, for its rate.
func (s *Sender) counted(mailboxID string, at time.Time) {
	s.mu.Lock()
	s.sent[mailboxID] = append(s.sent[mailboxID], at)
	s.mu.Unlock()
}

func (w *worker) storeFailed(what string, err error) {
	w.failed = true
	if errors.Is(err, store.ErrFenced) {
		w.log.Info("the mailbox's lease moved to another replica; it sends the rest", "during", what)
		return
	}
	w.log.Error("outbox store failure", "during", what, "err", err)
}

// event adds an entry to the mailbox's event log.
func (w *worker) event(msg string) {
	if err := w.s.st.AddEvent(w.wctx, store.Event{MailboxID: w.id, Time: time.Now(), Kind: "send", Message: msg}); err != nil {
		w.log.Debug("adding a send event", "err", err)
	}
}

func (w *worker) closeConn() {
	if w.conn != nil {
		w.conn.Quit()
		w.conn = nil
		<-w.s.conns
	}
}

func (w *worker) close() { w.closeConn() }

// failure is why an attempt failed, as the outbox records it.
type failure struct {
	kind smtpsend.Kind
	err  *store.OutboundError
	// retryAt, when set, is when a temporary failure is tried again (instead of the message's
	// own backoff): the same time for every message a failed connection held back, so that
	// they go out together on the next connection.
	retryAt time.Time
}

func storedError(e *smtpsend.Error, at time.Time) *store.OutboundError {
	out := &store.OutboundError{Kind: e.Kind.String(), Step: e.Step.String(), Code: e.Code, Enhanced: e.Enhanced, Text: e.Text,
		Explanation: e.Explanation, Time: at}
	for _, r := range e.Recipients {
		out.Recipients = append(out.Recipients, store.OutboundRecipientError{Address: r.Address, Code: r.Code, Enhanced: r.Enhanced, Text: r.Text})
	}
	if out.Explanation == "" {
		out.Explanation = e.Error()
	}
	return out
}

// smtpFailure turns a send's error into a failure.
func smtpFailure(err error) failure {
	var e *smtpsend.Error
	if errors.As(err, &e) {
		return failure{kind: e.Kind, err: storedError(e, time.Now())}
	}
	return failure{kind: smtpsend.Temporary, err: &store.OutboundError{Kind: smtpsend.Temporary.String(), Explanation: err.Error(), Time: time.Now()}}
}

// providerFailure turns an auth provider's failure to issue a credential into a failure: a
// refusal a person must act on fails the message; a provider that is down or a sign-in still to
// come is temporary.
func providerFailure(err error) failure {
	f := failure{kind: smtpsend.Temporary, err: &store.OutboundError{Step: "credential", Time: time.Now(),
		Explanation: "the mailbox's auth provider could not issue an SMTP credential: " + err.Error()}}
	if pe, ok := authplugin.AsError(err); ok {
		switch pe.Reason {
		case authplugin.ReasonTemporary, authplugin.ReasonAuthorizationRequired, authplugin.ReasonAuthorizationPending, authplugin.ReasonUnknown:
		default:
			f.kind = smtpsend.Permanent
		}
	} else if errors.Is(err, pluginhost.ErrUnknownProvider) || errors.Is(err, pluginhost.ErrPinMismatch) {
		f.kind = smtpsend.Permanent
	}
	f.err.Kind = f.kind.String()
	return f
}

// connect dials the mailbox's submission server and logs in, once more with a fresh token when
// a cached one is refused.
func (w *worker) connect(ctx context.Context) *failure {
	if w.conn != nil {
		return nil
	}
	spec := w.mb.Spec
	if !SendingOn(spec) {
		return &failure{kind: smtpsend.Temporary, err: &store.OutboundError{Kind: smtpsend.Temporary.String(), Step: "configuration", Time: time.Now(),
			Explanation: "sending is turned off for the mailbox (or it names no SMTP server): turn it on (mailintake mailbox update MAILBOX_ID --sending --smtp-host HOST) and the message goes out"}}
	}
	t, err := Target(spec)
	if err != nil {
		return &failure{kind: smtpsend.Permanent, err: &store.OutboundError{Kind: smtpsend.Permanent.String(), Step: "configuration", Explanation: err.Error(), Time: time.Now()}}
	}
	o := w.s.opts
	t.DialTimeout, t.CommandTimeout, t.FinalTimeout, t.LocalName = o.DialTimeout, o.CommandTimeout, o.FinalTimeout, o.LocalName
	select {
	case w.s.conns <- struct{}{}:
	case <-ctx.Done():
		return &failure{kind: smtpsend.Temporary, err: &store.OutboundError{Kind: smtpsend.Temporary.String(), Explanation: "the server is stopping", Time: time.Now()}}
	}
	release := true
	defer func() {
		if release {
			<-w.s.conns
		}
	}()
	secrets := w.mb.RevealedSecrets()
	for _, force := range []bool{false, true} {
		cred, err := w.s.opts.Credentials.Credential(ctx, spec.GetAuthProvider(), Account(spec, secrets), force)
		if err != nil {
			f := providerFailure(err)
			return &f
		}
		c, err := smtpsend.Dial(ctx, t, nil)
		if err != nil {
			f := smtpFailure(err)
			return &f
		}
		err = c.Authenticate(ctx, smtpsend.Credential{Mechanism: cred.Mechanism, Identity: cred.Identity, Secret: cred.Secret, Fresh: force})
		if err == nil {
			w.conn, w.target, release = c, t, false
			return nil
		}
		c.Quit()
		var ae *smtpsend.AuthError
		if !force && errors.As(err, &ae) && ae.RetryWithFreshToken() {
			w.log.Info("the SMTP server refused the cached token; trying once with a fresh one", "code", ae.Code, "enhanced", ae.Enhanced)
			continue
		}
		f := smtpFailure(err)
		return &f
	}
	panic("unreachable")
}

// send sends one message; it reports whether the worker goes on with the next.
func (w *worker) send(ctx context.Context, o *store.Outbound) bool {
	log := w.log.With("outbound_id", o.ID)
	if f := w.connect(ctx); f != nil {
		// Nothing was sent. The failure is every due message's: each stays QUEUED with the
		// backoff (or fails), so a server that is down is not dialled once per queued message.
		due, err := w.s.st.DueOutbound(w.wctx, w.id, time.Now(), 1000)
		if err != nil {
			w.storeFailed("reading the due messages", err)
			return false
		}
		f.retryAt = time.Now().Add(w.s.backoff(o.Attempts + 1))
		for _, d := range due {
			if !w.record(d, d.State, d.Attempts+1, nil, f) {
				return false
			}
		}
		return false
	}
	full, err := w.s.st.GetOutbound(w.wctx, o.ID, true)
	if err != nil {
		w.storeFailed("reading the message", err)
		return false
	}
	taken := time.Now()
	if err := w.s.st.TransitionOutbound(w.wctx, o, store.OutboundUpdate{State: store.OutboundSending, Attempts: o.Attempts + 1,
		NextAttemptTime: o.NextAttemptTime, Error: o.Error, UpdateTime: taken}); err != nil {
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			return true // another sender took it, or it is gone
		}
		w.storeFailed("taking the message", err)
		return false
	}
	w.s.counted(w.id, taken)
	cur := *o
	cur.State, cur.Attempts, cur.UpdateTime = store.OutboundSending, o.Attempts+1, taken
	res, err := w.conn.Send(ctx, smtpsend.Envelope{From: full.From, To: full.Recipients, ID: full.ID}, full.Raw)
	if err != nil {
		f := smtpFailure(err)
		log.Info("send failed", "kind", f.kind, "step", f.err.Step, "code", f.err.Code, "enhanced", f.err.Enhanced, "explanation", f.err.Explanation)
		w.closeConn() // a clean connection for the next message
		return w.record(&cur, store.OutboundSending, cur.Attempts, nil, &f)
	}
	if !w.record(&cur, store.OutboundSending, cur.Attempts, res, nil) {
		return false
	}
	w.saveCopy(ctx, &cur, full.Raw)
	return true
}

// sentCopyTimeout bounds the saving of one Sent copy (connect, sign in, find the folder, APPEND).
const sentCopyTimeout = 2 * time.Minute

// saveCopy saves a copy of a message just sent in the mailbox's Sent folder, when the mailbox
// asks for one (SaveSentCopyOn), and records the outcome on the message. A copy that cannot be
// saved is an event and the outbound's sent_copy; the message is not sent again, nor the copy
// retried.
func (w *worker) saveCopy(ctx context.Context, cur *store.Outbound, raw []byte) {
	if w.s.opts.SentCopies == nil || !SaveSentCopyOn(w.mb.Spec) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, sentCopyTimeout)
	defer cancel()
	// The copy names the Bcc recipients the sent message hid, as a mail client's own copy does.
	folder, err := w.s.opts.SentCopies.SaveSentCopy(ctx, w.mb, smtpsend.SentCopy(raw, cur.Recipients), time.Now())
	c := store.OutboundSentCopy{Folder: folder, Saved: err == nil, Time: time.Now()}
	if err != nil {
		c.Error = err.Error()
		w.log.Warn("saving the copy in the Sent folder failed; the message was sent", "outbound_id", cur.ID, "folder", folder, "err", err)
		w.event(fmt.Sprintf("message %s was sent, but its copy could not be saved in the Sent folder %q: %v", cur.ID, folder, err))
	}
	if err := w.s.st.RecordSentCopy(w.wctx, cur, c); err != nil && !errors.Is(err, store.ErrNotFound) {
		w.log.Warn("recording the Sent copy", "outbound_id", cur.ID, "err", err)
	}
}

// record writes an attempt's outcome: res for an accepted message, else f. It retries a failing
// store for a while: an outcome must not be lost (a message left SENDING becomes UNKNOWN when
// the next worker starts, and is never sent again).
func (w *worker) record(cur *store.Outbound, from store.OutboundState, attempts int, res *smtpsend.Result, f *failure) bool {
	now := time.Now()
	u := store.OutboundUpdate{Attempts: attempts, UpdateTime: now}
	var event string
	switch {
	case res != nil:
		u.State, u.SentTime = store.OutboundSent, now
		resp := fmt.Sprint(res.Code)
		if res.Enhanced != "" {
			resp += " " + res.Enhanced
		}
		if res.Text != "" {
			resp += " " + res.Text
		}
		u.Result = &store.OutboundResult{QueueID: res.QueueID, Response: resp, DSN: res.DSN}
		event = fmt.Sprintf("message %s sent (Message-ID <%s>): %s", cur.ID, cur.MessageID, resp)
		w.log.Info("outbound message sent", "outbound_id", cur.ID, "message_id", cur.MessageID, "queue_id", res.QueueID)
	case f.kind == smtpsend.Unknown:
		u.State, u.Error = store.OutboundUnknown, f.err
		event = fmt.Sprintf("message %s: no answer after the whole message was written; it may have been sent (state unknown), it is not sent again", cur.ID)
		w.log.Warn("outbound message state unknown", "outbound_id", cur.ID, "explanation", f.err.Explanation)
	case f.kind == smtpsend.Temporary && now.Sub(cur.CreateTime) < w.s.opts.GiveUpAfter:
		u.State, u.Error = store.OutboundQueued, f.err
		u.NextAttemptTime = now.Add(w.s.backoff(attempts))
		if !f.retryAt.IsZero() {
			u.NextAttemptTime = f.retryAt
		}
		// Without the message's id or time, so the same failure of many messages folds into one entry.
		event = "sending failed for now, tried again later: " + f.err.Explanation
	default:
		u.State, u.Error = store.OutboundFailed, f.err
		if f.kind == smtpsend.Temporary {
			// Not retried any more: for the caller it is a permanent failure now.
			f.err.Kind = smtpsend.Permanent.String()
			f.err.Explanation = fmt.Sprintf("given up after %d attempts in %s: %s", attempts, w.s.opts.GiveUpAfter, f.err.Explanation)
		}
		event = fmt.Sprintf("message %s failed: %s", cur.ID, f.err.Explanation)
		w.log.Warn("outbound message failed", "outbound_id", cur.ID, "explanation", f.err.Explanation)
	}
	c := *cur
	c.State = from
	if from == store.OutboundSending {
		c.Attempts = attempts
	}
	for try := 0; ; try++ {
		err := w.s.st.TransitionOutbound(w.wctx, &c, u)
		if err == nil {
			break
		}
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrFenced) || try == 10 {
			w.storeFailed("recording an outcome", fmt.Errorf("outbound %s → %s: %w", cur.ID, u.State, err))
			return false
		}
		time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
	}
	w.event(event)
	return true
}

// backoff is the delay before attempt number attempts+1: MinBackoff × 4^(attempts-1), at most
// MaxBackoff, ±20 %.
func (s *Sender) backoff(attempts int) time.Duration {
	d := s.opts.MinBackoff
	for i := 1; i < attempts && d < s.opts.MaxBackoff; i++ {
		d *= 4
	}
	d = min(d, s.opts.MaxBackoff)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

var _ Credentials = (*pluginhost.Host)(nil)
