// Package cluster spreads mailboxes over the replicas that share one PostgreSQL database.
//
// Every replica runs a Member. Each round (every second by default) it renews its heartbeat row,
// reads the live replicas and every mailbox's lease, and computes by rendezvous hashing which
// replica each mailbox belongs to: every replica computes the same answer from the same rows, and
// a replica joining or leaving moves only its share. It claims the orphaned mailboxes that belong
// to it (epoch + 1, the fencing token), hands over the ones that belong to a replica that has
// been alive for a while (the session is stopped first, then the lease released, as Kafka's
// cooperative rebalancing does), and tells the session supervisor which mailboxes it owns.
//
// A replica trusts its leases only until its last successful heartbeat's start plus the TTL less
// a margin (River's trust window): when it cannot renew in time (the database is unreachable, the
// process was paused), it stops every session before another replica can claim them, and every
// write a stale session might still attempt is refused by the store (store.ErrFenced).
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/mailintake/mailintake/internal/store"
)

// Owner runs the sessions of the mailboxes a replica owns (the session supervisor).
type Owner interface {
	// Own makes the running sessions match leases: sessions of mailboxes not in it are stopped
	// (and have ended when Own returns), new ones started, and those whose lease changed
	// restarted under the new one. nil stops every session.
	Own(leases map[string]store.Lease)
	// Wake asks a mailbox's session to look for work now.
	Wake(mailboxID string)
}

// Options tune a Member. Zero values take the defaults.
type Options struct {
	ReplicaID string // stable name of this replica
	Addr      string // where other replicas reach this one's API port
	// TTL is how long a heartbeat keeps the replica alive (default 5 s); Interval how often it
	// is renewed and the leases reconciled (1 s); Margin how long before the TTL the replica stops
	// trusting its leases (1.5 s).
	TTL, Interval, Margin time.Duration
	// Settle is how long a replica must have been alive before others hand it mailboxes (5 s):
	// a replica that starts and crashes at once does not make every mailbox move twice.
	Settle time.Duration
	// OrphanGrace is how long an unowned mailbox waits for the replica it belongs to before any
	// replica claims it (3 s).
	OrphanGrace time.Duration
	// MaxMoves bounds the mailboxes handed over per round (500), so a replica joining a large
	// cluster takes its share in steps.
	MaxMoves int
	Logger   *slog.Logger
	// Metrics, when set, receive lease counts and handovers.
	Metrics Metrics
}

// Metrics receive a member's figures (implemented by internal/metrics).
type Metrics interface {
	LeasesHeld(n int)
	Handover(kind string, n int) // kind: "claimed", "released", "lost"
}

type noMetrics struct{}

func (noMetrics) LeasesHeld(int)       {}
func (noMetrics) Handover(string, int) {}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.TTL, 5*time.Second)
	def(&o.Interval, time.Second)
	def(&o.Margin, 1500*time.Millisecond)
	def(&o.Settle, 5*time.Second)
	def(&o.OrphanGrace, 3*time.Second)
	if o.MaxMoves == 0 {
		o.MaxMoves = 500
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
}

// Member is this replica's membership: heartbeat, claims, hand-overs, and the routing table
// (which replica owns which mailbox) that the API uses to reach owners.
type Member struct {
	st    store.Cluster
	owner Owner
	opts  Options
	log   *slog.Logger
	kick  chan struct{}

	mu           sync.Mutex
	incarnation  string
	joined       bool      // the heartbeat row carries this incarnation
	trustedUntil time.Time // monotonic: leases are trusted until then
	owned        map[string]store.Lease
	leases       map[string]store.Lease // last snapshot, every mailbox
	replicas     map[string]store.Replica
	firstAlive   map[string]time.Time // replica id+incarnation → when first seen alive
	orphanSince  map[string]time.Time // touched only by the reconciling goroutine, as woken
	lastRound    time.Time
	lastErr      error
	dropTimer    *time.Timer
	woken        map[string]time.Time // mailboxes woken for pending work, and when
}

// NewIncarnation returns a new random incarnation id.
func NewIncarnation() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// New returns a member; Run runs it.
func New(st store.Cluster, owner Owner, opts Options) *Member {
	opts.defaults()
	return &Member{st: st, owner: owner, opts: opts, log: opts.Logger, kick: make(chan struct{}, 1),
		incarnation: NewIncarnation(), owned: map[string]store.Lease{}, leases: map[string]store.Lease{},
		replicas: map[string]store.Replica{}, firstAlive: map[string]time.Time{}, orphanSince: map[string]time.Time{},
		woken: map[string]time.Time{}}
}

// ID returns the replica's id.
func (m *Member) ID() string { return m.opts.ReplicaID }

// Incarnation returns this process's incarnation.
func (m *Member) Incarnation() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.incarnation
}

// onNotify takes a hint from another replica: reconcile now (a mailbox was created, changed or
// deleted), and wake the mailbox's session if it runs here (a replay, a release, a sign-in).
func (m *Member) onNotify(mailboxID string) {
	m.Kick()
	if mailboxID == "" {
		return
	}
	m.mu.Lock()
	_, owned := m.owned[mailboxID]
	m.mu.Unlock()
	if owned {
		m.owner.Wake(mailboxID)
	}
}

// Kick makes the member reconcile now (a mailbox was created or deleted).
func (m *Member) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Trusted reports whether this replica may still act on its leases: its last heartbeat is
// recent enough that no other replica can have claimed its mailboxes. Sessions check it before
// every side effect on the mail server and every delivery.
func (m *Member) Trusted() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return time.Now().Before(m.trustedUntil)
}

// Join registers the replica (a new incarnation takes over the id) and waits for nothing else:
// Run claims the mailboxes. It fails when the database cannot be reached.
func (m *Member) Join(ctx context.Context) error {
	start := time.Now()
	err := m.st.Heartbeat(ctx, m.self(), m.opts.TTL, true)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.joined = true
	m.trustedUntil = start.Add(m.opts.TTL - m.opts.Margin)
	m.mu.Unlock()
	return nil
}

func (m *Member) self() store.Replica {
	m.mu.Lock()
	defer m.mu.Unlock()
	return store.Replica{ID: m.opts.ReplicaID, Incarnation: m.incarnation, Addr: m.opts.Addr}
}

// Run reconciles every Interval, and at once when another replica notifies a change, until ctx
// ends.
func (m *Member) Run(ctx context.Context) {
	go m.st.Listen(ctx, m.onNotify)
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	for {
		m.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.kick:
		}
	}
}

// Leave stops every session, releases every lease and ends the heartbeat, so the other replicas
// take the mailboxes over at once (a planned restart).
func (m *Member) Leave(ctx context.Context) error {
	m.mu.Lock()
	inc := m.incarnation
	m.mu.Unlock()
	m.drop("leaving the cluster")
	if err := m.st.Leave(ctx, m.opts.ReplicaID, inc); err != nil {
		return err
	}
	// The others reconcile at once instead of at their next round.
	return m.st.Notify(ctx, "")
}

// drop stops every session (the trust window lapsed, the id was taken, or the replica leaves).
func (m *Member) drop(why string) {
	m.mu.Lock()
	n := len(m.owned)
	m.owned = map[string]store.Lease{}
	m.trustedUntil = time.Time{}
	m.mu.Unlock()
	if n > 0 {
		m.log.Warn("stopping every session", "reason", why, "sessions", n)
		m.opts.Metrics.Handover("lost", n)
	}
	m.owner.Own(nil)
	m.opts.Metrics.LeasesHeld(0)
}

// armWatchdog stops every session when the trust window lapses without a renewal, even while a
// round is stuck waiting for the database.
func (m *Member) armWatchdog(until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dropTimer != nil {
		m.dropTimer.Stop()
	}
	m.dropTimer = time.AfterFunc(time.Until(until), func() {
		if !m.Trusted() {
			m.drop("the lease could not be renewed in time (database unreachable, or this process was paused)")
		}
	})
}

// round is one reconciliation.
func (m *Member) round(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	m.mu.Lock()
	lapsed := !m.trustedUntil.IsZero() && time.Now().After(m.trustedUntil)
	m.mu.Unlock()
	if lapsed {
		// Checked before anything else: a process that was paused past its TTL must stop its
		// sessions before it does anything on their behalf.
		m.drop("the lease lapsed before it was renewed (this process was paused, or the database was unreachable)")
	}
	start := time.Now()
	m.mu.Lock()
	join := !m.joined
	m.mu.Unlock()
	hctx, cancel := context.WithTimeout(ctx, m.opts.TTL-m.opts.Margin)
	err := m.st.Heartbeat(hctx, m.self(), m.opts.TTL, join)
	cancel()
	if errors.Is(err, store.ErrReplaced) {
		m.drop("another process took over replica id " + m.opts.ReplicaID)
		m.mu.Lock()
		m.incarnation = NewIncarnation()
		m.joined = false
		m.mu.Unlock()
		m.note(err)
		return
	}
	if err != nil {
		m.note(err)
		return
	}
	until := start.Add(m.opts.TTL - m.opts.Margin)
	m.mu.Lock()
	m.joined = true
	m.trustedUntil = until
	m.mu.Unlock()
	m.armWatchdog(until)

	if err := m.reconcile(ctx); err != nil {
		m.note(err)
		return
	}
	m.note(nil)
}

func (m *Member) note(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil && (m.lastErr == nil || m.lastErr.Error() != err.Error()) {
		m.log.Warn("cluster membership", "err", err)
	}
	m.lastErr = err
	if err == nil {
		m.lastRound = time.Now()
	}
}

// reconcile reads the replicas and leases, hands over, claims, and updates the sessions.
func (m *Member) reconcile(ctx context.Context) error {
	reps, err := m.st.Replicas(ctx)
	if err != nil {
		return err
	}
	leases, err := m.st.Leases(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	me := m.self()

	m.mu.Lock()
	live := map[string]store.Replica{}
	replicas := map[string]store.Replica{}
	seen := map[string]bool{}
	for _, r := range reps {
		replicas[r.ID] = r
		if !r.Alive {
			continue
		}
		live[r.ID] = r
		key := r.ID + "/" + r.Incarnation
		seen[key] = true
		if _, ok := m.firstAlive[key]; !ok {
			m.firstAlive[key] = now
		}
	}
	for k := range m.firstAlive {
		if !seen[k] {
			delete(m.firstAlive, k)
		}
	}
	live[me.ID] = me // just renewed
	liveIDs := make([]string, 0, len(live))
	settledIDs := make([]string, 0, len(live))
	for id, r := range live {
		liveIDs = append(liveIDs, id)
		if id == me.ID || now.Sub(m.firstAlive[id+"/"+r.Incarnation]) >= m.opts.Settle {
			settledIDs = append(settledIDs, id)
		}
	}
	m.replicas = replicas
	m.mu.Unlock()

	// Hand over: mailboxes this replica holds that belong to a settled replica. The session
	// stops first; only then is the lease released, so two sessions never overlap.
	var release []store.Lease
	var claim []string
	owned := map[string]store.Lease{}
	orphans := map[string]bool{}
	for _, l := range leases {
		mine := l.ReplicaID == me.ID && l.Incarnation == me.Incarnation
		switch {
		case mine:
			if len(release) < m.opts.MaxMoves && Pick(l.MailboxID, settledIDs) != me.ID {
				release = append(release, l)
			} else {
				owned[l.MailboxID] = l
			}
		case l.ReplicaID == "" || (l.ReplicaID == me.ID) || !holderAlive(l, live):
			orphans[l.MailboxID] = true
			since, ok := m.orphanSince[l.MailboxID]
			if !ok {
				since = now
				m.orphanSince[l.MailboxID] = now
			}
			if Pick(l.MailboxID, liveIDs) == me.ID || now.Sub(since) >= m.opts.OrphanGrace {
				claim = append(claim, l.MailboxID)
			}
		}
	}
	for id := range m.orphanSince {
		if !orphans[id] {
			delete(m.orphanSince, id)
		}
	}

	if len(release) > 0 {
		if m.Trusted() {
			m.setOwned(owned) // stops the released sessions before the leases go
		} // else the watchdog stopped every session already
		if err := m.st.Release(ctx, release); err != nil {
			return err
		}
		m.opts.Metrics.Handover("released", len(release))
		m.log.Info("handed mailboxes over", "count", len(release))
	}
	if len(claim) > 0 && m.Trusted() {
		got, err := m.st.Claim(ctx, me.ID, me.Incarnation, claim)
		if err != nil {
			return err
		}
		for _, l := range got {
			owned[l.MailboxID] = l
			delete(m.orphanSince, l.MailboxID)
		}
		if len(got) > 0 {
			m.opts.Metrics.Handover("claimed", len(got))
			m.log.Info("claimed mailboxes", "count", len(got))
		}
	}
	snapshot := make(map[string]store.Lease, len(leases))
	for _, l := range leases {
		snapshot[l.MailboxID] = l
	}
	for id, l := range owned {
		snapshot[id] = l
	}
	m.mu.Lock()
	m.leases = snapshot
	m.mu.Unlock()
	if !m.Trusted() {
		return nil // the watchdog stopped everything meanwhile; the next round starts over
	}
	m.setOwned(owned)
	return m.wakePending(ctx, me, now)
}

// Pending work is looked for among acknowledgements recorded this long ago at most (older ones
// whose action keeps failing are the session's own retry business), and a mailbox is woken for it
// at most once per wakeEvery.
const (
	pendingWindow = time.Minute
	pendingGrace  = 3 * time.Second // younger acknowledgements are being applied right now
	wakeEvery     = 30 * time.Second
)

// wakePending wakes the sessions that have work recorded by another replica whose hint may have
// been lost (an acknowledgement of a released message, a replay).
func (m *Member) wakePending(ctx context.Context, me store.Replica, now time.Time) error {
	ids, err := m.st.PendingWork(ctx, me.ID, me.Incarnation, now.Add(-pendingWindow), now.Add(-pendingGrace))
	if err != nil {
		return err
	}
	for id, at := range m.woken {
		if now.Sub(at) > wakeEvery {
			delete(m.woken, id)
		}
	}
	for _, id := range ids {
		if _, ok := m.woken[id]; ok {
			continue
		}
		m.woken[id] = now
		m.owner.Wake(id)
	}
	return nil
}

func holderAlive(l store.Lease, live map[string]store.Replica) bool {
	r, ok := live[l.ReplicaID]
	return ok && r.Incarnation == l.Incarnation
}

// setOwned records and applies the owned set.
func (m *Member) setOwned(owned map[string]store.Lease) {
	m.mu.Lock()
	m.owned = owned
	cp := make(map[string]store.Lease, len(owned))
	for k, v := range owned {
		cp[k] = v
	}
	m.mu.Unlock()
	m.owner.Own(cp)
	m.opts.Metrics.LeasesHeld(len(cp))
}

// Pick returns the replica a mailbox belongs to among ids: the highest rendezvous hash of the
// mailbox and the replica's id (ties by id). Every replica computes the same answer from the
// same set, and adding or removing a replica moves only the mailboxes that pick it.
func Pick(mailboxID string, ids []string) string {
	var best string
	var bestScore uint64
	for _, id := range ids {
		h := sha256.New()
		h.Write([]byte(mailboxID))
		h.Write([]byte{0})
		h.Write([]byte(id))
		var sum [sha256.Size]byte
		score := binary.BigEndian.Uint64(h.Sum(sum[:0]))
		if best == "" || score > bestScore || (score == bestScore && id < best) {
			best, bestScore = id, score
		}
	}
	return best
}

// Route is where a mailbox's session runs.
type Route struct {
	ReplicaID string
	Addr      string
	Epoch     int64
	Self      bool // this replica owns it
}

// Route returns the owner of a mailbox by the last reconciliation; ok is false when no live
// replica holds it.
func (m *Member) Route(mailboxID string) (Route, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.owned[mailboxID]; ok {
		return Route{ReplicaID: m.opts.ReplicaID, Addr: m.opts.Addr, Epoch: l.Epoch, Self: true}, true
	}
	l, ok := m.leases[mailboxID]
	if !ok || l.ReplicaID == "" {
		return Route{}, false
	}
	r, ok := m.replicas[l.ReplicaID]
	if !ok || !r.Alive || r.Incarnation != l.Incarnation || l.ReplicaID == m.opts.ReplicaID {
		return Route{}, false
	}
	return Route{ReplicaID: l.ReplicaID, Addr: r.Addr, Epoch: l.Epoch}, true
}

// Lapsed reports whether a replica known from the last reconciliation has a heartbeat that
// lapsed (a replica not seen yet, having just joined, has not).
func (m *Member) Lapsed(replicaID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.replicas[replicaID]
	return ok && !r.Alive
}

// Peers returns the other live replicas by the last reconciliation, ordered by id.
func (m *Member) Peers() []store.Replica {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Replica
	for id, r := range m.replicas {
		if id != m.opts.ReplicaID && r.Alive {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ReplicaStatus is one replica as the cluster status shows it.
type ReplicaStatus struct {
	store.Replica
	Mailboxes int   // leases it holds
	MaxEpoch  int64 // the highest epoch among them
	Self      bool
}

// Status is the cluster as this replica sees it.
type Status struct {
	Replicas  []ReplicaStatus
	Unowned   int // mailboxes no live replica holds
	LastRound time.Time
	LastError error
}

// Status returns the cluster as of the last reconciliation.
func (m *Member) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	byID := map[string]*ReplicaStatus{}
	var ids []string
	for id, r := range m.replicas {
		byID[id] = &ReplicaStatus{Replica: r, Self: id == m.opts.ReplicaID}
		ids = append(ids, id)
	}
	st := Status{LastRound: m.lastRound, LastError: m.lastErr}
	for _, l := range m.leases {
		r, ok := byID[l.ReplicaID]
		if !ok || !r.Alive || r.Incarnation != l.Incarnation {
			st.Unowned++
			continue
		}
		r.Mailboxes++
		r.MaxEpoch = max(r.MaxEpoch, l.Epoch)
	}
	sort.Strings(ids)
	for _, id := range ids {
		st.Replicas = append(st.Replicas, *byID[id])
	}
	return st
}
