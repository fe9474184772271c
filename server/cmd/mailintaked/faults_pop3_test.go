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
	for seed := 1; seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 43))
		c := adminClient(t, d, data)
		ctx, cancel := context.WithCancel(context.Background())
		req := &mailintakev1.StreamMessagesRequest{MaxInFlight: uint32(1 + rng.IntN(64))}
		done := make(chan error, 1)
		go func() { done <- consume(ctx, c, req, l, rng, 0.6+0.4*rng.Float64(), 1+rng.IntN(16)) }()
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		d.cmd.Process.Kill() // SIGKILL, wherever the server is
		d.cmd.Wait()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("seed %d: the consumer did not notice the crash", seed)
		}
		cancel()
		deletedBeforeAck(l, "after crash "+strconv.Itoa(seed))
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
	t.Logf("%d messages, %d crashes: %d redeliveries of unacknowledged messages; %d POP3 sessions, %d clean QUITs", n, seeds, redelivered, srv.Logins.Load(), srv.Updates.Load())
}
