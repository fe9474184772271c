//go:build interop

package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	"github.com/mailintake/mailintake/internal/fakes/idp"
)

var (
	googleOnce sync.Once
	googleErr  error
)

// googlePlugin builds the google provider beside the daemon (its default plugin directory).
func googlePlugin(t *testing.T) {
	t.Helper()
	dir := bins(t)
	googleOnce.Do(func() {
		googleErr = goBuild("", "-o", filepath.Join(dir, "mailintake-auth-google"), "./plugins/google/cmd/mailintake-auth-google")
	})
	if googleErr != nil {
		t.Fatal(googleErr)
	}
}

// TestInteropGoogle runs the google provider in the real daemon against Dovecot, which validates
// the fake Google's tokens by introspection (its oauth2 passdb): a service account with
// domain-wide delegation, and a user's sign-in with the browser on the server's machine and on
// another one (the address pasted).
func TestInteropGoogle(t *testing.T) {
	googlePlugin(t)
	const (
		saBox     = "desk@example.com"
		userBox   = "help@example.com"
		pasteBox  = "sales@example.com"
		clientID  = "1234-interop.apps.googleusercontent.com"
		clientSec = "GOCSPX-interop"
	)
	g := idp.NewGoogle()
	for _, u := range []string{saBox, userBox, pasteBox} {
		g.AddUser(idp.GoogleUser{Email: u})
	}
	g.AddClient(idp.GoogleClient{ID: clientID, Secret: clientSec})
	sa := g.AddServiceAccount("mailintake@acme-desk.iam.gserviceaccount.com")
	g.Delegate(sa.ClientID, idp.ScopeGmail)
	hs := httptest.NewServer(g)
	defer hs.Close()
	key := string(sa.KeyJSON(hs.URL + "/token"))
	dv := dovecot.StartWith(t, dovecot.Options{
		Users:            map[string]string{saBox: "unused", userBox: "unused", pasteBox: "unused"},
		IntrospectionURL: hs.URL + "/introspect",
	})
	for _, u := range []string{saBox, userBox, pasteBox} {
		dv.Deliver(t, u, "INBOX", interopMail(1, "hello "+u))
	}
	data := t.TempDir()
	d := startDaemon(t, data)
	g0 := []string{"--addr", d.addr, "--data-dir", data}
	imapFlags := []string{"--host", "127.0.0.1", "--port", strconv.Itoa(dv.IMAPSPort), "--security", "tls", "--ca-file", dv.CACertFile(t)}

	// Service account: no user password, no sign-in; mail arrives.
	g.SetAccessTTL(4 * time.Second)
	saID := addMailboxAt(t, g0, dv, saBox, dv.IMAPSPort, key, "--provider", "google", "--config", "endpoint="+hs.URL,
		"--secret-field", "service_account_key", "--secret-stdin", "--start-from", "all")
	if s, _ := tailLines(t, g0, "--mailbox", saID, "--ack", "--limit", "1"); len(s) != 1 || s[0] != "hello "+saBox {
		t.Fatalf("service account: %v", s)
	}
	time.Sleep(6 * time.Second) // the access token expires mid-session
	dv.Deliver(t, saBox, "INBOX", interopMail(2, "after the token expired"))
	if s, _ := tailLines(t, g0, "--mailbox", saID, "--ack", "--limit", "1"); len(s) != 1 || s[0] != "after the token expired" {
		t.Fatalf("after expiry: %v", s)
	}
	if g.Count("introspect") == 0 || g.Count("jwt-bearer") < 2 {
		t.Errorf("introspections %d, token requests %d", g.Count("introspect"), g.Count("jwt-bearer"))
	}
	g.SetAccessTTL(time.Hour)

	// mailbox test: passes; without domain-wide delegation, says where to grant it.
	testArgs := append(append(append([]string{}, g0...), "mailbox", "test", "--tenant", "acme", "--username", saBox), imapFlags...)
	testArgs = append(testArgs, "--provider", "google", "--config", "endpoint="+hs.URL, "--secret-field", "service_account_key", "--secret-stdin")
	if code, out, errs := cli(t, key, testArgs...); code != 0 {
		t.Errorf("mailbox test: exit %d\n%s%s", code, out, errs)
	}
	g.Delegate(sa.ClientID)
	if code, out, _ := cli(t, key, testArgs...); code != 1 || !strings.Contains(out, "Manage Domain Wide Delegation") || !strings.Contains(out, sa.ClientID) {
		t.Errorf("mailbox test without delegation: exit %d\n%s", code, out)
	} else {
		t.Logf("mailbox test without delegation:\n%s", out)
	}
	if code, out, errs := cli(t, "", append(append([]string{}, g0...), "providers")...); code != 0 || !strings.Contains(out, "google") {
		t.Errorf("providers: exit %d\n%s%s", code, out, errs)
	} else {
		t.Logf("providers:\n%s", out)
	}
	g.Delegate(sa.ClientID, idp.ScopeGmail)

	// A user's sign-in, the browser on the server's machine: Google sends it back to the
	// provider's loopback listener.
	userID := addMailboxAt(t, g0, dv, userBox, dv.IMAPSPort, clientSec, "--provider", "google", "--config", "endpoint="+hs.URL,
		"--config", "flow=authorization_code", "--config", "client_id="+clientID, "--secret-stdin", "--start-from", "all")
	authURL := authorize(t, g0, userID)
	resp, err := http.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "Signed in") {
		t.Fatalf("the browser: %d %s", resp.StatusCode, page)
	}
	if s, _ := tailLines(t, g0, "--mailbox", userID, "--ack", "--limit", "1", "--timeout", "30s"); len(s) != 1 || s[0] != "hello "+userBox {
		t.Fatalf("authorization code: %v", s)
	}

	// The browser on another machine: the redirect fails there; the admin pastes its address.
	pasteID := addMailboxAt(t, g0, dv, pasteBox, dv.IMAPSPort, clientSec, "--provider", "google", "--config", "endpoint="+hs.URL,
		"--config", "flow=authorization_code", "--config", "client_id="+clientID, "--secret-stdin", "--start-from", "all")
	authURL = authorize(t, g0, pasteID)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	addr := resp.Header.Get("Location")
	if code, _, errs := cli(t, addr+"\n", append(append([]string{}, g0...), "mailbox", "update", pasteID,
		"--secret-field", "authorization_response", "--secret-stdin")...); code != 0 {
		t.Fatalf("mailbox update with the pasted address: %s", errs)
	}
	if s, _ := tailLines(t, g0, "--mailbox", pasteID, "--ack", "--limit", "1", "--timeout", "30s"); len(s) != 1 || s[0] != "hello "+pasteBox {
		t.Fatalf("pasted address: %v", s)
	}
	// The server's poll of the sign-in sees the stored sign-in and completes it.
	for _, id := range []string{userID, pasteID} {
		eventually(t, "the sign-in of "+id+" to complete", func() bool {
			_, out, _ := cli(t, "", append(append([]string{}, g0...), "mailbox", "events", id)...)
			return strings.Contains(out, "interactive sign-in completed")
		})
	}
	if n := g.Count("authorization_code"); n != 2 {
		t.Errorf("%d codes redeemed, want 2", n)
	}
}

// authorize starts a mailbox's interactive sign-in and returns the URL to open.
func authorize(t *testing.T, g []string, id string) string {
	t.Helper()
	code, out, errs := cli(t, "", append(append([]string{}, g...), "mailbox", "authorize", id, "--no-wait", "--json")...)
	if code != 0 {
		t.Fatalf("authorize: %s", errs)
	}
	var a struct {
		VerificationURI string `json:"verificationUri"`
		Message         string `json:"message"`
	}
	if err := jsonUnmarshal(out, &a); err != nil || !strings.Contains(a.VerificationURI, "code_challenge=") || !strings.Contains(a.Message, "authorization_response") {
		t.Fatalf("authorize printed %s (%v)", out, err)
	}
	return a.VerificationURI
}
