//go:build ha

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailintake/mailintake/client"
	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	"github.com/mailintake/mailintake/internal/fakes/idp"
	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	pgserver "github.com/mailintake/mailintake/internal/fakes/postgres"
	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/testutil"
	replicav1 "github.com/mailintake/mailintake/proto/mailintake/replica/v1"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// The high-availability suite (make test-ha) runs several mailintaked replicas on one private
// PostgreSQL against a private Dovecot, with every mailbox reached through a proxy of its own
// that watches the IMAP commands: a session of a replica that lost the mailbox must not act on
// it once another replica's session selected it.

// selProxy forwards one mailbox's IMAP connections and checks that sessions do not overlap: once
// a newer connection has selected the folder, an older one may only end its IDLE and log out.
type selProxy struct {
	name   string
	ln     net.Listener
	target string

	mu         sync.Mutex
	seq        int
	open       map[int]bool // connections that selected, by order of selection, still open
	violations []string
	selects    int
}

func newSelProxy(t *testing.T, name, target string) *selProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &selProxy{name: name, ln: ln, target: target, open: map[int]bool{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *selProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *selProxy) serve(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() { io.Copy(c, s); c.Close() }()
	r := bufio.NewReader(c)
	mine := 0 // this connection's selection order, 0 before it selected
	defer func() {
		if mine > 0 {
			p.mu.Lock()
			delete(p.open, mine)
			p.mu.Unlock()
		}
	}()
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			name := imaptest.CommandName(string(line))
			p.mu.Lock()
			switch {
			case (name == "SELECT" || name == "EXAMINE") && mine == 0:
				p.seq++
				mine = p.seq
				p.open[mine] = true
				p.selects++
			case mine > 0 && name != "DONE" && name != "LOGOUT":
				for other := range p.open {
					if other > mine {
						p.violations = append(p.violations, fmt.Sprintf("%s: an older session sent %s after a newer one selected the folder", p.name, strings.TrimSpace(string(line))))
						break
					}
				}
			}
			p.mu.Unlock()
			if _, err := s.Write(line); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// sessions returns how many connections have the folder selected now (0 for a mailbox with no
// proxy: a POP3 one).
func (p *selProxy) sessions() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.open)
}

func (p *selProxy) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range p.violations {
		t.Error(v)
	}
}

// replica is one mailintaked process of the cluster.
type replica struct {
	id, data string
	args     []string
	d        *daemon
}

// haCluster is a private PostgreSQL, a private Dovecot with one user per mailbox, and replicas.
type haCluster struct {
	t        *testing.T
	pg       *pgserver.Server
	dbURL    string
	keyFile  string
	dv       *dovecot.Server
	replicas []*replica
	users    []string
	proxies  map[string]*selProxy // by user
	boxes    map[string]string    // mailbox id → user
	admin    string               // the admin token
	idp      *idp.IdP             // the fake Microsoft identity platform, with an o365 mailbox
	idpURL   string
}

// The o365 mailbox of the chaos suite.
const (
	haTenant = "11111111-2222-3333-4444-555555555555"
	haApp    = "aaaaaaaa-0000-0000-0000-000000000001"
	haM365   = "help@contoso.onmicrosoft.com"
	haM365PW = "M365-pw-1"
)

// newHACluster starts PostgreSQL, Dovecot, n replicas and mailboxes basic mailboxes; with o365, one
// more mailbox signs in through the fake identity platform with short-lived access tokens and
// single-use (strictly rotated) refresh tokens, introspected by Dovecot's oauth2 passdb.
func newHACluster(t *testing.T, n, mailboxes int, o365 bool) *haCluster {
	pg := pgserver.Start(t)
	users := map[string]string{}
	h := &haCluster{t: t, pg: pg, dbURL: pg.CreateDatabase(t, "ha"), proxies: map[string]*selProxy{}, boxes: map[string]string{}}
	for i := range mailboxes {
		u := fmt.Sprintf("desk%02d@example.com", i)
		users[u] = dvPass
		h.users = append(h.users, u)
	}
	var introspect string
	if o365 {
		h.idp = idp.New(haTenant, "contoso.onmicrosoft.com")
		h.idp.AddUser(idp.User{UPN: haM365, Password: haM365PW})
		h.idp.AddApp(idp.App{ClientID: haApp, PublicFlows: true})
		h.idp.SetAccessTTL(4 * time.Second)
		h.idp.SetStrictRotation(true)
		hs := httptest.NewServer(h.idp)
		t.Cleanup(hs.Close)
		introspect = hs.URL + "/introspect"
		h.idpURL = hs.URL
		users[haM365] = "unused"
	}
	h.dv = dovecot.StartWith(t, dovecot.Options{Users: users, IntrospectionURL: introspect})
	dir := t.TempDir()
	h.keyFile = filepath.Join(dir, "secret.key")
	if _, _, err := secrets.LoadOrCreateKeyFile(h.keyFile); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		h.add(fmt.Sprintf("r%d", i+1))
	}
	tok, err := os.ReadFile(filepath.Join(h.replicas[0].data, "admin.token"))
	if err != nil {
		t.Fatalf("the first replica wrote no admin token: %v", err)
	}
	h.admin = strings.TrimSpace(string(tok))
	for _, r := range h.replicas[1:] {
		if _, err := os.Stat(filepath.Join(r.data, "admin.token")); err == nil {
			t.Errorf("replica %s wrote an admin token too: the admin token is created once per cluster", r.id)
		}
	}
	if o365 {
		h.users = append(h.users, haM365)
	}
	for _, u := range h.users {
		p := newSelProxy(t, u, fmt.Sprintf("127.0.0.1:%d", h.dv.IMAPPort))
		h.proxies[u] = p
		args := []string{"--addr", h.replicas[0].d.addr, "--token", h.admin, "mailbox", "add", "--tenant", "acme", "--name", "Desk " + u,
			"--host", "127.0.0.1", "--port", strconv.Itoa(p.port()), "--security", "none", "--username", u,
			"--password-stdin", "--start-from", "all", "--after-ack", "mark-seen", "--json"}
		stdin := dvPass
		if u == haM365 {
			stdin = haM365PW
			args = append(args, "--provider", "o365", "--config", "tenant_id="+haTenant, "--config", "authority="+strings.TrimSuffix(introspect, "/introspect"),
				"--config", "client_id="+haApp)
		} else {
			args = append(args, "--provider", "basic")
		}
		code, out, errs := cli(t, stdin, args...)
		if code != 0 {
			t.Fatalf("mailbox add %s: %s", u, errs)
		}
		var mb struct {
			ID string `json:"id"`
		}
		if err := jsonUnmarshal(out, &mb); err != nil {
			t.Fatal(err)
		}
		h.boxes[mb.ID] = u
	}
	return h
}

// dump logs what each replica says of each mailbox, and the replicas' logs (on failure).
func (h *haCluster) dump() {
	t := h.t
	for _, r := range h.replicas {
		t.Logf("replica %s log:\n%s", r.id, tail(r.d.logs.String(), 6000))
	}
	for _, r := range h.replicas {
		if r.d.cmd.ProcessState != nil {
			continue
		}
		c, err := client.Dial(r.d.addr, client.Options{Token: h.admin})
		if err != nil {
			continue
		}
		for id, u := range h.boxes {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			resp, err := c.Mailboxes.GetMailboxStatus(ctx, &mailintakev1.GetMailboxStatusRequest{Id: id})
			cancel()
			t.Logf("via %s: %s (%s, %d selected): %v %v", r.id, id, u, h.proxies[u].sessions(), resp.GetStatus(), err)
		}
		c.Close()
		break
	}
}

// add starts a new replica.
func (h *haCluster) add(id string) *replica {
	r := &replica{id: id, data: h.t.TempDir()}
	// Each replica names its database connections, so a test can cut exactly one replica's.
	r.args = []string{"--database-url", h.dbURL + "&application_name=mailintake-" + id, "--replica-id", id, "--secret-key-file", h.keyFile}
	r.d = startDaemon(h.t, r.data, r.args...)
	h.replicas = append(h.replicas, r)
	return r
}

func (h *haCluster) restart(r *replica) {
	r.d = startDaemon(h.t, r.data, r.args...)
}

func (h *haCluster) client(r *replica) *client.Client {
	c, err := client.Dial(r.d.addr, client.Options{Token: h.admin})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// owners returns each mailbox's owning replica by the status any live replica answers.
func (h *haCluster) owners(via *replica) map[string]string {
	c := h.client(via)
	out := map[string]string{}
	for id := range h.boxes {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.Mailboxes.GetMailboxStatus(ctx, &mailintakev1.GetMailboxStatusRequest{Id: id})
		cancel()
		if err == nil {
			out[id] = resp.GetStatus().GetOwnerReplicaId()
		}
	}
	return out
}

// settled waits until every mailbox is owned by one of want, spread over at least spread replicas.
func (h *haCluster) settled(via *replica, want []string, spread int, within time.Duration) map[string]string {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for {
		owners := h.owners(via)
		ok := len(owners) == len(h.boxes)
		seen := map[string]bool{}
		for _, o := range owners {
			if !containsStr(want, o) {
				ok = false
			}
			seen[o] = true
		}
		if ok && len(seen) >= spread {
			return owners
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("mailboxes not spread over %v within %s: %v", want, within, owners)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// haMail is a message for user with a unique subject.
func haMail(user, subject string) []byte {
	return []byte(fmt.Sprintf("From: Customer <c@example.net>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.net>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nBody of %s\r\n",
		user, subject, strings.ReplaceAll(subject, " ", "."), subject))
}

// TestHAReplicas checks the cluster's functions end to end: the admin token made once and valid on
// every replica, mailboxes spread and served to a consumer on any replica, raw messages and status
// through non-owners, failover after SIGKILL, handover on SIGTERM, a restarted replica rejoining,
// a replica with another secret key refused.
func TestHAReplicas(t *testing.T) {
	h := newHACluster(t, 3, 9, false)
	defer func() {
		if t.Failed() {
			h.dump()
		}
	}()
	r1, r2, r3 := h.replicas[0], h.replicas[1], h.replicas[2]
	all := []string{"r1", "r2", "r3"}
	owners := h.settled(r3, all, 2, 30*time.Second)
	t.Logf("owners: %v", owners)

	// Cluster status through the CLI, on a replica that did not create the admin token.
	code, out, errs := cli(t, "", "--addr", r2.d.addr, "--token", h.admin, "cluster", "status", "--json")
	if code != 0 {
		t.Fatalf("cluster status: %s", errs)
	}
	var cs struct {
		Replicas []struct {
			ID    string `json:"id"`
			Alive bool   `json:"alive"`
		} `json:"replicas"`
	}
	if err := jsonUnmarshal(out, &cs); err != nil {
		t.Fatalf("cluster status --json: %v\n%s", err, out)
	}
	named := map[string]bool{}
	for _, r := range cs.Replicas {
		named[r.ID] = r.Alive
	}
	for _, id := range all {
		if !named[id] {
			t.Errorf("cluster status does not name replica %s as alive:\n%s", id, out)
		}
	}

	// The replicas' own service refuses the admin token: only replicas holding the cluster's key
	// reach it.
	if _, err := replicav1.NewReplicaServiceClient(h.client(r1).Conn()).GetMailboxStatus(context.Background(),
		&replicav1.GetMailboxStatusRequest{MailboxId: "x"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ReplicaService with the admin token: %v, want Unauthenticated", err)
	}

	// Mail to every mailbox, consumed by one consumer on r2 (it owns only some of them).
	l := newLedger()
	var subjects []string
	for id, u := range h.boxes {
		for i := range 3 {
			s := fmt.Sprintf("first %s %d", id, i)
			subjects = append(subjects, s)
			h.dv.Deliver(t, u, "INBOX", haMail(u, s))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c2 := h.client(r2)
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for ctx.Err() == nil {
			consume(ctx, c2, &mailintakev1.StreamMessagesRequest{MaxInFlight: 4}, l, rng, 1, 2)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	eventually20(t, 60*time.Second, "every first message acknowledged through r2", func() bool {
		return len(l.confirmedSubjects()) >= len(subjects)
	})
	checkAll(t, l, subjects)

	// A raw message of a mailbox r1 owns, fetched through r3 (which must ask r1).
	var rawID string
	l.mu.Lock()
	for id := range l.confirmed {
		mb := strings.Split(id, ":")[0]
		if owners[mb] != "r3" {
			rawID = id
			break
		}
	}
	l.mu.Unlock()
	c3 := h.client(r3)
	rs, err := c3.Messages.GetRawMessage(ctx, &mailintakev1.GetRawMessageRequest{MessageId: rawID})
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	for {
		resp, err := rs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("raw message %s through a non-owner: %v", rawID, err)
		}
		raw = append(raw, resp.GetChunk()...)
	}
	if !strings.Contains(string(raw), "Subject: first "+strings.Split(rawID, ":")[0]) {
		t.Errorf("raw message %s through a non-owner: got %q", rawID, raw)
	}

	// A mailbox disabled through a replica that does not own it: its owner stops the session.
	for id, o := range owners {
		if o == "r3" {
			continue
		}
		if code, _, errs := cli(t, "", "--addr", r3.d.addr, "--token", h.admin, "mailbox", "disable", id); code != 0 {
			t.Fatalf("mailbox disable: %s", errs)
		}
		eventually20(t, 10*time.Second, "the owner stopping a mailbox disabled through another replica", func() bool {
			resp, err := c3.Mailboxes.GetMailboxStatus(ctx, &mailintakev1.GetMailboxStatusRequest{Id: id})
			return err == nil && resp.GetStatus().GetState() == mailintakev1.MailboxState_MAILBOX_STATE_DISABLED && h.proxies[h.boxes[id]].sessions() == 0
		})
		if code, _, errs := cli(t, "", "--addr", r3.d.addr, "--token", h.admin, "mailbox", "enable", id); code != 0 {
			t.Fatalf("mailbox enable: %s", errs)
		}
		h.dv.Deliver(t, h.boxes[id], "INBOX", haMail(h.boxes[id], "after enable"))
		eventually20(t, 20*time.Second, "mail to the re-enabled mailbox", func() bool { return l.confirmedSubjects()["after enable"] })
		break
	}

	// A connection test of a stored mailbox asked of a replica that does not own it runs on
	// the owner (only the owner connects to a mailbox).
	for id, o := range owners {
		if o == "r3" {
			continue
		}
		resp, err := c3.Mailboxes.TestConnection(ctx, &mailintakev1.TestConnectionRequest{Target: &mailintakev1.TestConnectionRequest_Id{Id: id}})
		if err != nil || !resp.GetOk() {
			t.Fatalf("connection test through r3 of a mailbox %s owns: %v %v", o, resp, err)
		}
		owner := r1
		if o == "r2" {
			owner = r2
		}
		// The owner's log reaches the test through a pipe, possibly after the reply: wait for it.
		eventually20(t, 5*time.Second, "the connection test's log line on the owner "+o, func() bool {
			return strings.Contains(owner.d.logs.String(), "/mailintake.replica.v1.ReplicaService/TestConnection")
		})
		// Streamed, it runs there too, and streams from there: each step as it starts (running)
		// and as it ends, not all at the end.
		stream, err := c3.Mailboxes.StreamConnectionTest(ctx, &mailintakev1.StreamConnectionTestRequest{Target: &mailintakev1.StreamConnectionTestRequest_Id{Id: id}})
		if err != nil {
			t.Fatal(err)
		}
		var plan, running, ended int
		var summary *mailintakev1.TestConnectionResponse
		for {
			r, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("streamed connection test through r3: %v", err)
				}
				break
			}
			plan += len(r.GetPlan().GetSteps())
			switch {
			case r.GetStep().GetResult() == mailintakev1.TestStepResult_TEST_STEP_RESULT_RUNNING:
				running++
			case r.GetStep() != nil:
				ended++
			}
			if r.GetSummary() != nil {
				summary = r.GetSummary()
			}
		}
		if plan != 6 || running != 6 || ended != 6 || !summary.GetOk() {
			t.Errorf("streamed connection test through r3 of a mailbox %s owns: plan %d, %d steps started, %d ended, summary %v", o, plan, running, ended, summary)
		}
		eventually20(t, 5*time.Second, "the streamed connection test's log line on the owner "+o, func() bool {
			return strings.Contains(owner.d.logs.String(), "/mailintake.replica.v1.ReplicaService/StreamConnectionTest")
		})
		break
	}

	// SIGKILL the owner of a mailbox (not r2, where the consumer is): the next mail to it comes
	// from the new owner within seconds.
	byID := map[string]*replica{"r1": r1, "r2": r2, "r3": r3}
	pick := func() (*replica, string) {
		for id, o := range owners {
			if o != "r2" {
				return byID[o], id
			}
		}
		t.Fatalf("r2 owns every mailbox: %v", owners)
		return nil, ""
	}
	victim, victimBox := pick()
	var survivors []string
	for _, id := range all {
		if id != victim.id {
			survivors = append(survivors, id)
		}
	}
	victim.d.cmd.Process.Kill()
	victim.d.cmd.Wait()
	killed := time.Now()
	h.dv.Deliver(t, h.boxes[victimBox], "INBOX", haMail(h.boxes[victimBox], "after kill"))
	eventually20(t, 30*time.Second, "the mail after the kill delivered by the new owner", func() bool {
		return l.confirmedSubjects()["after kill"]
	})
	t.Logf("failover after SIGKILL of %s: first message delivered after %s", victim.id, time.Since(killed).Round(10*time.Millisecond))
	h.settled(r2, survivors, 1, 15*time.Second)

	// The killed replica comes back with the same id and data directory and takes its share.
	h.restart(victim)
	owners = h.settled(r2, all, 2, 30*time.Second)

	// SIGTERM hands over at once: the next mail comes within a couple of seconds.
	victim, victimBox = pick()
	stopped := time.Now() // from the signal: a slow stop holds the leases the others wait for
	victim.d.stop(t)
	h.dv.Deliver(t, h.boxes[victimBox], "INBOX", haMail(h.boxes[victimBox], "after sigterm"))
	eventually20(t, 20*time.Second, "the mail after SIGTERM delivered", func() bool { return l.confirmedSubjects()["after sigterm"] })
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("the mail after a SIGTERM handover took %s (want a few seconds at most: no lease wait)", d)
	} else {
		t.Logf("handover after SIGTERM of %s: first message delivered after %s", victim.id, d.Round(10*time.Millisecond))
	}

	// A replica with another secret key refuses to start, saying why.
	other := filepath.Join(t.TempDir(), "other.key")
	if _, _, err := secrets.LoadOrCreateKeyFile(other); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bins(t), "mailintaked"), "--listen", freeAddr(t), "--data-dir", t.TempDir(),
		"--database-url", h.dbURL, "--replica-id", "bad", "--secret-key-file", other)
	start := time.Now()
	outb, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(outb), "does not match") || time.Since(start) > 30*time.Second {
		t.Errorf("a replica with another key: err=%v after %s, output:\n%s", err, time.Since(start), outb)
	}

	cancel()
	l.check(t)
	for _, p := range h.proxies {
		p.check(t)
	}
}

// eventually20 is eventually with its own timeout.
func eventually20(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHAChaos runs three replicas and 30 mailboxes while mail flows and consumers on random
// replicas acknowledge it, through rounds of faults: a replica SIGKILLed and restarted, one frozen
// (SIGSTOP) past its lease and resumed, one whose database connections are cut. At the end: every
// message delivered, none delivered again after its acknowledgement was confirmed, no checkpoint
// ever moved back (a trigger audits sync_state), no session acting on a mailbox after another
// replica's session selected it, and every acknowledged message marked \Seen on Dovecot.
func TestHAChaos(t *testing.T) {
	rounds := envInt("MAILINTAKE_HA_ROUNDS", 21)
	h := newHACluster(t, 3, 30, true)
	defer func() {
		if t.Failed() {
			h.dump()
		}
	}()
	h.pg.Exec(t, "ha", `CREATE TABLE checkpoint_audit (mailbox_id text, old_through bigint, new_through bigint, at timestamptz DEFAULT now());
		CREATE FUNCTION audit_checkpoint() RETURNS trigger AS $$
		BEGIN
			IF NEW.uid_validity = OLD.uid_validity AND NEW.acked_through < OLD.acked_through THEN
				INSERT INTO checkpoint_audit (mailbox_id, old_through, new_through) VALUES (OLD.mailbox_id, OLD.acked_through, NEW.acked_through);
			END IF;
			RETURN NEW;
		END $$ LANGUAGE plpgsql;
		CREATE TRIGGER audit_checkpoint BEFORE UPDATE ON sync_state FOR EACH ROW EXECUTE FUNCTION audit_checkpoint();`)
	all := []string{"r1", "r2", "r3"}
	h.settled(h.replicas[0], all, 3, 30*time.Second)

	var mu sync.Mutex // guards the replicas' processes against the consumers picking one
	live := func(rng *rand.Rand) *replica {
		mu.Lock()
		defer mu.Unlock()
		var up []*replica
		for _, r := range h.replicas {
			if r.d.cmd.ProcessState == nil {
				up = append(up, r)
			}
		}
		return up[rng.IntN(len(up))]
	}
	l := newLedger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 99))
			for ctx.Err() == nil {
				r := live(rng)
				c, err := client.Dial(r.d.addr, client.Options{Token: h.admin})
				if err != nil {
					continue
				}
				// A stream lives a few seconds at most, as behind a load balancer that
				// rebalances: consumers keep moving between replicas.
				sctx, scancel := context.WithTimeout(ctx, time.Duration(2+rng.IntN(6))*time.Second)
				consume(sctx, c, &mailintakev1.StreamMessagesRequest{MaxInFlight: uint32(1 + rng.IntN(16)),
					AckDeadline: durationpbNew(10 * time.Second)}, l, rng, 0.9, 1+rng.IntN(4))
				scancel()
				c.Close()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	// Mail keeps arriving in random mailboxes while the faults happen.
	var subjects []string
	var subjMu sync.Mutex
	mailDone := make(chan struct{})
	go func() {
		defer close(mailDone)
		rng := rand.New(rand.NewPCG(5, 5))
		for n := 0; ctx.Err() == nil && n < 100000; n++ {
			u := h.users[rng.IntN(len(h.users))]
			s := fmt.Sprintf("chaos %05d", n)
			h.dv.Deliver(t, u, "INBOX", haMail(u, s))
			subjMu.Lock()
			subjects = append(subjects, s)
			subjMu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(50+rng.IntN(150)) * time.Millisecond):
			}
		}
	}()

	rng := rand.New(rand.NewPCG(2026, 12))
	for round := 1; round <= rounds; round++ {
		r := h.replicas[rng.IntN(len(h.replicas))]
		switch round % 3 {
		case 1:
			t.Logf("round %d: SIGKILL %s, restart", round, r.id)
			mu.Lock()
			r.d.cmd.Process.Kill()
			r.d.cmd.Wait()
			mu.Unlock()
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
			mu.Lock()
			h.restart(r)
			mu.Unlock()
		case 2:
			t.Logf("round %d: SIGSTOP %s past its lease, SIGCONT", round, r.id)
			r.d.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(7 * time.Second)
			r.d.cmd.Process.Signal(syscall.SIGCONT)
			// It closes every session it lost within a few seconds.
			eventually20(t, 10*time.Second, "the resumed replica closing the sessions it lost", func() bool {
				for _, p := range h.proxies {
					if p.sessions() > 1 {
						return false
					}
				}
				return true
			})
		case 0:
			t.Logf("round %d: cut %s's database connections", round, r.id)
			h.pg.Exec(t, "ha", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, "mailintake-"+r.id)
			time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
		}
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
	}
	cancel()
	wg.Wait()
	<-mailDone

	// Drain through one replica until nothing comes any more.
	h.settled(h.replicas[0], all, 2, 30*time.Second)
	drain(t, h.client(h.replicas[rng.IntN(3)]), l, 5*time.Second, 3*time.Minute)
	subjMu.Lock()
	want := append([]string(nil), subjects...)
	subjMu.Unlock()
	checkAll(t, l, want)
	for _, p := range h.proxies {
		p.check(t)
	}
	if audit := h.pg.QueryInt(t, "ha", `SELECT count(*) FROM checkpoint_audit`); audit > 0 {
		t.Errorf("a checkpoint moved back %d times", audit)
	}
	eventually20(t, 60*time.Second, "every message \\Seen on Dovecot", func() bool {
		for _, u := range h.users {
			if _, unseen := h.dv.Status(t, u, "INBOX"); unseen > 0 {
				return false
			}
		}
		return true
	})
	l.mu.Lock()
	redelivered := 0
	for _, k := range l.delivered {
		redelivered += k - 1
	}
	l.mu.Unlock()
	t.Logf("%d messages over %d fault rounds: %d redeliveries of unacknowledged messages, %d acks answered unknown", len(want), rounds, redelivered, len(l.unknown))

	// The o365 mailbox kept signing in across every handover: its mail was delivered above, and
	// it is not failing now.
	for id, u := range h.boxes {
		if u != haM365 {
			continue
		}
		st, err := h.client(h.replicas[0]).Mailboxes.GetMailboxStatus(context.Background(), &mailintakev1.GetMailboxStatusRequest{Id: id})
		if err != nil || st.GetStatus().GetState() == mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED || st.GetStatus().GetState() == mailintakev1.MailboxState_MAILBOX_STATE_ERROR {
			t.Errorf("the o365 mailbox after the chaos: %v %v", st.GetStatus(), err)
		}
	}
	t.Logf("identity platform: %d refresh grants, %d password grants, %d refresh tokens used twice (a replica lost a rotated token)",
		h.idp.Count("refresh_token"), h.idp.Count("password"), h.idp.Count("refresh_reused"))
}

func durationpbNew(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// TestHADeviceCodeSurvivesFailover begins a device-code sign-in through one replica for a mailbox
// another replica owns, kills both, and has the user sign in afterwards: the replica that takes
// the mailbox over finishes the sign-in (it is kept in the database, not in a process).
func TestHADeviceCodeSurvivesFailover(t *testing.T) {
	h := newHACluster(t, 3, 0, true)
	defer func() {
		if t.Failed() {
			h.dump()
		}
	}()
	r1 := h.replicas[0]
	args := []string{"--addr", r1.d.addr, "--token", h.admin, "mailbox", "add", "--tenant", "acme", "--name", "MFA desk",
		"--host", "127.0.0.1", "--port", strconv.Itoa(h.dv.IMAPPort), "--security", "none", "--username", haM365,
		"--start-from", "all", "--provider", "o365", "--config", "tenant_id=" + haTenant, "--config", "client_id=" + haApp,
		"--config", "flow=device_code", "--config", "authority=" + h.idpURL, "--json"}
	code, out, errs := cli(t, "", args...)
	if code != 0 {
		t.Fatalf("mailbox add: %s", errs)
	}
	var mb struct {
		ID string `json:"id"`
	}
	if err := jsonUnmarshal(out, &mb); err != nil {
		t.Fatal(err)
	}
	h.boxes[mb.ID] = haM365
	owners := h.settled(r1, []string{"r1", "r2", "r3"}, 1, 30*time.Second)
	owner := owners[mb.ID]
	var via *replica
	for _, r := range h.replicas {
		if r.id != owner {
			via = r
			break
		}
	}
	c := h.client(via)
	ctx := context.Background()
	begin, err := c.Providers.BeginAuthorization(ctx, &mailintakev1.BeginAuthorizationRequest{MailboxId: mb.ID})
	if err != nil {
		t.Fatalf("BeginAuthorization through %s (the owner is %s): %v", via.id, owner, err)
	}
	code1 := begin.GetAuthorization().GetUserCode()
	// The replica the sign-in began on and the mailbox's owner both die before the user signs
	// in: only the database still knows the sign-in.
	var survivor *replica
	for _, r := range h.replicas {
		if r.id == owner || r == via {
			r.d.cmd.Process.Kill()
			r.d.cmd.Wait()
		} else {
			survivor = r
		}
	}
	c = h.client(survivor)
	if err := h.idp.Approve(code1, haM365); err != nil {
		t.Fatal(err)
	}
	eventually20(t, 60*time.Second, "the sign-in completed by the replica that took the mailbox over", func() bool {
		g, err := c.Providers.GetAuthorization(ctx, &mailintakev1.GetAuthorizationRequest{MailboxId: mb.ID})
		return err == nil && g.GetAuthorization().GetState() == mailintakev1.AuthorizationState_AUTHORIZATION_STATE_COMPLETED
	})
	h.dv.Deliver(t, haM365, "INBOX", haMail(haM365, "after the sign-in"))
	l := newLedger()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go consume(cctx, c, &mailintakev1.StreamMessagesRequest{MaxInFlight: 4, MailboxIds: []string{mb.ID}}, l, rand.New(rand.NewPCG(1, 1)), 1, 1)
	eventually20(t, 30*time.Second, "mail of the signed-in mailbox", func() bool { return l.confirmedSubjects()["after the sign-in"] })
}

// TestHAReplicasOverTLS runs two replicas that serve the API with TLS under a private CA
// (--peer-ca): a consumer on r1 receives the mail of the mailboxes r2 owns, relayed between the
// replicas over TLS.
func TestHAReplicasOverTLS(t *testing.T) {
	pg := pgserver.Start(t)
	url := pg.CreateDatabase(t, "")
	users := map[string]string{}
	// Enough mailboxes that rendezvous hashing leaves each of the two replicas some: with 6, one
	// replica owned them all once in 32 runs.
	for i := range 16 {
		users[fmt.Sprintf("tls%02d@example.com", i)] = dvPass
	}
	dv := dovecot.Start(t, users)
	ca := testutil.NewCA(t)
	key := filepath.Join(t.TempDir(), "secret.key")
	if _, _, err := secrets.LoadOrCreateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	var reps []*daemon
	var datas []string
	for _, id := range []string{"r1", "r2"} {
		cert, pkey := ca.IssueFiles(t, id, "127.0.0.1", "localhost")
		data := t.TempDir()
		datas = append(datas, data)
		reps = append(reps, startDaemon(t, data, "--database-url", url, "--replica-id", id, "--secret-key-file", key,
			"--tls-cert", cert, "--tls-key", pkey, "--peer-ca", ca.CAFile(t)))
	}
	tok, err := os.ReadFile(filepath.Join(datas[0], "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	c, err := client.Dial(reps[0].addr, client.Options{Token: strings.TrimSpace(string(tok)), TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ids []string
	for u := range users {
		resp, err := c.Mailboxes.CreateMailbox(ctx, &mailintakev1.CreateMailboxRequest{Mailbox: &mailintakev1.Mailbox{Tenant: "acme", DisplayName: u,
			Enabled: true, Host: "127.0.0.1", Port: uint32(dv.IMAPPort), Security: mailintakev1.Security_SECURITY_NONE, Username: u,
			AuthProvider: "basic", AuthSecrets: map[string]string{"password": dvPass}, StartFrom: mailintakev1.StartFrom_START_FROM_ALL}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.GetMailbox().GetId())
		dv.Deliver(t, u, "INBOX", haMail(u, "tls "+u))
	}
	owners := map[string]bool{}
	eventually20(t, 30*time.Second, "both replicas owning mailboxes", func() bool {
		clear(owners)
		for _, id := range ids {
			st, err := c.Mailboxes.GetMailboxStatus(ctx, &mailintakev1.GetMailboxStatusRequest{Id: id})
			if err != nil || st.GetStatus().GetOwnerReplicaId() == "" {
				return false
			}
			owners[st.GetStatus().GetOwnerReplicaId()] = true
		}
		return owners["r1"] && owners["r2"]
	})
	l := newLedger()
	go consume(ctx, c, &mailintakev1.StreamMessagesRequest{MaxInFlight: 8}, l, rand.New(rand.NewPCG(3, 3)), 1, 1)
	eventually20(t, 30*time.Second, "every mailbox's mail through r1, r2's relayed over TLS", func() bool {
		return len(l.confirmedSubjects()) == len(users)
	})
}
