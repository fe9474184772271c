//go:build interop

package mox

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

const (
	user1, pass1 = "support@example.com", "mox-pw-support"
	user2, pass2 = "Sales@Example.org", "mox-pw-sales"
)

func testMessage(subject string) []byte {
	return []byte(strings.ReplaceAll(fmt.Sprintf(`From: Alice <alice@example.net>
To: support@example.com
Subject: %s
Date: Mon, 01 Jan 2024 10:00:00 +0000
Message-ID: <%d@example.net>
Content-Type: text/plain; charset=utf-8

Hello from the mox test.
`, subject, time.Now().UnixNano()), "\n", "\r\n"))
}

func capList(caps imap.CapSet) string {
	var names []string
	for c := range caps {
		names = append(names, string(c))
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

func dial(t *testing.T, addr string, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func appendMessage(t *testing.T, c *imapclient.Client, mailbox string, raw []byte) *imap.AppendData {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		t.Fatalf("append write: %v", err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatalf("append close: %v", err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("append to %s: %v", mailbox, err)
	}
	return data
}

func TestMox(t *testing.T) {
	start := time.Now()
	s := Start(t, map[string]string{user1: pass1, user2: pass2})
	t.Logf("mox %s started in %v: IMAP %s, IMAPS %s, dir %s", Version, time.Since(start).Round(time.Millisecond), s.Addr(), s.TLSAddr(), s.Dir)

	// User 1: LOGIN over plaintext.
	c1 := dial(t, s.Addr(), nil)
	if err := c1.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	t.Logf("capabilities before login: %s", capList(c1.Caps()))
	if err := c1.Login(user1, pass1).Wait(); err != nil {
		t.Fatalf("LOGIN %s: %v", user1, err)
	}
	caps, err := c1.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("capabilities after login: %s", capList(caps))
	if !caps.Has(imap.CapIdle) {
		t.Errorf("no IDLE capability")
	}
	t.Logf("MOVE=%v UIDPLUS=%v NAMESPACE=%v IMAP4rev2=%v", caps.Has(imap.CapMove), caps.Has(imap.CapUIDPlus), caps.Has(imap.CapNamespace), caps.Has(imap.CapIMAP4rev2))

	ns, err := c1.Namespace().Wait()
	if err != nil {
		t.Fatalf("NAMESPACE: %v", err)
	}
	if len(ns.Personal) == 0 {
		t.Fatalf("NAMESPACE: no personal namespace: %+v", ns)
	}
	prefix, delim := ns.Personal[0].Prefix, ns.Personal[0].Delim
	t.Logf("personal namespace: prefix %q, delimiter %q (other %v, shared %v)", prefix, delim, ns.Other, ns.Shared)

	// User 2: AUTHENTICATE PLAIN, with a mixed-case login.
	c2 := dial(t, s.Addr(), nil)
	if err := c2.Authenticate(sasl.NewPlainClient("", user2, pass2)); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN %s: %v", user2, err)
	}
	if err := c2.Logout().Wait(); err != nil {
		t.Errorf("LOGOUT: %v", err)
	}

	// A wrong password fails.
	bad := dial(t, s.Addr(), nil)
	if err := bad.Login(user1, "wrong-password").Wait(); err == nil {
		t.Errorf("LOGIN with a wrong password succeeded")
	}

	// STARTTLS on the plaintext port and implicit TLS, both with the test CA's certificate.
	for name, d := range map[string]struct {
		addr string
		dial func(string, *imapclient.Options) (*imapclient.Client, error)
	}{"STARTTLS": {s.Addr(), imapclient.DialStartTLS}, "implicit TLS": {s.TLSAddr(), imapclient.DialTLS}} {
		ct, err := d.dial(d.addr, &imapclient.Options{TLSConfig: s.TLSConfig()})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := ct.Login(user2, pass2).Wait(); err != nil {
			t.Fatalf("LOGIN over %s: %v", name, err)
		}
		ct.Close()
	}

	// APPEND to INBOX; a nested folder.
	data := appendMessage(t, c1, "INBOX", testMessage("first"))
	t.Logf("APPEND: UID %d, UIDVALIDITY %d", data.UID, data.UIDValidity)
	folder := prefix + "Processed" + string(delim) + "Tickets"
	if err := c1.Create(folder, nil).Wait(); err != nil {
		t.Fatalf("CREATE %s: %v", folder, err)
	}
	list, err := c1.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var mailboxes []string
	found := false
	for _, m := range list {
		mailboxes = append(mailboxes, m.Mailbox)
		found = found || m.Mailbox == folder
	}
	t.Logf("LIST: %s", strings.Join(mailboxes, ", "))
	if !found {
		t.Errorf("%s not listed", folder)
	}

	// IDLE sees a message another connection appends.
	exists := make(chan uint32, 10)
	idler := dial(t, s.Addr(), &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if err := idler.Login(user1, pass1).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := idler.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 1 {
		t.Errorf("INBOX has %d messages, want 1", sel.NumMessages)
	}
	idle, err := idler.Idle()
	if err != nil {
		t.Fatalf("IDLE: %v", err)
	}
	appended := time.Now()
	appendMessage(t, c1, "INBOX", testMessage("second"))
	select {
	case n := <-exists:
		t.Logf("IDLE: * %d EXISTS after %v", n, time.Since(appended).Round(time.Millisecond))
		if n != 2 {
			t.Errorf("EXISTS %d, want 2", n)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("IDLE: no EXISTS within 5s of another connection's APPEND")
	}
	if err := idle.Close(); err != nil {
		t.Errorf("DONE: %v", err)
	}
	if err := idle.Wait(); err != nil {
		t.Errorf("IDLE: %v", err)
	}

	// Delivery through the command line lands in INBOX too.
	s.Deliver(t, user1, testMessage("delivered"))

	// Kill drops every connection; Restart keeps the mail, the folder and the passwords.
	s.Kill()
	select {
	case <-c1.Closed():
	case <-time.After(5 * time.Second):
		t.Errorf("connection still open after Kill")
	}
	restarted := time.Now()
	s.Restart()
	t.Logf("Restart after Kill took %v", time.Since(restarted).Round(time.Millisecond))
	checkAfterRestart(t, s, folder, 3, data.UIDValidity)

	// A graceful Stop (no client connected: it is quicker) and Restart.
	stopped := time.Now()
	s.Stop()
	t.Logf("Stop took %v", time.Since(stopped).Round(time.Millisecond))
	s.Restart()
	checkAfterRestart(t, s, folder, 3, data.UIDValidity)
}

func checkAfterRestart(t *testing.T, s *Server, folder string, messages, uidValidity uint32) {
	t.Helper()
	c := dial(t, s.Addr(), nil)
	if err := c.Login(user1, pass1).Wait(); err != nil {
		t.Fatalf("LOGIN after restart: %v", err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != messages || sel.UIDValidity != uidValidity {
		t.Errorf("after restart INBOX has %d messages (UIDVALIDITY %d), want %d (UIDVALIDITY %d)", sel.NumMessages, sel.UIDValidity, messages, uidValidity)
	}
	if _, err := c.Status(folder, &imap.StatusOptions{NumMessages: true}).Wait(); err != nil {
		t.Errorf("STATUS %s after restart: %v", folder, err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Errorf("LOGOUT: %v", err)
	}
	c.Close()
}
