//go:build faults || ha

package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailintake/mailintake/client"
	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	"github.com/mailintake/mailintake/internal/fakes/idp"
	"github.com/mailintake/mailintake/internal/fakes/imapscript"
	pgserver "github.com/mailintake/mailintake/internal/fakes/postgres"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// The fault-injection suite (make test-faults) runs the real binaries against a real Dovecot,
// injects a fault, and checks the delivery guarantees of PRODUCT.md section 4 on the exact set
// of messages: every message delivered at least once, none delivered after its acknowledgement
// was confirmed, none left behind, and the mail server's state afterwards. Sizes and seeds are
// set by MAILINTAKE_FAULT_* variables for longer runs by hand.

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// ledger is what consumers saw, keyed by message id.
type ledger struct {
	mu         sync.Mutex
	delivered  map[string]int    // deliveries per id
	subject    map[string]string // id → subject
	ackSent    map[string]bool   // an ack was sent (its reply may have been lost in a crash)
	confirmed  map[string]bool   // the server confirmed the ack
	violations []string
	ackErrors  []string // AckMessages calls that failed
	unknown    []string // acks the server answered as unknown
	// idsMayChange is set when the test changes UIDVALIDITY: a message then has a new id.
	idsMayChange bool
}

func newLedger() *ledger {
	return &ledger{delivered: map[string]int{}, subject: map[string]string{}, ackSent: map[string]bool{}, confirmed: map[string]bool{}}
}

func (l *ledger) deliver(m *mailintakev1.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := m.GetId()
	if l.confirmed[id] {
		l.violations = append(l.violations, fmt.Sprintf("%s (%q) delivered after its ack was confirmed", id, m.GetEnvelope().GetSubject()))
	}
	if s, ok := l.subject[id]; ok && s != m.GetEnvelope().GetSubject() {
		l.violations = append(l.violations, fmt.Sprintf("id %s carried %q, then %q", id, s, m.GetEnvelope().GetSubject()))
	}
	l.delivered[id]++
	l.subject[id] = m.GetEnvelope().GetSubject()
}

func (l *ledger) sent(ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		l.ackSent[id] = true
	}
}

func (l *ledger) confirm(ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		l.confirmed[id] = true
	}
}

// confirmedSubjects returns the subjects whose ack the server confirmed.
func (l *ledger) confirmedSubjects() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bool{}
	for id := range l.confirmed {
		out[l.subject[id]] = true
	}
	return out
}

// subjects returns the subjects delivered at least once, and those whose ack was sent.
func (l *ledger) subjects() (delivered, acked map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delivered, acked = map[string]bool{}, map[string]bool{}
	for id, s := range l.subject {
		delivered[s] = true
		if l.ackSent[id] || l.confirmed[id] {
			acked[s] = true
		}
	}
	return delivered, acked
}

func (l *ledger) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.violations {
		t.Error(v)
	}
	if l.idsMayChange {
		return
	}
	bySubject := map[string][]string{}
	for id, s := range l.subject {
		bySubject[s] = append(bySubject[s], id)
	}
	for s, ids := range bySubject {
		if len(ids) > 1 {
			t.Errorf("%q was delivered under several ids: %v (ids must be stable)", s, ids)
		}
	}
}

func adminClient(t *testing.T, d *daemon, data string) *client.Client {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(d.addr, client.Options{Token: strings.TrimSpace(string(tok))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// consume follows a stream until ctx ends or the stream breaks, acknowledging each message
// with probability ackP, in batches of up to batch ids (never more than the stream's window),
// flushed at least every 20 ms.
func consume(ctx context.Context, c *client.Client, req *mailintakev1.StreamMessagesRequest, l *ledger, rng *rand.Rand, ackP float64, batch int) error {
	if w := int(req.GetMaxInFlight()); w > 0 && batch > w {
		batch = w
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Messages.StreamMessages(ctx, req)
	if err != nil {
		return err
	}
	ids := make(chan string)
	recvErr := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			l.deliver(resp.GetMessage())
			select {
			case ids <- resp.GetMessage().GetId():
			case <-ctx.Done():
				return
			}
		}
	}()
	var pending []string
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		batch := pending
		pending = nil
		l.sent(batch)
		resp, err := c.Messages.AckMessages(ctx, &mailintakev1.AckMessagesRequest{MessageIds: batch})
		if err != nil {
			l.mu.Lock()
			l.ackErrors = append(l.ackErrors, err.Error())
			l.mu.Unlock()
			return err
		}
		l.confirm(resp.GetAcknowledgedIds())
		l.mu.Lock()
		l.unknown = append(l.unknown, resp.GetUnknownIds()...)
		l.mu.Unlock()
		return nil
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case id := <-ids:
			if rng.Float64() < ackP {
				pending = append(pending, id)
			}
			if len(pending) >= batch {
				if err := flush(); err != nil {
					return err
				}
			}
		case <-tick.C:
			if err := flush(); err != nil {
				return err
			}
		case err := <-recvErr:
			flush()
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// deliveriesOf returns how many times each subject was delivered.
func (l *ledger) deliveriesOf() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for id, s := range l.subject {
		out[s] += l.delivered[id]
	}
	return out
}

// drain consumes and acknowledges everything until no message has come for quiet.
func drain(t *testing.T, c *client.Client, l *ledger, quiet time.Duration, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	last := make(chan struct{}, 1)
	counting := &countingLedger{ledger: l, ping: last}
	go func() {
		rng := rand.New(rand.NewPCG(7, 7))
		for ctx.Err() == nil {
			consumeCounting(ctx, c, counting, rng)
			time.Sleep(200 * time.Millisecond)
		}
	}()
	timer := time.NewTimer(quiet)
	for {
		select {
		case <-last:
			timer.Reset(quiet)
		case <-timer.C:
			return
		case <-ctx.Done():
			t.Fatalf("still receiving messages after %s", timeout)
		}
	}
}

type countingLedger struct {
	*ledger
	ping chan struct{}
}

func consumeCounting(ctx context.Context, c *client.Client, l *countingLedger, rng *rand.Rand) {
	stream, err := c.Messages.StreamMessages(ctx, &mailintakev1.StreamMessagesRequest{MaxInFlight: 64})
	if err != nil {
		return
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return
		}
		l.deliver(resp.GetMessage())
		select {
		case l.ping <- struct{}{}:
		default:
		}
		id := resp.GetMessage().GetId()
		l.sent([]string{id})
		if r, err := c.Messages.AckMessages(ctx, &mailintakev1.AckMessagesRequest{MessageIds: []string{id}}); err == nil {
			l.confirm(r.GetAcknowledgedIds())
		}
	}
}

func faultMails(n int, prefix string) ([][]byte, []string) {
	raws := make([][]byte, n)
	subjects := make([]string, n)
	for i := range n {
		subjects[i] = fmt.Sprintf("%s %05d", prefix, i)
		raws[i] = []byte(fmt.Sprintf("From: Customer <c%d@example.net>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s.%d@example.net>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nBody of %s\r\n",
			i, dvUser, subjects[i], strings.ReplaceAll(prefix, " ", "-"), i, subjects[i]))
	}
	return raws, subjects
}

// checkAll asserts that every subject was delivered and acknowledged.
func checkAll(t *testing.T, l *ledger, subjects []string) {
	t.Helper()
	delivered, acked := l.subjects()
	var lost, unacked []string
	for _, s := range subjects {
		if !delivered[s] {
			lost = append(lost, s)
		} else if !acked[s] {
			unacked = append(unacked, s)
		}
	}
	sort.Strings(lost)
	if len(lost) > 0 {
		t.Errorf("%d messages never delivered, e.g. %v", len(lost), lost[:min(5, len(lost))])
	}
	if len(unacked) > 0 {
		t.Errorf("%d messages delivered but never acknowledged after the drain, e.g. %v", len(unacked), unacked[:min(5, len(unacked))])
	}
	l.check(t)
}

// TestFaultKillDuringStream SIGKILLs the server at random points of a stream of messages
// (acknowledgements in flight, batches half sent), restarts it, and repeats with different seeds.
// It runs on the embedded SQLite store and on PostgreSQL (a private server).
func TestFaultKillDuringStream(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { killDuringStream(t, envInt("MAILINTAKE_FAULT_SEEDS", 20)) })
	t.Run("postgres", func(t *testing.T) {
		pg := pgserver.Start(t)
		killDuringStream(t, max(envInt("MAILINTAKE_FAULT_SEEDS", 20)/2, 1), "--database-url", pg.CreateDatabase(t, ""))
	})
}

func killDuringStream(t *testing.T, seeds int, storeArgs ...string) {
	n := envInt("MAILINTAKE_FAULT_MESSAGES", 1000)
	dv := dovecot.Start(t, map[string]string{dvUser: dvPass})
	raws, subjects := faultMails(n, "kill")
	dv.DeliverMany(t, dvUser, raws)
	data := t.TempDir()
	d := startDaemon(t, data, storeArgs...)
	g := []string{"--addr", d.addr, "--data-dir", data}
	addDovecotMailbox(t, g, dv, dvUser, "--start-from", "all", "--after-ack", "mark-seen")
	l := newLedger()
	for seed := 1; seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 42))
		c := adminClient(t, d, data)
		ctx, cancel := context.WithCancel(context.Background())
		req := &mailintakev1.StreamMessagesRequest{MaxInFlight: uint32(1 + rng.IntN(64))}
		done := make(chan error, 1)
		go func() { done <- consume(ctx, c, req, l, rng, 0.6+0.4*rng.Float64(), 1+rng.IntN(16)) }()
		time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
		d.cmd.Process.Kill() // SIGKILL, wherever the server is
		d.cmd.Wait()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("seed %d: the consumer did not notice the crash", seed)
		}
		cancel()
		d = startDaemon(t, data, storeArgs...)
	}
	c := adminClient(t, d, data)
	drain(t, c, l, 3*time.Second, 3*time.Minute)
	checkAll(t, l, subjects)
	eventually(t, "every message \\Seen on Dovecot", func() bool { m, u := dv.Status(t, dvUser, "INBOX"); return m == n && u == 0 })
	l.mu.Lock()
	redelivered := 0
	for _, k := range l.delivered {
		redelivered += k - 1
	}
	l.mu.Unlock()
	t.Logf("%d messages, %d crashes: %d redeliveries of unacknowledged messages", n, seeds, redelivered)
}

// cutProxy forwards TCP connections to a target and can cut every open connection at once, as
// a network failure or a server-side reset does.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cuts   int
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// open returns how many connections the proxy holds (including any closed by their ends).
func (p *cutProxy) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

// cut closes every connection open now; new ones are accepted.
func (p *cutProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.cuts++
	return n
}

func mailboxState(t *testing.T, c *client.Client, id string) *mailintakev1.MailboxStatus {
	t.Helper()
	st, err := c.Mailboxes.GetMailboxStatus(context.Background(), &mailintakev1.GetMailboxStatusRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	return st.GetStatus()
}

// TestFaultConnectionCut cuts the IMAP connection in the middle of FETCHes (large messages
// streaming) and in the middle of IDLE, then stops and starts Dovecot, and checks that the session recovers by itself, loses
// nothing and redelivers nothing acknowledged.
func TestFaultConnectionCut(t *testing.T) {
	dv := dovecot.Start(t, map[string]string{dvUser: dvPass})
	proxy := newCutProxy(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(dv.IMAPSPort)))
	const n = 60
	raws, subjects := faultMails(n, "cut")
	filler := strings.Repeat("All work and no play makes Jack a dull boy.\r\n", 8000) // ~360 KB
	for i := range raws {
		raws[i] = append(raws[i], filler...)
	}
	dv.DeliverMany(t, dvUser, raws)
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	id := addMailboxAt(t, g, dv, dvUser, proxy.port(), dvPass, "--provider", "basic", "--password-stdin", "--start-from", "all", "--after-ack", "mark-seen")
	c := adminClient(t, d, data)
	l := newLedger()

	// Mid-FETCH: cut while the bodies stream.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		rng := rand.New(rand.NewPCG(1, 1))
		for ctx.Err() == nil {
			consume(ctx, c, &mailintakev1.StreamMessagesRequest{MaxInFlight: 4}, l, rng, 1, 1)
		}
	}()
	cutsMidFetch := 0
	for range 5 {
		time.Sleep(300 * time.Millisecond)
		if proxy.cut() > 0 {
			cutsMidFetch++
		}
	}
	eventually(t, "all messages delivered after the cuts", func() bool {
		delivered, acked := l.subjects()
		return len(delivered) == n && len(acked) == n
	})
	cancel()
	if cutsMidFetch == 0 {
		t.Fatal("no connection was open to cut: the test did not test anything")
	}

	// Mid-IDLE: the session idles; cut, then new mail must still arrive.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() {
		rng := rand.New(rand.NewPCG(2, 2))
		for ctx2.Err() == nil {
			consume(ctx2, c, &mailintakev1.StreamMessagesRequest{MaxInFlight: 4}, l, rng, 1, 1)
		}
	}()
	// A cut of the first phase may have come after the last delivery: the session is then
	// waiting to reconnect. Cut once it idles on a new connection.
	eventually(t, "the session idling on a connection", func() bool {
		st := mailboxState(t, c, id)
		return proxy.open() > 0 && st.GetState() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE && st.GetMessage() == "watching for new mail"
	})
	if proxy.cut() == 0 {
		t.Fatal("no idle connection to cut")
	}
	late, lateSubjects := faultMails(3, "after the cut")
	dv.DeliverMany(t, dvUser, late)
	eventually(t, "mail sent after the IDLE cut delivered", func() bool {
		delivered, acked := l.subjects()
		for _, s := range lateSubjects {
			if !delivered[s] || !acked[s] {
				return false
			}
		}
		return true
	})
	// Dovecot stopped and started: every connection drops and logins fail for a while.
	dv.Stop()
	time.Sleep(2 * time.Second)
	dv.Restart()
	restarted, restartedSubjects := faultMails(3, "after the restart")
	dv.DeliverMany(t, dvUser, restarted)
	eventually(t, "mail after Dovecot restarted", func() bool {
		acked := l.confirmedSubjects()
		for _, s := range restartedSubjects {
			if !acked[s] {
				return false
			}
		}
		return true
	})
	cancel2()
	checkAll(t, l, append(append(subjects, lateSubjects...), restartedSubjects...))
	eventually(t, "idle again", func() bool {
		return mailboxState(t, c, id).GetState() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE
	})
	eventually(t, "every message \\Seen", func() bool { _, u := dv.Status(t, dvUser, "INBOX"); return u == 0 })
	t.Logf("cut %d connections mid-FETCH and one mid-IDLE", cutsMidFetch)
}

// TestFaultUIDValidityChange recreates the watched folder under the server (its UIDVALIDITY
// changes) with the same messages in it plus new ones: the server resynchronises, does not
// deliver again what was acknowledged (recognised by content hash), and skips nothing.
func TestFaultUIDValidityChange(t *testing.T) {
	dv := dovecot.Start(t, map[string]string{dvUser: dvPass})
	if out, err := dv.Doveadm(nil, "mailbox", "create", "-u", dvUser, "Support"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	raws, subjects := faultMails(10, "uidvalidity")
	for _, r := range raws {
		dv.Deliver(t, dvUser, "Support", r)
	}
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	addDovecotMailbox(t, g, dv, dvUser, "--folder", "Support", "--start-from", "all", "--after-ack", "keep")
	c := adminClient(t, d, data)
	l := newLedger()
	l.idsMayChange = true

	// Acknowledge the first six, leave four delivered but unacknowledged.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	stream, err := c.Messages.StreamMessages(ctx, &mailintakev1.StreamMessagesRequest{MaxInFlight: 10})
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	for range 10 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		m := resp.GetMessage()
		l.deliver(m)
		if s := m.GetEnvelope().GetSubject(); s < subjects[6] {
			r, err := c.Messages.AckMessages(ctx, &mailintakev1.AckMessagesRequest{MessageIds: []string{m.GetId()}})
			if err != nil || len(r.GetAcknowledgedIds()) != 1 {
				t.Fatalf("ack: %v %v", r, err)
			}
			l.confirm(r.GetAcknowledgedIds())
			acked[s] = true
		}
	}
	cancel()
	if len(acked) != 6 {
		t.Fatalf("acknowledged %d, want 6", len(acked))
	}

	// Recreate the folder with the same ten messages and three new ones.
	dv.RecreateFolder(t, dvUser, "Support")
	newRaws, newSubjects := faultMails(3, "uidvalidity new")
	for _, r := range append(raws, newRaws...) {
		dv.Deliver(t, dvUser, "Support", r)
	}
	drain(t, c, l, 4*time.Second, time.Minute)
	checkAll(t, l, append(subjects, newSubjects...))
	counts := l.deliveriesOf()
	for _, s := range subjects[:6] {
		if counts[s] != 1 {
			t.Errorf("%q (acknowledged before the change) delivered %d times", s, counts[s])
		}
	}
	for _, s := range subjects[6:] {
		if counts[s] != 2 {
			t.Errorf("%q (unacknowledged at the change) delivered %d times, want 2", s, counts[s])
		}
	}
	if n, _ := dv.Status(t, dvUser, "Support"); n != 13 {
		t.Errorf("Support holds %d messages, want 13 (after_ack keep)", n)
	}
}

func rssKB(t *testing.T, pid int) int { return procStatusKB(t, pid, "VmRSS") }

// procStatusKB reads a field in kB of /proc/PID/status: VmRSS (resident now), VmHWM (its peak).
func procStatusKB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestFaultUnrulyConsumers runs badly behaved consumers next to 50 good ones on one mailbox:
// one disconnects with messages in flight, one never acknowledges (a short ack deadline), one
// acknowledges ids that are unknown or another tenant's. At-least-once holds, the bad acks
// change nothing, and the server's memory stays bounded.
func TestFaultUnrulyConsumers(t *testing.T) {
	dv := dovecot.Start(t, map[string]string{dvUser: dvPass, "other@example.com": dvPass})
	const n = 500
	raws, subjects := faultMails(n, "unruly")
	dv.DeliverMany(t, dvUser, raws)
	otherRaws, otherSubjects := faultMails(5, "other tenant")
	dv.DeliverMany(t, "other@example.com", otherRaws)
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	rssStart := rssKB(t, d.cmd.Process.Pid)
	acmeID := addDovecotMailbox(t, g, dv, dvUser, "--start-from", "all", "--after-ack", "mark-seen")
	code, out, errs := cli(t, "", append(g, "token", "create", "--tenant", "globex")...)
	if code != 0 {
		t.Fatalf("token create: %s", errs)
	}
	globexToken := strings.TrimSpace(out)
	code, _, errs = cli(t, dvPass, append(g, "mailbox", "add", "--tenant", "globex", "--name", "Globex", "--host", "127.0.0.1",
		"--port", strconv.Itoa(dv.IMAPSPort), "--security", "tls", "--ca-file", dv.CACertFile(t), "--username", "other@example.com",
		"--provider", "basic", "--password-stdin", "--start-from", "all")...)
	if code != 0 {
		t.Fatalf("mailbox add: %s", errs)
	}
	c := adminClient(t, d, data)
	globex, err := client.Dial(d.addr, client.Options{Token: globexToken})
	if err != nil {
		t.Fatal(err)
	}
	defer globex.Close()
	l := newLedger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The other tenant's consumer takes its own five messages and holds them unacknowledged.
	gl := newLedger()
	gstream, err := globex.Messages.StreamMessages(ctx, &mailintakev1.StreamMessagesRequest{MaxInFlight: 10})
	if err != nil {
		t.Fatal(err)
	}
	var globexIDs []string
	for range 5 {
		resp, err := gstream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		gl.deliver(resp.GetMessage())
		globexIDs = append(globexIDs, resp.GetMessage().GetId())
	}

	// A consumer that disconnects with 20 messages in flight.
	dctx, dcancel := context.WithCancel(ctx)
	ds, err := c.Messages.StreamMessages(dctx, &mailintakev1.StreamMessagesRequest{MaxInFlight: 20})
	if err != nil {
		t.Fatal(err)
	}
	var dropped []string
	for range 20 {
		resp, err := ds.Recv()
		if err != nil {
			t.Fatal(err)
		}
		l.deliver(resp.GetMessage())
		dropped = append(dropped, resp.GetMessage().GetId())
	}
	dcancel()

	// A consumer that never acknowledges, with a two-second ack deadline.
	go func() {
		s, err := c.Messages.StreamMessages(ctx, &mailintakev1.StreamMessagesRequest{MaxInFlight: 10, AckDeadline: durationpb.New(2 * time.Second)})
		if err != nil {
			return
		}
		for {
			resp, err := s.Recv()
			if err != nil {
				return
			}
			l.deliver(resp.GetMessage())
		}
	}()

	// A consumer that acknowledges garbage and ids of messages that do not exist; and the other
	// tenant acknowledging acme's messages.
	k, _ := strings.CutSuffix(dropped[0], ":1")
	bad := []string{"garbage", "x:y:z", "00000000-0000-0000-0000-000000000000:1:1", strings.Repeat("9", 300), k + "7:1", k + ":99999"}
	r, err := c.Messages.AckMessages(ctx, &mailintakev1.AckMessagesRequest{MessageIds: bad})
	if err != nil || len(r.GetAcknowledgedIds()) != 0 || len(r.GetUnknownIds()) != len(bad) {
		t.Errorf("bogus acks: %v, %v; want every id unknown", r, err)
	}
	r2, err := globex.Messages.AckMessages(ctx, &mailintakev1.AckMessagesRequest{MessageIds: dropped})
	if err != nil || len(r2.GetAcknowledgedIds()) != 0 || len(r2.GetUnknownIds()) != len(dropped) {
		t.Errorf("another tenant acknowledged acme's messages: %v, %v", r2, err)
	}
	code, out, errs = cli(t, "", append(g, "token", "create", "--tenant", "acme")...)
	if code != 0 {
		t.Fatalf("token create: %s", errs)
	}
	acme, err := client.Dial(d.addr, client.Options{Token: strings.TrimSpace(out)})
	if err != nil {
		t.Fatal(err)
	}
	defer acme.Close()
	r3, err := acme.Messages.AckMessages(ctx, &mailintakev1.AckMessagesRequest{MessageIds: globexIDs})
	if err != nil || len(r3.GetAcknowledgedIds()) != 0 || len(r3.GetUnknownIds()) != len(globexIDs) {
		t.Errorf("acme acknowledged the other tenant's messages: %v, %v", r3, err)
	}

	var deadline time.Time
	// Fifty good consumers.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 9))
			for ctx.Err() == nil {
				consume(ctx, c, &mailintakev1.StreamMessagesRequest{MaxInFlight: uint32(1 + rng.IntN(8))}, l, rng, 1, 1+rng.IntN(4))
			}
		}()
	}
	deadline = time.Now().Add(2 * time.Minute)
	for {
		acked := l.confirmedSubjects()
		if len(acked) >= n {
			break
		}
		if time.Now().After(deadline) {
			delivered, _ := l.subjects()
			counts := l.deliveriesOf()
			var missing []string
			for _, s := range subjects {
				if !acked[s] {
					missing = append(missing, fmt.Sprintf("%s×%d", s, counts[s]))
				}
			}
			t.Fatalf("after 2 minutes %d of %d delivered, %d acknowledged; unacknowledged: %v", len(delivered), n, len(acked), missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rssEnd := rssKB(t, d.cmd.Process.Pid)
	cancel()
	wg.Wait()
	checkAll(t, l, subjects)
	counts := l.deliveriesOf()
	for _, id := range dropped {
		l.mu.Lock()
		s := l.subject[id]
		l.mu.Unlock()
		if counts[s] < 2 {
			t.Errorf("%q was in flight on the dropped stream and not delivered again", s)
		}
	}
	// The other tenant's messages were acknowledged by nobody: they are still unseen.
	if _, u := dv.Status(t, "other@example.com", "INBOX"); u != len(otherSubjects) {
		t.Errorf("the other tenant's INBOX has %d unseen, want %d", u, len(otherSubjects))
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		_, u := dv.Status(t, dvUser, "INBOX")
		if u == 0 {
			break
		}
		if time.Now().After(deadline) {
			var lines []string
			for _, line := range strings.Split(d.logs.String(), "\n") {
				if !strings.Contains(line, "msg=rpc") {
					lines = append(lines, line)
				}
			}
			_, status, _ := cli(t, "", append(g, "mailbox", "status", acmeID)...)
			_, events, _ := cli(t, "", append(g, "mailbox", "events", acmeID)...)
			t.Fatalf("%d acme messages still unseen 20 s after their acks\nstatus:\n%s\nevents:\n%s\ndaemon log:\n%s", u, status, events, strings.Join(lines[max(0, len(lines)-20):], "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("RSS %d KB at start, %d KB with 53 streams after %d messages", rssStart, rssEnd, n)
	l.mu.Lock()
	for _, id := range l.unknown {
		t.Logf("ack answered unknown: %s (%q, delivered %d times)", id, l.subject[id], l.delivered[id])
	}
	l.mu.Unlock()
	if rssEnd > 512*1024 {
		t.Errorf("RSS %d KB: memory is not bounded", rssEnd)
	}
}

// tmpfsDir mounts a small tmpfs for the server's data directory, so the test can fill the disk
// under a running server. It needs root (CI runs as root); without it
// the test fails and says so.
func tmpfsDir(t *testing.T, size string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mailintake-tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a tmpfs for the data directory needs root: %v: %s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("umount", "-l", dir).Run()
		os.RemoveAll(dir)
	})
	return dir
}

// TestFaultDiskFull fills the server's disk while mail arrives and consumers acknowledge:
// acknowledgements that cannot be recorded are refused (not confirmed), nothing is lost, the
// status says what is wrong, and the server recovers by itself when space is freed. (A
// read-only remount cannot be injected under a running server: Linux refuses it while files are
// open for writing.)
func TestFaultDiskFull(t *testing.T) {
	dv := dovecot.Start(t, map[string]string{dvUser: dvPass})
	data := tmpfsDir(t, "64m")
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	id := addDovecotMailbox(t, g, dv, dvUser, "--start-from", "all", "--after-ack", "mark-seen")
	c := adminClient(t, d, data)
	l := newLedger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		rng := rand.New(rand.NewPCG(3, 3))
		for ctx.Err() == nil {
			consume(ctx, c, &mailintakev1.StreamMessagesRequest{MaxInFlight: 8}, l, rng, 1, 4)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	var all []string
	batch := func(prefix string) {
		raws, subjects := faultMails(10, prefix)
		for _, r := range raws {
			dv.Deliver(t, dvUser, "INBOX", r)
		}
		all = append(all, subjects...)
	}
	allAcked := func() bool {
		_, acked := l.subjects()
		l.mu.Lock()
		defer l.mu.Unlock()
		confirmed := map[string]bool{}
		for id := range l.confirmed {
			confirmed[l.subject[id]] = true
		}
		for _, s := range all {
			if !acked[s] || !confirmed[s] {
				return false
			}
		}
		return true
	}
	batch("before")
	eventually(t, "the first mail acknowledged", allAcked)

	filler := filepath.Join(data, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break // ENOSPC: the disk is full
		}
	}
	f.Close()
	// Mail keeps arriving until an acknowledgement cannot be recorded (SQLite's write-ahead
	// log may have room for a few).
	bit := false
	for i := 0; i < 20 && !bit; i++ {
		batch(fmt.Sprintf("during %02d", i))
		time.Sleep(500 * time.Millisecond)
		l.mu.Lock()
		bit = len(l.ackErrors) > 0
		l.mu.Unlock()
	}
	if !bit {
		t.Fatal("the full disk never refused an acknowledgement: the fault did not bite")
	}
	l.mu.Lock()
	ackErr := l.ackErrors[0]
	l.mu.Unlock()
	if !strings.Contains(ackErr, "code = Unavailable") || !strings.Contains(ackErr, "disk is full") {
		t.Errorf("an ack on a full disk failed with %q, want Unavailable saying the disk is full", ackErr)
	}
	st := mailboxState(t, c, id)
	if !strings.Contains(st.GetLastError(), "disk is full") {
		t.Errorf("status while the disk is full: %s %q, last error %q; want the full disk named", st.GetState(), st.GetMessage(), st.GetLastError())
	}
	t.Logf("disk full: ack refused with %q; status last error %q", ackErr, st.GetLastError())
	os.Remove(filler)
	batch("after")
	eventually(t, "recovery after the disk was full", allAcked)
	cancel()
	checkAll(t, l, all)
	eventually(t, "every message \\Seen", func() bool { _, u := dv.Status(t, dvUser, "INBOX"); return u == 0 })
	if d.cmd.ProcessState != nil {
		t.Fatalf("the server exited: %s", d.logs.String())
	}
}

var (
	fakeOnce sync.Once
	fakeErr  error
)

// faultBins builds the binaries and adds the fake auth provider to the plugin directory.
func faultBins(t *testing.T) string {
	t.Helper()
	dir := bins(t)
	fakeOnce.Do(func() {
		fakeErr = goBuild("", "-o", filepath.Join(dir, "mailintake-auth-fake"), "./internal/fakes/fakeprovider/cmd/mailintake-auth-fake")
	})
	if fakeErr != nil {
		t.Fatal(fakeErr)
	}
	return dir
}

// TestFaultPlugin makes the auth provider crash, hang past its deadline and answer garbage
// under a running server. A mailbox whose cached credential is still valid keeps working (even
// across a reconnection); one that needs a new credential shows the reason; a mailbox of
// another provider is unaffected; and when the provider behaves again, the host restarts it
// and the mailbox recovers by itself.
func TestFaultPlugin(t *testing.T) {
	faultBins(t)
	users := map[string]string{"cached@example.com": dvPass, "fresh@example.com": dvPass, "basic@example.com": dvPass}
	dv := dovecot.Start(t, users)
	proxy := newCutProxy(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(dv.IMAPSPort)))
	data := t.TempDir()
	control := filepath.Join(t.TempDir(), "behavior")
	d := startDaemon(t, data, "--plugin-timeout", "2s")
	g := []string{"--addr", d.addr, "--data-dir", data}
	fake := []string{"--provider", "fake", "--secret-stdin", "--secret-field", "login_password", "--config", "control=" + control}
	cached := addMailboxAt(t, g, dv, "cached@example.com", proxy.port(), dvPass, append(fake, "--config", "ttl=1h", "--start-from", "all")...)
	fresh := addMailboxAt(t, g, dv, "fresh@example.com", dv.IMAPSPort, dvPass, append(fake, "--config", "ttl=4s", "--start-from", "all")...)
	basic := addMailboxAt(t, g, dv, "basic@example.com", dv.IMAPSPort, dvPass, "--start-from", "all", "--provider", "basic", "--password-stdin")
	c := adminClient(t, d, data)
	l := newLedger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		rng := rand.New(rand.NewPCG(5, 5))
		for ctx.Err() == nil {
			consume(ctx, c, &mailintakev1.StreamMessagesRequest{MaxInFlight: 8}, l, rng, 1, 1)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	var all []string
	send := func(user, what string) string {
		raws, subjects := faultMails(1, what+" to "+user)
		dv.Deliver(t, user, "INBOX", raws[0])
		all = append(all, subjects...)
		return subjects[0]
	}
	arrived := func(subjects ...string) func() bool {
		return func() bool {
			acked := l.confirmedSubjects()
			for _, s := range subjects {
				if !acked[s] {
					return false
				}
			}
			return true
		}
	}
	for u := range users {
		send(u, "first")
	}
	eventually(t, "the first mail of every mailbox", arrived(all...))

	for _, fault := range []string{"crash", "hang", "garbage"} {
		if err := os.WriteFile(control, []byte(fault), 0o644); err != nil {
			t.Fatal(err)
		}
		// The mailbox with a valid cached credential keeps working, even after its connection
		// drops and it signs in again.
		proxy.cut()
		a := send("cached@example.com", fault)
		b := send("basic@example.com", fault)
		eventually(t, "mail with a cached credential while the provider is broken ("+fault+")", arrived(a, b))
		if cs := mailboxState(t, c, cached); cs.GetState() == mailintakev1.MailboxState_MAILBOX_STATE_ERROR || cs.GetState() == mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED {
			t.Errorf("provider %s: the mailbox with a cached credential is %s %q", fault, cs.GetState(), cs.GetLastError())
		}
		// The mailbox that needs a new credential says why it cannot get one.
		var st *mailintakev1.MailboxStatus
		deadline := time.Now().Add(30 * time.Second)
		for {
			st = mailboxState(t, c, fresh)
			if st.GetState() == mailintakev1.MailboxState_MAILBOX_STATE_ERROR || st.GetState() == mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("provider %s: the mailbox needing a new credential stayed %s %q", fault, st.GetState(), st.GetMessage())
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("provider %s: status %s %q, last error %q", fault, st.GetState(), st.GetMessage(), st.GetLastError())
		want := map[string]string{"crash": "plugin failed", "hang": "did not answer within", "garbage": "unusable credential"}[fault]
		if !strings.Contains(st.GetLastError(), want) {
			t.Errorf("provider %s: last error %q does not say %q", fault, st.GetLastError(), want)
		}
		if bs := mailboxState(t, c, basic); bs.GetState() == mailintakev1.MailboxState_MAILBOX_STATE_ERROR || bs.GetState() == mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED {
			t.Errorf("provider %s broke the basic mailbox too: %s %q", fault, bs.GetState(), bs.GetLastError())
		}
		// The provider behaves again: the host restarts it and the mailbox recovers by itself.
		if err := os.WriteFile(control, []byte("ok"), 0o644); err != nil {
			t.Fatal(err)
		}
		f := send("fresh@example.com", "after "+fault)
		eventually(t, "recovery after the provider's "+fault, arrived(f))
	}
	cancel()
	checkAll(t, l, all)
	if n := strings.Count(d.logs.String(), `msg="auth provider plugin started" component=pluginhost provider=fake`); n < 2 {
		t.Errorf("the fake provider was started %d times; a crash or hang should restart it", n)
	}
}

// TestFaultAuth: access tokens that expire mid-session, a revoked refresh token (the stored
// password gets a new one), then a password changed at the identity provider; and for a basic
// mailbox, a password changed on the mail server. Mail keeps flowing while recovery is
// possible; otherwise the status says precisely what failed and the server does not hammer
// the account (a bounded number of failed sign-ins, then a long wait).
func TestFaultAuth(t *testing.T) {
	const (
		tenant = "11111111-2222-3333-4444-555555555555"
		app    = "aaaaaaaa-0000-0000-0000-000000000001"
		m365   = "help@contoso.onmicrosoft.com"
		m365pw = "M365-pw-1"
		local  = "local@example.com"
	)
	p := idp.New(tenant, "contoso.onmicrosoft.com")
	p.AddUser(idp.User{UPN: m365, Password: m365pw})
	p.AddApp(idp.App{ClientID: app, PublicFlows: true})
	hs := httptest.NewServer(p)
	defer hs.Close()
	dv := dovecot.StartWith(t, dovecot.Options{Users: map[string]string{m365: "unused", local: dvPass}, IntrospectionURL: hs.URL + "/introspect"})
	proxy := newCutProxy(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(dv.IMAPSPort)))
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	p.SetAccessTTL(3 * time.Second)
	ropc := addMailboxAt(t, g, dv, m365, dv.IMAPSPort, m365pw, "--start-from", "all", "--provider", "o365", "--password-stdin", "--config", "tenant_id="+tenant,
		"--config", "authority="+hs.URL, "--config", "client_id="+app)
	basic := addMailboxAt(t, g, dv, local, proxy.port(), dvPass, "--start-from", "all", "--provider", "basic", "--password-stdin")
	c := adminClient(t, d, data)
	l := newLedger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		rng := rand.New(rand.NewPCG(6, 6))
		for ctx.Err() == nil {
			consume(ctx, c, &mailintakev1.StreamMessagesRequest{MaxInFlight: 8}, l, rng, 1, 1)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	var all []string
	send := func(user, what string) string {
		raws, subjects := faultMails(1, what)
		dv.Deliver(t, user, "INBOX", raws[0])
		all = append(all, subjects...)
		return subjects[0]
	}
	arrived := func(s string) func() bool { return func() bool { return l.confirmedSubjects()[s] } }

	// Access tokens of 3 s expire again and again mid-session: mail keeps arriving.
	for i := range 4 {
		eventually(t, "mail across token expiries", arrived(send(m365, fmt.Sprintf("m365 %d", i))))
		time.Sleep(2 * time.Second)
	}
	if n := p.Count("password"); n != 1 {
		t.Errorf("the password was used %d times across expiries, want once (then refresh tokens)", n)
	}
	// A revoked refresh token: the stored password gets a new one, once.
	p.RevokeRefreshTokens(m365)
	time.Sleep(4 * time.Second)
	eventually(t, "mail after the refresh token was revoked", arrived(send(m365, "m365 after revocation")))
	if n := p.Count("password"); n != 2 {
		t.Errorf("after the revocation the password was used %d times in all, want 2", n)
	}
	// The password changed at Microsoft, and the refresh token revoked: nothing can sign in.
	p.SetPassword(m365, "changed-by-the-user")
	p.RevokeRefreshTokens(m365)
	before := p.Count("password")
	var st *mailintakev1.MailboxStatus
	eventually(t, "auth_failed after the M365 password changed", func() bool {
		st = mailboxState(t, c, ropc)
		return st.GetState() == mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED
	})
	time.Sleep(10 * time.Second)
	if n := p.Count("password") - before; n > 2 {
		t.Errorf("%d password sign-ins within 10 s of the failure: the account would be locked", n)
	}
	st = mailboxState(t, c, ropc)
	af := st.GetAuthFailure()
	t.Logf("o365 after the password change: %s %q, %s %q; action %q; next retry %s", st.GetState(), st.GetMessage(), af.GetProviderCode(), af.GetMessage(), af.GetAction(), st.GetNextRetryTime().AsTime().Format(time.RFC3339))
	if af.GetProviderCode() != "AADSTS50126" || af.GetAction() == "" || af.GetReason() != mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_INVALID_CREDENTIALS {
		t.Errorf("auth failure = %v; want AADSTS50126 (invalid credentials) with an action", af)
	}
	if next := st.GetNextRetryTime().AsTime(); time.Until(next) < 10*time.Minute {
		t.Errorf("next retry at %s: too soon for a refused password", next)
	}

	// Basic: the password changed on the mail server; the connection drops and the server
	// must sign in again.
	eventually(t, "basic mail", arrived(send(local, "basic before")))
	dv.SetPassword(t, local, "changed-on-the-server")
	logBefore := dv.AuthFailures(t)
	proxy.cut()
	eventually(t, "auth_failed after the server-side password change", func() bool {
		return mailboxState(t, c, basic).GetState() == mailintakev1.MailboxState_MAILBOX_STATE_AUTH_FAILED
	})
	time.Sleep(10 * time.Second)
	if n := dv.AuthFailures(t) - logBefore; n < 1 || n > 2 {
		t.Errorf("%d failed sign-ins on the mail server within 10 s, want 1 or 2", n)
	}
	bs := mailboxState(t, c, basic)
	t.Logf("basic after the password change: %s %q, %q; next retry %s", bs.GetState(), bs.GetMessage(), bs.GetAuthFailure().GetMessage(), bs.GetNextRetryTime().AsTime().Format(time.RFC3339))
	if bs.GetAuthFailure().GetReason() != mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_INVALID_CREDENTIALS || bs.GetAuthFailure().GetAction() == "" {
		t.Errorf("basic auth failure = %v", bs.GetAuthFailure())
	}
	// The admin enters the new password: the mailbox recovers at once.
	code, _, errs := cli(t, "changed-on-the-server", append(g, "mailbox", "update", basic, "--password-stdin")...)
	if code != 0 {
		t.Fatalf("mailbox update: %s", errs)
	}
	eventually(t, "basic mail after the new password", arrived(send(local, "basic after")))
	cancel()
	l.check(t)
}

// TestFaultSecretsNeverLeak runs o365 (password and client-secret flows, tokens that expire and
// rotate, a revoked refresh token) and basic mailboxes (one with a wrong password) through the
// real binaries at the debug log level, then makes the plugins and the server dump their
// goroutines (SIGQUIT, as a crash does), and scans for every known secret value: passwords,
// the client secret, every access and refresh token the identity platform issued, and the API
// tokens. They must not appear in the logs, in any CLI output (responses, errors, status, the
// event log) or anywhere in the data directory (the database and its journal).
func TestFaultSecretsNeverLeak(t *testing.T) {
	const (
		tenant   = "11111111-2222-3333-4444-555555555555"
		public   = "aaaaaaaa-0000-0000-0000-000000000001"
		conf     = "aaaaaaaa-0000-0000-0000-000000000002"
		secret   = "Client~Secret~Value~0123456789"
		m365     = "help@contoso.onmicrosoft.com"
		appBox   = "app@contoso.onmicrosoft.com"
		m365pw   = "M365-Password-Value-98765"
		local    = "local@example.com"
		localPw  = "Dovecot-Password-Value-24680"
		wrongPw  = "Wrong-Password-Value-13579"
		wrongBox = "wrong@example.com"
	)
	p := idp.New(tenant, "contoso.onmicrosoft.com")
	p.AddUser(idp.User{UPN: m365, Password: m365pw})
	p.AddApp(idp.App{ClientID: public, PublicFlows: true})
	p.AddApp(idp.App{ClientID: conf, Secret: secret, AppOnlyUsers: []string{appBox}})
	hs := httptest.NewServer(p)
	defer hs.Close()
	dv := dovecot.StartWith(t, dovecot.Options{Users: map[string]string{m365: "unused", appBox: "unused", local: localPw, wrongBox: localPw}, IntrospectionURL: hs.URL + "/introspect"})
	data := t.TempDir()
	d := startDaemon(t, data) // --log-level debug
	g := []string{"--addr", d.addr, "--data-dir", data}
	var outputs strings.Builder
	run := func(stdin string, args ...string) {
		_, out, errs := cli(t, stdin, append(append([]string{}, g...), args...)...)
		outputs.WriteString(out + errs)
	}
	p.SetAccessTTL(3 * time.Second)
	o365 := []string{"--provider", "o365", "--config", "tenant_id=" + tenant, "--config", "authority=" + hs.URL}
	ids := []string{
		addMailboxAt(t, g, dv, m365, dv.IMAPSPort, m365pw, append(o365, "--config", "client_id="+public, "--password-stdin", "--start-from", "all")...),
		addMailboxAt(t, g, dv, appBox, dv.IMAPSPort, secret, append(o365, "--config", "client_id="+conf, "--config", "flow=client_credentials", "--secret-stdin", "--start-from", "all")...),
		addMailboxAt(t, g, dv, local, dv.IMAPSPort, localPw, "--start-from", "all", "--provider", "basic", "--password-stdin"),
		addMailboxAt(t, g, dv, wrongBox, dv.IMAPSPort, wrongPw, "--start-from", "all", "--provider", "basic", "--password-stdin"),
	}
	for _, u := range []string{m365, appBox, local, wrongBox} {
		raws, _ := faultMails(1, "for "+u)
		dv.Deliver(t, u, "INBOX", raws[0])
	}
	_, tok, _ := cli(t, "", append(g, "token", "create", "--tenant", "acme")...)
	apiToken := strings.TrimSpace(tok)
	run("", "tail", "--ack", "--limit", "3", "--timeout", "20s")
	time.Sleep(7 * time.Second) // tokens expire and are refreshed
	p.RevokeRefreshTokens(m365)
	time.Sleep(4 * time.Second) // the stored password gets a new refresh token
	// Every read an admin or a PSA makes, including errors.
	run("", "mailbox", "list", "--json")
	for _, id := range ids {
		run("", "mailbox", "get", id, "--json")
		run("", "mailbox", "status", id, "--json")
		run("", "mailbox", "events", id, "--json")
		run("", "mailbox", "test", id)
	}
	run(wrongPw, "mailbox", "test", "--host", "127.0.0.1", "--port", strconv.Itoa(dv.IMAPSPort), "--ca-file", dv.CACertFile(t),
		"--username", wrongBox, "--provider", "basic", "--password-stdin")
	run("", "providers")
	run("", "token", "list")

	// Crash output: the plugins and the server dump every goroutine's stack.
	for _, line := range strings.Split(d.logs.String(), "\n") {
		if i := strings.Index(line, "msg=\"auth provider plugin started\""); i >= 0 {
			if _, after, ok := strings.Cut(line, " pid="); ok {
				pid, _ := strconv.Atoi(strings.Fields(after)[0])
				if pid > 0 {
					syscall.Kill(pid, syscall.SIGQUIT)
				}
			}
		}
	}
	time.Sleep(time.Second)
	d.cmd.Process.Signal(syscall.SIGQUIT)
	d.cmd.Wait()
	logs := d.logs.String()
	if !strings.Contains(logs, "goroutine ") {
		t.Fatalf("no goroutine dump in the server's output: the crash was not exercised")
	}

	issued := p.Issued()
	if len(issued) < 6 {
		t.Fatalf("the identity platform issued only %d tokens", len(issued))
	}
	admin, _ := os.ReadFile(filepath.Join(data, "admin.token"))
	known := map[string]string{"M365 password": m365pw, "client secret": secret, "mail server password": localPw,
		"wrong password": wrongPw, "API token": apiToken, "admin token": strings.TrimSpace(string(admin))}
	for i, tok := range issued {
		known[fmt.Sprintf("OAuth token %d", i)] = tok
	}
	var dataFiles strings.Builder
	filepath.WalkDir(data, func(path string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() && filepath.Base(path) != "admin.token" {
			b, _ := os.ReadFile(path)
			dataFiles.Write(b)
		}
		return nil
	})
	for what, value := range known {
		if value == "" {
			t.Fatalf("%s is empty", what)
		}
		for where, text := range map[string]string{"server and plugin logs (debug) and crash dumps": logs, "CLI output": outputs.String(), "data directory": dataFiles.String()} {
			if strings.Contains(text, value) {
				t.Errorf("the %s appears in the %s", what, where)
			}
		}
	}
	t.Logf("scanned %d known secrets over %d KB of logs, %d KB of CLI output and %d KB of data files", len(known), len(logs)/1024, outputs.Len()/1024, dataFiles.Len()/1024)
}

// TestFaultHostileIMAP points mailboxes at IMAP servers that misbehave on purpose (truncated
// and huge literals, a body far larger than its announced size, wrong UIDs, floods of
// unsolicited and malformed responses, garbage): the server must not crash, must not grow
// without bound, and must keep serving its other mailboxes.
func TestFaultHostileIMAP(t *testing.T) {
	dv := dovecot.Start(t, map[string]string{dvUser: dvPass})
	data := t.TempDir()
	d := startDaemon(t, data)
	g := []string{"--addr", d.addr, "--data-dir", data}
	good := addDovecotMailbox(t, g, dv, dvUser, "--start-from", "all")
	c := adminClient(t, d, data)
	ids := map[imapscript.Mode]string{}
	servers := map[imapscript.Mode]*imapscript.Server{}
	for _, mode := range imapscript.Modes {
		s := imapscript.Start(t, mode)
		servers[mode] = s
		code, out, errs := cli(t, "pw", append(g, "mailbox", "add", "--tenant", "acme", "--name", string(mode), "--host", s.Host,
			"--port", strconv.Itoa(s.Port), "--security", "none", "--username", "u", "--provider", "basic", "--password-stdin",
			"--start-from", "all", "--json")...)
		if code != 0 {
			t.Fatalf("mailbox add %s: %s", mode, errs)
		}
		var mb struct {
			ID string `json:"id"`
		}
		jsonUnmarshal(out, &mb)
		ids[mode] = mb.ID
	}
	l := newLedger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		rng := rand.New(rand.NewPCG(8, 8))
		for ctx.Err() == nil {
			consume(ctx, c, &mailintakev1.StreamMessagesRequest{MaxInFlight: 8}, l, rng, 1, 1)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	peak := 0
	for range 40 { // 20 s of hostility
		time.Sleep(500 * time.Millisecond)
		if d.cmd.ProcessState != nil || syscall.Kill(d.cmd.Process.Pid, 0) != nil {
			t.Fatalf("the server died:\n%s", tail(d.logs.String(), 40))
		}
		peak = max(peak, rssKB(t, d.cmd.Process.Pid))
	}
	// The well-behaved mailbox still works.
	raws, subjects := faultMails(1, "next to hostile servers")
	dv.Deliver(t, dvUser, "INBOX", raws[0])
	eventually(t, "mail on the good mailbox", func() bool { return l.confirmedSubjects()[subjects[0]] })
	for _, mode := range imapscript.Modes {
		st := mailboxState(t, c, ids[mode])
		q, _ := c.Messages.ListQuarantinedMessages(context.Background(), &mailintakev1.ListQuarantinedMessagesRequest{MailboxId: ids[mode]})
		t.Logf("%-17s %s %q, last error %.160q; %d quarantined; %d body bytes sent", mode, st.GetState(), st.GetMessage(), st.GetLastError(), len(q.GetMessages()), servers[mode].BodyBytesSent())
		switch mode {
		case imapscript.HugeLiteral, imapscript.LyingSize:
			// Bodies over the limit, whatever size was announced, are quarantined with the reason.
			if len(q.GetMessages()) != 3 || !strings.Contains(q.GetMessages()[0].GetReason(), "over the limit") {
				t.Errorf("%s: quarantine %v, want the 3 oversized messages", mode, q.GetMessages())
			}
		case imapscript.LateUID:
			// Bodies the server does not name before sending them are not taken; the messages
			// are quarantined with the reason, not skipped in silence.
			if len(q.GetMessages()) != 3 || !strings.Contains(q.GetMessages()[0].GetReason(), "did not return the message's body") {
				t.Errorf("%s: quarantine %v, want the 3 messages whose bodies came unnamed", mode, q.GetMessages())
			}
		case imapscript.TruncatedLiteral, imapscript.Unsolicited, imapscript.Garbage:
			if st.GetLastError() == "" {
				t.Errorf("%s: no error in the status", mode)
			}
		}
	}
	l.mu.Lock()
	for id, subject := range l.subject {
		if strings.HasSuffix(id, ":1001") || strings.HasSuffix(id, ":4000000000") || strings.HasSuffix(id, ":0") {
			t.Errorf("a message under a UID the server was not asked for was delivered: %s %q", id, subject)
		}
	}
	l.mu.Unlock()
	if gs := mailboxState(t, c, good); gs.GetState() == mailintakev1.MailboxState_MAILBOX_STATE_ERROR {
		t.Errorf("the good mailbox is in error: %q", gs.GetLastError())
	}
	if strings.Contains(d.logs.String(), "panic") {
		t.Errorf("a panic in the server's log:\n%s", tail(d.logs.String(), 40))
	}
	t.Logf("peak RSS %d KB", peak)
	if peak > 400*1024 {
		t.Errorf("peak RSS %d KB: hostile servers made the server's memory grow without bound", peak)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestFaultSustainedLoad: 100 mailboxes receive mail steadily for two minutes
// (MAILINTAKE_FAULT_LOAD_SECONDS) while 5 consumers take it: every message is delivered and
// acknowledged, and the server's RSS is flat after the warm-up.
func TestFaultSustainedLoad(t *testing.T) {
	const boxes = 100
	seconds := envInt("MAILINTAKE_FAULT_LOAD_SECONDS", 120)
	users := map[string]string{}
	for i := range boxes {
		users[fmt.Sprintf("load%03d@example.com", i)] = dvPass
	}
	dv := dovecot.Start(t, users)
	data := t.TempDir()
	d := startDaemon(t, data, "--log-level", "info")
	g := []string{"--addr", d.addr, "--data-dir", data}
	for u := range users {
		addDovecotMailbox(t, g, dv, u, "--start-from", "all", "--after-ack", "mark-seen")
	}
	c := adminClient(t, d, data)
	l := newLedger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 5 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(i), 11))
			for ctx.Err() == nil {
				consume(ctx, c, &mailintakev1.StreamMessagesRequest{MaxInFlight: 16}, l, rng, 1, 8)
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	var all []string
	userOf := map[string]string{}
	rng := rand.New(rand.NewPCG(12, 12))
	var samples []int
	start := time.Now()
	next := 0
	for time.Since(start) < time.Duration(seconds)*time.Second {
		u := fmt.Sprintf("load%03d@example.com", rng.IntN(boxes))
		raws, subjects := faultMails(1+rng.IntN(3), fmt.Sprintf("load %05d", next))
		next++
		dv.DeliverMany(t, u, raws)
		all = append(all, subjects...)
		for _, s := range subjects {
			userOf[s] = u
		}
		time.Sleep(100 * time.Millisecond)
		if len(samples) < int(time.Since(start)/time.Second) {
			samples = append(samples, rssKB(t, d.cmd.Process.Pid))
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		acked := l.confirmedSubjects()
		missing := 0
		for _, s := range all {
			if !acked[s] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			counts := l.deliveriesOf()
			var which []string
			for _, s := range all {
				if !acked[s] {
					which = append(which, fmt.Sprintf("%s (%s, delivered %d times)", s, userOf[s], counts[s]))
				}
			}
			ids := map[string]string{}
			_, out, _ := cli(t, "", append(g, "mailbox", "list", "--json")...)
			var list struct {
				Mailboxes []struct {
					ID       string `json:"id"`
					Username string `json:"username"`
				} `json:"mailboxes"`
			}
			if err := jsonUnmarshal(out, &list); err != nil {
				t.Logf("mailbox list --json: %v", err)
			}
			for _, mb := range list.Mailboxes {
				ids[mb.Username] = mb.ID
			}
			var detail strings.Builder
			for _, w := range which[:min(3, len(which))] {
				u := userOf[strings.Split(w, " (")[0]]
				_, st, _ := cli(t, "", append(g, "mailbox", "status", ids[u])...)
				_, ev, _ := cli(t, "", append(g, "mailbox", "events", ids[u])...)
				m, un := dv.Status(t, u, "INBOX")
				fmt.Fprintf(&detail, "\n%s: dovecot %d messages, %d unseen\n%s\n%s", u, m, un, st, tail(ev, 12))
			}
			l.mu.Lock()
			fmt.Fprintf(&detail, "\nfailed AckMessages calls: %d %v; ids answered unknown: %d", len(l.ackErrors), l.ackErrors[:min(3, len(l.ackErrors))], len(l.unknown))
			l.mu.Unlock()
			t.Fatalf("%d of %d messages not acknowledged a minute after the load ended: %v%s", missing, len(all), which, detail.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	latency := time.Since(start) - time.Duration(seconds)*time.Second
	cancel()
	checkAll(t, l, all)
	l.mu.Lock()
	if len(l.ackErrors) > 0 {
		// No fault is injected here: an acknowledgement refused under steady load is a defect.
		t.Errorf("%d AckMessages calls failed under steady load, e.g. %v", len(l.ackErrors), l.ackErrors[0])
	}
	l.mu.Unlock()
	median := func(xs []int) int {
		s := append([]int(nil), xs...)
		sort.Ints(s)
		return s[len(s)/2]
	}
	n := len(samples)
	warm, end := median(samples[n/6:n/3]), median(samples[n*5/6:])
	t.Logf("%d mailboxes, %d messages in %d s (%.1f/s); drained %s after the load; RSS median %d KB after warm-up, %d KB at the end, peak %d KB",
		boxes, len(all), seconds, float64(len(all))/float64(seconds), latency.Round(time.Millisecond), warm, end, slices.Max(samples))
	if end > warm*3/2 {
		t.Errorf("RSS grew from %d KB to %d KB under steady load: not flat", warm, end)
	}
}
