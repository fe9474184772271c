package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/store"
)

func TestPickSpreadsAndMovesOnlyTheJoinersShare(t *testing.T) {
	const n = 3000
	two := []string{"r1", "r2"}
	three := []string{"r1", "r2", "r3"}
	count := map[string]int{}
	moved := 0
	for i := range n {
		id := fmt.Sprintf("mbx-%d", i)
		before, after := Pick(id, two), Pick(id, three)
		if before != Pick(id, []string{"r2", "r1"}) {
			t.Fatalf("Pick depends on the order of the replicas")
		}
		count[after]++
		if before != after {
			moved++
			if after != "r3" {
				t.Fatalf("%s moved from %s to %s when r3 joined: only mailboxes that pick the new replica may move", id, before, after)
			}
		}
	}
	for _, r := range three {
		if c := count[r]; c < n/3*85/100 || c > n/3*115/100 {
			t.Errorf("replica %s picks %d of %d mailboxes, want about a third", r, c, n)
		}
	}
	if moved != count["r3"] {
		t.Errorf("%d mailboxes moved, want exactly r3's %d", moved, count["r3"])
	}
	if Pick("x", nil) != "" {
		t.Error("Pick over no replica must be empty")
	}
}

// fakeCluster is an in-memory store.Cluster with a clock of its own (the "database's").
type fakeCluster struct {
	mu       sync.Mutex
	replicas map[string]store.Replica
	leases   map[string]store.Lease
	block    chan struct{} // when set, Heartbeat waits on it (the database hangs)
}

func newFakeCluster(mailboxes ...string) *fakeCluster {
	f := &fakeCluster{replicas: map[string]store.Replica{}, leases: map[string]store.Lease{}}
	for _, id := range mailboxes {
		f.leases[id] = store.Lease{MailboxID: id}
	}
	return f
}

func (f *fakeCluster) Heartbeat(ctx context.Context, r store.Replica, ttl time.Duration, join bool) error {
	f.mu.Lock()
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.replicas[r.ID]
	if !join && (!ok || cur.Incarnation != r.Incarnation) {
		return store.ErrReplaced
	}
	r.ExpireTime = time.Now().Add(ttl)
	f.replicas[r.ID] = r
	return nil
}

func (f *fakeCluster) alive(id, inc string) bool {
	r, ok := f.replicas[id]
	return ok && r.Incarnation == inc && time.Now().Before(r.ExpireTime)
}

func (f *fakeCluster) Replicas(context.Context) ([]store.Replica, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Replica
	for _, r := range f.replicas {
		r.Alive = time.Now().Before(r.ExpireTime)
		out = append(out, r)
	}
	return out, nil
}

func (f *fakeCluster) Leases(context.Context) ([]store.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Lease
	for _, l := range f.leases {
		out = append(out, l)
	}
	return out, nil
}

func (f *fakeCluster) Claim(_ context.Context, id, inc string, ids []string) ([]store.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.alive(id, inc) {
		return nil, nil
	}
	var out []store.Lease
	for _, m := range ids {
		l, ok := f.leases[m]
		if !ok || (l.ReplicaID != "" && !(l.ReplicaID == id && l.Incarnation != inc) && f.alive(l.ReplicaID, l.Incarnation)) {
			continue
		}
		l.ReplicaID, l.Incarnation, l.Epoch = id, inc, l.Epoch+1
		f.leases[m] = l
		out = append(out, l)
	}
	return out, nil
}

func (f *fakeCluster) Release(_ context.Context, ls []store.Lease) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range ls {
		if cur := f.leases[l.MailboxID]; cur.Holds(l) {
			cur.ReplicaID, cur.Incarnation = "", ""
			f.leases[l.MailboxID] = cur
		}
	}
	return nil
}

func (f *fakeCluster) Leave(_ context.Context, id, inc string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for m, l := range f.leases {
		if l.ReplicaID == id && l.Incarnation == inc {
			l.ReplicaID, l.Incarnation = "", ""
			f.leases[m] = l
		}
	}
	if r, ok := f.replicas[id]; ok && r.Incarnation == inc {
		r.ExpireTime = time.Now()
		f.replicas[id] = r
	}
	return nil
}

func (f *fakeCluster) PendingWork(context.Context, string, string, time.Time, time.Time) ([]string, error) {
	return nil, nil
}
func (f *fakeCluster) Notify(context.Context, string) error       { return nil }
func (f *fakeCluster) Listen(ctx context.Context, _ func(string)) { <-ctx.Done() }
func (f *fakeCluster) holders() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for m, l := range f.leases {
		out[m] = l.ReplicaID
	}
	return out
}

// owner records what a member asked it to run.
type owner struct {
	mu    sync.Mutex
	owned map[string]store.Lease
}

func (o *owner) Own(l map[string]store.Lease) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.owned = l
}
func (o *owner) Wake(string) {}
func (o *owner) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.owned)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fastOptions(id string) Options {
	return Options{ReplicaID: id, Addr: id + ":1", TTL: 600 * time.Millisecond, Interval: 50 * time.Millisecond,
		Margin: 200 * time.Millisecond, Settle: 200 * time.Millisecond, OrphanGrace: 200 * time.Millisecond}
}

func TestMembersSpreadHandOverAndLeave(t *testing.T) {
	var ids []string
	for i := range 60 {
		ids = append(ids, fmt.Sprintf("m%02d", i))
	}
	st := newFakeCluster(ids...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	oa, ob := &owner{}, &owner{}
	a, b := New(st, oa, fastOptions("a")), New(st, ob, fastOptions("b"))
	for _, m := range []*Member{a, b} {
		if err := m.Join(ctx); err != nil {
			t.Fatal(err)
		}
	}
	go a.Run(ctx)
	waitUntil(t, "a holding every mailbox while alone", func() bool { return oa.count() == 60 })
	bctx, bcancel := context.WithCancel(ctx)
	go b.Run(bctx)
	// b takes its share after it settled; a hands over, never both holding one.
	waitUntil(t, "the mailboxes spread over a and b", func() bool {
		return oa.count()+ob.count() == 60 && oa.count() > 15 && ob.count() > 15
	})
	for m, h := range st.holders() {
		if want := Pick(m, []string{"a", "b"}); h != want {
			t.Errorf("%s held by %s, belongs to %s", m, h, want)
		}
	}
	// b leaves (a planned stop): a takes everything back without waiting for b's lease.
	bcancel()
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if ob.count() != 0 {
		t.Errorf("b still runs %d sessions after leaving", ob.count())
	}
	start := time.Now()
	waitUntil(t, "a holding every mailbox again", func() bool { return oa.count() == 60 })
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("taking over after a leave took %s: longer than a lease", d)
	}
}

func TestMemberStopsSessionsWhenItCannotRenew(t *testing.T) {
	st := newFakeCluster("m1", "m2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := &owner{}
	m := New(st, o, fastOptions("a"))
	if err := m.Join(ctx); err != nil {
		t.Fatal(err)
	}
	go m.Run(ctx)
	waitUntil(t, "the sessions running", func() bool { return o.count() == 2 && m.Trusted() })
	// The database hangs: every session stops before the lease could lapse, while the
	// heartbeat is still stuck.
	st.mu.Lock()
	st.block = make(chan struct{})
	st.mu.Unlock()
	hung := time.Now()
	waitUntil(t, "every session stopped", func() bool { return o.count() == 0 })
	if d := time.Since(hung); d >= 600*time.Millisecond {
		t.Errorf("sessions stopped %s after the database hung: not before the 600ms lease could lapse", d)
	}
	if m.Trusted() {
		t.Error("still trusted without a renewal")
	}
	// The database answers again: the replica takes its mailboxes back.
	st.mu.Lock()
	close(st.block)
	st.block = nil
	st.mu.Unlock()
	waitUntil(t, "the sessions back", func() bool { return o.count() == 2 && m.Trusted() })
}
