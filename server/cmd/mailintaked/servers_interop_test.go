//go:build interop

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailintake/mailintake/internal/fakes/courier"
	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/fakes/mox"
)

// realServer is a real IMAP server the interop suite runs the same scenario against: Dovecot,
// and servers that behave differently (no MOVE, folders under "INBOX.", another delimiter).
type realServer struct {
	name string
	host string
	port int // plaintext, with LOGIN allowed on loopback
	// users log in with their password; the scenario uses the first two.
	users []string
	pass  string
	// processed is the server's own name for the folder "Processed/Tickets".
	processed string
}

// imapAs logs in to the server directly (not through mailintake), to put mail in and look.
func imapAs(t *testing.T, srv realServer, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(net.JoinHostPort(srv.host, strconv.Itoa(srv.port)), nil)
	if err != nil {
		t.Fatalf("%s: %v", srv.name, err)
	}
	if err := c.Login(user, srv.pass).Wait(); err != nil {
		c.Close()
		t.Fatalf("%s: login %s: %v", srv.name, user, err)
	}
	return c
}

// appendMail puts a message into a user's folder with APPEND, as another client would.
func appendMail(t *testing.T, srv realServer, user, folder string, raw []byte) {
	t.Helper()
	c := imapAs(t, srv, user)
	defer c.Close()
	cmd := c.Append(folder, int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("%s: APPEND to %s: %v", srv.name, folder, err)
	}
	c.Logout().Wait()
}

// folderCounts returns a folder's messages, unseen and \Deleted counts (-1 when the folder does
// not exist). A connection the server drops is tried again: mox v0.0.15 sometimes ends a
// reader's connection while another client appends ("uid already present").
func folderCounts(t *testing.T, srv realServer, user, folder string) (messages, unseen, deleted int) {
	t.Helper()
	var err error
	for range 3 {
		if messages, unseen, deleted, err = tryFolderCounts(t, srv, user, folder); err == nil {
			return messages, unseen, deleted
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: counting %s: %v", srv.name, folder, err)
	return
}

func tryFolderCounts(t *testing.T, srv realServer, user, folder string) (messages, unseen, deleted int, err error) {
	c := imapAs(t, srv, user)
	defer c.Close()
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	var ie *imap.Error
	if errors.As(err, &ie) {
		return -1, -1, -1, nil // no such folder
	}
	if err != nil {
		return 0, 0, 0, err
	}
	count := func(crit *imap.SearchCriteria) int {
		d, serr := c.UIDSearch(crit, nil).Wait()
		if serr != nil {
			err = serr
			return 0
		}
		return len(d.AllUIDs())
	}
	unseen = count(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}})
	deleted = count(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted}})
	return int(sel.NumMessages), unseen, deleted, err
}

// countingProxy forwards TCP connections to an IMAP server and counts the lines clients send:
// each is a command, a DONE, or a SASL response.
type countingProxy struct {
	ln   net.Listener
	mu   sync.Mutex
	cmds map[string]int
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{ln: ln, cmds: map[string]int{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(c, s); c.Close() }()
			go func() {
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadBytes('\n')
					if len(line) > 0 {
						p.count(line)
						s.Write(line)
					}
					if err != nil {
						s.Close()
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *countingProxy) count(line []byte) {
	name := imaptest.CommandName(string(line))
	p.mu.Lock()
	p.cmds[name]++
	p.mu.Unlock()
}

func (p *countingProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *countingProxy) snapshot() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.cmds {
		out[k] = v
	}
	return out
}

// addPlainMailbox adds a basic mailbox reached in plaintext through port (loopback only).
func addPlainMailbox(t *testing.T, g []string, srv realServer, user string, port int, extra ...string) string {
	t.Helper()
	args := append(append([]string{}, g...), "mailbox", "add", "--tenant", "acme", "--name", srv.name+" "+user, "--host", "127.0.0.1",
		"--port", strconv.Itoa(port), "--security", "none", "--username", user, "--provider", "basic", "--password-stdin", "--json")
	code, out, errs := cli(t, srv.pass, append(args, extra...)...)
	if code != 0 {
		t.Fatalf("%s: mailbox add %s: %s", srv.name, user, errs)
	}
	var mb struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &mb); err != nil {
		t.Fatal(err)
	}
	return mb.ID
}

func mailboxStatusJSON(t *testing.T, g []string, id string) (state, lastError string, warnings []string) {
	t.Helper()
	code, out, errs := cli(t, "", append(g, "mailbox", "status", id, "--json")...)
	if code != 0 {
		t.Fatalf("mailbox status: %s", errs)
	}
	var st struct {
		State     string   `json:"state"`
		LastError string   `json:"lastError"`
		Warnings  []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("mailbox status printed %q: %v", out, err)
	}
	return st.State, st.LastError, st.Warnings
}

// serverScenario is what every real server must do: test a connection given inline, backfill,
// push, move into a folder that does not exist yet (in the personal namespace), delete, and go
// back to sleep after traffic, counted at the server.
func serverScenario(t *testing.T, srv realServer) {
	userA, userB := srv.users[0], srv.users[1]
	for i := 1; i <= 3; i++ {
		appendMail(t, srv, userA, "INBOX", interopMail(i, fmt.Sprintf("%s old %d", srv.name, i)))
	}
	appendMail(t, srv, userB, "INBOX", interopMail(7, srv.name+" delete me"))
	proxy := newCountingProxy(t, net.JoinHostPort(srv.host, strconv.Itoa(srv.port)))
	data := t.TempDir()
	d := startDaemon(t, data, "--log-level", "info")
	g := []string{"--addr", d.addr, "--data-dir", data}

	// A connection test of an inline definition, without a tenant: it creates nothing.
	code, out, errs := cli(t, srv.pass, append(g, "mailbox", "test", "--host", "127.0.0.1", "--port", strconv.Itoa(srv.port),
		"--security", "none", "--username", userA, "--provider", "basic", "--password-stdin")...)
	if code != 0 {
		t.Fatalf("%s: mailbox test (inline, no tenant): exit %d: %s%s", srv.name, code, out, errs)
	}

	id := addPlainMailbox(t, g, srv, userA, proxy.port(), "--start-from", "all", "--after-ack", "move:Processed/Tickets")
	subjects, _ := tailLines(t, g, "--mailbox", id, "--ack", "--limit", "3")
	if len(subjects) != 3 {
		t.Fatalf("%s: backfill delivered %v", srv.name, subjects)
	}
	var kept bool
	eventually(t, srv.name+": the move into a new folder", func() bool {
		n, _, del := folderCounts(t, srv, userA, "INBOX")
		kept = n == 3 && del == 3 // no UIDPLUS: copied, flagged, not expunged
		p, _, _ := folderCounts(t, srv, userA, srv.processed)
		return p == 3 && (n == 0 || kept)
	})
	if kept {
		// Copied and flagged but not expunged is also the moment between STORE and UID EXPUNGE
		// on a server with UIDPLUS: kept only if it stays so.
		time.Sleep(2 * time.Second)
		n, _, del := folderCounts(t, srv, userA, "INBOX")
		kept = n == 3 && del == 3
	}

	// New mail is pushed (IDLE) while tail follows.
	tail := exec.Command(filepath.Join(bins(t), "mailintake"), append(g, "tail", "--mailbox", id, "--ack", "--limit", "1")...)
	stdout, _ := tail.StdoutPipe()
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	defer tail.Process.Kill()
	time.Sleep(time.Second)
	start := time.Now()
	appendMail(t, srv, userA, "INBOX", interopMail(4, srv.name+" pushed"))
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, "pushed") {
		t.Fatalf("%s: tail printed %q, %v", srv.name, line, err)
	}
	latency := time.Since(start)
	tail.Wait()
	t.Logf("%s: push latency %s", srv.name, latency)
	if latency > 10*time.Second {
		t.Errorf("%s: new mail took %s: not pushed", srv.name, latency)
	}
	eventually(t, srv.name+": the pushed message moved", func() bool {
		p, _, _ := folderCounts(t, srv, userA, srv.processed)
		return p == 4
	})

	// After traffic the session goes back to sleep: a few commands a minute at most.
	eventually(t, srv.name+": idle", func() bool { s, _, _ := mailboxStatusJSON(t, g, id); return s == "MAILBOX_STATE_IDLE" })
	time.Sleep(time.Second)
	before := proxy.snapshot()
	const rest = 20 * time.Second
	time.Sleep(rest)
	after := proxy.snapshot()
	sent := 0
	var what []string
	for k, v := range after {
		if n := v - before[k]; n > 0 {
			sent += n
			what = append(what, fmt.Sprintf("%s×%d", k, n))
		}
	}
	t.Logf("%s: %d commands in %s at rest after traffic %v; all commands: %v", srv.name, sent, rest, what, after)
	if sent > 3 {
		t.Errorf("%s: an idle session sent %d commands in %s after traffic (%v): it does not go back to sleep", srv.name, sent, rest, what)
	}
	state, lastErr, warnings := mailboxStatusJSON(t, g, id)
	if state != "MAILBOX_STATE_IDLE" || lastErr != "" {
		t.Errorf("%s: status %s, last error %q", srv.name, state, lastErr)
	}
	if kept != (len(warnings) > 0) {
		t.Errorf("%s: messages kept flagged %v, warnings %v", srv.name, kept, warnings)
	}

	// Delete.
	delID := addPlainMailbox(t, g, srv, userB, srv.port, "--start-from", "all", "--after-ack", "delete")
	if s, _ := tailLines(t, g, "--mailbox", delID, "--ack", "--limit", "1"); len(s) != 1 {
		t.Fatalf("%s: delete mailbox delivered %v", srv.name, s)
	}
	eventually(t, srv.name+": delete", func() bool {
		n, _, del := folderCounts(t, srv, userB, "INBOX")
		return n == 0 || (kept && del == n)
	})
	// Nothing acknowledged comes again.
	if s, _ := tailLines(t, g, "--ack", "--timeout", "2s"); len(s) != 0 {
		t.Errorf("%s: acknowledged mail came again: %v", srv.name, s)
	}
	if t.Failed() {
		_, ev, _ := cli(t, "", append(g, "mailbox", "events", id)...)
		t.Logf("%s events:\n%s\ndaemon log:\n%s", srv.name, ev, tailOf(d.logs.String(), 4000))
	}
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestInteropServers runs the scenario against every real server the suite has.
func TestInteropServers(t *testing.T) {
	t.Run("dovecot", func(t *testing.T) {
		users := map[string]string{"a@example.com": dvPass, "b@example.com": dvPass}
		dv := dovecot.Start(t, users)
		serverScenario(t, realServer{name: "dovecot", host: "127.0.0.1", port: dv.IMAPPort, users: []string{"a@example.com", "b@example.com"},
			pass: dvPass, processed: "Processed.Tickets"})
	})
	t.Run("courier", func(t *testing.T) {
		// No MOVE (copy, then UID EXPUNGE), personal folders under "INBOX.".
		users := map[string]string{"a@example.com": dvPass, "b@example.com": dvPass}
		cr := courier.Start(t, users)
		serverScenario(t, realServer{name: "courier", host: cr.Host, port: cr.Port, users: []string{"a@example.com", "b@example.com"},
			pass: dvPass, processed: "INBOX.Processed.Tickets"})
	})
	t.Run("mox", func(t *testing.T) {
		// IMAP4rev2, "/" as delimiter, no namespace prefix.
		users := map[string]string{"a@example.com": dvPass, "b@example.com": dvPass}
		mx := mox.Start(t, users)
		serverScenario(t, realServer{name: "mox", host: mx.Host, port: mx.Port, users: []string{"a@example.com", "b@example.com"},
			pass: dvPass, processed: "Processed/Tickets"})
	})
}
