//go:build faults

package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailintake/mailintake/client"
	"github.com/mailintake/mailintake/internal/fakes/dovecot"
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
// with probability ackP (in batches of up to batch ids).
func consume(ctx context.Context, c *client.Client, req *mailintakev1.StreamMessagesRequest, l *ledger, rng *rand.Rand, ackP float64, batch int) error {
	stream, err := c.Messages.StreamMessages(ctx, req)
	if err != nil {
		return err
	}
	var pending []string
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		ids := pending
		pending = nil
		l.sent(ids)
		resp, err := c.Messages.AckMessages(ctx, &mailintakev1.AckMessagesRequest{MessageIds: ids})
		if err != nil {
			return err
		}
		l.confirm(resp.GetAcknowledgedIds())
		return nil
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			flush()
			return err
		}
		l.deliver(resp.GetMessage())
		if rng.Float64() < ackP {
			pending = append(pending, resp.GetMessage().GetId())
		}
		if len(pending) >= batch || rng.IntN(3) == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
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
func TestFaultKillDuringStream(t *testing.T) {
	n := envInt("MAILINTAKE_FAULT_MESSAGES", 1000)
	seeds := envInt("MAILINTAKE_FAULT_SEEDS", 20)
	dv := dovecot.Start(t, map[string]string{dvUser: dvPass})
	raws, subjects := faultMails(n, "kill")
	dv.DeliverMany(t, dvUser, raws)
	data := t.TempDir()
	d := startDaemon(t, data)
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
		d = startDaemon(t, data)
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

// addProxiedMailbox adds a Dovecot mailbox reached through a proxy (implicit TLS passes through).
func addProxiedMailbox(t *testing.T, g []string, dv *dovecot.Server, port int, extra ...string) string {
	t.Helper()
	args := append(append([]string{}, g...), "mailbox", "add", "--tenant", "acme", "--name", "proxied", "--host", "127.0.0.1",
		"--port", strconv.Itoa(port), "--security", "tls", "--ca-file", dv.CACertFile(t), "--username", dvUser,
		"--provider", "basic", "--password-stdin", "--json")
	code, out, errs := cli(t, dvPass, append(args, extra...)...)
	if code != 0 {
		t.Fatalf("mailbox add: %s", errs)
	}
	var mb struct {
		ID string `json:"id"`
	}
	if err := jsonUnmarshal(out, &mb); err != nil {
		t.Fatal(err)
	}
	return mb.ID
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
// streaming) and in the middle of IDLE, and checks that the session recovers by itself, loses
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
	id := addProxiedMailbox(t, g, dv, proxy.port(), "--start-from", "all", "--after-ack", "mark-seen")
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
	time.Sleep(time.Second)
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
	cancel2()
	checkAll(t, l, append(subjects, lateSubjects...))
	eventually(t, "idle again", func() bool {
		return mailboxState(t, c, id).GetState() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE
	})
	eventually(t, "every message \\Seen", func() bool { _, u := dv.Status(t, dvUser, "INBOX"); return u == 0 })
	t.Logf("cut %d connections mid-FETCH and one mid-IDLE", cutsMidFetch)
}
