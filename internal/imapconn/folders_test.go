package imapconn

import "testing"

func TestNamespaceResolve(t *testing.T) {
	courier := Namespace{Prefix: "INBOX.", Delim: '.', Others: []string{"#shared."}}
	dovecot := Namespace{Delim: '.'}
	mox := Namespace{Delim: '/'}
	for _, c := range []struct {
		ns         Namespace
		in, want   string
		whyNotSame string
	}{
		{courier, "Processed/Tickets", "INBOX.Processed.Tickets", "inside the personal namespace"},
		{courier, "Processed", "INBOX.Processed", ""},
		{courier, "INBOX", "INBOX", "INBOX is never prefixed"},
		{courier, "inbox", "INBOX", ""},
		{courier, "INBOX/Processed", "INBOX.Processed", "already names the namespace"},
		{courier, "INBOX.Processed", "INBOX.Processed", "already in the server's spelling"},
		{courier, "inbox.Processed", "INBOX.Processed", "INBOX is case-insensitive"},
		{courier, "#shared/Team", "#shared.Team", "another namespace stays"},
		{dovecot, "Processed/Tickets", "Processed.Tickets", ""},
		{dovecot, "INBOX/Sub", "INBOX.Sub", ""},
		{mox, "Processed/Tickets", "Processed/Tickets", ""},
		{Namespace{}, "Flat/Name", "Flat/Name", "flat namespace"},
		{Namespace{Prefix: "INBOX/", Delim: '/'}, "Archive", "INBOX/Archive", ""},
		{Namespace{Prefix: "INBOX/", Delim: '/'}, "INBOX/Archive", "INBOX/Archive", ""},
	} {
		if got := c.ns.Resolve(c.in); got != c.want {
			t.Errorf("%+v.Resolve(%q) = %q, want %q (%s)", c.ns, c.in, got, c.want, c.whyNotSame)
		}
	}
}
