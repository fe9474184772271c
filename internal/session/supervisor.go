// Package session keeps one supervised session per enabled mailbox: connect, authenticate with
// the provider's credential, select, catch up from the durable UID checkpoint, deliver on demand
// through the delivery broker, apply after-ack actions, then IDLE (or poll). The protocol is a
// transport (transport.go): IMAP, or POP3 polled in short sessions (pop3.go). Lost connections
// reconnect with exponential backoff and jitter; refused logins are not retried in a tight loop,
// because repeated bad passwords lock accounts.
package session

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"sync"
	"time"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/imapconn"
	"github.com/mailintake/mailintake/internal/metrics"
	"github.com/mailintake/mailintake/internal/pluginhost"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/plugins/authplugin"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Options tune the sessions. Zero values take the defaults.
type Options struct {
	// IdleRestart re-issues IDLE before servers drop it (RFC 2177 allows 30 minutes).
	IdleRestart time.Duration
	// PollInterval is how often servers without IDLE are polled.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound reconnect delays after errors.
	MinBackoff, MaxBackoff time.Duration
	// AuthBackoff is the first delay after a refused login; it doubles up to MaxAuthBackoff.
	AuthBackoff, MaxAuthBackoff time.Duration
	// DefaultMaxMessageBytes applies when a mailbox sets no limit.
	DefaultMaxMessageBytes int64
	// DefaultMaxInlineAttachment applies when a mailbox sets no limit.
	DefaultMaxInlineAttachment int64
	// CommandTimeout bounds each IMAP command.
	CommandTimeout time.Duration
	// HashRetention is how long hashes of acknowledged messages are kept for UIDVALIDITY resyncs.
	HashRetention time.Duration
	// BodyBudget bounds the bytes of message bodies all sessions hold at once between the
	// socket and the parser: many mailboxes receiving large mail at the same moment take turns
	// instead of holding every body. Zero means a quarter of the Go memory limit (GOMEMLIMIT)
	// when one is set, else 128 MiB; never less than 64 MiB.
	BodyBudget int64
	// Clustered: sessions run only for the mailboxes whose leases Own gives (several replicas
	// share the database), not for every mailbox in the store; each session's store writes are
	// fenced by its lease.
	Clustered bool
	// Trusted, when set, is asked before every delivery and every action on the mail server:
	// false means this replica may have lost its leases (cluster.Member.Trusted), so the session
	// does nothing more on the mailbox's behalf.
	Trusted func() bool
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.IdleRestart, 25*time.Minute)
	def(&o.PollInterval, 30*time.Second)
	def(&o.MinBackoff, time.Second)
	def(&o.MaxBackoff, 5*time.Minute)
	def(&o.AuthBackoff, 15*time.Minute)
	def(&o.MaxAuthBackoff, 2*time.Hour)
	def(&o.CommandTimeout, 2*time.Minute)
	def(&o.HashRetention, 90*24*time.Hour)
	if o.DefaultMaxMessageBytes == 0 {
		o.DefaultMaxMessageBytes = 50 << 20
	}
	if o.DefaultMaxInlineAttachment == 0 {
		o.DefaultMaxInlineAttachment = 1 << 20
	}
	if o.Trusted == nil {
		o.Trusted = func() bool { return true }
	}
	if o.BodyBudget == 0 {
		o.BodyBudget = 128 << 20
		if limit := debug.SetMemoryLimit(-1); limit < math.MaxInt64 {
			o.BodyBudget = max(limit/4, 64<<20)
		}
	}
}

// Supervisor runs the sessions.
type Supervisor struct {
	store   store.Store
	plugins *pluginhost.Host
	broker  *delivery.Broker
	metrics *metrics.Metrics
	log     *slog.Logger
	opts    Options

	mu       sync.Mutex
	ctx      context.Context
	sessions map[string]*session
	wg       sync.WaitGroup
	authz    authorizations
	budget   *imapconn.Budget // shared by every session's connections
	// owned are the leases of the mailboxes this replica runs (Options.Clustered).
	owned map[string]store.Lease
}

// NewSupervisor returns a supervisor; Start starts it.
func NewSupervisor(st store.Store, plugins *pluginhost.Host, broker *delivery.Broker, m *metrics.Metrics, log *slog.Logger, opts Options) *Supervisor {
	opts.defaults()
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if m == nil {
		m = metrics.New()
	}
	return &Supervisor{store: st, plugins: plugins, broker: broker, metrics: m, log: log, opts: opts, sessions: map[string]*session{},
		budget: imapconn.NewBudget(opts.BodyBudget)}
}

// Start starts a session for every enabled mailbox. Sessions stop when ctx ends; Wait waits.
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	if s.opts.Clustered {
		return nil // Own starts the sessions of the mailboxes this replica holds
	}
	mbs, err := s.store.ListMailboxes(ctx, store.MailboxQuery{})
	if err != nil {
		return err
	}
	for _, mb := range mbs {
		s.Reload(ctx, mb.Spec.GetId())
	}
	return nil
}

// Wait waits for every session to end after Start's context ended.
func (s *Supervisor) Wait() { s.wg.Wait() }

// Reload makes a mailbox's session match its stored definition at once: started, restarted
// with the new definition, or stopped when disabled or deleted (or, clustered, when this replica
// does not hold its lease).
func (s *Supervisor) Reload(ctx context.Context, mailboxID string) {
	mb, err := s.store.GetMailbox(ctx, mailboxID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("reloading mailbox", "mailbox_id", mailboxID, "err", err)
		return
	}
	s.mu.Lock()
	old := s.swapLocked(mailboxID, mb)
	s.mu.Unlock()
	if old != nil {
		old.wait()
	}
}

// swapLocked replaces a mailbox's session by one for mb (nil: none) and returns the old one,
// already told to stop; the caller waits for it outside the lock.
func (s *Supervisor) swapLocked(mailboxID string, mb *store.Mailbox) *session {
	if s.ctx == nil {
		return nil
	}
	old := s.sessions[mailboxID]
	if old != nil {
		old.cancelRun()
		delete(s.sessions, mailboxID)
	}
	lease, owned := s.owned[mailboxID]
	if mb == nil || (s.opts.Clustered && !owned) {
		go s.stopAuthorization(mailboxID)
		if mb == nil {
			s.plugins.Forget(mailboxID)
			s.metrics.Forget(mailboxID)
		}
		s.broker.Remove(mailboxID)
		return old
	}
	sess := newSession(s, mb)
	if s.opts.Clustered {
		sess.wctx = store.WithLease(context.Background(), lease)
		sess.lease = lease
	}
	s.sessions[mailboxID] = sess
	// A sign-in in progress (begun here or elsewhere, before a restart or a takeover) is polled
	// by the process that runs the mailbox.
	go s.ResumeAuthorization(context.WithoutCancel(s.ctx), mailboxID)
	if !mb.Spec.GetEnabled() {
		sess.status.set(mailintakev1.MailboxState_MAILBOX_STATE_DISABLED, "the mailbox is disabled")
		return old
	}
	sctx, cancel := context.WithCancel(s.ctx)
	if s.opts.Clustered {
		sctx = store.WithLease(sctx, lease)
	}
	sess.cancel = cancel
	s.wg.Add(1)
	go func() {
		if old != nil {
			old.wait() // never two sessions on one mailbox at once
		}
		// The session may go on on other goroutines (it holds none while it waits); it calls
		// s.wg.Done and closes sess.done when it has ended.
		sess.start(sctx)
	}()
	return old
}

// Own implements cluster.Owner: the sessions become those of the mailboxes in leases (a
// Clustered supervisor). Sessions that go are stopped together, and have ended when Own
// returns, so a lease is released only after its session closed its connection.
func (s *Supervisor) Own(leases map[string]store.Lease) {
	s.mu.Lock()
	if s.ctx == nil {
		s.mu.Unlock()
		return
	}
	s.owned = leases
	var stopped []*session
	var start []string
	for id, sess := range s.sessions {
		l, ok := leases[id]
		if !ok {
			sess.cancelRun()
			delete(s.sessions, id)
			s.broker.Remove(id)
			go s.stopAuthorization(id)
			stopped = append(stopped, sess)
		} else if !l.Holds(sess.lease) || !l.Updated.Equal(sess.mb.Spec.GetUpdateTime().AsTime()) {
			// A new epoch: restart under the new lease. A changed definition (whose hint from
			// the replica that changed it may have been lost): restart with it.
			start = append(start, id)
		}
	}
	for id := range leases {
		if _, ok := s.sessions[id]; !ok {
			start = append(start, id)
		}
	}
	ctx := s.ctx
	s.mu.Unlock()
	for _, sess := range stopped {
		sess.wait()
	}
	for _, id := range start {
		s.Reload(ctx, id)
	}
}

// Wake asks a mailbox's session to look for work now (e.g. after a quarantine change, or a
// sign-in begun on another replica).
func (s *Supervisor) Wake(mailboxID string) {
	s.mu.Lock()
	sess, ok := s.sessions[mailboxID]
	s.mu.Unlock()
	if ok {
		sess.queue.Signal()
		go s.ResumeAuthorization(context.Background(), mailboxID)
	}
}

// BodyBytes returns the bytes of message bodies the sessions hold now, the most they held at
// once, and the budget (Options.BodyBudget).
func (s *Supervisor) BodyBytes() (now, peak, budget int64) {
	now, peak = s.budget.Used()
	return now, peak, s.budget.Total()
}

// Status returns a mailbox's live status, or nil when the supervisor does not know it.
func (s *Supervisor) Status(ctx context.Context, mailboxID string) *mailintakev1.MailboxStatus {
	s.mu.Lock()
	sess, ok := s.sessions[mailboxID]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	st := sess.status.snapshot()
	st.MailboxId = mailboxID
	st.OwnerReplicaId, st.OwnerEpoch = sess.lease.ReplicaID, sess.lease.Epoch
	d, a, p := sess.queue.Counts()
	st.Counts = &mailintakev1.MessageCounts{Delivered: d, Acknowledged: a, Pending: p}
	if qs, err := s.store.ListQuarantine(ctx, mailboxID); err == nil {
		st.Counts.Quarantined = uint64(len(qs))
	}
	return st
}

// Target returns the connection target of a mailbox definition.
func Target(mb *mailintakev1.Mailbox, commandTimeout time.Duration) (imapconn.Target, error) {
	t := imapconn.Target{Host: mb.GetHost(), Port: int(mb.GetPort()), SkipVerify: mb.GetInsecureSkipVerify(), CommandTimeout: commandTimeout}
	switch mb.GetSecurity() {
	case mailintakev1.Security_SECURITY_STARTTLS:
		t.Security = imapconn.StartTLS
	case mailintakev1.Security_SECURITY_NONE:
		t.Security = imapconn.Plaintext
	default:
		t.Security = imapconn.TLS
	}
	if pem := mb.GetCaPem(); pem != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM([]byte(pem)) {
			return t, errors.New("ca_pem holds no usable certificate")
		}
		t.RootCAs = pool
	}
	return t, nil
}

// Account is what the provider sees of a mailbox.
func Account(mb *mailintakev1.Mailbox, secrets map[string]string) authplugin.Account {
	proto := "imap"
	if mb.GetProtocol() == mailintakev1.Protocol_PROTOCOL_POP3 {
		proto = "pop3"
	}
	return authplugin.Account{MailboxID: mb.GetId(), Protocol: proto, Host: mb.GetHost(), Port: int(mb.GetPort()),
		Username: mb.GetUsername(), Config: mb.GetAuthConfig(), Secrets: secrets}
}

// connect dials, authenticates and selects the folder of a mailbox, reporting each step.
func (s *Supervisor) connect(ctx context.Context, mb *mailintakev1.Mailbox, secrets map[string]string, force bool, report func(imapconn.Step, *authplugin.Error)) (*imapconn.Conn, imapconn.Selected, time.Time, error) {
	if report == nil {
		report = func(imapconn.Step, *authplugin.Error) {}
	}
	conn, expiry, err := s.signIn(ctx, mb, secrets, force, report)
	if err != nil {
		return nil, imapconn.Selected{}, time.Time{}, err
	}
	start := time.Now()
	sel, err := conn.Select(ctx, mb.GetFolder())
	if err != nil {
		conn.Close()
		report(imapconn.Step{Kind: imapconn.StepSelect, Duration: time.Since(start), Err: err}, nil)
		return nil, imapconn.Selected{}, time.Time{}, err
	}
	report(imapconn.Step{Kind: imapconn.StepSelect, Duration: time.Since(start), Detail: fmt.Sprintf("%s: %d messages (UIDVALIDITY %d, UIDNEXT %d)", sel.Name, sel.NumMessages, sel.UIDValidity, sel.UIDNext)}, nil)
	return conn, sel, expiry, nil
}

// signIn dials a mailbox's IMAP server and authenticates with a credential from its provider
// (force: issued afresh), reporting each step; it returns the credential's expiry. A failure of
// the provider is a *providerError, a refusal by the server an imapconn auth error.
func (s *Supervisor) signIn(ctx context.Context, mb *mailintakev1.Mailbox, secrets map[string]string, force bool, report func(imapconn.Step, *authplugin.Error)) (*imapconn.Conn, time.Time, error) {
	if report == nil {
		report = func(imapconn.Step, *authplugin.Error) {}
	}
	t, err := Target(mb, s.opts.CommandTimeout)
	t.Budget = s.budget
	if s.opts.Clustered {
		t.Allow = s.opts.Trusted
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	conn, err := imapconn.Dial(ctx, t, func(st imapconn.Step) { report(st, nil) })
	if err != nil {
		return nil, time.Time{}, err
	}
	start := time.Now()
	cred, err := s.plugins.Credential(ctx, mb.GetAuthProvider(), Account(mb, secrets), force)
	if err != nil {
		conn.Close()
		pe, _ := authplugin.AsError(err)
		report(imapconn.Step{Kind: imapconn.StepAuth, Duration: time.Since(start), Err: err}, pe)
		return nil, time.Time{}, &providerError{err: err}
	}
	if err := conn.Authenticate(ctx, imapconn.Credential{Mechanism: cred.Mechanism, Identity: cred.Identity, Secret: cred.Secret}); err != nil {
		conn.Close()
		report(imapconn.Step{Kind: imapconn.StepAuth, Duration: time.Since(start), Err: err}, nil)
		return nil, time.Time{}, err
	}
	report(imapconn.Step{Kind: imapconn.StepAuth, Duration: time.Since(start), Detail: fmt.Sprintf("signed in as %s with %s (provider %s)", cred.Identity, cred.Mechanism, mb.GetAuthProvider())}, nil)
	return conn, cred.Expiry, nil
}

// providerError is a failure of the auth provider (as opposed to the mail server refusing).
type providerError struct{ err error }

func (e *providerError) Error() string { return "auth provider: " + e.err.Error() }
func (e *providerError) Unwrap() error { return e.err }
