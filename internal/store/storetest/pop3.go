package storetest

import (
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/store"
)

// testUIDLs checks a POP3 mailbox's checkpoint of unique-ids: stable UIDs, new ones above every
// UID given, gone ones kept for the retention and forgotten after, the highest never reused,
// mailboxes apart, and a missing mailbox refused.
func testUIDLs(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, "p", "q")
	day := 24 * time.Hour
	mapUIDLs := func(mb string, now time.Time, uidls ...string) map[string]uint32 {
		t.Helper()
		m, err := s.MapUIDLs(ctx, mb, uidls, now, now.Add(-7*day))
		if err != nil {
			t.Fatalf("MapUIDLs(%s, %v): %v", mb, uidls, err)
		}
		return m
	}
	want := func(got, want map[string]uint32) {
		t.Helper()
		if !maps.Equal(got, want) {
			t.Errorf("MapUIDLs = %v, want %v", got, want)
		}
	}
	want(mapUIDLs("p", t0, "b", "a", "c", "a"), map[string]uint32{"b": 1, "a": 2, "c": 3})
	// Listed again, in another order, with a new one: the same UIDs, the new one above.
	want(mapUIDLs("p", t0.Add(time.Minute), "c", "d", "a", "b"), map[string]uint32{"a": 2, "b": 1, "c": 3, "d": 4})
	// Another mailbox counts on its own.
	want(mapUIDLs("q", t0, "a"), map[string]uint32{"a": 1})
	// "a" and "d" leave the server; "a" comes back within the retention: the same UID.
	want(mapUIDLs("p", t0.Add(day), "b", "c"), map[string]uint32{"b": 1, "c": 3})
	want(mapUIDLs("p", t0.Add(2*day), "a", "b", "c"), map[string]uint32{"a": 2, "b": 1, "c": 3})
	// Everything leaves; ten days on, the gone ones are forgotten except the highest UID (d's):
	// a unique-id listed again then is new, and its UID is above every UID given before.
	want(mapUIDLs("p", t0.Add(3*day)), map[string]uint32{})
	want(mapUIDLs("p", t0.Add(13*day), "a", "e"), map[string]uint32{"a": 5, "e": 6})
	// d, gone for 12 days and no longer the highest UID, is forgotten: new again.
	want(mapUIDLs("p", t0.Add(13*day), "a", "d", "e"), map[string]uint32{"a": 5, "d": 7, "e": 6})
	want(mapUIDLs("p", t0.Add(40*day), "e"), map[string]uint32{"e": 6})
	// Ten days later: d, the highest UID, is kept although gone for longer than the retention;
	// a is forgotten.
	want(mapUIDLs("p", t0.Add(50*day), "d", "e"), map[string]uint32{"d": 7, "e": 6})
	want(mapUIDLs("p", t0.Add(50*day), "a"), map[string]uint32{"a": 8})
	if u, err := s.UIDLOf(ctx, "p", 7); err != nil || u != "d" {
		t.Errorf("UIDLOf(p, 7) = %q, %v, want d", u, err)
	}
	for _, uid := range []uint32{2, 99} { // a's first UID was forgotten; 99 was never given
		if u, err := s.UIDLOf(ctx, "p", uid); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UIDLOf(p, %d) = %q, %v, want ErrNotFound", uid, u, err)
		}
	}
	for _, uidls := range [][]string{{"x"}, nil} {
		if _, err := s.MapUIDLs(ctx, "gone", uidls, t0, t0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("MapUIDLs of a missing mailbox (%v): %v, want ErrNotFound", uidls, err)
		}
	}
	// Deleting the mailbox forgets its unique-ids.
	must(t, s.DeleteMailbox(ctx, "q"))
	create(t, s, "q")
	want(mapUIDLs("q", t0, "z", "a"), map[string]uint32{"z": 1, "a": 2})
}
