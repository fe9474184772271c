package web

import (
	"strings"
	"testing"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// The list shows a mailbox's status warnings (sending trouble among them) under its state, and
// the token's own warnings under the token, each HTML-escaped.
func TestListRowWarnings(t *testing.T) {
	pages, err := parseTemplates()
	if err != nil {
		t.Fatal(err)
	}
	st := &mailintakev1.MailboxStatus{State: mailintakev1.MailboxState_MAILBOX_STATE_IDLE,
		Warnings:    []string{"sending: 1 message waits for another attempt after a failed one", "sending: the latest error: <refused>"},
		TokenHealth: &mailintakev1.TokenHealth{Warnings: []string{"the refresh token lapses in 2 days"}}}
	row := mailboxRow{Mailbox: &mailintakev1.Mailbox{Id: "mb1", Username: "help@example.com"}, Server: "imap.example.com:993"}
	fillRow(&row, st)
	var b strings.Builder
	p := &page{Session: &session{Token: "t", Admin: true, Data: newState()}, Data: &listView{Rows: []mailboxRow{row}, Admin: true}, Nav: "mailboxes"}
	if err := pages["mailboxes"].ExecuteTemplate(&b, "layout", p); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	start := strings.Index(html, `<tr data-mailbox-id="mb1">`)
	if start < 0 {
		t.Fatalf("no row for mb1:\n%s", html)
	}
	cells := strings.Split(html[start:start+strings.Index(html[start:], "</tr>")], "<td")
	cellWith := func(s string) int {
		for i, c := range cells {
			if strings.Contains(c, s) {
				return i
			}
		}
		return -1
	}
	state := cellWith(`data-state=`)
	if state < 0 || cellWith("sending: 1 message waits") != state || cellWith("sending: the latest error: &lt;refused&gt;") != state {
		t.Errorf("the status warnings are not under the state (cell %d):\n%s", state, strings.Join(cells, "\n<td"))
	}
	token := cellWith("the refresh token lapses in 2 days")
	if token < 0 || token == state || strings.Contains(cells[token], "sending:") {
		t.Errorf("the token's warning is not in a cell of its own (cell %d):\n%s", token, strings.Join(cells, "\n<td"))
	}
}
