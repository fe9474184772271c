//go:build interop

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	"github.com/mailintake/mailintake/internal/fakes/idp"
)

// The interop suite runs the real binaries against a real Dovecot (make test-interop).
func TestInteropDeliveryAfterAckAndIdle(t *testing.T) {
	users := map[string]string{dvUser: dvPass, "move@example.com": dvPass, "delete@example.com": dvPass, "keep@example.com": dvPass}
	dv := dovecot.Start(t, users)
	for i := 1; i <= 5; i++ {
		dv.Deliver(t, dvUser, "INBOX", interopMail(i, fmt.Sprintf("old %d", i)))
	}
	for _, u := range []string{"move@example.com", "delete@example.com", "keep@example.com"} {
		dv.Deliver(t, u, "INBOX", interopMail(1, "a "+u))
		dv.Deliver(t, u, "INBOX", interopMail(2, "b "+u))
	}
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	id := addDovecotMailbox(t, g, dv, dvUser, "--start-from", "all")

	subjects, _ := tailLines(t, g, "--mailbox", id, "--ack", "--limit", "5")
	if len(subjects) != 5 {
		t.Fatalf("got %v", subjects)
	}
	eventually(t, "MARK_SEEN on Dovecot", func() bool { _, u := dv.Status(t, dvUser, "INBOX"); return u == 0 })
	if n, _ := dv.Status(t, dvUser, "INBOX"); n != 5 {
		t.Errorf("INBOX has %d messages after MARK_SEEN, want 5", n)
	}

	// New mail while tail follows the stream: pushed by IDLE (the poll interval is 30 s).
	tail := exec.Command(filepath.Join(bins(t), "mailintake"), append(g, "tail", "--mailbox", id, "--ack", "--limit", "1")...)
	stdout, _ := tail.StdoutPipe()
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	defer tail.Process.Kill()
	time.Sleep(500 * time.Millisecond) // the stream is open and the session idles
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	start := time.Now()
	dv.Deliver(t, dvUser, "INBOX", interopMail(6, "pushed"))
	select {
	case line := <-lines:
		latency := time.Since(start)
		t.Logf("push latency (doveadm save → tail): %s", latency)
		if !strings.Contains(line, "pushed") {
			t.Errorf("tail printed %q", line)
		}
		if latency > 10*time.Second {
			t.Errorf("new mail took %s: not pushed by IDLE", latency)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("new mail did not reach tail")
	}
	tail.Wait()

	// The after-ack actions leave Dovecot in the right state.
	moveID := addDovecotMailbox(t, g, dv, "move@example.com", "--start-from", "all", "--after-ack", "move:Processed/Tickets")
	deleteID := addDovecotMailbox(t, g, dv, "delete@example.com", "--start-from", "all", "--after-ack", "delete")
	keepID := addDovecotMailbox(t, g, dv, "keep@example.com", "--start-from", "all", "--after-ack", "keep")
	for _, mid := range []string{moveID, deleteID, keepID} {
		if s, _ := tailLines(t, g, "--mailbox", mid, "--ack", "--limit", "2"); len(s) != 2 {
			t.Fatalf("mailbox %s delivered %v", mid, s)
		}
	}
	eventually(t, "MOVE", func() bool { n, _ := dv.Status(t, "move@example.com", "INBOX"); return n == 0 })
	if n, _ := dv.Status(t, "move@example.com", "Processed.Tickets"); n != 2 {
		t.Errorf("Processed.Tickets (Dovecot's delimiter) has %d messages, want 2 (created by MOVE)", n)
	}
	eventually(t, "DELETE", func() bool { n, _ := dv.Status(t, "delete@example.com", "INBOX"); return n == 0 })
	time.Sleep(500 * time.Millisecond)
	if n, u := dv.Status(t, "keep@example.com", "INBOX"); n != 2 || u != 2 {
		t.Errorf("KEEP: %d messages, %d unseen; want 2 and 2", n, u)
	}
	// Nothing acknowledged comes again.
	if s, _ := tailLines(t, g, "--ack", "--timeout", "1s"); len(s) != 0 {
		t.Errorf("acknowledged mail came again: %v", s)
	}
}

func TestInteropCrashAndConnectionLoss(t *testing.T) {
	dv := dovecot.Start(t, map[string]string{dvUser: dvPass})
	const total = 300
	for i := range total {
		dv.Deliver(t, dvUser, "INBOX", interopMail(i, fmt.Sprintf("msg %03d", i)))
	}
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	addDovecotMailbox(t, g, dv, dvUser, "--start-from", "all", "--after-ack", "mark-seen")

	acked, _ := tailLines(t, g, "--ack", "--limit", "100")
	unacked, _ := tailLines(t, g, "--limit", "20", "--max-in-flight", "20")
	d.cmd.Process.Kill() // SIGKILL mid-stream
	d.cmd.Wait()
	d = startDaemon(t, data)
	g[1] = d.addr

	// Drop the IMAP connection too: stop and start Dovecot while the server reconnects.
	dv.Stop()
	time.Sleep(time.Second)
	dv.Restart()
	dv.Deliver(t, dvUser, "INBOX", interopMail(999, "after the outage"))

	rest, _ := tailLines(t, g, "--ack", "--timeout", "5s")
	seen := map[string]int{}
	for _, s := range append(append([]string{}, acked...), rest...) {
		seen[s]++
	}
	for _, s := range acked {
		if seen[s] != 1 {
			t.Errorf("%q acknowledged before the crash, delivered again", s)
		}
	}
	for _, s := range unacked {
		if seen[s] != 1 {
			t.Errorf("%q (unacknowledged at the crash) seen %d times, want 1", s, seen[s])
		}
	}
	for i := range total {
		if s := fmt.Sprintf("msg %03d", i); seen[s] == 0 {
			t.Errorf("%q lost", s)
		}
	}
	if seen["after the outage"] != 1 {
		t.Errorf("mail delivered during the outage: seen %d times", seen["after the outage"])
	}
	eventually(t, "all seen", func() bool { _, u := dv.Status(t, dvUser, "INBOX"); return u == 0 })
}

func TestInteropConnectionTest(t *testing.T) {
	dv := dovecot.Start(t, map[string]string{dvUser: dvPass})
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	base := func(port int, pw string, extra ...string) (int, string) {
		args := append(append([]string{}, g...), "mailbox", "test", "--tenant", "acme", "--host", "127.0.0.1", "--port", strconv.Itoa(port),
			"--username", dvUser, "--provider", "basic", "--password-stdin")
		code, out, _ := cli(t, pw, append(args, extra...)...)
		return code, out
	}
	ca := dv.CACertFile(t)
	if code, out := base(dv.IMAPSPort, dvPass, "--security", "tls", "--ca-file", ca); code != 0 || strings.Contains(out, "FAIL") {
		t.Fatalf("good test: exit %d\n%s", code, out)
	}
	for _, c := range []struct {
		name, step, want string
		port             int
		pw               string
		extra            []string
	}{
		{"wrong password", "auth", "refused", dv.IMAPSPort, "wrong", []string{"--security", "tls", "--ca-file", ca}},
		{"wrong port", "tcp", "refused", freePort(t), dvPass, []string{"--security", "tls", "--ca-file", ca}},
		{"self-signed certificate", "tls", "not signed by a trusted authority", dv.IMAPSPort, dvPass, []string{"--security", "tls"}},
		{"missing folder", "select", "Nope", dv.IMAPSPort, dvPass, []string{"--security", "tls", "--ca-file", ca, "--folder", "Nope"}},
		{"STARTTLS on the plain port", "", "", dv.IMAPPort, dvPass, []string{"--security", "starttls", "--ca-file", ca}},
	} {
		code, out := base(c.port, c.pw, c.extra...)
		if c.step == "" {
			if code != 0 {
				t.Errorf("%s: exit %d\n%s", c.name, code, out)
			}
			continue
		}
		var failed string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "[FAIL]") {
				failed = l
			}
		}
		if code != 1 || !strings.Contains(failed, c.step) || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d, want 1 with step %s failing and %q\n%s", c.name, code, c.step, c.want, out)
		}
	}
}

// TestInteropO365 runs the o365 provider against Dovecot, which validates the fake identity
// platform's tokens by introspection (its oauth2 passdb).
func TestInteropO365(t *testing.T) {
	const (
		tenant = "11111111-2222-3333-4444-555555555555"
		public = "aaaaaaaa-0000-0000-0000-000000000001"
		conf   = "aaaaaaaa-0000-0000-0000-000000000002"
		secret = "app-secret~1"
		user   = "help@contoso.onmicrosoft.com"
		appBox = "app@contoso.onmicrosoft.com"
		devBox = "dev@contoso.onmicrosoft.com"
		m365pw = "M365-pw-1"
	)
	p := idp.New(tenant, "contoso.onmicrosoft.com")
	p.AddUser(idp.User{UPN: user, Password: m365pw})
	p.AddUser(idp.User{UPN: devBox, Password: "unused"})
	p.AddApp(idp.App{ClientID: public, PublicFlows: true})
	p.AddApp(idp.App{ClientID: conf, Secret: secret, AppOnlyUsers: []string{appBox}})
	hs := httptest.NewServer(p)
	defer hs.Close()
	dv := dovecot.StartWith(t, dovecot.Options{
		Users:            map[string]string{user: "dovecot-side-unused", appBox: "unused", devBox: "unused"},
		IntrospectionURL: hs.URL + "/introspect",
	})
	for _, u := range []string{user, appBox, devBox} {
		dv.Deliver(t, u, "INBOX", interopMail(1, "hello "+u))
	}
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	add := func(username, stdin string, extra ...string) string {
		args := append(append([]string{}, g...), "mailbox", "add", "--tenant", "acme", "--name", username, "--host", "127.0.0.1",
			"--port", strconv.Itoa(dv.IMAPSPort), "--security", "tls", "--ca-file", dv.CACertFile(t), "--username", username,
			"--provider", "o365", "--config", "tenant_id="+tenant, "--config", "authority="+hs.URL, "--start-from", "all", "--json")
		code, out, errs := cli(t, stdin, append(args, extra...)...)
		if code != 0 {
			t.Fatalf("mailbox add %s: %s", username, errs)
		}
		var mb struct {
			ID string `json:"id"`
		}
		jsonUnmarshal(out, &mb)
		return mb.ID
	}

	// ROPC, as the PSA screen asks: username, password, client id, tenant id.
	p.SetAccessTTL(4 * time.Second)
	ropc := add(user, m365pw, "--config", "client_id="+public, "--password-stdin")
	if s, _ := tailLines(t, g, "--mailbox", ropc, "--ack", "--limit", "1"); len(s) != 1 {
		t.Fatalf("ropc: %v", s)
	}
	time.Sleep(6 * time.Second) // the access token expires mid-session
	dv.Deliver(t, user, "INBOX", interopMail(2, "after the token expired"))
	if s, _ := tailLines(t, g, "--mailbox", ropc, "--ack", "--limit", "1"); len(s) != 1 || s[0] != "after the token expired" {
		t.Fatalf("after expiry: %v", s)
	}
	if n := p.Count("password"); n != 1 {
		t.Errorf("the password was used %d times, want once (refresh tokens afterwards)", n)
	}
	if p.Count("introspect") == 0 {
		t.Errorf("Dovecot never introspected a token")
	}
	code, out, _ := cli(t, "", append(g, "mailbox", "status", ropc)...)
	if code != 0 || !strings.Contains(out, "token expires") {
		t.Errorf("status: %d\n%s", code, out)
	}

	// Client credentials: app-only, no user password.
	p.SetAccessTTL(time.Hour)
	app := add(appBox, secret, "--config", "client_id="+conf, "--config", "flow=client_credentials", "--secret-stdin")
	if s, _ := tailLines(t, g, "--mailbox", app, "--ack", "--limit", "1"); len(s) != 1 {
		t.Fatalf("client credentials: %v", s)
	}

	// Device code: authorize, sign in (the fake approves), then mail flows.
	dev := add(devBox, "", "--config", "client_id="+public, "--config", "flow=device_code")
	code, out, errs := cli(t, "", append(g, "mailbox", "authorize", dev, "--no-wait", "--json")...)
	if code != 0 {
		t.Fatalf("authorize: %s", errs)
	}
	var auth struct {
		UserCode string `json:"userCode"`
	}
	jsonUnmarshal(out, &auth)
	if err := p.Approve(auth.UserCode, devBox); err != nil {
		t.Fatal(err)
	}
	if s, _ := tailLines(t, g, "--mailbox", dev, "--ack", "--limit", "1", "--timeout", "30s"); len(s) != 1 {
		t.Fatalf("device code: %v", s)
	}

	// OAUTHBEARER against Dovecot, through the example third-party provider: a token from the
	// identity platform passes; a bad one fails at the auth step and does not hang the connection.
	form := url.Values{"grant_type": {"password"}, "client_id": {public}, "username": {user}, "password": {m365pw},
		"scope": {"https://outlook.office.com/IMAP.AccessAsUser.All offline_access"}}
	resp, err := http.PostForm(hs.URL+"/"+tenant+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	for _, c := range []struct {
		token string
		ok    bool
	}{{tok.AccessToken, true}, {"not-a-token", false}} {
		code, out, _ := cli(t, c.token, append(append([]string{}, g...), "mailbox", "test", "--tenant", "acme", "--host", "127.0.0.1",
			"--port", strconv.Itoa(dv.IMAPSPort), "--security", "tls", "--ca-file", dv.CACertFile(t), "--username", user,
			"--provider", "statictoken", "--config", "mechanism=OAUTHBEARER", "--secret-field", "token", "--secret-stdin")...)
		if c.ok && code != 0 || !c.ok && (code != 1 || !strings.Contains(out, "[FAIL] auth")) {
			t.Errorf("OAUTHBEARER (valid %v): exit %d\n%s", c.ok, code, out)
		}
	}

	// A wrong token is refused by Dovecot: mailbox test says so at the auth step.
	code, out, _ = cli(t, "wrong-password", append(append([]string{}, g...), "mailbox", "test", "--tenant", "acme", "--host", "127.0.0.1",
		"--port", strconv.Itoa(dv.IMAPSPort), "--security", "tls", "--ca-file", dv.CACertFile(t), "--username", user,
		"--provider", "o365", "--config", "client_id="+public, "--config", "tenant_id="+tenant, "--config", "authority="+hs.URL, "--password-stdin")...)
	if code != 1 || !strings.Contains(out, "AADSTS50126") && !strings.Contains(out, "rejected the username or password") {
		t.Errorf("test with a wrong M365 password: exit %d\n%s", code, out)
	}
}
