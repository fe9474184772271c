package smtpsend

import (
	"strings"
	"testing"
)

// The Sent copy names the blind recipients the sent message hid: a draft composed with Bcc, sent
// without it, gets its Bcc field back; visible recipients are never named blind.
func TestSentCopyNamesTheBlindRecipients(t *testing.T) {
	out, err := Compose(Draft{From: "support@example.com", To: []string{"Ann <ann@example.org>"}, Cc: []string{"bob@example.org"},
		Bcc: []string{"boss@example.com", "audit@example.com"}, Subject: "Ticket 42", Text: "Fixed.\n"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out.Bytes), "boss@") {
		t.Fatalf("the sent message shows a Bcc recipient:\n%s", out.Bytes)
	}
	cp := SentCopy(out.Bytes, out.Recipients)
	if want := "Bcc: <boss@example.com>, <audit@example.com>\r\n"; !strings.HasPrefix(string(cp), want) || string(cp[len(want):]) != string(out.Bytes) {
		t.Errorf("Sent copy starts %q, want %q then the sent message unchanged", cp[:min(len(cp), 80)], want)
	}

	// Nothing blind, an existing Bcc field, or an unreadable To: the message as it was sent.
	for name, c := range map[string]struct {
		raw        string
		recipients []string
	}{
		"no blind recipient (case differs)": {"From: s@example.com\r\nTo: A@Example.org\r\n\r\nx\r\n", []string{"a@example.org"}},
		"a Bcc field kept":                  {"From: s@example.com\r\nTo: a@example.org\r\nBcc: c@example.org\r\n\r\nx\r\n", []string{"a@example.org", "c@example.org"}},
		"unreadable To":                     {"From: s@example.com\r\nTo: a@@example..org <<\r\n\r\nx\r\n", []string{"a@example.org", "c@example.org"}},
	} {
		if got := SentCopy([]byte(c.raw), c.recipients); string(got) != c.raw {
			t.Errorf("%s: %q", name, got)
		}
	}

	// A raw message sent to envelope recipients beyond its header, in LF line endings: those are
	// the blind ones, once each, folded in the message's own line endings.
	raw := "From: s@example.com\nTo: a@example.org\n\nx\n"
	var many []string
	for _, u := range []string{"a", "c", "d", "e", "f", "g", "h", "c"} {
		many = append(many, u+"@blind.example.org")
	}
	many[0] = "a@example.org"
	got := string(SentCopy([]byte(raw), many))
	if !strings.HasSuffix(got, "\n"+raw) || strings.Contains(got, "\r") || strings.Count(got, "c@blind") != 1 || strings.Contains(got, "<a@example.org>") {
		t.Errorf("LF message with blind envelope recipients:\n%s", got)
	}
	for _, l := range strings.Split(got, "\n") {
		if len(l) > 78 {
			t.Errorf("line of %d octets: %q", len(l), l)
		}
	}
}
