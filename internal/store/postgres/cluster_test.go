//go:build postgres

package postgres

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pgserver "github.com/mailintake/mailintake/internal/fakes/postgres"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/storetest"
)

// TestCluster runs the store.Cluster tests on one private server, a new database for each.
func TestCluster(t *testing.T) {
	srv := pgserver.Start(t)
	for _, tc := range []struct {
		name string
		f    func(t *testing.T, s *Store)
	}{
		{"Heartbeat", testHeartbeat},
		{"AliveAfterTTL", testAliveAfterTTL},
		{"ClaimOrphans", testClaimOrphans},
		{"ClaimantNotAlive", testClaimantNotAlive},
		{"Release", testRelease},
		{"Leave", testLeave},
		{"FencedWrites", testFencedWrites},
		{"FencedWriteWaitsForClaim", testFencedWriteWaitsForClaim},
		{"ClaimSkipsFencedWrite", testClaimSkipsFencedWrite},
		{"FencedAuthorization", testFencedAuthorization},
		{"ConcurrentClaims", testConcurrentClaims},
		{"ClaimMany", testClaimMany},
		{"DeleteCascades", testOwnerDeleteCascades},
		{"PendingWork", testPendingWork},
		{"FencedOutbox", testFencedOutbox},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, openFresh(t, srv)) })
	}
}

const testTTL = time.Minute

func join(t *testing.T, s *Store, id, incarnation string) {
	t.Helper()
	if err := s.Heartbeat(t.Context(), store.Replica{ID: id, Incarnation: incarnation, Addr: id + ":7465"}, testTTL, true); err != nil {
		t.Fatalf("Heartbeat(join %s/%s): %v", id, incarnation, err)
	}
}

// lapse ends a replica's heartbeat in the past by the database's clock, as if it had stopped
// renewing it, without waiting for its TTL.
func lapse(t *testing.T, s *Store, id string) {
	t.Helper()
	if _, err := s.pool.Exec(t.Context(), `UPDATE replica SET expires_at = now() - interval '1 second' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
}

func createMailboxes(t *testing.T, s *Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := s.CreateMailbox(t.Context(), storetest.NewMailbox(id, "tenant-"+id)); err != nil {
			t.Fatal(err)
		}
	}
}

// claim claims ids and returns the leases taken by mailbox id, checking that each names the
// claimant and its tenant and that they come in order.
func claim(t *testing.T, s *Store, replicaID, incarnation string, ids ...string) map[string]store.Lease {
	t.Helper()
	got, err := s.Claim(t.Context(), replicaID, incarnation, ids)
	if err != nil {
		t.Fatalf("Claim(%s/%s, %q): %v", replicaID, incarnation, ids, err)
	}
	if !slices.IsSortedFunc(got, func(a, b store.Lease) int { return strings.Compare(a.MailboxID, b.MailboxID) }) {
		t.Errorf("Claim returned leases out of order: %+v", got)
	}
	out := map[string]store.Lease{}
	for _, l := range got {
		if l.ReplicaID != replicaID || l.Incarnation != incarnation || l.Tenant != "tenant-"+l.MailboxID {
			t.Errorf("Claim(%s/%s) returned %+v", replicaID, incarnation, l)
		}
		out[l.MailboxID] = l
	}
	return out
}

func leases(t *testing.T, s *Store) map[string]store.Lease {
	t.Helper()
	l, err := s.Leases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(l, func(a, b store.Lease) int { return strings.Compare(a.MailboxID, b.MailboxID) }) {
		t.Errorf("Leases out of order: %+v", l)
	}
	out := map[string]store.Lease{}
	for _, x := range l {
		out[x.MailboxID] = x
	}
	return out
}

// checkOwner checks a mailbox's lease in Leases: its holder (empty: none) and epoch.
func checkOwner(t *testing.T, all map[string]store.Lease, mailboxID, replicaID, incarnation string, epoch int64) {
	t.Helper()
	l, ok := all[mailboxID]
	if !ok {
		t.Errorf("Leases has no %s", mailboxID)
		return
	}
	if l.ReplicaID != replicaID || l.Incarnation != incarnation || l.Epoch != epoch || l.Tenant != "tenant-"+mailboxID {
		t.Errorf("lease of %s = %+v, want held by %q/%q at epoch %d", mailboxID, l, replicaID, incarnation, epoch)
	}
}

func replicas(t *testing.T, s *Store) map[string]store.Replica {
	t.Helper()
	l, err := s.Replicas(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.Replica{}
	for _, r := range l {
		out[r.ID] = r
	}
	if ids := slices.Collect(maps.Keys(out)); len(ids) != len(l) || !slices.IsSortedFunc(l, func(a, b store.Replica) int { return strings.Compare(a.ID, b.ID) }) {
		t.Errorf("Replicas not ordered by id, or repeated: %+v", l)
	}
	return out
}

// A join registers the replica; a renewal extends it; a join by another incarnation with the same
// id takes the id over, and the earlier incarnation's renewals are ErrReplaced from then on.
func testHeartbeat(t *testing.T, s *Store) {
	ctx := t.Context()
	if err := s.Heartbeat(ctx, store.Replica{ID: "r1", Incarnation: "i1"}, testTTL, false); err != store.ErrReplaced {
		t.Errorf("renewal of a replica that never joined = %v, want ErrReplaced", err)
	}
	join(t, s, "r1", "i1")
	r := replicas(t, s)["r1"]
	if r.Incarnation != "i1" || r.Addr != "r1:7465" || !r.Alive || r.ExpireTime.Sub(r.StartTime) != testTTL ||
		r.StartTime.Location() != time.UTC || time.Since(r.StartTime).Abs() > time.Minute {
		t.Fatalf("after the join: %+v", r)
	}
	time.Sleep(10 * time.Millisecond)
	if err := s.Heartbeat(ctx, store.Replica{ID: "r1", Incarnation: "i1"}, 2*testTTL, false); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	renewed := replicas(t, s)["r1"]
	if !renewed.StartTime.Equal(r.StartTime) || renewed.ExpireTime.Sub(r.ExpireTime) < testTTL || renewed.Addr != "r1:7465" || !renewed.Alive {
		t.Errorf("after the renewal: %+v (before %+v)", renewed, r)
	}

	// Another process starts with the same id.
	if err := s.Heartbeat(ctx, store.Replica{ID: "r1", Incarnation: "i2", Addr: "elsewhere:7465"}, testTTL, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, store.Replica{ID: "r1", Incarnation: "i1"}, testTTL, false); err != store.ErrReplaced {
		t.Errorf("renewal by the replaced incarnation = %v, want ErrReplaced", err)
	}
	if err := s.Heartbeat(ctx, store.Replica{ID: "r1", Incarnation: "i2"}, testTTL, false); err != nil {
		t.Errorf("renewal by the new incarnation: %v", err)
	}
	r = replicas(t, s)["r1"]
	if r.Incarnation != "i2" || r.Addr != "elsewhere:7465" || !r.Alive || r.StartTime.Before(renewed.StartTime) {
		t.Errorf("after the takeover: %+v", r)
	}
	// Other ids are independent.
	join(t, s, "r2", "j1")
	if all := replicas(t, s); len(all) != 2 || all["r2"].Incarnation != "j1" || all["r1"].Incarnation != "i2" {
		t.Errorf("Replicas = %+v", all)
	}
}

// Alive is the database's verdict: it turns false once the TTL has passed. A lapsed replica is
// listed for a minute, then left out and removed by the next heartbeat.
func testAliveAfterTTL(t *testing.T, s *Store) {
	ctx := t.Context()
	const ttl = 300 * time.Millisecond
	r1 := store.Replica{ID: "r1", Incarnation: "i1", Addr: "a:1"}
	if err := s.Heartbeat(ctx, r1, ttl, true); err != nil {
		t.Fatal(err)
	}
	if r := replicas(t, s)["r1"]; !r.Alive {
		t.Fatalf("just joined and not alive: %+v", r)
	}
	time.Sleep(ttl + 150*time.Millisecond)
	if r, ok := replicas(t, s)["r1"]; !ok || r.Alive {
		t.Errorf("after the TTL: %+v (listed %v), want listed and not alive", r, ok)
	}
	// A late renewal still finds its row, and the replica is alive again.
	if err := s.Heartbeat(ctx, r1, ttl, false); err != nil {
		t.Fatalf("renewal after the lapse: %v", err)
	}
	if r := replicas(t, s)["r1"]; !r.Alive {
		t.Errorf("renewed and not alive: %+v", r)
	}

	// A replica that lapsed more than a minute ago is no longer listed, and a heartbeat of
	// another replica removes it.
	join(t, s, "r2", "j1")
	if _, err := s.pool.Exec(ctx, `UPDATE replica SET expires_at = now() - interval '61 seconds' WHERE id = 'r2'`); err != nil {
		t.Fatal(err)
	}
	if _, ok := replicas(t, s)["r2"]; ok {
		t.Errorf("a replica that lapsed more than a minute ago is listed")
	}
	if err := s.Heartbeat(ctx, r1, ttl, false); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM replica WHERE id = 'r2'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("r2's row is still there after a heartbeat (%d, %v)", n, err)
	}
	if err := s.Heartbeat(ctx, store.Replica{ID: "r2", Incarnation: "j1"}, ttl, false); err != store.ErrReplaced {
		t.Errorf("renewal of a removed replica = %v, want ErrReplaced (join again)", err)
	}
}

// Claim takes exactly the orphans: never held, released, held by a replica whose heartbeat
// lapsed, or by an older incarnation of the claimant; each time the epoch goes up.
func testClaimOrphans(t *testing.T, s *Store) {
	ctx := t.Context()
	createMailboxes(t, s, "a", "b", "c", "d", "e", "f", "h")
	join(t, s, "r3", "k1")
	claim(t, s, "r3", "k1", "c")
	join(t, s, "r1", "i0")
	claim(t, s, "r1", "i0", "d")
	join(t, s, "r1", "i1") // r1 restarted: i0 is gone
	join(t, s, "r2", "j1")
	r2 := claim(t, s, "r2", "j1", "b", "e")
	if err := s.Release(ctx, []store.Lease{r2["b"]}); err != nil {
		t.Fatal(err)
	}
	claim(t, s, "r1", "i1", "f")
	lapse(t, s, "r3")

	got := claim(t, s, "r1", "i1", "g-does-not-exist", "f", "e", "d", "c", "b", "a", "a", "\xff")
	want := map[string]int64{"a": 1, "b": 2, "c": 2, "d": 2}
	if len(got) != len(want) {
		t.Errorf("claimed %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	for id, epoch := range want {
		if got[id].Epoch != epoch {
			t.Errorf("claimed %s at epoch %d, want %d", id, got[id].Epoch, epoch)
		}
	}
	all := leases(t, s)
	for id, epoch := range want {
		checkOwner(t, all, id, "r1", "i1", epoch)
	}
	checkOwner(t, all, "e", "r2", "j1", 1) // its holder is alive
	checkOwner(t, all, "f", "r1", "i1", 1) // already the claimant's: not claimed again
	checkOwner(t, all, "h", "", "", 0)     // never claimed
	if len(all) != 7 {
		t.Errorf("Leases = %+v, want the 7 mailboxes", all)
	}

	// Nothing is left to take; once r2 lapses, its mailbox is.
	if again := claim(t, s, "r1", "i1", "a", "b", "c", "d", "e", "f"); len(again) != 0 {
		t.Errorf("a second claim took %+v", again)
	}
	lapse(t, s, "r2")
	if got := claim(t, s, "r1", "i1", "e"); got["e"].Epoch != 2 || len(got) != 1 {
		t.Errorf("claim of a lapsed replica's mailbox = %+v", got)
	}
	if got, err := s.Claim(ctx, "r1", "i1", nil); err != nil || len(got) != 0 {
		t.Errorf("Claim of no ids = %v, %v", got, err)
	}
}

// A claimant that is not alive by the database's clock takes nothing: it never joined, its
// heartbeat lapsed, or it is not the incarnation that holds its id.
func testClaimantNotAlive(t *testing.T, s *Store) {
	ctx := t.Context()
	createMailboxes(t, s, "a")
	if got := claim(t, s, "nobody", "x", "a"); len(got) != 0 {
		t.Errorf("a replica that never joined claimed %+v", got)
	}
	join(t, s, "r1", "i1")
	if got := claim(t, s, "r1", "i0", "a"); len(got) != 0 {
		t.Errorf("a replaced incarnation claimed %+v", got)
	}
	lapse(t, s, "r1")
	if got := claim(t, s, "r1", "i1", "a"); len(got) != 0 {
		t.Errorf("a replica whose heartbeat lapsed claimed %+v", got)
	}
	checkOwner(t, leases(t, s), "a", "", "", 0)
	if err := s.Heartbeat(ctx, store.Replica{ID: "r1", Incarnation: "i1"}, testTTL, false); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, s, "r1", "i1", "a"); got["a"].Epoch != 1 {
		t.Errorf("after its renewal: claimed %+v", got)
	}
}

// Release gives up a lease only if it is exactly the current one; the epoch stays, and the next
// claim raises it.
func testRelease(t *testing.T, s *Store) {
	ctx := t.Context()
	createMailboxes(t, s, "a", "b", "c", "d")
	join(t, s, "r1", "i1")
	join(t, s, "r2", "j1")
	held := claim(t, s, "r1", "i1", "a", "b", "c", "d")
	stale := []store.Lease{held["a"], held["b"], held["c"], {MailboxID: "d", Tenant: "tenant-d"}, {MailboxID: "nope", ReplicaID: "r1", Incarnation: "i1", Epoch: 1}}
	stale[0].Epoch++
	stale[1].Incarnation = "i0"
	stale[2].ReplicaID = "r2"
	before := slices.Clone(stale)
	if err := s.Release(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stale, before) {
		t.Errorf("Release changed its argument: %+v", stale)
	}
	all := leases(t, s)
	for _, id := range []string{"a", "b", "c", "d"} {
		checkOwner(t, all, id, "r1", "i1", 1)
	}
	// The exact leases, given in any order.
	if err := s.Release(ctx, []store.Lease{held["d"], held["b"]}); err != nil {
		t.Fatal(err)
	}
	all = leases(t, s)
	checkOwner(t, all, "b", "", "", 1)
	checkOwner(t, all, "d", "", "", 1)
	checkOwner(t, all, "a", "r1", "i1", 1)
	if err := s.Release(ctx, []store.Lease{held["d"]}); err != nil { // again: nothing to do
		t.Fatal(err)
	}
	if err := s.Release(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// Released, the mailbox is free for any replica, at the next epoch.
	if got := claim(t, s, "r2", "j1", "b", "d"); got["b"].Epoch != 2 || got["d"].Epoch != 2 {
		t.Errorf("claim after release = %+v", got)
	}
	// r1's old lease of b is no longer b's: releasing it leaves r2's alone.
	if err := s.Release(ctx, []store.Lease{held["b"]}); err != nil {
		t.Fatal(err)
	}
	checkOwner(t, leases(t, s), "b", "r2", "j1", 2)
}

// Leave releases every lease of the incarnation and ends its heartbeat: others take its
// mailboxes at once.
func testLeave(t *testing.T, s *Store) {
	ctx := t.Context()
	createMailboxes(t, s, "a", "b", "c")
	join(t, s, "r1", "i1")
	join(t, s, "r2", "j1")
	claim(t, s, "r1", "i1", "a", "b")
	claim(t, s, "r2", "j1", "c")
	if err := s.Leave(ctx, "r1", "i0"); err != nil { // an older incarnation: nothing of it is left
		t.Fatal(err)
	}
	if r := replicas(t, s)["r1"]; !r.Alive {
		t.Errorf("leaving as another incarnation ended r1's heartbeat: %+v", r)
	}
	if err := s.Leave(ctx, "r1", "i1"); err != nil {
		t.Fatal(err)
	}
	all := leases(t, s)
	checkOwner(t, all, "a", "", "", 1)
	checkOwner(t, all, "b", "", "", 1)
	checkOwner(t, all, "c", "r2", "j1", 1)
	rs := replicas(t, s)
	if r, ok := rs["r1"]; !ok || r.Alive || r.ExpireTime.After(time.Now().Add(time.Minute)) {
		t.Errorf("after Leave, r1 = %+v (listed %v), want listed and not alive", r, ok)
	}
	if !rs["r2"].Alive {
		t.Errorf("r2 = %+v", rs["r2"])
	}
	if got := claim(t, s, "r1", "i1", "a"); len(got) != 0 {
		t.Errorf("the replica that left claimed %+v", got)
	}
	if got := claim(t, s, "r2", "j1", "a", "b", "c"); len(got) != 2 || got["a"].Epoch != 2 || got["b"].Epoch != 2 {
		t.Errorf("r2's claim after r1 left = %+v", got)
	}
}

// fencedCall is one write that a lease fences.
type fencedCall struct {
	name string
	call func(ctx context.Context, s *Store, round int) error
}

// fencedCalls are every fenced write, for mailbox m. round makes each call's write distinct.
var fencedCalls = []fencedCall{
	{"SaveSyncState", func(ctx context.Context, s *Store, round int) error {
		return s.SaveSyncState(ctx, &store.SyncState{MailboxID: "m", UIDValidity: 7, AckedThrough: uint32(10 * round)})
	}},
	{"MarkApplied", func(ctx context.Context, s *Store, round int) error {
		return s.MarkApplied(ctx, "m", 7, []uint32{uint32(round)})
	}},
	{"PruneAcks", func(ctx context.Context, s *Store, round int) error {
		return s.PruneAcks(ctx, "m", 7, uint32(round-1), time.Now())
	}},
	{"Quarantine", func(ctx context.Context, s *Store, round int) error {
		return s.Quarantine(ctx, &store.Quarantined{MailboxID: "m", UIDValidity: 7, UID: uint32(round), Reason: "r"})
	}},
	{"AddEvent", func(ctx context.Context, s *Store, round int) error {
		return s.AddEvent(ctx, store.Event{MailboxID: "m", Kind: "connect", Message: fmt.Sprintf("round %d", round)})
	}},
	{"SetProviderState", func(ctx context.Context, s *Store, round int) error {
		return s.SetProviderState(ctx, "m", fmt.Appendf(nil, "set %d", round))
	}},
	{"SwapProviderState", func(ctx context.Context, s *Store, round int) error {
		return s.SwapProviderState(ctx, "m", fmt.Appendf(nil, "set %d", round), fmt.Appendf(nil, "swapped %d", round))
	}},
	{"SaveAuthorization", func(ctx context.Context, s *Store, round int) error {
		return s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: "m",
			State: fmt.Appendf(nil, "sign-in %d", round), Handle: fmt.Sprintf("handle %d", round)})
	}},
}

// snapshot is what the fenced writes change of mailbox m.
func snapshot(t *testing.T, s *Store) string {
	t.Helper()
	ctx := t.Context()
	st, err := s.SyncState(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	ps, err := s.ProviderState(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	pa, err := s.GetAuthorization(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	acks, err := s.Acks(ctx, "m", 7, 0)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := s.ListQuarantine(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := s.ListEvents(ctx, "m", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := fmt.Sprintf("provider state %q\n", ps)
	if pa != nil {
		out += fmt.Sprintf("sign-in %q handle %q at %d\n", pa.State, pa.Handle, pa.UpdateTime.UnixNano())
	}
	if st != nil {
		out += fmt.Sprintf("checkpoint %d/%d\n", st.UIDValidity, st.AckedThrough)
	}
	for _, a := range acks {
		out += fmt.Sprintf("ack %d applied %v\n", a.UID, a.Applied)
	}
	for _, q := range qs {
		out += fmt.Sprintf("quarantined %d\n", q.UID)
	}
	for _, e := range evs {
		out += fmt.Sprintf("event %q ×%d\n", e.Message, e.Count)
	}
	return out
}

// Every fenced write succeeds under the current lease and is refused with ErrFenced, writing
// nothing, under a lease another replica took over or that was released. Without a lease, or
// with another mailbox's, writes are not fenced; acknowledgements never are.
func testFencedWrites(t *testing.T, s *Store) {
	ctx := context.Background()
	createMailboxes(t, s, "m", "other")
	join(t, s, "r1", "i1")
	join(t, s, "r2", "j1")
	l1 := claim(t, s, "r1", "i1", "m")["m"]
	ctx1 := store.WithLease(ctx, l1)
	// Applied acknowledgements old enough to be pruned, and unapplied ones to mark.
	var acks []store.Ack
	for uid := range uint32(6) {
		acks = append(acks, store.Ack{UIDValidity: 7, UID: uid + 1, SHA256: fmt.Sprint(uid), AckTime: time.Now().Add(-time.Hour)})
	}
	if err := s.RecordAcks(ctx1, map[string][]store.Ack{"m": acks}); err != nil {
		t.Fatal(err)
	}
	for _, c := range fencedCalls {
		if err := c.call(ctx1, s, 1); err != nil {
			t.Errorf("%s under the current lease: %v", c.name, err)
		}
	}
	before := snapshot(t, s)
	if ps, _ := s.ProviderState(ctx, "m"); string(ps) != "swapped 1" {
		t.Fatalf("provider state under the current lease = %q", ps)
	}

	lapse(t, s, "r1")
	l2 := claim(t, s, "r2", "j1", "m")["m"]
	if l2.Epoch != l1.Epoch+1 {
		t.Fatalf("r2's lease = %+v", l2)
	}
	ctx2 := store.WithLease(ctx, l2)
	for _, c := range fencedCalls {
		err := c.call(ctx1, s, 2)
		if err != store.ErrFenced {
			t.Errorf("%s under a lease taken over = %v, want ErrFenced itself", c.name, err)
		}
	}
	// SwapProviderState from the current value is fenced too.
	if err := s.SwapProviderState(ctx1, "m", []byte("swapped 1"), []byte("stale")); err != store.ErrFenced {
		t.Errorf("SwapProviderState from the current value under a lease taken over = %v", err)
	}
	if after := snapshot(t, s); after != before {
		t.Errorf("refused writes changed the mailbox:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// Acknowledgements are facts from consumers: recorded under any lease.
	if err := s.RecordAcks(ctx1, map[string][]store.Ack{"m": {{UIDValidity: 7, UID: 100, SHA256: "late", AckTime: time.Now()}}}); err != nil {
		t.Errorf("RecordAcks under a lease taken over: %v", err)
	}

	// The new holder writes.
	for _, c := range fencedCalls {
		if err := c.call(ctx2, s, 2); err != nil {
			t.Errorf("%s under the new lease: %v", c.name, err)
		}
	}
	after := snapshot(t, s)
	if after == before {
		t.Errorf("the new holder's writes changed nothing")
	}
	if st, _ := s.SyncState(ctx, "m"); st == nil || st.AckedThrough != 20 {
		t.Errorf("checkpoint after the new holder's write = %+v", st)
	}

	// Writes without a lease (the API's), or under another mailbox's lease, are not fenced.
	for _, c := range fencedCalls {
		if err := c.call(ctx, s, 3); err != nil {
			t.Errorf("%s without a lease: %v", c.name, err)
		}
	}
	otherLease := store.WithLease(ctx, store.Lease{MailboxID: "other", ReplicaID: "r1", Incarnation: "i1", Epoch: 1})
	for _, c := range fencedCalls {
		if err := c.call(otherLease, s, 4); err != nil {
			t.Errorf("%s under another mailbox's lease: %v", c.name, err)
		}
	}

	// Released, the lease fences its holder's own writes.
	if err := s.Release(ctx, []store.Lease{l2}); err != nil {
		t.Fatal(err)
	}
	released := snapshot(t, s)
	for _, c := range fencedCalls {
		if err := c.call(ctx2, s, 5); err != store.ErrFenced {
			t.Errorf("%s under a released lease = %v, want ErrFenced", c.name, err)
		}
	}
	if now := snapshot(t, s); now != released {
		t.Errorf("refused writes under a released lease changed the mailbox:\nbefore:\n%s\nafter:\n%s", released, now)
	}
	// A lease no claim could hand out.
	bad := store.WithLease(ctx, store.Lease{MailboxID: "m", ReplicaID: "\xff", Incarnation: "i1", Epoch: 2})
	if err := s.SaveSyncState(bad, &store.SyncState{MailboxID: "m", UIDValidity: 7}); err != store.ErrFenced {
		t.Errorf("SaveSyncState under an unstorable lease = %v", err)
	}
}

// A pending sign-in saved under a lease is fenced: once another replica took the mailbox over, a
// save under the stale lease (its poller has not stopped yet) is ErrFenced and leaves the new
// holder's sign-in as it was. Without a lease (the API starting a sign-in) it is not fenced.
func testFencedAuthorization(t *testing.T, s *Store) {
	ctx := context.Background()
	createMailboxes(t, s, "m")
	join(t, s, "r1", "i1")
	join(t, s, "r2", "j1")
	l1 := claim(t, s, "r1", "i1", "m")["m"]
	ctx1 := store.WithLease(ctx, l1)
	if err := s.SaveAuthorization(ctx1, &store.PendingAuthorization{MailboxID: "m", State: []byte("pending 1"), Handle: "code 1"}); err != nil {
		t.Fatalf("SaveAuthorization under the current lease: %v", err)
	}

	lapse(t, s, "r1")
	l2 := claim(t, s, "r2", "j1", "m")["m"]
	if l2.Epoch != l1.Epoch+1 {
		t.Fatalf("r2's lease = %+v", l2)
	}
	if err := s.SaveAuthorization(store.WithLease(ctx, l2), &store.PendingAuthorization{MailboxID: "m", State: []byte("pending 2"), Handle: "code 2"}); err != nil {
		t.Fatalf("SaveAuthorization under the new lease: %v", err)
	}
	want, err := s.GetAuthorization(ctx, "m")
	if err != nil || want == nil {
		t.Fatalf("GetAuthorization = %+v, %v", want, err)
	}

	stale := &store.PendingAuthorization{MailboxID: "m", State: []byte("completed by the old owner"), Handle: "stale code"}
	if err := s.SaveAuthorization(ctx1, stale); err != store.ErrFenced {
		t.Errorf("SaveAuthorization under a lease taken over = %v, want ErrFenced itself", err)
	}
	if !stale.UpdateTime.IsZero() {
		t.Errorf("a refused save set UpdateTime %v", stale.UpdateTime)
	}
	got, err := s.GetAuthorization(ctx, "m")
	if err != nil || got == nil || !bytes.Equal(got.State, want.State) || got.Handle != want.Handle || !got.UpdateTime.Equal(want.UpdateTime) {
		t.Errorf("after the refused save: %+v, %v; want %+v unchanged", got, err, want)
	}
	if string(got.State) != "pending 2" || got.Handle != "code 2" {
		t.Errorf("the stored sign-in = %q, %q; want the new holder's", got.State, got.Handle)
	}

	// Released, the lease fences its holder's own saves too; without a lease a save goes through.
	if err := s.Release(ctx, []store.Lease{l2}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveAuthorization(store.WithLease(ctx, l2), stale); err != store.ErrFenced {
		t.Errorf("SaveAuthorization under a released lease = %v, want ErrFenced", err)
	}
	if err := s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: "m", State: []byte("from the API"), Handle: "code 3"}); err != nil {
		t.Errorf("SaveAuthorization without a lease: %v", err)
	}
	if got := getAuthorization(t, s, "m"); got == nil || got.Handle != "code 3" {
		t.Errorf("after a save without a lease: %+v", got)
	}
	// Under the lease of a mailbox that is gone: fenced (its owner row went with it).
	if err := s.DeleteMailbox(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveAuthorization(store.WithLease(ctx, l2), stale); err != store.ErrFenced {
		t.Errorf("SaveAuthorization under the lease of a deleted mailbox = %v, want ErrFenced", err)
	}
}

// getAuthorization returns mailboxID's pending sign-in, failing the test on an error.
func getAuthorization(t *testing.T, s *Store, mailboxID string) *store.PendingAuthorization {
	t.Helper()
	a, err := s.GetAuthorization(t.Context(), mailboxID)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A fenced write that meets a claim in progress waits for it, and is refused once the claim has
// taken the mailbox: the check and the owner change never interleave.
func testFencedWriteWaitsForClaim(t *testing.T, s *Store) {
	ctx := t.Context()
	createMailboxes(t, s, "m")
	join(t, s, "r1", "i1")
	l1 := claim(t, s, "r1", "i1", "m")["m"]
	if err := s.SaveSyncState(store.WithLease(ctx, l1), &store.SyncState{MailboxID: "m", UIDValidity: 7, AckedThrough: 1}); err != nil {
		t.Fatal(err)
	}
	// A takeover whose transaction has not committed yet.
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `UPDATE mailbox_owner SET replica_id = 'r2', incarnation = 'j1', epoch = epoch + 1 WHERE mailbox_id = 'm'`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- s.SaveSyncState(store.WithLease(ctx, l1), &store.SyncState{MailboxID: "m", UIDValidity: 7, AckedThrough: 99})
	}()
	select {
	case err := <-done:
		t.Fatalf("the fenced write did not wait for the claim in progress: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != store.ErrFenced {
			t.Errorf("the fenced write after the takeover = %v, want ErrFenced", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fenced write still waits after the claim committed")
	}
	if st, _ := s.SyncState(ctx, "m"); st == nil || st.AckedThrough != 1 {
		t.Errorf("checkpoint = %+v, want the one written under the lease (1)", st)
	}
}

// A fenced write in progress holds its mailbox's owner row FOR SHARE: a concurrent claim skips
// that mailbox at once instead of waiting, takes the others, and takes it later.
func testClaimSkipsFencedWrite(t *testing.T, s *Store) {
	ctx := t.Context()
	createMailboxes(t, s, "m1", "m2")
	join(t, s, "r1", "i1")
	join(t, s, "r2", "j1")
	held := claim(t, s, "r1", "i1", "m1", "m2")
	lapse(t, s, "r1")

	// What fence does at the start of a write, left open.
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	l := held["m1"]
	var one int
	if err := tx.QueryRow(ctx, `SELECT 1 FROM mailbox_owner WHERE mailbox_id = $1 AND replica_id = $2 AND incarnation = $3 AND epoch = $4 FOR SHARE`,
		l.MailboxID, l.ReplicaID, l.Incarnation, l.Epoch).Scan(&one); err != nil {
		t.Fatal(err)
	}
	// Other fenced writes of the mailbox share the lock.
	if err := s.SaveSyncState(store.WithLease(ctx, l), &store.SyncState{MailboxID: "m1", UIDValidity: 7, AckedThrough: 3}); err != nil {
		t.Errorf("a second fenced write while the first holds its lock: %v", err)
	}

	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	got, err := s.Claim(cctx, "r2", "j1", []string{"m1", "m2"})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Claim while a fenced write holds m1: %v (after %v)", err, took)
	}
	if len(got) != 1 || got[0].MailboxID != "m2" || got[0].Epoch != 2 {
		t.Errorf("Claim while a fenced write holds m1 = %+v, want m2 only", got)
	}
	if took > 2*time.Second {
		t.Errorf("Claim took %v: it waited for the lock", took)
	}
	t.Logf("Claim skipping a locked mailbox took %v", took.Round(time.Millisecond))
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, s, "r2", "j1", "m1", "m2"); len(got) != 1 || got["m1"].Epoch != 2 {
		t.Errorf("Claim after the write committed = %+v, want m1", got)
	}
}

// Replicas claiming the same mailboxes at once never both take one.
func testConcurrentClaims(t *testing.T, s *Store) {
	ctx := t.Context()
	const n, claimants = 200, 4
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("m%03d", i))
	}
	createMailboxes(t, s, ids...)
	for c := range claimants {
		join(t, s, fmt.Sprintf("r%d", c), "i")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	owner := map[string]string{}
	start := make(chan struct{})
	for c := range claimants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			me := fmt.Sprintf("r%d", c)
			for range 3 {
				got, err := s.Claim(ctx, me, "i", slices.Clone(ids))
				if err != nil {
					t.Errorf("%s: %v", me, err)
					return
				}
				mu.Lock()
				for _, l := range got {
					if prev, ok := owner[l.MailboxID]; ok {
						t.Errorf("%s claimed by %s and %s", l.MailboxID, prev, me)
					}
					owner[l.MailboxID] = me
					if l.Epoch != 1 {
						t.Errorf("%s claimed at epoch %d", l.MailboxID, l.Epoch)
					}
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	all := leases(t, s)
	if len(owner) != n {
		t.Errorf("%d mailboxes claimed, want %d", len(owner), n)
	}
	for id, who := range owner {
		checkOwner(t, all, id, who, "i", 1)
	}
}

// One claim of 2,000 mailboxes (a replica starting alone in a large cluster) takes them all.
func testClaimMany(t *testing.T, s *Store) {
	ctx := t.Context()
	const n = 2000
	if _, err := s.pool.Exec(ctx, `INSERT INTO mailboxes (id, tenant, spec, created_at, updated_at)
		SELECT 'mb' || lpad(i::text, 5, '0'), 'tenant-mb' || lpad(i::text, 5, '0'), '\x'::bytea, 0, 0 FROM generate_series(1, $1::int) i`, n); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := n; i >= 1; i-- {
		ids = append(ids, fmt.Sprintf("mb%05d", i))
	}
	join(t, s, "r1", "i1")
	start := time.Now()
	got := claim(t, s, "r1", "i1", ids...)
	t.Logf("Claim of %d mailboxes took %v", n, time.Since(start).Round(time.Millisecond))
	if len(got) != n {
		t.Fatalf("claimed %d of %d", len(got), n)
	}
	all := leases(t, s)
	if len(all) != n {
		t.Errorf("Leases lists %d", len(all))
	}
	for _, id := range ids {
		checkOwner(t, all, id, "r1", "i1", 1)
	}
	if again := claim(t, s, "r1", "i1", ids...); len(again) != 0 {
		t.Errorf("claimed %d again", len(again))
	}
	var list []store.Lease
	for _, l := range got {
		list = append(list, l)
	}
	if err := s.Release(ctx, list); err != nil {
		t.Fatal(err)
	}
	for _, l := range leases(t, s) {
		if l.ReplicaID != "" || l.Epoch != 1 {
			t.Fatalf("after releasing all: %+v", l)
		}
	}
}

// Deleting a mailbox deletes its owner row; a mailbox re-created under its id starts unowned.
func testOwnerDeleteCascades(t *testing.T, s *Store) {
	ctx := t.Context()
	createMailboxes(t, s, "m", "keep")
	join(t, s, "r1", "i1")
	held := claim(t, s, "r1", "i1", "m", "keep")
	if err := s.DeleteMailbox(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM mailbox_owner WHERE mailbox_id = 'm'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("owner rows of the deleted mailbox: %d, %v", n, err)
	}
	all := leases(t, s)
	if _, ok := all["m"]; ok || len(all) != 1 {
		t.Errorf("Leases after the delete = %+v", all)
	}
	checkOwner(t, all, "keep", "r1", "i1", 1)
	createMailboxes(t, s, "m")
	checkOwner(t, leases(t, s), "m", "", "", 0)
	err := s.SaveSyncState(store.WithLease(ctx, held["m"]), &store.SyncState{MailboxID: "m", UIDValidity: 1})
	if err != store.ErrFenced {
		t.Errorf("a write under the deleted mailbox's lease = %v, want ErrFenced", err)
	}
	if got := claim(t, s, "r1", "i1", "m"); got["m"].Epoch != 1 {
		t.Errorf("claim of the re-created mailbox = %+v", got)
	}
}

// testPendingWork: a mailbox held by the incarnation shows up when an acknowledgement recorded in
// the window is not applied, or a quarantined message is to be replayed; nothing else does.
func testPendingWork(t *testing.T, s *Store) {
	ctx := t.Context()
	createMailboxes(t, s, "m1", "m2", "m3", "m4")
	join(t, s, "r1", "i1")
	join(t, s, "r2", "i2")
	claim(t, s, "r1", "i1", "m1", "m2", "m3")
	claim(t, s, "r2", "i2", "m4")
	now := time.Now()
	from, to := now.Add(-time.Minute), now.Add(-3*time.Second)
	pending := func() []string {
		t.Helper()
		ids, err := s.PendingWork(ctx, "r1", "i1", from, to)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := pending(); len(got) != 0 {
		t.Fatalf("PendingWork with nothing to do = %v", got)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// m1: released 10 s ago, not applied: pending. m2: acknowledged just now (being applied):
	// not yet. m4: pending, but held by r2.
	must(s.RecordAcks(ctx, map[string][]store.Ack{
		"m1": {{UIDValidity: 1, UID: 5, AckTime: now.Add(-10 * time.Second)}},
		"m2": {{UIDValidity: 1, UID: 6, AckTime: now}},
		"m4": {{UIDValidity: 1, UID: 7, AckTime: now.Add(-10 * time.Second)}},
	}))
	// m3: a quarantined message to be replayed.
	must(s.Quarantine(ctx, &store.Quarantined{MailboxID: "m3", UIDValidity: 1, UID: 9, Reason: "too large", State: store.QuarantineReplay, CreateTime: now}))
	if got := pending(); !slices.Equal(got, []string{"m1", "m3"}) {
		t.Fatalf("PendingWork = %v, want [m1 m3]", got)
	}
	must(s.MarkApplied(ctx, "m1", 1, []uint32{5}))
	qs, err := s.ListQuarantine(ctx, "m3")
	must(err)
	must(s.SetQuarantineState(ctx, qs[0].ID, store.QuarantineHeld))
	if got := pending(); len(got) != 0 {
		t.Fatalf("PendingWork after the work was done = %v", got)
	}
}

// TestOwnerWithoutSuperuser: the migrations, the leases and LISTEN/NOTIFY work for a role that
// only owns its database (no superuser, no CREATEDB), reached with the URL form
// postgres://user:pw@host:port/db?sslmode=disable.
func TestOwnerWithoutSuperuser(t *testing.T) {
	srv := pgserver.Start(t)
	srv.Exec(t, "postgres", `CREATE ROLE app LOGIN PASSWORD 'app-pw' NOSUPERUSER NOCREATEDB NOCREATEROLE`)
	srv.Exec(t, "postgres", `CREATE DATABASE appdb OWNER app TEMPLATE template0`)
	url := strings.Replace(srv.URL("appdb"), "//"+pgserver.User+"@", "//app:app-pw@", 1)
	s, err := Open(t.Context(), url, testBox(t))
	if err != nil {
		t.Fatalf("opening as the database's owner: %v", err)
	}
	defer s.Close()
	if super := srv.QueryInt(t, "appdb", `SELECT count(*) FROM pg_roles WHERE rolname = 'app' AND rolsuper`); super != 0 {
		t.Fatal("the role is a superuser")
	}
	createMailboxes(t, s, "m1")
	join(t, s, "r1", "i1")
	if got := claim(t, s, "r1", "i1", "m1"); got["m1"].Epoch != 1 {
		t.Fatalf("claim as the owner role: %v", got)
	}
	got := make(chan string, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go s.Listen(ctx, func(id string) {
		select {
		case got <- id:
		default:
		}
	})
	deadline := time.After(10 * time.Second)
	for {
		if err := s.Notify(t.Context(), "m1"); err != nil {
			t.Fatal(err)
		}
		select {
		case id := <-got:
			if id != "m1" {
				t.Fatalf("notification %q, want m1", id)
			}
			return
		case <-time.After(100 * time.Millisecond): // the listener may not be listening yet
		case <-deadline:
			t.Fatal("no notification arrived")
		}
	}
}
