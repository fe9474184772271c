// Package storetest is the conformance suite of store.Store. Every implementation (the embedded
// SQLite store, the PostgreSQL store) runs it, so the server behaves the same on either: what the
// SQLite store did first (and its own tests pinned down) is the expected behaviour.
//
// An implementation's test calls [Run] with a function that opens a new, empty store; it may give
// [WithRaw] so the suite can also check that secrets never reach the storage in plain text.
package storetest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/store"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Option configures Run.
type Option func(*options)

type options struct {
	raw func(t *testing.T, s store.Store) []byte
}

// WithRaw gives the suite a way to read what s keeps at rest, while s is open: its files, or
// every row of every table in the database's text form (bytea as hex is fine: the suite looks for
// the plain text, its hex and its base64). Without it, the check that secrets are sealed at rest
// is skipped and is the implementation's own test's job.
func WithRaw(raw func(t *testing.T, s store.Store) []byte) Option {
	return func(o *options) { o.raw = raw }
}

// Run runs the conformance suite as subtests. open must return a new, empty store each time it is
// called, and close it at the test's cleanup (ignoring the error: the suite may have closed it).
func Run(t *testing.T, open func(t *testing.T) store.Store, opts ...Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	tests := []struct {
		name string
		f    func(t *testing.T, s store.Store)
	}{
		{"MailboxLifecycle", testMailboxLifecycle},
		{"ListMailboxes", testListMailboxes},
		{"NotFoundAndConflict", testNotFoundAndConflict},
		{"UnstorableKeys", testUnstorableKeys},
		{"ProviderState", testProviderState},
		{"SwapProviderState", testSwapProviderState},
		{"SwapProviderStateConcurrent", testSwapProviderStateConcurrent},
		{"Authorization", testAuthorization},
		{"Tokens", testTokens},
		{"SyncState", testSyncState},
		{"Acks", testAcks},
		{"RecordAcksAllOrNothing", testRecordAcksAllOrNothing},
		{"PruneAcks", testPruneAcks},
		{"Quarantine", testQuarantine},
		{"EventsFold", testEventsFold},
		{"EventsMessages", testEventsMessages},
		{"EventsRetention", testEventsRetention},
		{"EventsCap", testEventsCap},
		{"EventsConcurrent", testEventsConcurrent},
		{"MissingMailbox", testMissingMailbox},
		{"UIDLs", testUIDLs},
		{"DeleteCascades", testDeleteCascades},
		{"ConcurrentWriters", testConcurrentWriters},
		{"VerifyKey", testVerifyKey},
		{"ClaimOnce", testClaimOnce},
		{"ClaimCopies", testClaimCopies},
		{"ClaimCopiesInOneCall", testClaimCopiesInOneCall},
		{"ClaimCopiesConcurrent", testClaimCopiesConcurrent},
		{"ClaimCopiesRetention", testClaimCopiesRetention},
		{"OutboundLifecycle", testOutboundLifecycle},
		{"OutboundTransitions", testOutboundTransitions},
		{"OutboundConcurrent", testOutboundConcurrent},
		{"OutboundWork", testOutboundWork},
		{"OutboundInterrupt", testOutboundInterrupt},
		{"OutboundHealth", testOutboundHealth},
		{"ListOutbound", testListOutbound},
		{"PruneOutbound", testPruneOutbound},
		{"OutboundDeleteCascades", testOutboundDeleteCascades},
		{"BounceOutbound", testBounceOutbound},
		{"RecordSentCopy", testRecordSentCopy},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, open(t)) })
	}
	t.Run("SecretsSealedAtRest", func(t *testing.T) {
		if o.raw == nil {
			t.Skip("no WithRaw: the implementation's own test checks what reaches the storage")
		}
		testSecretsSealed(t, open(t), o.raw)
	})
}

// t0 is a fixed time with nanoseconds, which every store must keep.
var t0 = time.Unix(1700000000, 123456789).UTC()

// NewMailbox returns a mailbox definition with a password secret, and an auth_secrets field that
// must never be stored.
func NewMailbox(id, tenant string) *store.Mailbox {
	now := timestamppb.New(time.Unix(1700000000, 0))
	return &store.Mailbox{
		Spec: &mailintakev1.Mailbox{
			Id: id, Tenant: tenant, Host: "imap.example.com", Port: 993, Username: "u@example.com",
			AuthProvider: "basic", AuthConfig: map[string]string{"mechanism": "PLAIN"},
			AuthSecrets:    map[string]string{"password": "must-not-be-stored-here"},
			AuthSecretsSet: []string{"password"},
			CreateTime:     now, UpdateTime: now,
		},
		Secrets: map[string]secrets.Secret{"password": "correct horse battery staple"},
	}
}

// storedSpec is what GetMailbox returns of a definition: without its secrets.
func storedSpec(spec *mailintakev1.Mailbox) *mailintakev1.Mailbox {
	c := proto.CloneOf(spec)
	c.AuthSecrets = nil
	c.AuthSecretsSet = nil
	return c
}

func create(t *testing.T, s store.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := s.CreateMailbox(t.Context(), NewMailbox(id, "acme")); err != nil {
			t.Fatalf("CreateMailbox(%q): %v", id, err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// failsForGood checks that a write that cannot succeed (a mailbox that does not exist) fails, and
// not as store.ErrUnavailable, which would tell the caller to try again later.
func failsForGood(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s succeeded; want an error", what)
	} else if errors.Is(err, store.ErrUnavailable) {
		t.Errorf("%s = %v; want an error that is not ErrUnavailable", what, err)
	}
}

func testMailboxLifecycle(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := NewMailbox("a", "t1")
	mb.Secrets["client_secret"] = "s3cr3t"
	if err := s.CreateMailbox(ctx, mb); err != nil {
		t.Fatal(err)
	}
	if len(mb.Spec.AuthSecrets) != 1 || len(mb.Spec.AuthSecretsSet) != 1 {
		t.Errorf("CreateMailbox changed the caller's definition: %v", mb.Spec)
	}
	if err := s.CreateMailbox(ctx, NewMailbox("a", "t1")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate create = %v, want ErrConflict", err)
	}
	got, err := s.GetMailbox(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.Spec, storedSpec(mb.Spec)) {
		t.Errorf("GetMailbox = %v, want %v", got.Spec, storedSpec(mb.Spec))
	}
	if len(got.Secrets) != 2 || got.Secrets["password"].Reveal() != "correct horse battery staple" || got.Secrets["client_secret"].Reveal() != "s3cr3t" {
		t.Errorf("secrets = %v", got.RevealedSecrets())
	}

	// A mailbox without secrets.
	bare := NewMailbox("bare", "t1")
	bare.Secrets = nil
	must(t, s.CreateMailbox(ctx, bare))
	if got, err := s.GetMailbox(ctx, "bare"); err != nil || len(got.Secrets) != 0 {
		t.Errorf("mailbox without secrets: %v, %v", got, err)
	}

	// Update replaces the definition and every secret (one removed, one changed, one added).
	upd := NewMailbox("a", "t2")
	upd.Spec.DisplayName = "renamed"
	upd.Spec.UpdateTime = timestamppb.New(t0)
	upd.Secrets = map[string]secrets.Secret{"password": "new-password", "token": "tok"}
	must(t, s.UpdateMailbox(ctx, upd))
	got, err = s.GetMailbox(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.Spec, storedSpec(upd.Spec)) {
		t.Errorf("after update: %v, want %v", got.Spec, storedSpec(upd.Spec))
	}
	if want := map[string]string{"password": "new-password", "token": "tok"}; !mapsEqual(got.RevealedSecrets(), want) {
		t.Errorf("secrets after update = %v, want %v", got.RevealedSecrets(), want)
	}
	// The tenant moved with the update.
	if l, err := s.ListMailboxes(ctx, store.MailboxQuery{Tenant: "t2"}); err != nil || len(l) != 1 || l[0].Spec.Id != "a" {
		t.Errorf("tenant t2 after update = %v, %v", ids(l), err)
	}
	if err := s.UpdateMailbox(ctx, NewMailbox("zz", "t1")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update of a missing mailbox = %v, want ErrNotFound", err)
	}
	if _, err := s.GetMailbox(ctx, "zz"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a failed update created the mailbox: %v", err)
	}

	must(t, s.DeleteMailbox(ctx, "a"))
	if _, err := s.GetMailbox(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get after delete = %v", err)
	}
	if err := s.DeleteMailbox(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete = %v", err)
	}
	// The id can be used again, with nothing left of the old mailbox.
	again := NewMailbox("a", "t1")
	again.Secrets = map[string]secrets.Secret{"other": "x"}
	must(t, s.CreateMailbox(ctx, again))
	if got, err := s.GetMailbox(ctx, "a"); err != nil || !mapsEqual(got.RevealedSecrets(), map[string]string{"other": "x"}) {
		t.Errorf("re-created mailbox: %v, %v", got, err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func ids(mbs []*store.Mailbox) []string {
	var out []string
	for _, mb := range mbs {
		out = append(out, mb.Spec.GetId())
	}
	return out
}

func testListMailboxes(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Ids whose byte order differs from a linguistic order: the order is by bytes.
	all := []string{"b", "B", "_x", "a", "a-b", "ab", "A", "a0", "é", "z"}
	tenant := map[string]string{}
	for i, id := range all {
		tn := []string{"t1", "t2"}[i%2]
		tenant[id] = tn
		mb := NewMailbox(id, tn)
		mb.Secrets = map[string]secrets.Secret{"password": secrets.Secret("pw-" + id)}
		must(t, s.CreateMailbox(ctx, mb))
	}
	sorted := slices.Clone(all)
	sort.Strings(sorted)
	want := func(tn, after string, limit int) []string {
		var out []string
		for _, id := range sorted {
			if (tn == "" || tenant[id] == tn) && id > after && (limit == 0 || len(out) < limit) {
				out = append(out, id)
			}
		}
		return out
	}
	check := func(q store.MailboxQuery) {
		t.Helper()
		got, err := s.ListMailboxes(ctx, q)
		if err != nil {
			t.Fatalf("ListMailboxes(%+v): %v", q, err)
		}
		if w := want(q.Tenant, q.AfterID, q.Limit); !slices.Equal(ids(got), w) {
			t.Errorf("ListMailboxes(%+v) = %q, want %q", q, ids(got), w)
		}
		for _, mb := range got {
			if pw := mb.Secrets["password"].Reveal(); pw != "pw-"+mb.Spec.Id || len(mb.Secrets) != 1 {
				t.Errorf("mailbox %q listed with secrets %v", mb.Spec.Id, mb.RevealedSecrets())
			}
			if mb.Spec.Tenant != tenant[mb.Spec.Id] {
				t.Errorf("mailbox %q listed with tenant %q", mb.Spec.Id, mb.Spec.Tenant)
			}
		}
	}
	check(store.MailboxQuery{})
	check(store.MailboxQuery{Tenant: "t1"})
	check(store.MailboxQuery{Tenant: "t2"})
	check(store.MailboxQuery{Tenant: "nobody"})
	check(store.MailboxQuery{Limit: 3})
	check(store.MailboxQuery{Limit: 100})
	check(store.MailboxQuery{AfterID: "a"})
	check(store.MailboxQuery{AfterID: "a-a"}) // not an id: between two
	check(store.MailboxQuery{AfterID: "zzz"})
	check(store.MailboxQuery{Tenant: "t2", AfterID: "_x", Limit: 2})
	// Page tokens are bytes from a client: not necessarily UTF-8.
	check(store.MailboxQuery{AfterID: "a\xff"})
	check(store.MailboxQuery{AfterID: "\x00"})
	check(store.MailboxQuery{AfterID: "\xc3"})

	// Paging through with a small limit visits each mailbox once, in order.
	for _, tn := range []string{"", "t1"} {
		var seen []string
		after := ""
		for range len(all) + 1 {
			page, err := s.ListMailboxes(ctx, store.MailboxQuery{Tenant: tn, AfterID: after, Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			seen = append(seen, ids(page)...)
			after = page[len(page)-1].Spec.Id
		}
		if w := want(tn, "", 0); !slices.Equal(seen, w) {
			t.Errorf("paging tenant %q: %q, want %q", tn, seen, w)
		}
	}
}

func testNotFoundAndConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	nf := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s = %v, want ErrNotFound", what, err)
		}
	}
	_, err := s.GetMailbox(ctx, "nope")
	nf("GetMailbox", err)
	nf("UpdateMailbox", s.UpdateMailbox(ctx, NewMailbox("nope", "t")))
	nf("DeleteMailbox", s.DeleteMailbox(ctx, "nope"))
	_, err = s.TokenByID(ctx, "nope")
	nf("TokenByID", err)
	nf("RevokeToken", s.RevokeToken(ctx, "nope", t0))
	_, err = s.GetQuarantined(ctx, 424242)
	nf("GetQuarantined", err)
	nf("SetQuarantineState", s.SetQuarantineState(ctx, 424242, store.QuarantineReplay))
	nf("DeleteQuarantined", s.DeleteQuarantined(ctx, 424242))

	create(t, s, "m")
	if err := s.CreateMailbox(ctx, NewMailbox("m", "other")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateMailbox of an existing id = %v, want ErrConflict", err)
	}
	if got, err := s.GetMailbox(ctx, "m"); err != nil || got.Spec.Tenant != "acme" {
		t.Errorf("a conflicting create changed the mailbox: %v, %v", got, err)
	}
	must(t, s.CreateToken(ctx, &store.Token{ID: "t1", Name: "a", Hash: []byte{1}, CreateTime: t0}))
	if err := s.CreateToken(ctx, &store.Token{ID: "t1", Name: "b", Hash: []byte{2}, CreateTime: t0}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateToken of an existing id = %v, want ErrConflict", err)
	}
	if err := s.CreateToken(ctx, &store.Token{ID: "t2", Name: "c", Hash: []byte{1}, CreateTime: t0}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateToken of an existing hash = %v, want ErrConflict", err)
	}
	if _, err := s.TokenByID(ctx, "t2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a conflicting token was stored: %v", err)
	}
}

// Keys come from clients (page tokens, token ids in a bearer value) and need not be UTF-8: a
// lookup by such a key finds nothing, it does not fail.
func testUnstorableKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "m")
	for _, k := range []string{"\xff", "m\x00", "\xc3("} {
		if _, err := s.GetMailbox(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetMailbox(%q) = %v, want ErrNotFound", k, err)
		}
		if err := s.DeleteMailbox(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteMailbox(%q) = %v, want ErrNotFound", k, err)
		}
		if _, err := s.TokenByID(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("TokenByID(%q) = %v, want ErrNotFound", k, err)
		}
		if err := s.RevokeToken(ctx, k, t0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RevokeToken(%q) = %v, want ErrNotFound", k, err)
		}
		if l, err := s.ListMailboxes(ctx, store.MailboxQuery{Tenant: k}); err != nil || len(l) != 0 {
			t.Errorf("ListMailboxes(tenant %q) = %v, %v", k, ids(l), err)
		}
		if st, err := s.ProviderState(ctx, k); err != nil || st != nil {
			t.Errorf("ProviderState(%q) = %q, %v", k, st, err)
		}
		if err := s.SetProviderState(ctx, k, nil); err != nil {
			t.Errorf("SetProviderState(%q, nil) = %v", k, err)
		}
		if err := s.SwapProviderState(ctx, k, nil, nil); err != nil {
			t.Errorf("SwapProviderState(%q, nil, nil) = %v", k, err)
		}
		if err := s.SwapProviderState(ctx, k, []byte("x"), nil); !errors.Is(err, store.ErrConflict) {
			t.Errorf("SwapProviderState(%q, x, nil) = %v, want ErrConflict", k, err)
		}
		if a, err := s.GetAuthorization(ctx, k); err != nil || a != nil {
			t.Errorf("GetAuthorization(%q) = %+v, %v", k, a, err)
		}
		if err := s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: k, State: []byte("s"), Handle: "h"}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SaveAuthorization(%q) = %v, want ErrNotFound", k, err)
		}
		if st, err := s.SyncState(ctx, k); err != nil || st != nil {
			t.Errorf("SyncState(%q) = %v, %v", k, st, err)
		}
		if a, err := s.Acks(ctx, k, 1, 0); err != nil || len(a) != 0 {
			t.Errorf("Acks(%q) = %v, %v", k, a, err)
		}
		if a, err := s.UnappliedAcks(ctx, k); err != nil || len(a) != 0 {
			t.Errorf("UnappliedAcks(%q) = %v, %v", k, a, err)
		}
		if ok, err := s.AckedHash(ctx, k, k); err != nil || ok {
			t.Errorf("AckedHash(%q) = %v, %v", k, ok, err)
		}
		if err := s.MarkApplied(ctx, k, 1, []uint32{1}); err != nil {
			t.Errorf("MarkApplied(%q) = %v", k, err)
		}
		if err := s.PruneAcks(ctx, k, 1, 1, time.Now()); err != nil {
			t.Errorf("PruneAcks(%q) = %v", k, err)
		}
		if q, err := s.ListQuarantine(ctx, k); err != nil || len(q) != 0 {
			t.Errorf("ListQuarantine(%q) = %v, %v", k, q, err)
		}
		if e, err := s.ListEvents(ctx, k, 0, 10); err != nil || len(e) != 0 {
			t.Errorf("ListEvents(%q) = %v, %v", k, e, err)
		}
	}
}

func testProviderState(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "a", "b")
	if st, err := s.ProviderState(ctx, "a"); err != nil || st != nil {
		t.Fatalf("ProviderState before any = %q, %v; want nil", st, err)
	}
	must(t, s.SetProviderState(ctx, "a", []byte("refresh-token-value")))
	must(t, s.SetProviderState(ctx, "b", []byte{0, 1, 2, 0xff}))
	if st, err := s.ProviderState(ctx, "a"); err != nil || string(st) != "refresh-token-value" {
		t.Errorf("ProviderState(a) = %q, %v", st, err)
	}
	if st, err := s.ProviderState(ctx, "b"); err != nil || !bytes.Equal(st, []byte{0, 1, 2, 0xff}) {
		t.Errorf("ProviderState(b) = %q, %v", st, err)
	}
	must(t, s.SetProviderState(ctx, "a", []byte("rotated")))
	if st, err := s.ProviderState(ctx, "a"); err != nil || string(st) != "rotated" {
		t.Errorf("ProviderState(a) after replace = %q, %v", st, err)
	}
	must(t, s.SetProviderState(ctx, "a", nil))
	if st, err := s.ProviderState(ctx, "a"); err != nil || st != nil {
		t.Errorf("ProviderState(a) after clearing = %q, %v; want nil", st, err)
	}
	must(t, s.SetProviderState(ctx, "a", nil)) // clearing twice is fine
	if st, _ := s.ProviderState(ctx, "b"); !bytes.Equal(st, []byte{0, 1, 2, 0xff}) {
		t.Errorf("clearing a's state changed b's: %q", st)
	}
	// Updating a mailbox keeps its provider state.
	must(t, s.SetProviderState(ctx, "a", []byte("kept")))
	must(t, s.UpdateMailbox(ctx, NewMailbox("a", "acme")))
	if st, _ := s.ProviderState(ctx, "a"); string(st) != "kept" {
		t.Errorf("provider state after UpdateMailbox = %q, want kept", st)
	}
}

// SwapProviderState writes only over the state the caller read: from none, from the current value,
// and clearing; a stale old value is ErrConflict and changes nothing.
func testSwapProviderState(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "a", "b")
	must(t, s.SetProviderState(ctx, "b", []byte("b's state")))
	is := func(want []byte) {
		t.Helper()
		st, err := s.ProviderState(ctx, "a")
		if err != nil || !bytes.Equal(st, want) || (st == nil) != (want == nil) {
			t.Errorf("ProviderState(a) = %q, %v; want %q", st, err, want)
		}
	}
	conflict := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s = %v, want ErrConflict", what, err)
		}
	}
	// From none.
	must(t, s.SwapProviderState(ctx, "a", nil, []byte("v1")))
	is([]byte("v1"))
	conflict("a swap from none when there is a state", s.SwapProviderState(ctx, "a", nil, []byte("other")))
	is([]byte("v1"))
	// From the current value; binary values compare as bytes.
	must(t, s.SwapProviderState(ctx, "a", []byte("v1"), []byte{0, 1, 0xff}))
	is([]byte{0, 1, 0xff})
	must(t, s.SwapProviderState(ctx, "a", []byte{0, 1, 0xff}, []byte("v2")))
	is([]byte("v2"))
	// A stale value (a refresh token that was rotated meanwhile) writes nothing, nor clears.
	conflict("a swap from a stale value", s.SwapProviderState(ctx, "a", []byte("v1"), []byte("v3")))
	is([]byte("v2"))
	conflict("clearing from a stale value", s.SwapProviderState(ctx, "a", []byte("v1"), nil))
	is([]byte("v2"))
	conflict("a swap from a prefix of the value", s.SwapProviderState(ctx, "a", []byte("v"), []byte("v3")))
	is([]byte("v2"))
	// The same value again is a swap like any other.
	must(t, s.SwapProviderState(ctx, "a", []byte("v2"), []byte("v2")))
	is([]byte("v2"))
	// It agrees with SetProviderState's writes.
	must(t, s.SetProviderState(ctx, "a", []byte("set")))
	conflict("a swap from the value before a SetProviderState", s.SwapProviderState(ctx, "a", []byte("v2"), []byte("v3")))
	must(t, s.SwapProviderState(ctx, "a", []byte("set"), []byte("v3")))
	is([]byte("v3"))
	// Clearing with new nil.
	must(t, s.SwapProviderState(ctx, "a", []byte("v3"), nil))
	is(nil)
	conflict("a swap from the cleared value", s.SwapProviderState(ctx, "a", []byte("v3"), []byte("v4")))
	is(nil)
	must(t, s.SwapProviderState(ctx, "a", nil, nil)) // none for none: nothing to do
	is(nil)
	must(t, s.SwapProviderState(ctx, "a", nil, []byte("v5")))
	is([]byte("v5"))
	// Another mailbox's state is its own.
	conflict("a swap from another mailbox's state", s.SwapProviderState(ctx, "a", []byte("b's state"), []byte("x")))
	if st, err := s.ProviderState(ctx, "b"); err != nil || string(st) != "b's state" {
		t.Errorf("ProviderState(b) = %q, %v", st, err)
	}
}

// Concurrent swaps from the same old value (two replicas refreshing the same token): exactly one
// wins, every other one is ErrConflict, and the state is the winner's.
func testSwapProviderStateConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "m")
	for _, from := range [][]byte{nil, []byte("shared-old")} {
		must(t, s.SetProviderState(ctx, "m", from))
		const swappers = 10
		errs := make([]error, swappers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range swappers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = s.SwapProviderState(ctx, "m", from, []byte(fmt.Sprintf("new-%d", i)))
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("from %q: swappers %d and %d both won", from, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("from %q: swapper %d = %v, want nil or ErrConflict", from, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("from %q: no swapper won: %v", from, errs)
		}
		if st, err := s.ProviderState(ctx, "m"); err != nil || string(st) != fmt.Sprintf("new-%d", winner) {
			t.Errorf("from %q: state %q, %v; want the winner's, new-%d", from, st, err, winner)
		}
	}
}

// getAuthorization returns the mailbox's pending sign-in, failing the test on an error.
func getAuthorization(t *testing.T, s store.Store, mailboxID string) *store.PendingAuthorization {
	t.Helper()
	a, err := s.GetAuthorization(t.Context(), mailboxID)
	if err != nil {
		t.Fatalf("GetAuthorization(%q): %v", mailboxID, err)
	}
	return a
}

// A mailbox's pending sign-in round-trips exactly (its state and handle are any bytes), is
// replaced by the next save, and stamps its update time; there is none before the first save,
// and a mailbox that does not exist has none to save.
func testAuthorization(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "a", "b")
	if a := getAuthorization(t, s, "a"); a != nil {
		t.Fatalf("GetAuthorization before any = %+v, want nil", a)
	}
	must(t, s.SaveAuthorization(ctx, nil)) // nothing to save
	if a := getAuthorization(t, s, "a"); a != nil {
		t.Fatalf("GetAuthorization after saving nil = %+v, want nil", a)
	}

	state := []byte{0x08, 0x01, 0x12, 0x00, 0xff, 0xfe, 'u', 'r', 'l'}
	handle := "device-code\x00\xff\xc3("
	before := time.Now()
	pa := &store.PendingAuthorization{MailboxID: "a", State: slices.Clone(state), Handle: handle}
	must(t, s.SaveAuthorization(ctx, pa))
	after := time.Now()
	if pa.UpdateTime.Before(before.Add(-time.Second)) || pa.UpdateTime.After(after.Add(time.Second)) {
		t.Errorf("SaveAuthorization set UpdateTime %v, want about now (%v)", pa.UpdateTime, before)
	}
	got := getAuthorization(t, s, "a")
	if got == nil || got.MailboxID != "a" || !bytes.Equal(got.State, state) || got.Handle != handle || !got.UpdateTime.Equal(pa.UpdateTime) {
		t.Fatalf("GetAuthorization(a) = %+v, want state %q, handle %q, update time %v", got, state, handle, pa.UpdateTime)
	}
	if b := getAuthorization(t, s, "b"); b != nil {
		t.Errorf("GetAuthorization(b) after saving a's = %+v, want nil", b)
	}

	// The next save replaces it.
	first := got.UpdateTime
	must(t, s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: "a", State: []byte("completed"), Handle: "second-handle"}))
	must(t, s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: "b", State: []byte("b's state"), Handle: "b's handle"}))
	got = getAuthorization(t, s, "a")
	if got == nil || string(got.State) != "completed" || got.Handle != "second-handle" || got.UpdateTime.Before(first) {
		t.Errorf("GetAuthorization(a) after a replace = %+v", got)
	}
	if b := getAuthorization(t, s, "b"); b == nil || string(b.State) != "b's state" || b.Handle != "b's handle" {
		t.Errorf("GetAuthorization(b) = %+v", b)
	}
	// Empty state and handle round-trip as empty.
	must(t, s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: "a"}))
	if got := getAuthorization(t, s, "a"); got == nil || len(got.State) != 0 || got.Handle != "" || got.UpdateTime.IsZero() {
		t.Errorf("GetAuthorization(a) after saving an empty one = %+v", got)
	}
	// Updating the mailbox keeps it.
	must(t, s.UpdateMailbox(ctx, NewMailbox("b", "acme")))
	if b := getAuthorization(t, s, "b"); b == nil || b.Handle != "b's handle" {
		t.Errorf("GetAuthorization(b) after UpdateMailbox = %+v", b)
	}

	// A mailbox that does not exist: ErrNotFound, and nothing to read.
	err := s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: "gone", State: []byte("s"), Handle: "h"})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SaveAuthorization of a missing mailbox = %v, want ErrNotFound", err)
	}
	if a := getAuthorization(t, s, "gone"); a != nil {
		t.Errorf("GetAuthorization(gone) = %+v, want nil", a)
	}
}

func testTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	exp := t0.Add(90 * 24 * time.Hour).Add(7)
	toks := []*store.Token{
		{ID: "tok-c", Name: "psa", Tenant: "acme", Hash: []byte{1, 2, 3}, CreateTime: t0},
		{ID: "tok-a", Name: "admin", Admin: true, Hash: []byte{4, 5, 6}, CreateTime: t0.Add(time.Second), ExpireTime: exp},
		{ID: "tok-b", Name: "created with tok-c, sorts before it by id", Tenant: "acme", Hash: []byte{7}, CreateTime: t0},
		{ID: "tok-d", Name: "last", Tenant: "beta", Hash: bytes.Repeat([]byte{0xab}, 32), CreateTime: t0.Add(time.Minute)},
	}
	for _, tk := range toks {
		must(t, s.CreateToken(ctx, tk))
	}
	for _, want := range toks {
		got, err := s.TokenByID(ctx, want.ID)
		if err != nil {
			t.Fatalf("TokenByID(%s): %v", want.ID, err)
		}
		if got.ID != want.ID || got.Name != want.Name || got.Tenant != want.Tenant || got.Admin != want.Admin ||
			!bytes.Equal(got.Hash, want.Hash) || !got.CreateTime.Equal(want.CreateTime) || !got.RevokeTime.IsZero() ||
			!got.ExpireTime.Equal(want.ExpireTime) || got.ExpireTime.IsZero() != want.ExpireTime.IsZero() {
			t.Errorf("TokenByID(%s) = %+v, want %+v", want.ID, got, want)
		}
		if got.CreateTime.Location() != time.UTC || (!got.ExpireTime.IsZero() && got.ExpireTime.Location() != time.UTC) {
			t.Errorf("TokenByID(%s) times are not UTC: %v %v", want.ID, got.CreateTime, got.ExpireTime)
		}
	}
	listed := func(includeRevoked bool) []string {
		t.Helper()
		l, err := s.ListTokens(ctx, includeRevoked)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, tk := range l {
			out = append(out, tk.ID)
		}
		return out
	}
	// Ordered by creation, then id.
	if got, want := listed(false), []string{"tok-b", "tok-c", "tok-a", "tok-d"}; !slices.Equal(got, want) {
		t.Errorf("ListTokens(false) = %v, want %v", got, want)
	}
	revoked := t0.Add(time.Hour).Add(5)
	must(t, s.RevokeToken(ctx, "tok-c", revoked))
	// Revoking again keeps the first time.
	must(t, s.RevokeToken(ctx, "tok-c", revoked.Add(time.Hour)))
	if got, want := listed(false), []string{"tok-b", "tok-a", "tok-d"}; !slices.Equal(got, want) {
		t.Errorf("ListTokens(false) after revoke = %v, want %v", got, want)
	}
	if got, want := listed(true), []string{"tok-b", "tok-c", "tok-a", "tok-d"}; !slices.Equal(got, want) {
		t.Errorf("ListTokens(true) = %v, want %v", got, want)
	}
	got, err := s.TokenByID(ctx, "tok-c")
	if err != nil || !got.RevokeTime.Equal(revoked) || got.RevokeTime.Location() != time.UTC {
		t.Errorf("revoked token = %+v, %v; want revoked at %v", got, err, revoked)
	}
	l, _ := s.ListTokens(ctx, true)
	for _, tk := range l {
		if tk.ID == "tok-a" && (!tk.ExpireTime.Equal(exp) || !tk.Admin) {
			t.Errorf("listed token = %+v", tk)
		}
		if tk.ID == "tok-c" && !tk.RevokeTime.Equal(revoked) {
			t.Errorf("listed revoked token = %+v", tk)
		}
	}
}

func testSyncState(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "a", "b")
	if st, err := s.SyncState(ctx, "a"); err != nil || st != nil {
		t.Fatalf("SyncState before any = %+v, %v; want nil", st, err)
	}
	before := time.Now()
	want := store.SyncState{MailboxID: "a", UIDValidity: 7, AckedThrough: 42, Baseline: 40, ResyncBelow: 3, UpdateTime: t0}
	must(t, s.SaveSyncState(ctx, &want))
	after := time.Now()
	got, err := s.SyncState(ctx, "a")
	if err != nil || got == nil {
		t.Fatalf("SyncState = %+v, %v", got, err)
	}
	if got.MailboxID != "a" || got.UIDValidity != 7 || got.AckedThrough != 42 || got.Baseline != 40 || got.ResyncBelow != 3 {
		t.Errorf("SyncState = %+v, want %+v", got, want)
	}
	// The store stamps the update time itself.
	if got.UpdateTime.Before(before.Truncate(time.Microsecond)) || got.UpdateTime.After(after.Add(time.Microsecond)) {
		t.Errorf("UpdateTime = %v, want between %v and %v", got.UpdateTime, before, after)
	}
	// UIDs are unsigned 32-bit: the largest survives.
	const top = ^uint32(0)
	must(t, s.SaveSyncState(ctx, &store.SyncState{MailboxID: "a", UIDValidity: top, AckedThrough: top, Baseline: top, ResyncBelow: top}))
	got, _ = s.SyncState(ctx, "a")
	if got == nil || got.UIDValidity != top || got.AckedThrough != top || got.Baseline != top || got.ResyncBelow != top {
		t.Errorf("SyncState with the largest UIDs = %+v", got)
	}
	if st, _ := s.SyncState(ctx, "b"); st != nil {
		t.Errorf("b's sync state = %+v, want nil", st)
	}
}

func ack(uv, uid uint32, sha string, at time.Time) store.Ack {
	return store.Ack{UIDValidity: uv, UID: uid, SHA256: sha, AckTime: at}
}

func uidsOf(acks []store.Ack) []string {
	var out []string
	for _, a := range acks {
		out = append(out, fmt.Sprintf("%d/%d", a.UIDValidity, a.UID))
	}
	return out
}

func testAcks(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "a", "b")
	if err := s.RecordAcks(ctx, nil); err != nil {
		t.Errorf("RecordAcks(nil) = %v", err)
	}
	if err := s.RecordAcks(ctx, map[string][]store.Ack{"a": nil}); err != nil {
		t.Errorf("RecordAcks of an empty list = %v", err)
	}
	const top = ^uint32(0)
	applied := ack(7, 2, "h2", t0)
	applied.Applied = true
	must(t, s.RecordAcks(ctx, map[string][]store.Ack{
		"a": {ack(7, 5, "h5", t0.Add(1)), ack(7, 1, "h1", t0), applied, ack(6, 9, "h69", t0), ack(7, top, "htop", t0)},
		"b": {ack(7, 1, "hb1", t0)},
	}))
	got, err := s.Acks(ctx, "a", 7, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"7/1", "7/2", "7/5", fmt.Sprintf("7/%d", top)}; !slices.Equal(uidsOf(got), want) {
		t.Errorf("Acks(a, 7, 0) = %v, want %v (by UID)", uidsOf(got), want)
	}
	for _, a := range got {
		if a.UID == 5 && (a.SHA256 != "h5" || !a.AckTime.Equal(t0.Add(1)) || a.AckTime.Location() != time.UTC || a.Applied) {
			t.Errorf("ack 7/5 = %+v", a)
		}
		if a.UID == 2 && !a.Applied {
			t.Errorf("ack 7/2 recorded as applied = %+v", a)
		}
	}
	if got, _ := s.Acks(ctx, "a", 7, 2); !slices.Equal(uidsOf(got), []string{"7/5", fmt.Sprintf("7/%d", top)}) {
		t.Errorf("Acks(a, 7, above 2) = %v", uidsOf(got))
	}
	if got, _ := s.Acks(ctx, "a", 6, 0); !slices.Equal(uidsOf(got), []string{"6/9"}) {
		t.Errorf("Acks(a, 6, 0) = %v", uidsOf(got))
	}
	if got, _ := s.Acks(ctx, "a", 8, 0); len(got) != 0 {
		t.Errorf("Acks(a, 8, 0) = %v", uidsOf(got))
	}
	un, err := s.UnappliedAcks(ctx, "a")
	if want := []string{"6/9", "7/1", "7/5", fmt.Sprintf("7/%d", top)}; err != nil || !slices.Equal(uidsOf(un), want) {
		t.Errorf("UnappliedAcks(a) = %v, %v; want %v (by UIDVALIDITY, UID)", uidsOf(un), err, want)
	}

	// Idempotent: a repeat (even with another hash or time) changes nothing and does not fail.
	must(t, s.RecordAcks(ctx, map[string][]store.Ack{"a": {ack(7, 1, "other", t0.Add(time.Hour)), ack(7, 1, "h1", t0)}}))
	got, _ = s.Acks(ctx, "a", 7, 0)
	if len(got) != 4 || got[0].SHA256 != "h1" || !got[0].AckTime.Equal(t0) {
		t.Errorf("after a repeated ack: %+v", got)
	}
	// A repeat of an applied ack, unapplied, keeps it applied.
	must(t, s.RecordAcks(ctx, map[string][]store.Ack{"a": {ack(7, 2, "h2", t0)}}))
	if got, _ := s.Acks(ctx, "a", 7, 1); len(got) == 0 || got[0].UID != 2 || !got[0].Applied {
		t.Errorf("a repeated ack undid applied: %+v", got)
	}

	// MarkApplied: only the UIDs of this mailbox and UIDVALIDITY; unknown UIDs are no error.
	must(t, s.MarkApplied(ctx, "a", 7, []uint32{1, 5, 1000}))
	must(t, s.MarkApplied(ctx, "a", 7, nil))
	must(t, s.MarkApplied(ctx, "a", 8, []uint32{top}))
	must(t, s.MarkApplied(ctx, "b", 6, []uint32{1}))
	if un, _ := s.UnappliedAcks(ctx, "a"); !slices.Equal(uidsOf(un), []string{"6/9", fmt.Sprintf("7/%d", top)}) {
		t.Errorf("UnappliedAcks(a) after MarkApplied = %v", uidsOf(un))
	}
	if un, _ := s.UnappliedAcks(ctx, "b"); !slices.Equal(uidsOf(un), []string{"7/1"}) {
		t.Errorf("UnappliedAcks(b) = %v", uidsOf(un))
	}
	must(t, s.MarkApplied(ctx, "a", 7, []uint32{1})) // again: no error
	got, _ = s.Acks(ctx, "a", 7, 0)
	for _, a := range got {
		if a.Applied != (a.UID != top) {
			t.Errorf("ack %d/%d applied = %v", a.UIDValidity, a.UID, a.Applied)
		}
	}

	// AckedHash: by mailbox, any UIDVALIDITY, applied or not.
	for _, c := range []struct {
		mb, sha string
		want    bool
	}{{"a", "h1", true}, {"a", "h69", true}, {"a", "htop", true}, {"a", "hb1", false}, {"b", "hb1", true}, {"b", "h1", false}, {"a", "", false}, {"a", "other", false}} {
		if got, err := s.AckedHash(ctx, c.mb, c.sha); err != nil || got != c.want {
			t.Errorf("AckedHash(%s, %q) = %v, %v; want %v", c.mb, c.sha, got, err, c.want)
		}
	}
}

// An acknowledgement call spanning mailboxes is recorded whole or not at all, so a failed call
// never leaves acknowledgements the consumer was not told about.
func testRecordAcksAllOrNothing(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "mb-a", "mb-b")
	a := func(uid uint32) store.Ack { return ack(7, uid, fmt.Sprintf("h%d", uid), t0) }
	// A missing mailbox sorting before, between and after the others fails the whole call.
	for _, gone := range []string{"0-gone", "mb-aa-gone", "zz-gone"} {
		err := s.RecordAcks(ctx, map[string][]store.Ack{"mb-a": {a(1), a(2)}, gone: {a(3)}, "mb-b": {a(4)}})
		failsForGood(t, "acknowledging a message of missing mailbox "+gone, err)
		for _, mb := range []string{"mb-a", "mb-b"} {
			if got, err := s.Acks(ctx, mb, 7, 0); err != nil || len(got) != 0 {
				t.Fatalf("after a failed call (missing %s), %s has acks %v (err %v); want none", gone, mb, uidsOf(got), err)
			}
		}
		if ok, _ := s.AckedHash(ctx, "mb-a", "h1"); ok {
			t.Fatalf("after a failed call, mb-a's hash h1 is known")
		}
	}
	must(t, s.RecordAcks(ctx, map[string][]store.Ack{"mb-a": {a(1), a(2)}, "mb-b": {a(3)}}))
	ua, _ := s.UnappliedAcks(ctx, "mb-a")
	ub, _ := s.UnappliedAcks(ctx, "mb-b")
	if len(ua) != 2 || len(ub) != 1 || ub[0].UID != 3 {
		t.Fatalf("recorded %v and %v; want UIDs 1, 2 and 3", uidsOf(ua), uidsOf(ub))
	}
	// A failed call whose other acks were already recorded leaves them as they were.
	err := s.RecordAcks(ctx, map[string][]store.Ack{"mb-a": {a(1), a(9)}, "gone": {a(3)}})
	failsForGood(t, "a repeated call with a missing mailbox", err)
	if ua, _ := s.Acks(ctx, "mb-a", 7, 0); !slices.Equal(uidsOf(ua), []string{"7/1", "7/2"}) {
		t.Errorf("after a failed repeat, mb-a has %v", uidsOf(ua))
	}
	// Idempotent: the same call again changes nothing and does not fail.
	must(t, s.RecordAcks(ctx, map[string][]store.Ack{"mb-a": {a(1)}}))
}

func testPruneAcks(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "m", "other")
	cut := t0
	old, recent := cut.Add(-time.Hour), cut.Add(time.Hour)
	mk := func(uv, uid uint32, at time.Time, applied bool) store.Ack {
		a := ack(uv, uid, fmt.Sprintf("h%d-%d", uv, uid), at)
		a.Applied = applied
		return a
	}
	acks := []store.Ack{
		mk(7, 1, old, true),     // applied, old, at or below the checkpoint: pruned
		mk(7, 2, old, true),     // at the checkpoint: pruned
		mk(7, 3, old, true),     // above the checkpoint: kept
		mk(7, 4, recent, true),  // recent: kept
		mk(7, 5, old, false),    // not applied: kept
		mk(7, 6, cut, true),     // exactly at the cut: kept (strictly older only)
		mk(6, 9, old, true),     // another UIDVALIDITY, old, applied: pruned, whatever its UID
		mk(6, 10, recent, true), // another UIDVALIDITY, recent: kept
		mk(6, 11, old, false),   // another UIDVALIDITY, not applied: kept
		mk(7, 0, old, true),     // UID 0, below the checkpoint: pruned
	}
	must(t, s.RecordAcks(ctx, map[string][]store.Ack{"m": acks, "other": acks}))
	must(t, s.PruneAcks(ctx, "m", 7, 2, cut))
	var left []string
	for _, uv := range []uint32{6, 7} {
		got, err := s.Acks(ctx, "m", uv, 0)
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, uidsOf(got)...)
	}
	// Acks(uv, above 0) does not show UID 0: ask for it through its hash.
	if ok, _ := s.AckedHash(ctx, "m", "h7-0"); ok {
		left = append(left, "7/0")
	}
	if want := []string{"6/10", "6/11", "7/3", "7/4", "7/5", "7/6"}; !slices.Equal(left, want) {
		t.Errorf("after PruneAcks: %v, want %v", left, want)
	}
	for _, gone := range []string{"h7-1", "h6-9"} {
		if ok, _ := s.AckedHash(ctx, "m", gone); ok {
			t.Errorf("hash %s survived the prune", gone)
		}
	}
	// Another mailbox is untouched.
	if ok, _ := s.AckedHash(ctx, "other", "h7-1"); !ok {
		t.Errorf("PruneAcks of m pruned other's acks")
	}
}

func testQuarantine(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "m", "n")
	// The header section is what the server sent: any bytes.
	hdr := "Subject: caf\xe9 \x00 r\xc3\xa9sum\xc3\xa9\r\nFrom: <a@example.com>\r\n\r\n"
	q1 := &store.Quarantined{MailboxID: "m", UIDValidity: 7, UID: 10, Reason: "unparseable MIME", Size: 1 << 40, Headers: hdr}
	before := time.Now()
	must(t, s.Quarantine(ctx, q1))
	if q1.ID == 0 || q1.State != store.QuarantineHeld || q1.CreateTime.IsZero() {
		t.Errorf("Quarantine did not fill in id, state and time: %+v", q1)
	}
	q2 := &store.Quarantined{MailboxID: "m", UIDValidity: 7, UID: 3, Reason: "too large", Size: 5, State: store.QuarantineReplay, CreateTime: t0}
	must(t, s.Quarantine(ctx, q2))
	q3 := &store.Quarantined{MailboxID: "m", UIDValidity: 8, UID: 10, Reason: "other UIDVALIDITY", CreateTime: t0}
	must(t, s.Quarantine(ctx, q3))
	qn := &store.Quarantined{MailboxID: "n", UIDValidity: 7, UID: 10, Reason: "other mailbox", CreateTime: t0}
	must(t, s.Quarantine(ctx, qn))
	if len(map[int64]bool{q1.ID: true, q2.ID: true, q3.ID: true, qn.ID: true}) != 4 {
		t.Fatalf("ids not distinct: %d %d %d %d", q1.ID, q2.ID, q3.ID, qn.ID)
	}

	got, err := s.GetQuarantined(ctx, q1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != q1.ID || got.MailboxID != "m" || got.UIDValidity != 7 || got.UID != 10 || got.Reason != q1.Reason ||
		got.Size != 1<<40 || got.Headers != hdr || got.State != store.QuarantineHeld || got.CreateTime.Location() != time.UTC ||
		!got.CreateTime.Equal(q1.CreateTime) || got.CreateTime.Before(before.Truncate(time.Microsecond)) {
		t.Errorf("GetQuarantined = %+v\nwant %+v", got, q1)
	}
	if got, _ := s.GetQuarantined(ctx, q2.ID); got == nil || got.State != store.QuarantineReplay || !got.CreateTime.Equal(t0) {
		t.Errorf("GetQuarantined(q2) = %+v", got)
	}

	list := func(mb string) []int64 {
		t.Helper()
		l, err := s.ListQuarantine(ctx, mb)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, q := range l {
			if q.MailboxID != mb {
				t.Errorf("ListQuarantine(%s) returned an entry of %s", mb, q.MailboxID)
			}
			out = append(out, q.ID)
		}
		return out
	}
	// Oldest first: in the order they were quarantined.
	if got, want := list("m"), []int64{q1.ID, q2.ID, q3.ID}; !slices.Equal(got, want) {
		t.Errorf("ListQuarantine(m) = %v, want %v", got, want)
	}
	if got := list("n"); !slices.Equal(got, []int64{qn.ID}) {
		t.Errorf("ListQuarantine(n) = %v", got)
	}

	// The same UID again replaces the entry: same id and creation time, new reason, size,
	// headers and state.
	must(t, s.SetQuarantineState(ctx, q1.ID, store.QuarantineReplay))
	again := &store.Quarantined{MailboxID: "m", UIDValidity: 7, UID: 10, Reason: "still unparseable", Size: 99, Headers: "X: y\r\n\r\n", CreateTime: t0.Add(time.Hour)}
	must(t, s.Quarantine(ctx, again))
	if again.ID != q1.ID {
		t.Errorf("replacing entry got id %d, want %d", again.ID, q1.ID)
	}
	got, _ = s.GetQuarantined(ctx, q1.ID)
	if got == nil || got.Reason != "still unparseable" || got.Size != 99 || got.Headers != "X: y\r\n\r\n" ||
		got.State != store.QuarantineHeld || !got.CreateTime.Equal(q1.CreateTime) {
		t.Errorf("replaced entry = %+v", got)
	}
	if got, want := list("m"), []int64{q1.ID, q2.ID, q3.ID}; !slices.Equal(got, want) {
		t.Errorf("ListQuarantine(m) after replace = %v, want %v", got, want)
	}

	must(t, s.SetQuarantineState(ctx, q2.ID, store.QuarantineHeld))
	if got, _ := s.GetQuarantined(ctx, q2.ID); got == nil || got.State != store.QuarantineHeld {
		t.Errorf("after SetQuarantineState: %+v", got)
	}
	must(t, s.DeleteQuarantined(ctx, q2.ID))
	if _, err := s.GetQuarantined(ctx, q2.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetQuarantined after delete = %v", err)
	}
	if err := s.DeleteQuarantined(ctx, q2.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteQuarantined = %v", err)
	}
	if err := s.SetQuarantineState(ctx, q2.ID, store.QuarantineReplay); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetQuarantineState after delete = %v", err)
	}
	if got, want := list("m"), []int64{q1.ID, q3.ID}; !slices.Equal(got, want) {
		t.Errorf("ListQuarantine(m) after delete = %v, want %v", got, want)
	}
	// Quarantined again after deletion: a new entry, the newest.
	q2b := &store.Quarantined{MailboxID: "m", UIDValidity: 7, UID: 3, Reason: "back"}
	must(t, s.Quarantine(ctx, q2b))
	if got, want := list("m"), []int64{q1.ID, q3.ID, q2b.ID}; !slices.Equal(got, want) || q2b.ID == q2.ID {
		t.Errorf("ListQuarantine(m) after re-quarantine = %v, want %v", got, want)
	}
}

// addEvent adds an event, failing the test on an error.
func addEvent(t *testing.T, s store.Store, mb string, at time.Time, kind, msg string) {
	t.Helper()
	if err := s.AddEvent(t.Context(), store.Event{MailboxID: mb, Time: at, Kind: kind, Message: msg}); err != nil {
		t.Fatalf("AddEvent(%s, %s, %q): %v", mb, kind, msg, err)
	}
}

func listEvents(t *testing.T, s store.Store, mb string) []store.Event {
	t.Helper()
	evs, err := s.ListEvents(t.Context(), mb, 0, store.MaxEventsPerMailbox)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].ID >= evs[i-1].ID {
			t.Fatalf("ListEvents not newest (highest id) first: %+v", evs)
		}
	}
	for _, e := range evs {
		if e.MailboxID != mb {
			t.Fatalf("ListEvents(%s) returned an event of %q", mb, e.MailboxID)
		}
	}
	return evs
}

func maxID(evs []store.Event) int64 {
	var m int64
	for _, e := range evs {
		m = max(m, e.ID)
	}
	return m
}

// Events written at once by many writers (hundreds of sessions starting together) are each
// written once, in each mailbox's order, and folded as when written one by one; an event for a
// mailbox that does not exist fails alone, naming ErrNotFound or a store error, and the others
// are written.
func testEventsConcurrent(t *testing.T, s store.Store) {
	const mailboxes, each = 20, 15
	var ids []string
	for i := range mailboxes {
		ids = append(ids, fmt.Sprintf("ev%02d", i))
	}
	create(t, s, ids...)
	base := time.Now().Add(-time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, mailboxes*each+each)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				// Every mailbox's third event repeats its second: folded.
				msg := fmt.Sprintf("event %d", j)
				if j == 2 {
					msg = "event 1"
				}
				if err := s.AddEvent(t.Context(), store.Event{MailboxID: id, Time: base.Add(time.Duration(j) * time.Millisecond), Kind: "deliver", Message: msg}); err != nil {
					errs <- fmt.Errorf("%s %d: %w", id, j, err)
				}
			}
		}()
	}
	wg.Add(1)
	var missing int
	go func() {
		defer wg.Done()
		for j := range each {
			if s.AddEvent(t.Context(), store.Event{MailboxID: "no-such-mailbox", Time: base, Kind: "deliver", Message: fmt.Sprint(j)}) != nil {
				missing++
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if missing != each {
		t.Errorf("%d of %d events of a missing mailbox failed, want all", missing, each)
	}
	for _, id := range ids {
		evs := listEvents(t, s, id)
		if len(evs) != each-1 {
			t.Fatalf("%s: %d entries, want %d (one folded): %+v", id, len(evs), each-1, evs)
		}
		// Newest first: event 14 … event 3, then the fold of event 1 (written at 1 and 2 ms,
		// the newest entry when the third came), then event 0.
		if evs[0].Message != fmt.Sprintf("event %d", each-1) || evs[len(evs)-1].Message != "event 0" {
			t.Errorf("%s: order %q … %q", id, evs[0].Message, evs[len(evs)-1].Message)
		}
		folded := evs[len(evs)-2]
		if folded.Message != "event 1" || folded.Count != 2 {
			t.Errorf("%s: fold %+v", id, folded)
		}
	}
}

// Repeats of an event are folded into one entry (count, first and last time) that becomes the
// newest, with a new id; the fold looks back EventFoldWindow from the new event's time.
func testEventsFold(t *testing.T, s store.Store) {
	create(t, s, "m", "m2")
	base := time.Now().Add(-time.Hour)
	addEvent(t, s, "m", base, "error", "move refused")
	addEvent(t, s, "m", base.Add(time.Minute), "deliver", "delivered 1 message")
	prev := listEvents(t, s, "m")
	addEvent(t, s, "m", base.Add(2*time.Minute), "error", "move refused")
	addEvent(t, s, "m", base.Add(3*time.Minute), "error", "move refused")
	evs := listEvents(t, s, "m")
	if len(evs) != 2 {
		t.Fatalf("events = %+v, want 2 entries", evs)
	}
	if e := evs[0]; e.Kind != "error" || e.Message != "move refused" || e.Count != 3 || !e.FirstTime.Equal(base) ||
		!e.Time.Equal(base.Add(3*time.Minute)) || e.Time.Location() != time.UTC || e.FirstTime.Location() != time.UTC {
		t.Errorf("folded entry = %+v", e)
	}
	if evs[0].ID <= maxID(prev) {
		t.Errorf("folded entry kept an old id (%d, newest before was %d): it must be the newest", evs[0].ID, maxID(prev))
	}
	if e := evs[1]; e.Count != 1 || !e.FirstTime.Equal(e.Time) || e.Kind != "deliver" || !e.Time.Equal(base.Add(time.Minute)) {
		t.Errorf("single entry = %+v", e)
	}

	// Folding needs the same kind and message, in the same mailbox.
	addEvent(t, s, "m", base.Add(4*time.Minute), "warn", "move refused")
	addEvent(t, s, "m", base.Add(4*time.Minute), "error", "move refused ")
	addEvent(t, s, "m2", base.Add(4*time.Minute), "error", "move refused")
	evs = listEvents(t, s, "m")
	if len(evs) != 4 || evs[0].Count != 1 || evs[1].Count != 1 || evs[2].Count != 3 {
		t.Errorf("different kind or message folded: %+v", evs)
	}
	if e2 := listEvents(t, s, "m2"); len(e2) != 1 || e2[0].Count != 1 {
		t.Errorf("m2's events = %+v", e2)
	}

	// The window is inclusive: a repeat exactly EventFoldWindow after the last one still folds.
	last := base.Add(3 * time.Minute)
	addEvent(t, s, "m", last.Add(store.EventFoldWindow), "error", "move refused")
	evs = listEvents(t, s, "m")
	if len(evs) != 4 || evs[0].Message != "move refused" || evs[0].Kind != "error" || evs[0].Count != 4 || !evs[0].FirstTime.Equal(base) ||
		!evs[0].Time.Equal(last.Add(store.EventFoldWindow)) {
		t.Errorf("a repeat at the window's edge: %+v", evs)
	}
	// One nanosecond later than the window: a new entry.
	last = last.Add(store.EventFoldWindow)
	addEvent(t, s, "m", last.Add(store.EventFoldWindow+1), "error", "move refused")
	evs = listEvents(t, s, "m")
	if len(evs) != 5 || evs[0].Count != 1 || !evs[0].FirstTime.Equal(last.Add(store.EventFoldWindow+1)) || evs[1].Count != 4 {
		t.Errorf("a repeat after the fold window: %+v", evs)
	}

	// The log is ordered by id (order of writing), not by the events' times.
	addEvent(t, s, "m2", base.Add(time.Hour), "connect", "later time, written first")
	addEvent(t, s, "m2", base, "connect", "earlier time, written last")
	if e2 := listEvents(t, s, "m2"); len(e2) != 3 || e2[0].Message != "earlier time, written last" {
		t.Errorf("m2's events = %+v", e2)
	}

	// Pagination: beforeID and limit.
	all := listEvents(t, s, "m")
	page, err := s.ListEvents(t.Context(), "m", all[1].ID, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[0].ID != all[2].ID || page[1].ID != all[3].ID {
		t.Errorf("ListEvents(before %d, 2) = %+v, want entries 2 and 3 of %+v", all[1].ID, page, all)
	}
	if page, _ := s.ListEvents(t.Context(), "m", all[len(all)-1].ID, 10); len(page) != 0 {
		t.Errorf("ListEvents before the oldest = %+v", page)
	}
	for _, limit := range []int{0, -1, store.MaxEventsPerMailbox + 1} {
		if page, err := s.ListEvents(t.Context(), "m", 0, limit); err != nil || len(page) != len(all) {
			t.Errorf("ListEvents(limit %d) = %d entries, %v; want %d", limit, len(page), err, len(all))
		}
	}
	if page, _ := s.ListEvents(t.Context(), "m", -5, 1); len(page) != 1 || page[0].ID != all[0].ID {
		t.Errorf("ListEvents(before -5, 1) = %+v, want the newest", page)
	}
}

// Messages are cut at 2000 bytes (plus an ellipsis) and made valid UTF-8; a repeat of a cut
// message folds.
func testEventsMessages(t *testing.T, s store.Store) {
	create(t, s, "m")
	now := time.Now()
	long := strings.Repeat("x", 1999) + "é" + "tail" // the cut falls inside "é"
	wantLong := strings.Repeat("x", 1999) + "?" + "…"
	exact := strings.Repeat("y", 2000)
	cases := []struct{ in, want string }{
		{long, wantLong},
		{exact, exact},
		{"bad \xff\xfe byte", "bad ? byte"},
		{"", ""},
		{"ünïcödé ✓", "ünïcödé ✓"},
	}
	for i, c := range cases {
		addEvent(t, s, "m", now.Add(time.Duration(i)*time.Second), "error", c.in)
		evs := listEvents(t, s, "m")
		if evs[0].Message != c.want || evs[0].Count != 1 {
			t.Errorf("message %.20q… stored as %.40q… (count %d), want %.40q…", c.in, evs[0].Message, evs[0].Count, c.want)
		}
	}
	addEvent(t, s, "m", now.Add(time.Minute), "error", long)
	addEvent(t, s, "m", now.Add(time.Minute), "error", "bad \xff\xfe byte")
	evs := listEvents(t, s, "m")
	if evs[1].Message != wantLong || evs[1].Count != 2 || evs[0].Message != "bad ? byte" || evs[0].Count != 2 {
		t.Errorf("repeats of cut or invalid messages did not fold: %.60q (count %d), %.60q (count %d)", evs[0].Message, evs[0].Count, evs[1].Message, evs[1].Count)
	}
	// A NUL byte is accepted (kept, or replaced by "?"), and a repeat folds.
	addEvent(t, s, "m", now.Add(2*time.Minute), "error", "nul \x00 byte")
	addEvent(t, s, "m", now.Add(2*time.Minute), "error", "nul \x00 byte")
	evs = listEvents(t, s, "m")
	if (evs[0].Message != "nul \x00 byte" && evs[0].Message != "nul ? byte") || evs[0].Count != 2 {
		t.Errorf("message with NUL stored as %+q (count %d)", evs[0].Message, evs[0].Count)
	} else {
		t.Logf("a message with a NUL byte is stored as %+q", evs[0].Message)
	}
	// A zero time is now.
	before := time.Now()
	must(t, s.AddEvent(t.Context(), store.Event{MailboxID: "m", Kind: "connect", Message: "no time"}))
	after := time.Now()
	evs = listEvents(t, s, "m")
	if e := evs[0]; e.Message != "no time" || e.Time.Before(before.Truncate(time.Microsecond)) || e.Time.After(after.Add(time.Microsecond)) || !e.FirstTime.Equal(e.Time) {
		t.Errorf("event without a time = %+v, want between %v and %v", e, before, after)
	}
}

// Entries last seen more than EventRetention before the event being written are dropped at that
// write: exactly, per mailbox.
func testEventsRetention(t *testing.T, s store.Store) {
	create(t, s, "m", "m2")
	now := time.Now()
	has := func(mb, msg string) bool {
		t.Helper()
		for _, e := range listEvents(t, s, mb) {
			if e.Message == msg {
				return true
			}
		}
		return false
	}
	addEvent(t, s, "m2", now.Add(-store.EventRetention-time.Hour), "connect", "m2 ancient")
	addEvent(t, s, "m", now.Add(-store.EventRetention), "connect", "edge")
	addEvent(t, s, "m", now, "connect", "now")
	if !has("m", "edge") {
		t.Errorf("an entry exactly %s old was dropped", store.EventRetention)
	}
	addEvent(t, s, "m", now.Add(1), "connect", "later")
	if has("m", "edge") {
		t.Errorf("an entry older than %s survived a write", store.EventRetention)
	}
	// An old event written now survives its own write (the cut is relative to its time), and goes
	// at the next write.
	addEvent(t, s, "m", now.Add(-store.EventRetention-time.Hour), "connect", "ancient")
	if !has("m", "ancient") {
		t.Errorf("an old event did not survive its own write")
	}
	addEvent(t, s, "m", now.Add(2), "connect", "next")
	if has("m", "ancient") {
		t.Errorf("an entry older than %s survived a write", store.EventRetention)
	}
	// A folded entry is aged by its last time, not its first.
	addEvent(t, s, "m", now.Add(-store.EventRetention+time.Minute), "error", "recurring")
	addEvent(t, s, "m", now.Add(-store.EventRetention+2*time.Minute), "error", "recurring")
	addEvent(t, s, "m", now.Add(3), "connect", "after")
	if !has("m", "recurring") || !has("m", "now") || !has("m", "later") {
		t.Errorf("entries within the retention were dropped: %+v", listEvents(t, s, "m"))
	}
	addEvent(t, s, "m", now.Add(2*time.Minute+1), "connect", "later still")
	if has("m", "recurring") {
		t.Errorf("the folded entry, last seen more than %s ago, survived", store.EventRetention)
	}
	// Other mailboxes' logs are not pruned by this one's writes.
	if !has("m2", "m2 ancient") {
		t.Errorf("a write to m pruned m2's log")
	}
}

// Never more than MaxEventsPerMailbox entries per mailbox: the newest are kept.
func testEventsCap(t *testing.T, s store.Store) {
	create(t, s, "m", "m2")
	base := time.Now().Add(-time.Hour)
	addEvent(t, s, "m2", base, "connect", "m2 one")
	const extra = 7
	for i := range store.MaxEventsPerMailbox + extra {
		addEvent(t, s, "m", base.Add(time.Duration(i)*time.Second), "deliver", fmt.Sprintf("delivered UID %d", i))
	}
	evs := listEvents(t, s, "m")
	if len(evs) != store.MaxEventsPerMailbox {
		t.Fatalf("%d entries, want %d", len(evs), store.MaxEventsPerMailbox)
	}
	if evs[0].Message != fmt.Sprintf("delivered UID %d", store.MaxEventsPerMailbox+extra-1) ||
		evs[len(evs)-1].Message != fmt.Sprintf("delivered UID %d", extra) {
		t.Errorf("kept %q … %q, want the newest", evs[0].Message, evs[len(evs)-1].Message)
	}
	// Nothing is left beyond the listed entries.
	if older, err := s.ListEvents(t.Context(), "m", evs[len(evs)-1].ID, store.MaxEventsPerMailbox); err != nil || len(older) != 0 {
		t.Errorf("%d entries older than the %d listed (%v)", len(older), store.MaxEventsPerMailbox, err)
	}
	if e2 := listEvents(t, s, "m2"); len(e2) != 1 {
		t.Errorf("m2's log = %+v", e2)
	}
	// A fold at the cap keeps the count exact.
	addEvent(t, s, "m", base.Add(time.Hour), "deliver", fmt.Sprintf("delivered UID %d", store.MaxEventsPerMailbox+extra-1))
	evs = listEvents(t, s, "m")
	if len(evs) != store.MaxEventsPerMailbox || evs[0].Count != 2 || evs[len(evs)-1].Message != fmt.Sprintf("delivered UID %d", extra) {
		t.Errorf("after a fold at the cap: %d entries, newest %+v, oldest %q", len(evs), evs[0], evs[len(evs)-1].Message)
	}
}

// Writes for a mailbox that does not exist fail for good; reads find nothing.
func testMissingMailbox(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "m")
	failsForGood(t, "SetProviderState of a missing mailbox", s.SetProviderState(ctx, "gone", []byte("x")))
	failsForGood(t, "SaveSyncState of a missing mailbox", s.SaveSyncState(ctx, &store.SyncState{MailboxID: "gone", UIDValidity: 1}))
	failsForGood(t, "RecordAcks of a missing mailbox", s.RecordAcks(ctx, map[string][]store.Ack{"gone": {ack(1, 1, "h", t0)}}))
	failsForGood(t, "Quarantine of a missing mailbox", s.Quarantine(ctx, &store.Quarantined{MailboxID: "gone", UIDValidity: 1, UID: 1}))
	failsForGood(t, "AddEvent of a missing mailbox", s.AddEvent(ctx, store.Event{MailboxID: "gone", Kind: "connect", Message: "x"}))
	failsForGood(t, "SwapProviderState of a missing mailbox", s.SwapProviderState(ctx, "gone", nil, []byte("x")))
	if err := s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: "gone", State: []byte("s")}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SaveAuthorization of a missing mailbox = %v, want ErrNotFound", err)
	}
	if err := s.SetProviderState(ctx, "gone", nil); err != nil {
		t.Errorf("clearing the provider state of a missing mailbox = %v", err)
	}
	if err := s.SwapProviderState(ctx, "gone", nil, nil); err != nil {
		t.Errorf("swapping the missing provider state of a missing mailbox for none = %v", err)
	}
	if err := s.SwapProviderState(ctx, "gone", []byte("x"), []byte("y")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("SwapProviderState of a missing mailbox from a value = %v, want ErrConflict", err)
	}
	if err := s.MarkApplied(ctx, "gone", 1, []uint32{1}); err != nil {
		t.Errorf("MarkApplied of a missing mailbox = %v", err)
	}
	if err := s.PruneAcks(ctx, "gone", 1, 1, time.Now()); err != nil {
		t.Errorf("PruneAcks of a missing mailbox = %v", err)
	}
	if st, err := s.ProviderState(ctx, "gone"); err != nil || st != nil {
		t.Errorf("ProviderState(gone) = %q, %v", st, err)
	}
	if st, err := s.SyncState(ctx, "gone"); err != nil || st != nil {
		t.Errorf("SyncState(gone) = %+v, %v", st, err)
	}
	if a, err := s.GetAuthorization(ctx, "gone"); err != nil || a != nil {
		t.Errorf("GetAuthorization(gone) = %+v, %v", a, err)
	}
	if q, err := s.ListQuarantine(ctx, "gone"); err != nil || len(q) != 0 {
		t.Errorf("ListQuarantine(gone) = %v, %v", q, err)
	}
	if e, err := s.ListEvents(ctx, "gone", 0, 0); err != nil || len(e) != 0 {
		t.Errorf("ListEvents(gone) = %v, %v", e, err)
	}
	if a, err := s.UnappliedAcks(ctx, "gone"); err != nil || len(a) != 0 {
		t.Errorf("UnappliedAcks(gone) = %v, %v", a, err)
	}
}

// Deleting a mailbox deletes everything of it, and nothing of another.
func testDeleteCascades(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "a", "b")
	var qids = map[string]int64{}
	for _, mb := range []string{"a", "b"} {
		must(t, s.SetProviderState(ctx, mb, []byte("state-"+mb)))
		must(t, s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: mb, State: []byte("pending-" + mb), Handle: "handle-" + mb}))
		must(t, s.SaveSyncState(ctx, &store.SyncState{MailboxID: mb, UIDValidity: 7, AckedThrough: 3}))
		must(t, s.RecordAcks(ctx, map[string][]store.Ack{mb: {ack(7, 4, "h-"+mb, t0)}}))
		q := &store.Quarantined{MailboxID: mb, UIDValidity: 7, UID: 5, Reason: "r"}
		must(t, s.Quarantine(ctx, q))
		qids[mb] = q.ID
		addEvent(t, s, mb, time.Now(), "connect", "hello "+mb)
	}
	must(t, s.DeleteMailbox(ctx, "a"))
	check := func(mb string, present bool) {
		t.Helper()
		st, err := s.ProviderState(ctx, mb)
		if err != nil || (st != nil) != present {
			t.Errorf("%s: provider state %q, %v", mb, st, err)
		}
		pa, err := s.GetAuthorization(ctx, mb)
		if err != nil || (pa != nil) != present || (present && pa.Handle != "handle-"+mb) {
			t.Errorf("%s: authorization %+v, %v", mb, pa, err)
		}
		ss, err := s.SyncState(ctx, mb)
		if err != nil || (ss != nil) != present {
			t.Errorf("%s: sync state %+v, %v", mb, ss, err)
		}
		acks, err := s.Acks(ctx, mb, 7, 0)
		if err != nil || (len(acks) == 1) != present {
			t.Errorf("%s: acks %v, %v", mb, uidsOf(acks), err)
		}
		ok, err := s.AckedHash(ctx, mb, "h-"+mb)
		if err != nil || ok != present {
			t.Errorf("%s: acked hash %v, %v", mb, ok, err)
		}
		qs, err := s.ListQuarantine(ctx, mb)
		if err != nil || (len(qs) == 1) != present {
			t.Errorf("%s: quarantine %v, %v", mb, qs, err)
		}
		if _, err := s.GetQuarantined(ctx, qids[mb]); (err == nil) != present || (!present && !errors.Is(err, store.ErrNotFound)) {
			t.Errorf("%s: GetQuarantined = %v", mb, err)
		}
		evs, err := s.ListEvents(ctx, mb, 0, 0)
		if err != nil || (len(evs) == 1) != present {
			t.Errorf("%s: events %v, %v", mb, evs, err)
		}
	}
	check("a", false)
	check("b", true)
	// Re-created under the same id, the mailbox starts empty.
	create(t, s, "a")
	check("a", false)
}

// Many writers at once (every mailbox's session, acknowledgements from the API) all succeed, and
// folds stay exact.
func testConcurrentWriters(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "a", "b")
	const workers = 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*16)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func(what string, err error) bool {
				if err != nil {
					errs <- fmt.Errorf("worker %d: %s: %w", i, what, err)
					return true
				}
				return false
			}
			var mine []store.Ack
			for u := range 10 {
				mine = append(mine, ack(1, uint32(i*10+u+1), fmt.Sprintf("h%d", i*10+u+1), time.Now()))
			}
			mine = append(mine, ack(1, 100000, "shared", time.Now())) // every worker acks this one
			if fail("RecordAcks", s.RecordAcks(ctx, map[string][]store.Ack{"a": mine, "b": mine})) {
				return
			}
			for range 3 {
				fail("AddEvent a", s.AddEvent(ctx, store.Event{MailboxID: "a", Kind: "deliver", Message: "same message"}))
			}
			fail("AddEvent a own", s.AddEvent(ctx, store.Event{MailboxID: "a", Kind: "ack", Message: fmt.Sprintf("worker %d", i)}))
			fail("AddEvent b", s.AddEvent(ctx, store.Event{MailboxID: "b", Kind: "deliver", Message: "same message"}))
			fail("Quarantine", s.Quarantine(ctx, &store.Quarantined{MailboxID: "b", UIDValidity: 1, UID: uint32(i + 1), Reason: "r"}))
			fail("SaveSyncState", s.SaveSyncState(ctx, &store.SyncState{MailboxID: "a", UIDValidity: 1, AckedThrough: uint32(i)}))
			fail("MarkApplied", s.MarkApplied(ctx, "a", 1, []uint32{uint32(i*10 + 1)}))
			_, err := s.ListEvents(ctx, "a", 0, 10)
			fail("ListEvents", err)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, mb := range []string{"a", "b"} {
		if got, err := s.Acks(ctx, mb, 1, 0); err != nil || len(got) != workers*10+1 {
			t.Errorf("%s: %d acks, %v; want %d", mb, len(got), err, workers*10+1)
		}
	}
	if un, _ := s.UnappliedAcks(ctx, "a"); len(un) != workers*10+1-workers {
		t.Errorf("a: %d unapplied acks, want %d", len(un), workers*10+1-workers)
	}
	evs := listEvents(t, s, "a")
	counts := map[string]int{}
	for _, e := range evs {
		counts[e.Message] += e.Count
		if e.Message == "same message" && e.Count != 3*workers {
			t.Errorf("folded entry count %d, want %d (one entry)", e.Count, 3*workers)
		}
	}
	if len(evs) != workers+1 || counts["same message"] != 3*workers {
		t.Errorf("a: %d entries (%v), want %d", len(evs), counts, workers+1)
	}
	if evs := listEvents(t, s, "b"); len(evs) != 1 || evs[0].Count != workers {
		t.Errorf("b's events = %+v, want one entry counted %d", evs, workers)
	}
	if qs, err := s.ListQuarantine(ctx, "b"); err != nil || len(qs) != workers {
		t.Errorf("b: %d quarantined, %v; want %d", len(qs), err, workers)
	}
	if st, err := s.SyncState(ctx, "a"); err != nil || st == nil || st.AckedThrough >= workers {
		t.Errorf("a's sync state = %+v, %v", st, err)
	}
}

func testClose(t *testing.T, s store.Store) {
	create(t, s, "m")
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if _, err := s.GetMailbox(context.Background(), "m"); err == nil {
		t.Errorf("GetMailbox after Close succeeded")
	}
}

// testSecretsSealed writes known secrets and looks for them in what the store keeps at rest.
func testSecretsSealed(t *testing.T, s store.Store, raw func(t *testing.T, s store.Store) []byte) {
	ctx := t.Context()
	mb := NewMailbox("sealed", "acme")
	mb.Spec.Host = "imap.sealed-check.example"
	mb.Secrets["client_secret"] = "client-secret-plaintext"
	must(t, s.CreateMailbox(ctx, mb))
	must(t, s.SetProviderState(ctx, "sealed", []byte("refresh-token-value")))
	must(t, s.SaveAuthorization(ctx, &store.PendingAuthorization{MailboxID: "sealed",
		State: []byte("authorization-state-plaintext"), Handle: "device-code-plaintext"}))
	dump := raw(t, s)
	// The check means something only if the dump holds the stored rows.
	if host := "imap.sealed-check.example"; !bytes.Contains(dump, []byte(host)) && !bytes.Contains(dump, []byte(hex.EncodeToString([]byte(host)))) {
		t.Fatalf("the raw dump (%d bytes) does not contain the mailbox's host %q: it is not what the store keeps", len(dump), host)
	}
	for _, needle := range []string{"correct horse battery staple", "client-secret-plaintext", "refresh-token-value", "must-not-be-stored-here",
		"device-code-plaintext", "authorization-state-plaintext"} {
		for _, form := range []string{needle, hex.EncodeToString([]byte(needle)), base64.StdEncoding.EncodeToString([]byte(needle))} {
			if bytes.Contains(dump, []byte(form)) {
				t.Errorf("the storage contains %q (as %q)", needle, form)
			}
		}
	}
	got, err := s.GetMailbox(ctx, "sealed")
	if err != nil || got.Secrets["client_secret"].Reveal() != "client-secret-plaintext" {
		t.Errorf("GetMailbox after the dump = %v, %v", got, err)
	}
	if pa, err := s.GetAuthorization(ctx, "sealed"); err != nil || pa == nil || pa.Handle != "device-code-plaintext" {
		t.Errorf("GetAuthorization after the dump = %+v, %v", pa, err)
	}
}

// testVerifyKey: the first check on a new database records the key; later checks with the same
// key pass. (A store opened with another key answers store.ErrKeyMismatch: each implementation's
// own test reopens its storage with another key.)
func testVerifyKey(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 3 {
		if err := s.VerifyKey(ctx); err != nil {
			t.Fatalf("check %d with the database's own key: %v", i+1, err)
		}
	}
}

// testClaimOnce: of many concurrent claims of one name exactly one is first; other names are
// independent.
func testClaimOnce(t *testing.T, s store.Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	firsts := 0
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first, err := s.ClaimOnce(ctx, "admin-token")
			if err != nil {
				t.Error(err)
			}
			if first {
				mu.Lock()
				firsts++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firsts != 1 {
		t.Errorf("%d claims were first, want 1", firsts)
	}
	if first, err := s.ClaimOnce(ctx, "something-else"); err != nil || !first {
		t.Errorf("another name: %v, %v", first, err)
	}
	if first, err := s.ClaimOnce(ctx, "admin-token"); err != nil || first {
		t.Errorf("a later claim: %v, %v", first, err)
	}
}

// mailCopy is one delivery of the mail <msgID> with fingerprint fp of tenant into mailbox mb,
// under the id mb:1:uid.
func mailCopy(tenant, msgID, fp, mb string, uid int) store.MailCopy {
	return store.MailCopy{Tenant: tenant, MessageID: msgID, Fingerprint: fp, MailboxID: mb, ID: fmt.Sprintf("%s:1:%d", mb, uid)}
}

// claimCopies claims copies at now and checks the answers.
func claimCopies(t *testing.T, s store.Store, now time.Time, want []string, copies ...store.MailCopy) {
	t.Helper()
	got, err := s.ClaimCopies(t.Context(), now, copies)
	if err != nil {
		t.Fatalf("ClaimCopies(%v): %v", copies, err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("ClaimCopies(%v) = %q, want %q", copies, got, want)
	}
}

// testClaimCopies: the first copy of a mail in a tenant is first; a copy from another mailbox
// names it; the same message again, the same mailbox, another content, another tenant, or a
// copy without a Message-ID or fingerprint names nothing.
func testClaimCopies(t *testing.T, s store.Store) {
	create(t, s, "sales", "support")
	now := time.Now()
	const mid = "<c1@customer.example>"
	first := mailCopy("acme", mid, "00112233aabbccdd", "sales", 10)
	claimCopies(t, s, now, []string{""}, first)
	second := mailCopy("acme", mid, "00112233aabbccdd", "support", 4)
	claimCopies(t, s, now, []string{first.ID}, second)
	// Redeliveries, in any order, answer the same: never themselves, never flipped.
	claimCopies(t, s, now, []string{""}, first)
	claimCopies(t, s, now, []string{first.ID}, second)
	claimCopies(t, s, now.Add(time.Minute), []string{first.ID, ""}, second, first)
	// The same mail in the first mailbox again (a new UIDVALIDITY, a second copy there): not a
	// duplicate of another mailbox's.
	again := first
	again.ID = "sales:2:10"
	claimCopies(t, s, now, []string{""}, again)
	// Another content under the same Message-ID, another tenant: other mails.
	claimCopies(t, s, now, []string{""}, mailCopy("acme", mid, "ffffffffffffffff", "support", 5))
	claimCopies(t, s, now, []string{""}, mailCopy("globex", mid, "00112233aabbccdd", "support", 6))
	// No Message-ID or no fingerprint: no claim, and nothing answered.
	noID := mailCopy("acme", "", "00112233aabbccdd", "sales", 11)
	claimCopies(t, s, now, []string{""}, noID)
	noID.MailboxID, noID.ID = "support", "support:1:11"
	claimCopies(t, s, now, []string{""}, noID)
	noFP := mailCopy("acme", mid, "", "sales", 12)
	claimCopies(t, s, now, []string{""}, noFP)
	noFP.MailboxID, noFP.ID = "support", "support:1:12"
	claimCopies(t, s, now, []string{""}, noFP)
	// Whatever bytes the header holds (NUL, invalid UTF-8, very long), in any tenant.
	odd := mailCopy("t\x00\xff", "<\x00\xfe"+strings.Repeat("x", 5000)+">", "0000000000000001", "sales", 13)
	claimCopies(t, s, now, []string{""}, odd)
	oddCopy := odd
	oddCopy.MailboxID, oddCopy.ID = "support", "support:1:13"
	claimCopies(t, s, now, []string{odd.ID}, oddCopy)
	// Fields are not confused with each other: the tenant's end is not the Message-ID's start.
	claimCopies(t, s, now, []string{""}, mailCopy("ac", "me"+mid, "00112233aabbccdd", "support", 14))
	// Nothing to claim.
	if got, err := s.ClaimCopies(t.Context(), now, nil); err != nil || len(got) != 0 {
		t.Errorf("ClaimCopies(nil) = %q, %v", got, err)
	}
	// A mailbox's deletion leaves its claims: its message was delivered, a later copy is still
	// its duplicate.
	must(t, s.DeleteMailbox(t.Context(), "sales"))
	third := mailCopy("acme", mid, "00112233aabbccdd", "other", 1)
	claimCopies(t, s, now, []string{first.ID}, third)
	// Mailboxes the store does not know can claim (the claim is the tenant's mail's).
	claimCopies(t, s, now, []string{""}, mailCopy("acme", "<new@x>", "1", "unknown-mailbox", 1))
}

// testClaimCopiesInOneCall: answers come in the order of the copies; within a call the earlier
// copy of a mail is the first.
func testClaimCopiesInOneCall(t *testing.T, s store.Store) {
	now := time.Now()
	a1 := mailCopy("acme", "<one@x>", "f1", "a", 1)
	b1 := mailCopy("acme", "<one@x>", "f1", "b", 1)
	a2 := mailCopy("acme", "<two@x>", "f2", "a", 2)
	a1again := mailCopy("acme", "<one@x>", "f1", "a", 3) // a second copy in mailbox a
	skip := mailCopy("acme", "", "f3", "a", 4)
	var many []store.MailCopy
	var want []string
	for i := range 30 {
		many = append(many, mailCopy("acme", fmt.Sprintf("<many-%d@x>", i), "f", "c", i+1))
		want = append(want, "")
	}
	claimCopies(t, s, now, append([]string{"", a1.ID, "", "", ""}, want...), append([]store.MailCopy{a1, b1, a2, a1again, skip}, many...)...)
	b2 := mailCopy("acme", "<two@x>", "f2", "b", 2)
	c1 := mailCopy("acme", "<one@x>", "f1", "c", 9)
	claimCopies(t, s, now, []string{a2.ID, "", a1.ID, a1.ID}, b2, many[3], c1, b1)
	// The copies of mailbox c named in the first call are first for their mails.
	for i := range many {
		many[i].MailboxID, many[i].ID = "d", fmt.Sprintf("d:1:%d", i+1)
		want[i] = fmt.Sprintf("c:1:%d", i+1)
	}
	claimCopies(t, s, now, want, many...)
}

// testClaimCopiesConcurrent: copies of one mail claimed at once from many mailboxes (replicas,
// sessions) agree on one first copy; calls that claim the same mails in other orders do not
// deadlock.
func testClaimCopiesConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := time.Now()
	const workers = 16
	var wg sync.WaitGroup
	answers := make([][]string, workers)
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mb := fmt.Sprintf("mb%02d", w)
			var copies []store.MailCopy
			for m := range 8 {
				m = (m + w) % 8 // each worker in another order
				copies = append(copies, mailCopy("acme", fmt.Sprintf("<race-%d@x>", m), "f", mb, m+1))
			}
			for range 3 {
				answers[w], errs[w] = s.ClaimCopies(ctx, now, copies)
				if errs[w] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", w, err)
		}
	}
	for m := range 8 {
		var firsts []string
		names := map[string]bool{}
		for w := range workers {
			a := answers[w][(m-w%8+8)%8]
			if a == "" {
				firsts = append(firsts, fmt.Sprintf("mb%02d", w))
			} else {
				names[a] = true
			}
		}
		if len(firsts) != 1 || len(names) != 1 || !names[fmt.Sprintf("%s:1:%d", firsts[0], m+1)] {
			t.Errorf("mail %d: first for %v, others name %v; want one first, named by all the others", m, firsts, names)
		}
	}
}

// testClaimCopiesRetention: a claim counts for store.CopyRetention after it was made (by the
// calls' times); a copy claimed later is first again, and named by the copies after it.
func testClaimCopiesRetention(t *testing.T, s store.Store) {
	now := time.Now()
	old := now.Add(-store.CopyRetention - time.Hour)
	claimCopies(t, s, old, []string{""}, mailCopy("acme", "<old@x>", "f", "a", 1))
	claimCopies(t, s, now, []string{""}, mailCopy("acme", "<old@x>", "f", "b", 1))
	claimCopies(t, s, now, []string{"b:1:1"}, mailCopy("acme", "<old@x>", "f", "c", 1))
	claimCopies(t, s, now, []string{"b:1:1"}, mailCopy("acme", "<old@x>", "f", "a", 1))
	// Exactly CopyRetention old still counts; a nanosecond more does not.
	t1 := now.Add(-2 * store.CopyRetention)
	claimCopies(t, s, t1, []string{""}, mailCopy("acme", "<edge@x>", "f", "d", 1))
	claimCopies(t, s, t1.Add(store.CopyRetention), []string{"d:1:1"}, mailCopy("acme", "<edge@x>", "f", "e", 1))
	claimCopies(t, s, t1.Add(store.CopyRetention+1), []string{""}, mailCopy("acme", "<edge@x>", "f", "f", 1))
	claimCopies(t, s, t1.Add(store.CopyRetention+2), []string{"f:1:1"}, mailCopy("acme", "<edge@x>", "f", "g", 1))
	// A claim within the retention is kept across the deletions of expired ones.
	claimCopies(t, s, now.Add(-store.CopyRetention+3*store.CopyPruneInterval), []string{""}, mailCopy("acme", "<recent@x>", "f", "h", 1))
	claimCopies(t, s, now.Add(2*store.CopyPruneInterval), []string{"h:1:1"}, mailCopy("acme", "<recent@x>", "f", "i", 1))
}

// CopiesPruned checks, on a new empty store s, that ClaimCopies deletes expired claims at most
// once per store.CopyPruneInterval and keeps the others. rows counts the claims s keeps (the
// rows of its table of claims), which the store's interface does not show.
func CopiesPruned(t *testing.T, s store.Store, rows func(t *testing.T) int) {
	t0 := time.Now().Add(-2 * store.CopyRetention)
	claim := func(at time.Time, msgID string) {
		t.Helper()
		if _, err := s.ClaimCopies(t.Context(), at, []store.MailCopy{mailCopy("acme", msgID, "f", "a", 1)}); err != nil {
			t.Fatal(err)
		}
	}
	want := func(n int, when string) {
		t.Helper()
		if got := rows(t); got != n {
			t.Errorf("%s: %d claims kept, want %d", when, got, n)
		}
	}
	claim(t0, "<a@x>")
	want(1, "after the first claim")
	// An hour and more later, within A's retention: the deletion runs and keeps A.
	claim(t0.Add(store.CopyRetention-30*time.Minute), "<b@x>")
	want(2, "within the retention")
	// A has expired, but the last deletion was less than an interval ago: nothing is deleted.
	claim(t0.Add(store.CopyRetention+time.Minute), "<c@x>")
	want(3, "within an interval of the last deletion")
	// An interval after the last deletion: A goes, B and C stay.
	claim(t0.Add(store.CopyRetention+31*time.Minute), "<d@x>")
	want(3, "an interval after the last deletion")
	// Far later every claim but the newest has expired.
	claim(t0.Add(3*store.CopyRetention), "<e@x>")
	want(1, "after every other claim expired")
}
