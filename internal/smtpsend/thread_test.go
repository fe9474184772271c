package smtpsend

import (
	"fmt"
	"strings"
	"testing"
)

func TestReplySubject(t *testing.T) {
	for in, want := range map[string]string{
		"Printer":                        "Re: Printer",
		"Re: Printer":                    "Re: Printer",
		"RE: Re: re: Printer":            "Re: Printer",
		"AW: Re: Printer":                "Re: Printer",
		"Aw: AW: Printer":                "Re: Printer",
		"SV: VS: Antw: Printer":          "Re: Printer",
		"Re[2]: Printer":                 "Re: Printer",
		"RE : Printer":                   "Re: Printer",
		"Réf: Printer":                   "Re: Printer",
		"回复: 打印机":                        "Re: 打印机",
		"Fwd: Invoice":                   "Re: Fwd: Invoice",
		"Re: Fwd: Invoice":               "Re: Fwd: Invoice",
		"[#4711] Printer":                "Re: [#4711] Printer",
		"AW: [#4711] Printer":            "Re: [#4711] Printer",
		"AW: Re: [Ticket#1] RE: Printer": "Re: [Ticket#1] Printer",
		"Regarding: Printer":             "Re: Regarding: Printer",
		"Reisekosten":                    "Re: Reisekosten",
		"Area: north":                    "Re: Area: north",
		"":                               "Re:",
		"Re:":                            "Re:",
		"  Re:   Printer  ":              "Re: Printer",
	} {
		if got := ReplySubject(in); got != want {
			t.Errorf("ReplySubject(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestThreadIDs(t *testing.T) {
	irt, refs := ThreadIDs(Original{MessageID: "<c@x>", References: []string{"a@x", "<b@x>", "a@x"}})
	if irt != "c@x" || strings.Join(refs, " ") != "a@x b@x c@x" {
		t.Errorf("got %q %q", irt, refs)
	}
	// Without References, a single In-Reply-To stands for them (RFC 5322 section 3.6.4).
	_, refs = ThreadIDs(Original{MessageID: "c@x", InReplyTo: []string{"b@x"}})
	if strings.Join(refs, " ") != "b@x c@x" {
		t.Errorf("got %q", refs)
	}
	_, refs = ThreadIDs(Original{MessageID: "c@x", InReplyTo: []string{"a@x", "b@x"}})
	if strings.Join(refs, " ") != "c@x" {
		t.Errorf("two In-Reply-To ids: got %q", refs)
	}
	// The original's References end with its parent: not repeated.
	_, refs = ThreadIDs(Original{MessageID: "c@x", References: []string{"a@x", "c@x"}})
	if strings.Join(refs, " ") != "a@x c@x" {
		t.Errorf("got %q", refs)
	}
	// Unusable ids are left out.
	irt, refs = ThreadIDs(Original{MessageID: "not an id", References: []string{"a@x", "b c@x", "", "d@x\r\nBcc: e@x"}})
	if irt != "" || strings.Join(refs, " ") != "a@x" {
		t.Errorf("got %q %q", irt, refs)
	}
	// A long chain keeps the root and the newest.
	var chain []string
	for i := range 50 {
		chain = append(chain, fmt.Sprintf("m%d@x", i))
	}
	_, refs = ThreadIDs(Original{MessageID: "parent@x", References: chain})
	if len(refs) != MaxReferences || refs[0] != "m0@x" || refs[1] != "m32@x" || refs[MaxReferences-1] != "parent@x" {
		t.Errorf("got %d: %q", len(refs), refs)
	}
}

func TestReplyWithUnusableOriginalWarns(t *testing.T) {
	o, err := Compose(Draft{From: "a@example.com", To: []string{"b@example.org"}, Text: "x", Reply: &Original{MessageID: "", Subject: "Hi"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Warnings) != 1 || strings.Contains(headerOf(o.Bytes), "In-Reply-To") || !strings.Contains(headerOf(o.Bytes), "Subject: Re: Hi\r\n") {
		t.Errorf("warnings %q\n%s", o.Warnings, headerOf(o.Bytes))
	}
}

func TestLongReferencesFolded(t *testing.T) {
	var chain []string
	for i := range 30 {
		chain = append(chain, fmt.Sprintf("%d.%s@eurprd01.prod.outlook.example", i, strings.Repeat("A", 40)))
	}
	o, err := Compose(Draft{From: "a@example.com", To: []string{"b@example.org"}, Text: "x", Reply: &Original{MessageID: "p@x", References: chain}})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(headerOf(o.Bytes), "\r\n") {
		if len(l) > foldLimit {
			t.Errorf("line of %d: %q", len(l), l)
		}
	}
}
