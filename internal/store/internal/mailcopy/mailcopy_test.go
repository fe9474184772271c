package mailcopy

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/store"
)

func TestPlanAndAnswers(t *testing.T) {
	cp := func(mid, fp, mb, id string) store.MailCopy {
		return store.MailCopy{Tenant: "acme", MessageID: mid, Fingerprint: fp, MailboxID: mb, ID: id}
	}
	copies := []store.MailCopy{
		cp("<a>", "1", "x", "x:1:1"),
		cp("<b>", "2", "x", "x:1:2"),
		cp("<a>", "1", "y", "y:1:1"), // the same mail again: one claim, x's
		cp("", "3", "x", "x:1:3"),    // no Message-ID
		cp("<c>", "", "x", "x:1:4"),  // no fingerprint
		cp("<d>", "4", "bad", "bad:1:1"),
	}
	claims, index := Plan(copies, func(c store.MailCopy) bool { return c.MailboxID != "bad" })
	if len(claims) != 2 || !slices.IsSortedFunc(claims, func(a, b Claim) int { return bytes.Compare(a.Key, b.Key) }) {
		t.Fatalf("claims = %+v", claims)
	}
	if index[0] != index[2] || index[0] == index[1] || index[3] != -1 || index[4] != -1 || index[5] != -1 {
		t.Fatalf("index = %v", index)
	}
	if c := claims[index[0]]; c.MailboxID != "x" || c.ID != "x:1:1" {
		t.Errorf("the claim of <a> is %+v, want the first copy's", c)
	}
	winners := make([]Winner, len(claims))
	for j, c := range claims {
		winners[j] = Winner{MailboxID: c.MailboxID, ID: c.ID}
	}
	want := []string{"", "", "x:1:1", "", "", ""}
	if got := Answers(copies, index, winners); !slices.Equal(got, want) {
		t.Errorf("answers = %q, want %q", got, want)
	}
	// No winner found (deleted meanwhile): nothing is named.
	if got := Answers(copies, index, make([]Winner, len(claims))); !slices.Equal(got, make([]string, len(copies))) {
		t.Errorf("answers without winners = %q", got)
	}
}

func TestKeySeparatesFields(t *testing.T) {
	a := Key(store.MailCopy{Tenant: "ab", MessageID: "c", Fingerprint: "d"})
	b := Key(store.MailCopy{Tenant: "a", MessageID: "bc", Fingerprint: "d"})
	c := Key(store.MailCopy{Tenant: "ab", MessageID: "c", Fingerprint: "d", MailboxID: "m", ID: "m:1:1"})
	if bytes.Equal(a, b) || !bytes.Equal(a, c) || len(a) != 32 {
		t.Errorf("keys %x %x %x", a, b, c)
	}
}

func TestPruner(t *testing.T) {
	var p Pruner
	t0 := time.Now()
	if !p.Due(t0) {
		t.Fatal("a new pruner is not due")
	}
	p.Pruned(t0)
	if p.Due(t0.Add(store.CopyPruneInterval - 1)) {
		t.Error("due within the interval")
	}
	if !p.Due(t0.Add(store.CopyPruneInterval)) || !p.Due(t0.Add(-time.Second)) {
		t.Error("not due after the interval, or after the clock went back")
	}
}
