//go:build interop

package dovecot_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	"github.com/mailintake/mailintake/internal/fakes/idp"
	"github.com/mailintake/mailintake/internal/pop3"
)

// The internal/pop3 client against Dovecot's POP3 service (dovecot-pop3d), and internal/smtpsend
// against its submission service (submission_interop_test.go): every login the providers issue
// (passwords, XOAUTH2 and OAUTHBEARER tokens of Microsoft 365's size from the fake identity
// platform, checked by Dovecot's oauth2 passdb), both TLS modes, and the mail itself.

const (
	tenant    = "11111111-2222-3333-4444-555555555555"
	publicApp = "aaaaaaaa-0000-0000-0000-000000000001"
	basicUser = "desk@example.com"
	basicPass = "dovecot-pw-1"
	m365User  = "help@contoso.onmicrosoft.com"
	m365Pass  = "M365-pw-1"
	// tokenLen is the size of the fake platform's access tokens here: Microsoft 365's are JWTs
	// of 1,500 to 2,500 characters, beyond POP3's 255-octet command line and Dovecot's 1 KiB
	// submission AUTH line.
	tokenLen = 2500
)

// env is Dovecot with POP3 and submission, the basic and Microsoft 365 users, and the fake
// identity platform its oauth2 passdb introspects tokens at.
type env struct {
	dv   *dovecot.Server
	idp  *idp.IdP
	url  string
	pool *x509.CertPool
}

func start(t *testing.T, opts dovecot.Options) *env {
	t.Helper()
	p := idp.New(tenant, "contoso.onmicrosoft.com")
	p.AddUser(idp.User{UPN: m365User, Password: m365Pass})
	p.AddApp(idp.App{ClientID: publicApp, PublicFlows: true})
	p.SetAccessTokenLength(tokenLen)
	hs := httptest.NewServer(p)
	t.Cleanup(hs.Close)
	opts.Users = map[string]string{basicUser: basicPass, m365User: "dovecot-side-unused"}
	opts.IntrospectionURL = hs.URL + "/introspect"
	dv := dovecot.StartWith(t, opts)
	pem, err := os.ReadFile(dv.CACertFile(t))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("the test CA's PEM holds no certificate")
	}
	return &env{dv: dv, idp: p, url: hs.URL, pool: pool}
}

// token signs m365User in with a password grant (ROPC) and returns the access token.
func (e *env) token(t *testing.T, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {m365User}, "password": {m365Pass}, "scope": {scope}}
	resp, err := http.PostForm(e.url+"/"+tenant+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if len(body.AccessToken) != tokenLen {
		t.Fatalf("the fake identity platform issued a token of %d characters, want %d", len(body.AccessToken), tokenLen)
	}
	return body.AccessToken
}

// crlf turns a message written with LF into one with CRLF.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// dotted is a message whose body has the lines POP3 must dot-stuff: a lone ".", lines starting
// with "." and "..", and a last line without a dot.
func dotted(i int) []byte {
	return crlf(fmt.Sprintf(`From: Customer %[1]d <c%[1]d@example.net>
To: desk@example.com
Subject: dots %[1]d
Message-ID: <dots%[1]d.%[2]d@example.net>

first line
.
.starts with a dot
..starts with two dots
...
 . not at the start
last line %[1]d
`, i, time.Now().UnixNano()))
}

func pop3Target(e *env, port int, sec pop3.Security) pop3.Target {
	return pop3.Target{Host: "127.0.0.1", Port: port, Security: sec, RootCAs: e.pool,
		DialTimeout: 10 * time.Second, CommandTimeout: 10 * time.Second, TransferTimeout: 30 * time.Second}
}

func dialPOP3(t *testing.T, tg pop3.Target) (*pop3.Conn, []pop3.Step) {
	t.Helper()
	var steps []pop3.Step
	c, err := pop3.Dial(context.Background(), tg, func(s pop3.Step) { steps = append(steps, s) })
	if err != nil {
		t.Fatalf("dial %s (%s): %v", tg.Addr(), tg.Security, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, steps
}

// TestPOP3Logins logs in with every kind of credential on both TLS modes, and is refused with
// Dovecot's words for a wrong password or token.
func TestPOP3Logins(t *testing.T) {
	e := start(t, dovecot.Options{POP3: true})
	ctx := context.Background()
	tok := e.token(t, "https://outlook.office.com/POP.AccessAsUser.All offline_access")
	plain := pop3.Credential{Mechanism: pop3.MechPlain, Identity: basicUser, Secret: basicPass}
	xoauth := pop3.Credential{Mechanism: pop3.MechXOAuth2, Identity: m365User, Secret: tok}
	bearer := pop3.Credential{Mechanism: pop3.MechOAuthBearer, Identity: m365User, Secret: tok}

	for _, tc := range []struct {
		name string
		sec  pop3.Security
		port int
		cred pop3.Credential
	}{
		{"plain-stls", pop3.StartTLS, e.dv.POP3Port, plain},
		{"plain-995", pop3.TLS, e.dv.POP3SPort, plain},
		{"login-995", pop3.TLS, e.dv.POP3SPort, pop3.Credential{Mechanism: pop3.MechLogin, Identity: basicUser, Secret: basicPass}},
		{"xoauth2-stls", pop3.StartTLS, e.dv.POP3Port, xoauth},
		{"xoauth2-995", pop3.TLS, e.dv.POP3SPort, xoauth},
		{"oauthbearer-995", pop3.TLS, e.dv.POP3SPort, bearer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, steps := dialPOP3(t, pop3Target(e, tc.port, tc.sec))
			if _, ok := c.TLS(); !ok {
				t.Fatalf("not encrypted after dialing with %s; steps %v", tc.sec, steps)
			}
			if !c.Capabilities().Has("UIDL") || !c.Capabilities().Has("TOP") {
				t.Errorf("Dovecot's CAPA lacks UIDL or TOP: %+v", c.Capabilities())
			}
			if err := c.Authenticate(ctx, tc.cred); err != nil {
				t.Fatalf("%s login refused: %v", tc.cred.Mechanism, err)
			}
			if _, _, err := c.Stat(ctx); err != nil {
				t.Fatalf("STAT after login: %v", err)
			}
			if _, err := c.Quit(ctx); err != nil {
				t.Fatalf("QUIT: %v", err)
			}
		})
	}

	t.Run("wrong-password", func(t *testing.T) {
		c, _ := dialPOP3(t, pop3Target(e, e.dv.POP3SPort, pop3.TLS))
		err := c.Authenticate(ctx, pop3.Credential{Mechanism: pop3.MechPlain, Identity: basicUser, Secret: "wrong"})
		var ae *pop3.AuthError
		if !errors.As(err, &ae) {
			t.Fatalf("a wrong password gave %T %v, want *pop3.AuthError", err, err)
		}
		// Dovecot: "-ERR [AUTH] Authentication failed."
		if ae.Code != "AUTH" || ae.Text != "Authentication failed." || ae.Method != "AUTH PLAIN" {
			t.Errorf("refusal: code %q text %q method %q, want AUTH, Dovecot's text, AUTH PLAIN", ae.Code, ae.Text, ae.Method)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("the error shows the password: %v", err)
		}
		// The connection stays usable: the right password now works.
		if err := c.Authenticate(ctx, plain); err != nil {
			t.Fatalf("login after a refusal: %v", err)
		}
	})

	t.Run("rejected-token", func(t *testing.T) {
		c, _ := dialPOP3(t, pop3Target(e, e.dv.POP3SPort, pop3.TLS))
		bad := xoauth
		bad.Secret = strings.Repeat("x", tokenLen)
		err := c.Authenticate(ctx, bad)
		var ae *pop3.AuthError
		if !errors.As(err, &ae) {
			t.Fatalf("a bad token gave %T %v, want *pop3.AuthError", err, err)
		}
		if !ae.TokenRejected || !strings.Contains(ae.Rejection, "401") {
			t.Errorf("Dovecot's XOAUTH2 error challenge was not read: rejected %v, %q (%v)", ae.TokenRejected, ae.Rejection, err)
		}
		if strings.Contains(err.Error(), bad.Secret[:40]) {
			t.Errorf("the error shows the token: %v", err)
		}
		if err := c.Authenticate(ctx, xoauth); err != nil {
			t.Fatalf("a good token after a refused one: %v", err)
		}
	})
}

// TestPOP3WireForms checks, through a proxy that records the client's lines on Dovecot's
// plaintext port, that an XOAUTH2 token of Microsoft 365's size goes in two steps (POP3 commands
// are at most 255 octets), and that USER/PASS works where the server offers no SASL (the proxy
// removes the SASL line from CAPA).
func TestPOP3WireForms(t *testing.T) {
	e := start(t, dovecot.Options{POP3: true})
	ctx := context.Background()
	tok := e.token(t, "https://outlook.office.com/POP.AccessAsUser.All")

	t.Run("xoauth2-two-steps", func(t *testing.T) {
		px := startProxy(t, e.dv.POP3Port, false)
		tg := pop3Target(e, px.port, pop3.Plaintext)
		tg.InsecureAuth = true
		c, _ := dialPOP3(t, tg)
		if err := c.Authenticate(ctx, pop3.Credential{Mechanism: pop3.MechXOAuth2, Identity: m365User, Secret: tok}); err != nil {
			t.Fatalf("XOAUTH2: %v", err)
		}
		c.Quit(ctx)
		lines := px.clientLines()
		i := indexOf(lines, "AUTH XOAUTH2")
		if i < 0 || i+1 >= len(lines) {
			t.Fatalf("no bare AUTH XOAUTH2 line followed by the response; client sent %q", abbreviate(lines))
		}
		if n := len(lines[i+1]); n < tokenLen {
			t.Errorf("the response after AUTH XOAUTH2 is %d octets, want the whole token's base64 (> %d)", n, tokenLen)
		}
		for _, l := range lines {
			if len(l)+2 > 255 && l != lines[i+1] {
				t.Errorf("a command of %d octets (POP3 allows 255): %.60q…", len(l)+2, l)
			}
		}
	})

	t.Run("user-pass", func(t *testing.T) {
		px := startProxy(t, e.dv.POP3Port, true)
		tg := pop3Target(e, px.port, pop3.Plaintext)
		tg.InsecureAuth = true
		c, _ := dialPOP3(t, tg)
		if len(c.Capabilities().SASL()) != 0 {
			t.Fatalf("the proxy left SASL in CAPA: %v", c.Capabilities().SASL())
		}
		err := c.Authenticate(ctx, pop3.Credential{Mechanism: pop3.MechPlain, Identity: basicUser, Secret: "wrong"})
		var ae *pop3.AuthError
		if !errors.As(err, &ae) || ae.Method != "USER/PASS" || ae.Text != "Authentication failed." {
			t.Fatalf("wrong PASS: %v, want an *AuthError of USER/PASS with Dovecot's text", err)
		}
		if err := c.Authenticate(ctx, pop3.Credential{Mechanism: pop3.MechPlain, Identity: basicUser, Secret: basicPass}); err != nil {
			t.Fatalf("USER/PASS: %v", err)
		}
		if _, err := c.Quit(ctx); err != nil {
			t.Fatal(err)
		}
		lines := px.clientLines()
		if indexOf(lines, "USER "+basicUser) < 0 || indexOf(lines, "PASS "+basicPass) < 0 {
			t.Errorf("no USER and PASS commands: %q", lines)
		}
	})
}

// TestPOP3Maildrop reads, lists and deletes through Dovecot: UIDL, LIST and TOP agree with what
// was delivered, RETR returns each message byte for byte (its dot-stuffed lines undone), DELE
// deletes only at QUIT.
func TestPOP3Maildrop(t *testing.T) {
	// IMAP, POP3 and submission in one instance, as a mailbox read by POP3 that replies uses it.
	e := start(t, dovecot.Options{POP3: true, Submission: true})
	if e.dv.SubmissionPort == 0 || e.dv.Sink() == nil {
		t.Fatal("no submission service beside POP3")
	}
	ctx := context.Background()
	var raws [][]byte
	for i := 1; i <= 3; i++ {
		raws = append(raws, dotted(i))
		e.dv.Deliver(t, basicUser, "INBOX", raws[i-1])
	}
	login := func() *pop3.Conn {
		c, _ := dialPOP3(t, pop3Target(e, e.dv.POP3SPort, pop3.TLS))
		if err := c.Authenticate(ctx, pop3.Credential{Mechanism: pop3.MechPlain, Identity: basicUser, Secret: basicPass}); err != nil {
			t.Fatal(err)
		}
		return c
	}

	c := login()
	n, size, err := c.Stat(ctx)
	if err != nil || n != 3 || size != int64(len(raws[0])+len(raws[1])+len(raws[2])) {
		t.Fatalf("STAT: %d messages, %d octets, %v; want 3 and the delivered size", n, size, err)
	}
	uids, err := c.UIDL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(uids.Entries) != 3 || len(uids.Duplicates) != 0 {
		t.Fatalf("UIDL: %+v", uids)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("LIST: %v %v", list, err)
	}
	for i, l := range list {
		if l.Msg != i+1 || l.Size != int64(len(raws[i])) {
			t.Errorf("LIST entry %d: %+v, want size %d", i, l, len(raws[i]))
		}
	}
	top, err := c.Top(ctx, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := bytes.Cut(raws[1], []byte("\r\n\r\n"))
	if !bytes.Equal(top, append(head, "\r\n\r\n"...)) {
		t.Errorf("TOP 2 0:\n%q\nwant the header:\n%q", top, head)
	}
	for i := range raws {
		m, err := c.Retr(ctx, i+1, 1<<20)
		if err != nil {
			t.Fatalf("RETR %d: %v", i+1, err)
		}
		if !bytes.Equal(m.Raw, raws[i]) || m.Unstuffed != 0 {
			t.Errorf("RETR %d (unstuffed %d):\n%q\nwant\n%q", i+1, m.Unstuffed, m.Raw, raws[i])
		}
	}
	if err := c.Dele(ctx, 2); err != nil {
		t.Fatal(err)
	}
	gone := uids.Entries[1].UID

	// Close (no QUIT) keeps the mark from deleting.
	c.Close()
	if msgs, _ := e.dv.Status(t, basicUser, "INBOX"); msgs != 3 {
		t.Fatalf("a DELE without QUIT deleted: %d messages left", msgs)
	}

	c = login()
	if err := c.Dele(ctx, 2); err != nil {
		t.Fatal(err)
	}
	deleted, err := c.Quit(ctx)
	if err != nil || len(deleted) != 1 || deleted[0] != 2 {
		t.Fatalf("QUIT: deleted %v, %v", deleted, err)
	}
	if msgs, _ := e.dv.Status(t, basicUser, "INBOX"); msgs != 2 {
		t.Fatalf("after DELE and QUIT: %d messages, want 2", msgs)
	}
	c = login()
	after, err := c.UIDL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Entries) != 2 {
		t.Fatalf("UIDL after the deletion: %+v", after.Entries)
	}
	if _, ok := after.ByUID(gone); ok {
		t.Errorf("the deleted message's unique-id %s is still listed", gone)
	}
	for _, u := range []string{uids.Entries[0].UID, uids.Entries[2].UID} {
		if _, ok := after.ByUID(u); !ok {
			t.Errorf("unique-id %s changed across sessions: %+v", u, after.Entries)
		}
	}
	m, err := c.Retr(ctx, 2, 1<<20)
	if err != nil || !bytes.Equal(m.Raw, raws[2]) {
		t.Errorf("message 2 after the deletion is not the third delivered: %v", err)
	}
	if _, err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}

	// Dovecot's unique-ids are built from the UID and the UIDVALIDITY (pop3_uidl_format
	// %08Xu%08Xv): under a new UIDVALIDITY the same mail is listed under new ones, so a POP3
	// transport sees it as new.
	e.dv.SetUIDValidity(t, basicUser, "INBOX", uint32(time.Now().Unix()+1000))
	c = login()
	renewed, err := c.UIDL(ctx)
	if err != nil || len(renewed.Entries) != 2 {
		t.Fatalf("UIDL after a new UIDVALIDITY: %+v %v", renewed, err)
	}
	for _, e := range renewed.Entries {
		if _, ok := after.ByUID(e.UID); ok {
			t.Errorf("the unique-id %s survived a new UIDVALIDITY", e.UID)
		}
	}
}

// proxy forwards a plaintext POP3 connection to Dovecot and records what the client sent; with
// noSASL it removes the SASL line from the server's CAPA answer.
type proxy struct {
	port  int
	mu    sync.Mutex
	lines []string
}

func startProxy(t *testing.T, target int, noSASL bool) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &proxy{port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(target))
			if err != nil {
				c.Close()
				continue
			}
			go func() { // client → server, line by line
				defer s.Close()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if l != "" {
						p.mu.Lock()
						p.lines = append(p.lines, strings.TrimRight(l, "\r\n"))
						p.mu.Unlock()
						s.Write([]byte(l))
					}
					if err != nil {
						return
					}
				}
			}()
			go func() { // server → client
				defer c.Close()
				if !noSASL {
					io.Copy(c, s)
					return
				}
				r := bufio.NewReader(s)
				for {
					l, err := r.ReadString('\n')
					if l != "" && !strings.HasPrefix(l, "SASL") {
						c.Write([]byte(l))
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *proxy) clientLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

func indexOf(lines []string, s string) int {
	for i, l := range lines {
		if l == s {
			return i
		}
	}
	return -1
}

func abbreviate(lines []string) []string {
	var out []string
	for _, l := range lines {
		if len(l) > 60 {
			l = l[:60] + "…"
		}
		out = append(out, l)
	}
	return out
}

// TestPOP3LockSession: with Options.POP3LockSession a second POP3 session of a user waits for the
// lock, then is refused -ERR [IN-USE] (a temporary refusal, not a refused login) while the first
// one lasts, Dovecot logs the refusal (the HA suite counts those), and the maildrop opens again
// once the first has quit.
func TestPOP3LockSession(t *testing.T) {
	e := start(t, dovecot.Options{POP3: true, POP3LockSession: true})
	ctx := context.Background()
	e.dv.Deliver(t, basicUser, "INBOX", dotted(1))
	login := func() (*pop3.Conn, error) {
		tg := pop3Target(e, e.dv.POP3SPort, pop3.TLS)
		tg.CommandTimeout = time.Minute
		c, _ := dialPOP3(t, tg)
		return c, c.Authenticate(ctx, pop3.Credential{Mechanism: pop3.MechPlain, Identity: basicUser, Secret: basicPass})
	}
	first, err := login()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.UIDL(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = login()
	t.Logf("the second login answered after %s: %v", time.Since(start).Round(time.Millisecond), err)
	se, ok := pop3.IsServerError(err)
	if !ok || se.Code != pop3.CodeInUse || !se.Temporary() {
		t.Fatalf("a second session while the first holds the maildrop: %v, want -ERR [IN-USE]\n%s", err, e.dv.Log())
	}
	if _, ok := pop3.IsAuthError(err); ok {
		t.Errorf("[IN-USE] taken for a refused login: %v", err)
	}
	// The pop3 process writes the line through Dovecot's log process, which may come after the
	// client has read the -ERR: wait for it rather than read the log once.
	logged := false
	for deadline := time.Now().Add(10 * time.Second); !logged && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		logged = strings.Contains(e.dv.Log(), "Couldn't lock POP3 session")
	}
	if !logged {
		t.Errorf("Dovecot's log does not mention the [IN-USE] refusal within 10s:\n%s", e.dv.Log())
	}
	if _, err := first.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	third, err := login()
	if err != nil {
		t.Fatalf("after the first session quit: %v", err)
	}
	if n, _, err := third.Stat(ctx); err != nil || n != 1 {
		t.Errorf("STAT after the lock was released: %d, %v", n, err)
	}
}
