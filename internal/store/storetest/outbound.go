package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/mailintake/mailintake/internal/store"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// The outbox's tests (store.OutboxStore).

// NewOutbound returns a queued outbound message of a mailbox with every field set.
func NewOutbound(id, mailboxID, key string) *store.Outbound {
	return &store.Outbound{
		ID: id, MailboxID: mailboxID, Tenant: "acme", IdempotencyKey: key, RequestHash: []byte("hash-" + key),
		State: store.OutboundQueued, MessageID: id + "@example.com", InReplyTo: "orig@example.net", From: "support@example.com",
		Recipients: []string{"a@example.org", "b@example.org"}, Subject: "Re: Grüße [#4711]",
		Raw:      []byte("From: support@example.com\r\nTo: a@example.org\r\nSubject: x\r\n\r\nbody of " + id + "\r\n"),
		Warnings: []string{"a warning"}, NextAttemptTime: t0, CreateTime: t0, UpdateTime: t0,
	}
}

// sameOutbound compares two outbound messages (Raw only when want has it).
func sameOutbound(t *testing.T, what string, got, want *store.Outbound) {
	t.Helper()
	g, w := *got, *want
	if w.Raw == nil {
		g.Raw = nil
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func getOutbound(t *testing.T, s store.Store, id string, raw bool) *store.Outbound {
	t.Helper()
	o, err := s.GetOutbound(t.Context(), id, raw)
	if err != nil {
		t.Fatalf("GetOutbound(%q): %v", id, err)
	}
	return o
}

func createOutbound(t *testing.T, s store.Store, o *store.Outbound) {
	t.Helper()
	prev, created, err := s.CreateOutbound(t.Context(), o)
	if err != nil || !created || prev != nil {
		t.Fatalf("CreateOutbound(%s) = %v, %v, %v", o.ID, prev, created, err)
	}
}

func testOutboundLifecycle(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "m", "n")
	o := NewOutbound("o1", "m", "key-1")
	createOutbound(t, s, o)
	if o.Size != int64(len(o.Raw)) {
		t.Errorf("Size = %d, want %d", o.Size, len(o.Raw))
	}
	sameOutbound(t, "with raw", getOutbound(t, s, "o1", true), o)
	noRaw := *o
	noRaw.Raw = nil
	if got := getOutbound(t, s, "o1", false); got.Raw != nil {
		t.Errorf("GetOutbound without raw returned %d raw bytes", len(got.Raw))
	} else {
		sameOutbound(t, "without raw", got, &noRaw)
	}

	// The same key again: nothing written, the first one returned.
	again := NewOutbound("o2", "m", "key-1")
	again.RequestHash = []byte("other content")
	prev, created, err := s.CreateOutbound(ctx, again)
	if err != nil || created || prev == nil {
		t.Fatalf("CreateOutbound with a used key = %v, %v, %v", prev, created, err)
	}
	sameOutbound(t, "the earlier message", prev, &noRaw)
	if _, err := s.GetOutbound(ctx, "o2", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the second message under a used key was stored: %v", err)
	}
	if got, err := s.OutboundByKey(ctx, "m", "key-1"); err != nil {
		t.Errorf("OutboundByKey: %v", err)
	} else {
		sameOutbound(t, "by key", got, &noRaw)
	}
	for _, c := range [][2]string{{"m", "key-2"}, {"n", "key-1"}, {"nope", "key-1"}, {"\xff", "k"}} {
		if _, err := s.OutboundByKey(ctx, c[0], c[1]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("OutboundByKey(%q, %q) = %v, want ErrNotFound", c[0], c[1], err)
		}
	}
	// The same key in another mailbox is another message; the same id is a conflict.
	createOutbound(t, s, NewOutbound("o3", "n", "key-1"))
	if _, _, err := s.CreateOutbound(ctx, NewOutbound("o1", "n", "key-2")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateOutbound with a used id = %v, want ErrConflict", err)
	}
	// An unknown mailbox, an unknown id.
	if _, _, err := s.CreateOutbound(ctx, NewOutbound("o4", "nope", "k")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateOutbound for an unknown mailbox = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"nope", "", "\xff\x00"} {
		if _, err := s.GetOutbound(ctx, id, true); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetOutbound(%q) = %v, want ErrNotFound", id, err)
		}
	}
	// Keys are bytes: a key that is not UTF-8 is its own.
	odd := NewOutbound("o5", "m", "k\xff\x00")
	createOutbound(t, s, odd)
	if got := getOutbound(t, s, "o5", false); got.IdempotencyKey != "k\xff\x00" {
		t.Errorf("key %q", got.IdempotencyKey)
	}
	if got, err := s.OutboundByKey(ctx, "m", "k\xff\x00"); err != nil || got.ID != "o5" {
		t.Errorf("OutboundByKey of a key that is not UTF-8 = %v, %v", got, err)
	}
}

func testOutboundTransitions(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "m")
	o := NewOutbound("o1", "m", "k1")
	createOutbound(t, s, o)
	t1 := t0.Add(time.Second)
	sending := store.OutboundUpdate{State: store.OutboundSending, Attempts: 1, UpdateTime: t1}
	must(t, s.TransitionOutbound(ctx, o, sending))
	// Taken once: a second sender that read the same row loses.
	if err := s.TransitionOutbound(ctx, o, sending); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a second take = %v, want ErrConflict", err)
	}
	cur := getOutbound(t, s, "o1", false)
	if cur.State != store.OutboundSending || cur.Attempts != 1 || !cur.UpdateTime.Equal(t1) || cur.Error != nil {
		t.Fatalf("after the take: %+v", cur)
	}
	// A temporary failure: back to queued, with the error and the next attempt.
	e := &store.OutboundError{Kind: "temporary", Step: "RCPT TO", Code: 451, Enhanced: "4.3.0", Text: "try later", Explanation: "plain words",
		Recipients: []store.OutboundRecipientError{{Address: "a@example.org", Code: 451, Enhanced: "4.3.0", Text: "greylisted"}}, Time: t1}
	t2 := t1.Add(time.Minute)
	must(t, s.TransitionOutbound(ctx, cur, store.OutboundUpdate{State: store.OutboundQueued, Attempts: 1, NextAttemptTime: t2, Error: e, UpdateTime: t1}))
	cur = getOutbound(t, s, "o1", false)
	if cur.State != store.OutboundQueued || !cur.NextAttemptTime.Equal(t2) || !reflect.DeepEqual(cur.Error, e) {
		t.Fatalf("after the failure: %+v (error %+v)", cur, cur.Error)
	}
	// Sent: the error cleared, the result and the time kept.
	must(t, s.TransitionOutbound(ctx, cur, store.OutboundUpdate{State: store.OutboundSending, Attempts: 2, UpdateTime: t2}))
	cur = getOutbound(t, s, "o1", false)
	res := &store.OutboundResult{QueueID: "4Bc1x2", Response: "250 2.0.0 OK queued as 4Bc1x2", DSN: true}
	t3 := t2.Add(time.Second)
	must(t, s.TransitionOutbound(ctx, cur, store.OutboundUpdate{State: store.OutboundSent, Attempts: 2, Result: res, UpdateTime: t3, SentTime: t3}))
	cur = getOutbound(t, s, "o1", true)
	if cur.State != store.OutboundSent || cur.Error != nil || !reflect.DeepEqual(cur.Result, res) || !cur.SentTime.Equal(t3) || !bytes.Equal(cur.Raw, o.Raw) {
		t.Errorf("after the send: %+v", cur)
	}
	// An unknown message.
	if err := s.TransitionOutbound(ctx, &store.Outbound{ID: "nope", MailboxID: "m", State: store.OutboundQueued}, sending); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TransitionOutbound of an unknown id = %v, want ErrNotFound", err)
	}
}

func testOutboundConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "m")
	const n = 10
	// The same key from many callers at once: one message, every caller told which.
	ids := make([]string, n)
	created := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			o := NewOutbound(fmt.Sprintf("o%d", i), "m", "same-key")
			prev, c, err := s.CreateOutbound(ctx, o)
			errs[i], created[i] = err, c
			if c {
				ids[i] = o.ID
			} else if prev != nil {
				ids[i] = prev.ID
			}
		}()
	}
	close(start)
	wg.Wait()
	winners := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if created[i] {
			winners++
		}
		if ids[i] != ids[0] || ids[i] == "" {
			t.Errorf("callers were told different messages: %q", ids)
			break
		}
	}
	if winners != 1 {
		t.Errorf("%d callers created the message, want 1", winners)
	}
	// Many senders taking it at once: one wins.
	o := getOutbound(t, s, ids[0], false)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.TransitionOutbound(ctx, o, store.OutboundUpdate{State: store.OutboundSending, Attempts: 1, UpdateTime: time.Now()})
		}()
	}
	wg.Wait()
	winners = 0
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("sender %d: %v", i, err)
		}
	}
	if winners != 1 {
		t.Errorf("%d senders took the message, want 1", winners)
	}
}

func testOutboundWork(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "a", "b", "c", "d")
	now := t0.Add(time.Hour)
	add := func(id, mb string, next time.Time) *store.Outbound {
		o := NewOutbound(id, mb, id)
		o.NextAttemptTime = next
		createOutbound(t, s, o)
		return o
	}
	add("a1", "a", now.Add(-time.Minute))
	add("a2", "a", now.Add(time.Minute))
	add("a0", "a", now) // due at exactly now
	add("b1", "b", now.Add(2*time.Minute))
	add("b2", "b", now.Add(time.Minute))
	c1 := add("c1", "c", now.Add(-time.Hour))
	must(t, s.TransitionOutbound(ctx, c1, store.OutboundUpdate{State: store.OutboundSending, Attempts: 1, UpdateTime: now}))
	d1 := add("d1", "d", now.Add(-time.Hour))
	must(t, s.TransitionOutbound(ctx, d1, store.OutboundUpdate{State: store.OutboundFailed, Attempts: 1, UpdateTime: now}))

	work, err := s.OutboxWork(ctx, now)
	must(t, err)
	want := []store.OutboundWork{
		{MailboxID: "a", Due: true, NextDue: now.Add(time.Minute)},
		{MailboxID: "b", NextDue: now.Add(time.Minute)},
		{MailboxID: "c", Sending: true},
	}
	if !reflect.DeepEqual(work, want) {
		t.Errorf("OutboxWork:\n got %+v\nwant %+v", work, want)
	}
	due, err := s.DueOutbound(ctx, "a", now, 10)
	must(t, err)
	var got []string
	for _, o := range due {
		got = append(got, o.ID)
		if o.Raw != nil {
			t.Errorf("DueOutbound returned raw bytes")
		}
	}
	if !slices.Equal(got, []string{"a1", "a0"}) {
		t.Errorf("DueOutbound(a) = %v, want [a1 a0] (oldest due first)", got)
	}
	if due, _ := s.DueOutbound(ctx, "a", now, 1); len(due) != 1 || due[0].ID != "a1" {
		t.Errorf("DueOutbound with limit 1 = %v", due)
	}
	for _, mb := range []string{"b", "c", "d", "nope"} {
		if due, err := s.DueOutbound(ctx, mb, now, 10); err != nil || len(due) != 0 {
			t.Errorf("DueOutbound(%s) = %v, %v; want none", mb, due, err)
		}
	}
}

func testOutboundHealth(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "m", "other")
	health := func(mb string, since time.Time) store.OutboundHealth {
		t.Helper()
		h, err := s.OutboundHealth(ctx, mb, since)
		must(t, err)
		return h
	}
	if h := health("m", t0); !reflect.DeepEqual(h, store.OutboundHealth{}) {
		t.Errorf("no messages: %+v", h)
	}
	// step takes a message from queued through sending to u.State at time at, with err.
	step := func(id, mb string, state store.OutboundState, at time.Time, e *store.OutboundError) {
		t.Helper()
		o := NewOutbound(id, mb, id)
		createOutbound(t, s, o)
		must(t, s.TransitionOutbound(ctx, o, store.OutboundUpdate{State: store.OutboundSending, Attempts: 1, UpdateTime: at}))
		o.State, o.Attempts = store.OutboundSending, 1
		must(t, s.TransitionOutbound(ctx, o, store.OutboundUpdate{State: state, Attempts: 1, NextAttemptTime: at.Add(time.Minute), Error: e, UpdateTime: at}))
	}
	errAt := func(what string, at time.Time) *store.OutboundError {
		return &store.OutboundError{Kind: "temporary", Step: "AUTH", Code: 454, Text: what, Explanation: "the server refused: " + what, Time: at}
	}
	// Counted: a queued message after a failed attempt, failed and unknown ones since.
	step("r1", "m", store.OutboundQueued, t0.Add(1*time.Minute), errAt("r1", t0.Add(1*time.Minute)))
	step("r2", "m", store.OutboundQueued, t0.Add(2*time.Minute), errAt("r2", t0.Add(2*time.Minute)))
	step("f1", "m", store.OutboundFailed, t0.Add(3*time.Minute), errAt("f1", t0.Add(3*time.Minute)))
	step("u1", "m", store.OutboundUnknown, t0.Add(5*time.Minute), errAt("u1", t0.Add(5*time.Minute)))
	// Not counted: queued never tried, sending, sent, failed before since, another mailbox's.
	createOutbound(t, s, NewOutbound("q1", "m", "q1"))
	step("s1", "m", store.OutboundSent, t0.Add(9*time.Minute), nil)
	step("f0", "m", store.OutboundFailed, t0.Add(-time.Hour), errAt("f0", t0.Add(-time.Hour)))
	step("x1", "other", store.OutboundFailed, t0.Add(10*time.Minute), errAt("x1", t0.Add(10*time.Minute)))
	sending := NewOutbound("g1", "m", "g1")
	createOutbound(t, s, sending)
	must(t, s.TransitionOutbound(ctx, sending, store.OutboundUpdate{State: store.OutboundSending, Attempts: 1, UpdateTime: t0.Add(11 * time.Minute)}))

	want := store.OutboundHealth{Retrying: 2, Failed: 1, Unknown: 1, LastError: errAt("u1", t0.Add(5*time.Minute)), LastErrorState: store.OutboundUnknown}
	if h := health("m", t0); !reflect.DeepEqual(h, want) {
		t.Errorf("OutboundHealth(m, t0):\n got %+v (error %+v)\nwant %+v", h, h.LastError, want)
	}
	// since at the unknown message's change counts it (at or after); a minute later it does not.
	if h := health("m", t0.Add(5*time.Minute)); h.Failed != 0 || h.Unknown != 1 || h.Retrying != 2 {
		t.Errorf("since the unknown message's change: %+v", h)
	}
	want = store.OutboundHealth{Retrying: 2, LastError: errAt("r2", t0.Add(2*time.Minute)), LastErrorState: store.OutboundQueued}
	if h := health("m", t0.Add(6*time.Minute)); !reflect.DeepEqual(h, want) {
		t.Errorf("since after every final one:\n got %+v\nwant %+v", h, want)
	}
	// Sent after all: a retried message no longer counts.
	r2 := getOutbound(t, s, "r2", false)
	must(t, s.TransitionOutbound(ctx, r2, store.OutboundUpdate{State: store.OutboundSending, Attempts: 2, UpdateTime: t0.Add(12 * time.Minute)}))
	r2.State, r2.Attempts = store.OutboundSending, 2
	must(t, s.TransitionOutbound(ctx, r2, store.OutboundUpdate{State: store.OutboundSent, Attempts: 2, UpdateTime: t0.Add(13 * time.Minute), SentTime: t0.Add(13 * time.Minute)}))
	if h := health("m", t0.Add(6*time.Minute)); h.Retrying != 1 || !reflect.DeepEqual(h.LastError, errAt("r1", t0.Add(time.Minute))) {
		t.Errorf("after r2 was sent: %+v", h)
	}
	if h := health("nope", t0); !reflect.DeepEqual(h, store.OutboundHealth{}) {
		t.Errorf("an unknown mailbox: %+v", h)
	}
}

func testOutboundInterrupt(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "m", "n")
	var taken []*store.Outbound
	for _, id := range []string{"m1", "m2", "m3", "n1"} {
		o := NewOutbound(id, id[:1], id)
		createOutbound(t, s, o)
		if id != "m3" {
			must(t, s.TransitionOutbound(ctx, o, store.OutboundUpdate{State: store.OutboundSending, Attempts: 1, UpdateTime: t0}))
			taken = append(taken, o)
		}
	}
	at := t0.Add(time.Hour)
	e := store.OutboundError{Kind: "unknown", Step: "end of data", Explanation: "the server stopped while sending", Time: at}
	ids, err := s.InterruptOutbound(ctx, "m", e)
	must(t, err)
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"m1", "m2"}) {
		t.Errorf("InterruptOutbound = %v, want [m1 m2]", ids)
	}
	for id, want := range map[string]store.OutboundState{"m1": store.OutboundUnknown, "m2": store.OutboundUnknown, "m3": store.OutboundQueued, "n1": store.OutboundSending} {
		o := getOutbound(t, s, id, false)
		if o.State != want {
			t.Errorf("%s: state %s, want %s", id, o.State, want)
		}
		if want == store.OutboundUnknown && (!reflect.DeepEqual(o.Error, &e) || !o.UpdateTime.Equal(at)) {
			t.Errorf("%s: error %+v at %v", id, o.Error, o.UpdateTime)
		}
	}
	if ids, err := s.InterruptOutbound(ctx, "m", e); err != nil || len(ids) != 0 {
		t.Errorf("InterruptOutbound again = %v, %v", ids, err)
	}
	// Final states are never left: a sender that was sending m1 loses its outcome.
	if err := s.TransitionOutbound(ctx, taken[0], store.OutboundUpdate{State: store.OutboundSent, Attempts: 1, UpdateTime: at}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("recording the outcome of an interrupted send = %v, want ErrConflict", err)
	}
}

func testListOutbound(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "a", "b")
	other := NewMailbox("g", "globex")
	must(t, s.CreateMailbox(ctx, other))
	for _, id := range []string{"o1", "o2", "o3", "o4", "o5"} {
		mb := "a"
		if id == "o2" || id == "o4" {
			mb = "b"
		}
		o := NewOutbound(id, mb, id)
		createOutbound(t, s, o)
		if id == "o3" {
			must(t, s.TransitionOutbound(ctx, o, store.OutboundUpdate{State: store.OutboundSending, Attempts: 1, UpdateTime: t0}))
		}
	}
	g := NewOutbound("o0", "g", "k")
	g.Tenant = "globex"
	createOutbound(t, s, g)
	list := func(q store.OutboundQuery) []string {
		t.Helper()
		os, err := s.ListOutbound(ctx, q)
		must(t, err)
		var ids []string
		for _, o := range os {
			ids = append(ids, o.ID)
			if o.Raw != nil {
				t.Errorf("ListOutbound returned raw bytes")
			}
		}
		return ids
	}
	for _, c := range []struct {
		q    store.OutboundQuery
		want []string
	}{
		{store.OutboundQuery{}, []string{"o0", "o1", "o2", "o3", "o4", "o5"}},
		{store.OutboundQuery{Tenant: "acme"}, []string{"o1", "o2", "o3", "o4", "o5"}},
		{store.OutboundQuery{Tenant: "globex"}, []string{"o0"}},
		{store.OutboundQuery{MailboxID: "b"}, []string{"o2", "o4"}},
		{store.OutboundQuery{Tenant: "acme", State: store.OutboundQueued}, []string{"o1", "o2", "o4", "o5"}},
		{store.OutboundQuery{State: store.OutboundSending}, []string{"o3"}},
		{store.OutboundQuery{Tenant: "acme", AfterID: "o2", Limit: 2}, []string{"o3", "o4"}},
		{store.OutboundQuery{MailboxID: "a", AfterID: "o3"}, []string{"o5"}},
		{store.OutboundQuery{AfterID: "\xff"}, nil},
		{store.OutboundQuery{Tenant: "\xff\x00"}, nil},
		{store.OutboundQuery{MailboxID: "nope"}, nil},
	} {
		if got := list(c.q); !slices.Equal(got, c.want) {
			t.Errorf("ListOutbound(%+v) = %v, want %v", c.q, got, c.want)
		}
	}
}

func testPruneOutbound(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "m")
	old, recent := t0, t0.Add(48*time.Hour)
	for _, c := range []struct {
		id    string
		state store.OutboundState
		at    time.Time
	}{
		{"sent-old", store.OutboundSent, old}, {"failed-old", store.OutboundFailed, old}, {"unknown-old", store.OutboundUnknown, old},
		{"sent-recent", store.OutboundSent, recent}, {"queued-old", store.OutboundQueued, old}, {"sending-old", store.OutboundSending, old},
		{"bounced-old", store.OutboundBounced, old},
	} {
		o := NewOutbound(c.id, "m", c.id)
		createOutbound(t, s, o)
		if c.state != store.OutboundQueued {
			must(t, s.TransitionOutbound(ctx, o, store.OutboundUpdate{State: c.state, Attempts: 1, UpdateTime: c.at}))
		}
	}
	n, err := s.PruneOutbound(ctx, t0.Add(24*time.Hour))
	must(t, err)
	if n != 4 {
		t.Errorf("PruneOutbound = %d, want 4", n)
	}
	for _, id := range []string{"sent-recent", "queued-old", "sending-old"} {
		getOutbound(t, s, id, false)
	}
	if _, err := s.GetOutbound(ctx, "sent-old", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a pruned message: %v", err)
	}
	// A pruned message's key is free again.
	createOutbound(t, s, NewOutbound("again", "m", "sent-old"))
}

// Deleting a mailbox deletes its outbound messages.
func testOutboundDeleteCascades(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "a", "b")
	createOutbound(t, s, NewOutbound("a1", "a", "k"))
	createOutbound(t, s, NewOutbound("b1", "b", "k"))
	must(t, s.DeleteMailbox(ctx, "a"))
	if _, err := s.GetOutbound(ctx, "a1", false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a deleted mailbox's outbound message: %v", err)
	}
	getOutbound(t, s, "b1", false)
	if w, err := s.OutboxWork(ctx, t0); err != nil || len(w) != 1 || w[0].MailboxID != "b" {
		t.Errorf("OutboxWork after the delete = %+v, %v", w, err)
	}
}

// sentOutbound creates an outbound message and takes it to SENT.
func sentOutbound(t *testing.T, s store.Store, id, mailboxID, tenant string) *store.Outbound {
	t.Helper()
	o := NewOutbound(id, mailboxID, "key-"+id)
	o.Tenant = tenant
	createOutbound(t, s, o)
	must(t, s.TransitionOutbound(t.Context(), o, store.OutboundUpdate{State: store.OutboundSending, Attempts: 1, UpdateTime: t0}))
	o.State, o.Attempts = store.OutboundSending, 1
	must(t, s.TransitionOutbound(t.Context(), o, store.OutboundUpdate{State: store.OutboundSent, Attempts: 1, UpdateTime: t0, SentTime: t0,
		Result: &store.OutboundResult{QueueID: "q-" + id, Response: "250 2.0.0 OK", DSN: true}}))
	return getOutbound(t, s, id, false)
}

// A delivery failure report finds its outbound message by envelope id, else by Message-ID, only
// in the reporting mailbox's tenant and only once sent; it makes it BOUNCED, merges the
// recipients of later reports, and a delay warning only matches.
func testBounceOutbound(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "m", "inbox")
	must(t, s.CreateMailbox(ctx, NewMailbox("other", "globex")))
	byID := sentOutbound(t, s, "o-envid", "m", "acme")
	byMsgID := sentOutbound(t, s, "o-msgid", "m", "acme")
	queued := NewOutbound("o-queued", "m", "key-queued")
	createOutbound(t, s, queued)
	rcpt := func(addr, status string) *mailintakev1.BounceRecipient {
		return &mailintakev1.BounceRecipient{Address: addr, Action: "failed", Status: status, Diagnostic: "550 " + status + " no such user",
			SmtpCode: 550, Reason: mailintakev1.BounceReason_BOUNCE_REASON_UNKNOWN_USER, Permanent: true, RemoteMta: "mx.example.org"}
	}
	t1 := t0.Add(time.Hour)
	report := func(envID, msgID string, failure bool, from string, rs ...*mailintakev1.BounceRecipient) store.BounceReport {
		return store.BounceReport{Tenant: "acme", EnvelopeID: envID, MessageID: msgID, Failure: failure,
			Bounce: store.OutboundBounce{MessageID: from, Time: t1, Recipients: rs}}
	}

	// A delay warning names the message and changes nothing.
	id, err := s.BounceOutbound(ctx, "inbox", report("o-envid", "", false, "inbox:1:1"))
	if err != nil || id != "o-envid" {
		t.Fatalf("a delay warning = %q, %v; want o-envid", id, err)
	}
	if got := getOutbound(t, s, "o-envid", false); got.State != store.OutboundSent || got.Bounce != nil {
		t.Errorf("after a delay warning: state %s, bounce %+v", got.State, got.Bounce)
	}
	// A failure by envelope id, even with another message's Message-ID beside it.
	id, err = s.BounceOutbound(ctx, "inbox", report("o-envid", byMsgID.MessageID, true, "inbox:1:2", rcpt("a@example.org", "5.1.1")))
	if err != nil || id != "o-envid" {
		t.Fatalf("a failure by envelope id = %q, %v", id, err)
	}
	got := getOutbound(t, s, "o-envid", false)
	if got.State != store.OutboundBounced || got.Bounce == nil || got.Bounce.MessageID != "inbox:1:2" || !got.Bounce.Time.Equal(t1) ||
		len(got.Bounce.Recipients) != 1 || !proto.Equal(got.Bounce.Recipients[0], rcpt("a@example.org", "5.1.1")) {
		t.Fatalf("after a failure: state %s, bounce %+v", got.State, got.Bounce)
	}
	if !got.UpdateTime.After(t0) || !got.SentTime.Equal(byID.SentTime) || got.Result == nil {
		t.Errorf("a bounce changed more than the state and bounce: %+v", got)
	}
	if other := getOutbound(t, s, "o-msgid", false); other.State != store.OutboundSent {
		t.Errorf("the other message's state = %s", other.State)
	}
	// The same report again changes nothing; a later report adds its new recipient only.
	if id, err := s.BounceOutbound(ctx, "inbox", report("o-envid", "", true, "inbox:1:2", rcpt("a@example.org", "5.1.1"))); err != nil || id != "o-envid" {
		t.Fatalf("the same report again = %q, %v", id, err)
	}
	if id, err := s.BounceOutbound(ctx, "inbox", report("o-envid", "", true, "inbox:1:3", rcpt("A@example.org", "5.2.2"), rcpt("b@example.org", "5.2.1"))); err != nil || id != "o-envid" {
		t.Fatalf("a second report = %q, %v", id, err)
	}
	got = getOutbound(t, s, "o-envid", false)
	if got.Bounce.MessageID != "inbox:1:2" || len(got.Bounce.Recipients) != 2 || got.Bounce.Recipients[0].Status != "5.1.1" || got.Bounce.Recipients[1].Address != "b@example.org" {
		t.Errorf("after a second report: %+v", got.Bounce)
	}
	// By Message-ID when the envelope id is unknown (a server that dropped ENVID, or another's).
	if id, err := s.BounceOutbound(ctx, "inbox", report("not-ours", byMsgID.MessageID, true, "inbox:1:4", rcpt("a@example.org", "5.1.1"))); err != nil || id != "o-msgid" {
		t.Fatalf("a failure by Message-ID = %q, %v", id, err)
	}
	if got := getOutbound(t, s, "o-msgid", false); got.State != store.OutboundBounced || got.Bounce.MessageID != "inbox:1:4" {
		t.Errorf("after a failure by Message-ID: %s %+v", got.State, got.Bounce)
	}
	// No match: another tenant's report, a message not sent yet, nothing known.
	for _, r := range []store.BounceReport{
		{Tenant: "globex", EnvelopeID: "o-envid", MessageID: byMsgID.MessageID, Failure: true},
		{Tenant: "acme", EnvelopeID: "o-queued", MessageID: queued.MessageID, Failure: true},
		{Tenant: "acme", EnvelopeID: "nope", MessageID: "nope@example.com", Failure: true},
		{Tenant: "acme"},
	} {
		if id, err := s.BounceOutbound(ctx, "inbox", r); err != nil || id != "" {
			t.Errorf("BounceOutbound(%+v) = %q, %v; want no match", r, id, err)
		}
	}
	if got := getOutbound(t, s, "o-queued", false); got.State != store.OutboundQueued || got.Bounce != nil {
		t.Errorf("a queued message after a report: %s %+v", got.State, got.Bounce)
	}
	// An UNKNOWN message that bounced was accepted after all.
	unknown := NewOutbound("o-unknown", "m", "key-unknown")
	createOutbound(t, s, unknown)
	must(t, s.TransitionOutbound(ctx, unknown, store.OutboundUpdate{State: store.OutboundUnknown, Attempts: 1, UpdateTime: t0}))
	if id, err := s.BounceOutbound(ctx, "inbox", report("o-unknown", "", true, "inbox:1:5", rcpt("a@example.org", "5.1.1"))); err != nil || id != "o-unknown" {
		t.Fatalf("an unknown message's bounce = %q, %v", id, err)
	}
	if got := getOutbound(t, s, "o-unknown", false); got.State != store.OutboundBounced {
		t.Errorf("an unknown message after a bounce: %s", got.State)
	}
	// BOUNCED is a state to list by.
	list, err := s.ListOutbound(ctx, store.OutboundQuery{State: store.OutboundBounced})
	must(t, err)
	if len(list) != 3 || list[0].Bounce == nil {
		t.Errorf("bounced messages: %d", len(list))
	}
}

// The Sent copy's outcome is recorded without changing the state.
func testRecordSentCopy(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "m")
	o := sentOutbound(t, s, "o1", "m", "acme")
	c := store.OutboundSentCopy{Folder: "Sent", Error: "the server refused: [TRYCREATE] no such folder", Time: t0.Add(time.Second)}
	must(t, s.RecordSentCopy(ctx, o, c))
	got := getOutbound(t, s, "o1", false)
	if got.State != store.OutboundSent || got.SentCopy == nil || *got.SentCopy != c {
		t.Errorf("after RecordSentCopy: %s %+v", got.State, got.SentCopy)
	}
	c = store.OutboundSentCopy{Folder: "Sent Items", Saved: true, Time: t0.Add(2 * time.Second)}
	must(t, s.RecordSentCopy(ctx, o, c))
	if got := getOutbound(t, s, "o1", false); *got.SentCopy != c {
		t.Errorf("after a second RecordSentCopy: %+v", got.SentCopy)
	}
	if err := s.RecordSentCopy(ctx, &store.Outbound{ID: "nope", MailboxID: "m"}, c); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RecordSentCopy of an unknown id = %v, want ErrNotFound", err)
	}
}
