package parse

import (
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
	"testing"
	"time"
)

// RFC 5322 appendix A.6 and section 4: the obsolete syntax a parser must accept.
func TestObsoleteSyntax(t *testing.T) {
	raw := crlf("From  : Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>\n" +
		"To: A Group(Some people)\n     :Chris Jones <c@(Chris's host.)public.example>,\n" +
		"         joe@example.org,\n  John <jdoe@one.test> (my dear friend); (the end of the group)\n" +
		"Cc: Mary Smith <@node.test:mary@example.net>, , jdoe@test   . example\n" +
		"Date  : Fri, 21 Nov 1997 09(comment):   55  :  06 -0600\n" +
		"Message-ID  : <1234   @   local(blah)  .machine .example>\n" +
		"Subject: Re: TEST\n \n\t=?ISO-8859-1?Q?caf=E9?=\n  =?ISO-8859-1?Q?_au_lait?=\n" +
		"\nbody\n")
	m := Parse(raw, Options{})
	env := m.Envelope
	if len(env.From) != 1 || env.From[0].Address != "pete@silly.test" || env.From[0].Name != "Pete" {
		t.Errorf("From = %v", env.From)
	}
	if got := addrList(env.To); got != "c@public.example joe@example.org jdoe@one.test" {
		t.Errorf("To = %s", got)
	}
	if got := addrList(env.Cc); got != "mary@example.net jdoe@test.example" {
		t.Errorf("Cc = %s", got)
	}
	if want := time.Date(1997, 11, 21, 15, 55, 6, 0, time.UTC); env.Date == nil || !env.Date.AsTime().Equal(want) {
		t.Errorf("Date = %v", env.Date)
	}
	if env.MessageId != "1234@local.machine.example" {
		t.Errorf("Message-ID = %q", env.MessageId)
	}
	// Unfolding removes only the line breaks: the space and tab of the folds stay, and white
	// space between encoded words goes (RFC 2047 section 6.2).
	if env.Subject != "Re: TEST \tcafé au lait" {
		t.Errorf("Subject = %q", env.Subject)
	}
	for _, p := range m.Problems {
		if p.Code != "address" { // only the empty list element of Cc is not valid syntax
			t.Errorf("problem: %v", p)
		}
	}
}

func addrList(list []*mailintakev1.Address) string {
	s := ""
	for i, a := range list {
		if i > 0 {
			s += " "
		}
		s += a.Address
	}
	return s
}
