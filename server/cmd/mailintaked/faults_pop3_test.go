//go:build faults

package main

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/pop3test"
	pgserver "github.com/mailintake/mailintake/internal/fakes/postgres"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// TestFaultKillDuringPOP3 SIGKILLs the server at random points while a POP3 mailbox (after_ack
// DELETE, on the in-process POP3 server run by the test) streams its maildrop to a consumer that
// acknowledges most messages, restarts it, and repeats. Nothing is lost, nothing whose ack was
// confirmed is delivered again, ids stay stable (mailbox + UIDL), and after every crash each
// message gone from the server had its acknowledgement sent before: nothing is deleted before
// its ack. At the end every message was delivered and acknowledged, and the maildrop is empty.
// It runs on the embedded SQLite store and on PostgreSQL (a private server).
func TestFaultKillDuringPOP3(t *testing.T) {
	seeds := envInt("MAILINTAKE_FAULT_SEEDS", 10)
	t.Run("sqlite", func(t *testing.T) { killDuringPOP3(t, seeds) })
	t.Run("postgres", func(t *testing.T) {
		pg := pgserver.Start(t)
		killDuringPOP3(t, max(seeds/2, 1), "--database-url", pg.CreateDatabase(t, ""))
	})
}

func killDuringPOP3(t *testing.T, seeds int, storeArgs ...string) {
	n := envInt("MAILINTAKE_FAULT_POP3_MESSAGES", 300)
	srv := pop3test.Start(t, pop3test.Options{})
	srv.AddUser(dvUser, dvPass)
	// A slow server: a session that reads the whole maildrop lasts over a second, so the kills
	// land in the middle of sessions (messages marked with DELE, QUIT not sent or not answered)
	// and not only between them.
	slow := func() {
		srv.ClearFaults()
		srv.Inject(pop3test.Fault{Command: "RETR", Action: pop3test.Stall, StallFor: 5 * time.Millisecond})
		srv.Inject(pop3test.Fault{Command: "DELE", Action: pop3test.Stall, StallFor: 2 * time.Millisecond})
	}
	slow()
	raws, subjects := faultMails(n, "pop")
	uidSubject := map[string]string{}
	for i, raw := range raws {
		uidSubject[srv.Add(dvUser, raw)] = subjects[i]
	}
	data := t.TempDir()
	d := startDaemon(t, data, storeArgs...)
	g := []string{"--addr", d.addr, "--data-dir", data}
	code, _, errs := cli(t, dvPass, append(g, "mailbox", "add", "--tenant", "acme", "--name", "POP", "--protocol", "pop3", "--host", "127.0.0.1",
		"--port", strconv.Itoa(srv.Port), "--security", "none", "--username", dvUser, "--provider", "basic", "--password-stdin",
		"--start-from", "all", "--after-ack", "delete", "--poll-interval", "5s")...)
	if code != 0 {
		t.Fatalf("mailbox add: %s", errs)
	}
	// deletedBeforeAck checks, with the server stopped, that every message gone from the
	// maildrop had its acknowledgement sent.
	deletedBeforeAck := func(l *ledger, when string) {
		t.Helper()
		left := map[string]bool{}
		for _, m := range srv.Messages(dvUser) {
			left[m.UID] = true
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		ackSent := map[string]bool{}
		for id := range l.ackSent {
			ackSent[l.subject[id]] = true
		}
		for uid, s := range uidSubject {
			if !left[uid] && !ackSent[s] {
				t.Errorf("%s: %q was deleted from the server without an acknowledgement", when, s)
			}
		}
	}
	l := newLedger()
	inSession := 0 // crashes while a POP3 session held the maildrop
	for seed := 1; seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 43))
		c := adminClient(t, d, data)
		ctx, cancel := context.WithCancel(context.Background())
		req := &mailintakev1.StreamMessagesRequest{MaxInFlight: uint32(1 + rng.IntN(64))}
		done := make(chan error, 1)
		before := deliveries(l)
		go func() { done <- consume(ctx, c, req, l, rng, 0.6+0.4*rng.Float64(), 1+rng.IntN(16)) }()
		// The kill comes after the seed's first delivery (or 3 s, when nothing is left to
		// deliver): on odd seeds at a random point of the next 1.2 s, on even ones within 30 ms
		// of a POP3 session holding the maildrop (between its login and its QUIT's answer).
		for wait := time.Now().Add(3 * time.Second); deliveries(l) == before && time.Now().Before(wait); {
			time.Sleep(5 * time.Millisecond)
		}
		if seed%2 == 1 {
			time.Sleep(time.Duration(rng.IntN(1200)) * time.Millisecond)
		} else {
			// Between a session's QUIT and its answer, with its DELEs marked: the server
			// holds the answer until the client is gone, then carries QUIT out.
			quits := srv.Commands("QUIT")
			srv.Inject(pop3test.Fault{Command: "QUIT", Action: pop3test.Stall, StallFor: 5 * time.Second, Times: 1})
			for wait := time.Now().Add(10 * time.Second); srv.Commands("QUIT") == quits && time.Now().Before(wait); {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		}
		if srv.Locked(dvUser) {
			inSession++
		}
		d.cmd.Process.Kill() // SIGKILL, wherever the server is
		d.cmd.Wait()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("seed %d: the consumer did not notice the crash", seed)
		}
		cancel()
		// The maildrop as the crash left it, once the server is done with the dead session.
		waitFor(t, "the maildrop unlocked", func() bool { return !srv.Locked(dvUser) })
		deletedBeforeAck(l, "after crash "+strconv.Itoa(seed))
		slow()
		d = startDaemon(t, data, storeArgs...)
	}
	c := adminClient(t, d, data)
	drain(t, c, l, 8*time.Second, 5*time.Minute)
	checkAll(t, l, subjects)
	eventually(t, "the maildrop emptied by the acknowledged deletions", func() bool { return len(srv.Messages(dvUser)) == 0 })
	l.mu.Lock()
	redelivered := 0
	for _, k := range l.delivered {
		redelivered += k - 1
	}
	l.mu.Unlock()
	t.Logf("%d messages, %d crashes (%d in the middle of a POP3 session): %d redeliveries of unacknowledged messages; %d POP3 sessions",
		n, seeds, inSession, redelivered, srv.Logins.Load())
	if inSession == 0 && seeds > 1 {
		t.Errorf("no crash landed in the middle of a POP3 session: the scenario tested nothing")
	}
}

// deliveries counts the deliveries the ledger saw.
func deliveries(l *ledger) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, k := range l.delivered {
		n += k
	}
	return n
}
