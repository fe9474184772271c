//go:build ha

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	pgserver "github.com/mailintake/mailintake/internal/fakes/postgres"
	"github.com/mailintake/mailintake/internal/secrets"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// newHAPOP3Cluster starts PostgreSQL, Dovecot with its POP3 service (the maildrop locked for
// a whole session, so a second session of a mailbox is refused with -ERR [IN-USE] and Dovecot
// logs it), n replicas and mailboxes POP3 mailboxes (after_ack DELETE, polled every 5 s, the shortest allowed).
func newHAPOP3Cluster(t *testing.T, n, mailboxes int) *haCluster {
	pg := pgserver.Start(t)
	h := &haCluster{t: t, pg: pg, dbURL: pg.CreateDatabase(t, "ha"), proxies: map[string]*selProxy{}, boxes: map[string]string{}}
	users := map[string]string{}
	for i := range mailboxes {
		u := fmt.Sprintf("pop%02d@example.com", i)
		users[u] = dvPass
		h.users = append(h.users, u)
	}
	h.dv = dovecot.StartWith(t, dovecot.Options{Users: users, POP3: true, POP3LockSession: true})
	h.keyFile = filepath.Join(t.TempDir(), "secret.key")
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
	for _, u := range h.users {
		code, out, errs := cli(t, dvPass, "--addr", h.replicas[0].d.addr, "--token", h.admin, "mailbox", "add", "--tenant", "acme", "--name", "POP "+u,
			"--protocol", "pop3", "--host", "127.0.0.1", "--port", strconv.Itoa(h.dv.POP3Port), "--security", "none", "--username", u,
			"--provider", "basic", "--password-stdin", "--start-from", "all", "--after-ack", "delete", "--poll-interval", "5s", "--json")
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

// maildropSubjects returns the subjects of the messages in a user's maildrop on Dovecot.
func maildropSubjects(dv *dovecot.Server, user string) (map[string]bool, error) {
	out, err := dv.Doveadm(nil, "-f", "flow", "fetch", "-u", user, "hdr.subject", "mailbox", "INBOX", "all")
	if err != nil {
		return nil, fmt.Errorf("doveadm fetch: %v: %s", err, out)
	}
	got := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "hdr.subject="); ok {
			got[strings.TrimSpace(s)] = true
		}
	}
	return got, nil
}

// pop3Sessions returns the users with a POP3 session open on Dovecot now, and how many each
// (doveadm who: a session that waits for the maildrop's lock after its login is not counted,
// pop3Overlaps finds those in Dovecot's log).
func pop3Sessions(dv *dovecot.Server) map[string]int {
	out, _ := dv.Doveadm(nil, "who", "-1")
	got := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[1] == "pop3" {
			got[f[0]]++
		}
	}
	return got
}

// pop3Overlaps reads Dovecot's log: for each user, the sessions that were still open when a
// newer one logged in (the newer waits for the maildrop's lock), and of those the ones that
// then ended with QUIT ("Logged out": QUIT is what applies the DELEs) instead of their
// connection closing. A session that outlived its replica's lease must not QUIT.
func pop3Overlaps(log string) (overlaps map[string]int, staleQuits []string) {
	overlaps = map[string]int{}
	open := map[string]map[string]bool{} // user → open sessions
	overlapped := map[string]bool{}      // sessions a newer one logged in beside
	for _, line := range strings.Split(log, "\n") {
		if _, rest, ok := strings.Cut(line, "pop3-login: Info: Login: user=<"); ok {
			user, _, _ := strings.Cut(rest, ">")
			_, sess, _ := strings.Cut(rest, "session=<")
			sess, _, _ = strings.Cut(sess, ">")
			if open[user] == nil {
				open[user] = map[string]bool{}
			}
			for older := range open[user] {
				overlapped[older] = true
				overlaps[user]++
			}
			open[user][sess] = true
			continue
		}
		if _, rest, ok := strings.Cut(line, " pop3("); ok && strings.Contains(rest, "Info: Disconnected: ") {
			user, rest, _ := strings.Cut(rest, ")<")
			_, rest, _ = strings.Cut(rest, "><")
			sess, reason, _ := strings.Cut(rest, ">")
			delete(open[user], sess)
			if overlapped[sess] && strings.Contains(reason, "Disconnected: Logged out") {
				staleQuits = append(staleQuits, strings.TrimSpace(line))
			}
		}
	}
	return overlaps, staleQuits
}

// TestHAPOP3OverlapsParse checks pop3Overlaps on Dovecot 2.3's log lines: a session open when a
// newer one logged in that ends with QUIT is reported, one whose connection closed is not.
func TestHAPOP3OverlapsParse(t *testing.T) {
	login := func(u, s string) string {
		return "Dec 04 15:56:21 pop3-login: Info: Login: user=<" + u + ">, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=1, secured, session=<" + s + ">"
	}
	end := func(u, s, why string) string {
		return "Dec 04 15:56:29 pop3(" + u + ")<16783><" + s + ">: Info: Disconnected: " + why + " top=0/0, retr=1/200, del=0/2, size=368"
	}
	log := strings.Join([]string{
		login("a@x", "A1"), end("a@x", "A1", "Logged out"), // alone: fine
		login("a@x", "A2"), login("a@x", "A3"), end("a@x", "A2", "Connection closed"), end("a@x", "A3", "Logged out"),
		login("b@x", "B1"), login("b@x", "B2"), end("b@x", "B1", "Logged out"), end("b@x", "B2", "Logged out"),
	}, "\n")
	overlaps, stale := pop3Overlaps(log)
	if overlaps["a@x"] != 1 || overlaps["b@x"] != 1 || len(overlaps) != 2 {
		t.Errorf("overlaps = %v", overlaps)
	}
	if len(stale) != 1 || !strings.Contains(stale[0], "<B1>") {
		t.Errorf("stale QUITs = %q, want B1's", stale)
	}
}

// TestHAPOP3Failover runs three replicas on PostgreSQL with POP3 mailboxes (after_ack DELETE)
// on Dovecot's POP3 service while mail arrives continuously and one consumer acknowledges it
// through a replica that owns only some of the mailboxes. The owner of a mailbox is SIGKILLed
// while it is in a POP3 session of it; another replica is SIGSTOPped in a POP3 session past its
// lease and resumed, then gets SIGTERM. Checked: every message delivered and acknowledged, none
// delivered again after its acknowledgement was confirmed, nothing deleted from Dovecot before
// its acknowledgement was sent (sampled all along: a message gone from a maildrop must have been
// acknowledged), the maildrops empty at the end, and at most one replica acting in a maildrop:
// Dovecot locks it for a session (a second login waits for the lock, then gets -ERR [IN-USE]).
// No [IN-USE] at all: a SIGKILLed replica's connections are closed by its kernel and its
// mailboxes claimed only after its lease lapsed, a SIGTERMed one ends its sessions before it
// releases its leases, and a resumed stale one closes its session at once. The one takeover
// that waits for the lock is from the frozen replica, whose session must end without QUIT (its
// DELEs not applied).
func TestHAPOP3Failover(t *testing.T) {
	h := newHAPOP3Cluster(t, 3, 10)
	defer func() {
		if t.Failed() {
			h.dump()
			t.Logf("dovecot log:\n%s", tail(h.dv.Log(), 6000))
		}
	}()
	byID := map[string]*replica{}
	for _, r := range h.replicas {
		byID[r.id] = r
	}
	// Rendezvous hashing may leave a replica nothing: spread over two at least, and the
	// consumer goes to the replica that owns the fewest mailboxes (cons, which survives every
	// fault); the two others (a, b) own some each.
	owners := h.settled(h.replicas[0], []string{"r1", "r2", "r3"}, 2, 30*time.Second)
	t.Logf("owners: %v", owners)
	count := map[string]int{}
	for _, o := range owners {
		count[o]++
	}
	reps := append([]*replica(nil), h.replicas...)
	slices.SortFunc(reps, func(x, y *replica) int { return count[x.id] - count[y.id] })
	r1, r2, r3 := reps[0], reps[1], reps[2]

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One consumer, on r1 (it survives every fault), acknowledging everything: the
	// acknowledgements of the mailboxes r2 and r3 own go to them through r1.
	l := newLedger()
	c1 := h.client(r1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(18, 3))
		for ctx.Err() == nil {
			consume(ctx, c1, &mailintakev1.StreamMessagesRequest{MaxInFlight: 8}, l, rng, 1, 1+rng.IntN(4))
			time.Sleep(100 * time.Millisecond)
		}
	}()

	// Mail keeps arriving in random mailboxes; deposited lists it by user once Dovecot has it.
	var depMu sync.Mutex
	deposited := map[string][]string{}
	var subjects []string
	mailCtx, stopMail := context.WithCancel(ctx)
	mailDone := make(chan struct{})
	go func() {
		defer close(mailDone)
		rng := rand.New(rand.NewPCG(18, 18))
		for n := 0; mailCtx.Err() == nil; n++ {
			u := h.users[rng.IntN(len(h.users))]
			s := fmt.Sprintf("pop3 ha %05d", n)
			h.dv.Deliver(t, u, "INBOX", haMail(u, s))
			depMu.Lock()
			deposited[u] = append(deposited[u], s)
			subjects = append(subjects, s)
			depMu.Unlock()
			select {
			case <-mailCtx.Done():
			case <-time.After(time.Duration(30+rng.IntN(90)) * time.Millisecond):
			}
		}
	}()

	// The sampler checks all along that a message gone from a maildrop had its acknowledgement
	// sent: the deposited messages are read before the maildrop, the acknowledgements after.
	var samples, violations int
	overlaps := map[string]int{} // samples that saw two POP3 sessions of a user at once
	sampleOnce := func() {
		for u, n := range pop3Sessions(h.dv) {
			if n > 1 {
				overlaps[u]++
			}
		}
		for _, u := range h.users {
			depMu.Lock()
			dep := append([]string(nil), deposited[u]...)
			depMu.Unlock()
			present, err := maildropSubjects(h.dv, u)
			if err != nil {
				t.Error(err)
				return
			}
			_, acked := l.subjects()
			for _, s := range dep {
				if !present[s] && !acked[s] {
					violations++
					if violations <= 5 {
						t.Errorf("%q was deleted from %s's maildrop before its acknowledgement was sent", s, u)
					}
				}
			}
		}
		samples++
	}
	sampleDone := make(chan struct{})
	go func() {
		defer close(sampleDone)
		for ctx.Err() == nil {
			sampleOnce()
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()

	eventually20(t, 30*time.Second, "mail of every mailbox acknowledged", func() bool { return len(l.confirmedSubjects()) >= 30 })

	// SIGKILL the owner (r2 or r3) of a mailbox while it is in a POP3 session of it.
	boxOf := map[string]string{}
	for id, u := range h.boxes {
		boxOf[u] = id
	}
	var victim *replica
	var victimUser string
	deadline := time.Now().Add(10 * time.Second)
	for victim == nil && time.Now().Before(deadline) {
		for u := range pop3Sessions(h.dv) {
			if o := owners[boxOf[u]]; o != r1.id && o != "" {
				victim, victimUser = byID[o], u
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	inSession := victim != nil
	if victim == nil {
		// No session caught in the act (they last milliseconds): kill r2 anyway.
		victim = r2
	}
	victim.d.cmd.Process.Kill()
	victim.d.cmd.Wait()
	killed := time.Now()
	t.Logf("SIGKILL %s (in a POP3 session of %s: %v)", victim.id, victimUser, inSession)
	var other *replica
	survivors := []string{r1.id}
	for _, r := range []*replica{r2, r3} {
		if r != victim {
			other = r
			survivors = append(survivors, r.id)
		}
	}
	// The victim's mailboxes come back to the survivors, with their mail.
	var victimBoxes []string
	for id, o := range owners {
		if o == victim.id {
			victimBoxes = append(victimBoxes, id)
			u := h.boxes[id]
			h.dv.Deliver(t, u, "INBOX", haMail(u, "after kill "+u))
			depMu.Lock()
			deposited[u] = append(deposited[u], "after kill "+u)
			subjects = append(subjects, "after kill "+u)
			depMu.Unlock()
		}
	}
	eventually20(t, 40*time.Second, "the SIGKILLed replica's mailboxes served by the survivors", func() bool {
		got := l.confirmedSubjects()
		for _, id := range victimBoxes {
			if !got["after kill "+h.boxes[id]] {
				return false
			}
		}
		return true
	})
	t.Logf("consumer on %s; failover after SIGKILL of %s: its %d mailboxes' mail acknowledged after %s", r1.id, victim.id, len(victimBoxes), time.Since(killed).Round(10*time.Millisecond))
	// Each survivor owns some: with ten mailboxes, two replicas share them but once in 512.
	owners = h.settled(r1, survivors, 2, 30*time.Second)

	// SIGSTOP the other past its lease while it holds a maildrop, then SIGCONT. r1 claims
	// its mailboxes once its lease lapsed, and r1's login to the maildrop the frozen session
	// still holds waits for Dovecot's lock: a takeover from a stale owner sees the lock, that
	// is the lock doing its work (pop3Overlaps finds it in Dovecot's log, and the check below
	// wants it). The resumed replica sends nothing more (its POP3 commands are refused once it
	// is not trusted, QUIT included: its DELEs are not applied) and closes the connection,
	// which frees the lock within Dovecot's 10 s, so no [IN-USE].
	// Frozen in a session: a session of one of its mailboxes still open 300 ms after the
	// SIGSTOP is the frozen process's (nobody else owns the mailbox, and Dovecot ends a session
	// whose client closed at once); otherwise it is resumed and frozen again later.
	var frozenUser string
	for attempt := 0; frozenUser == "" && attempt < 40; attempt++ {
		u := ""
		for wait := time.Now().Add(3 * time.Second); u == "" && time.Now().Before(wait); time.Sleep(5 * time.Millisecond) {
			for s := range pop3Sessions(h.dv) {
				if owners[boxOf[s]] == other.id {
					u = s
					break
				}
			}
		}
		if u == "" {
			continue
		}
		other.d.cmd.Process.Signal(syscall.SIGSTOP)
		time.Sleep(300 * time.Millisecond)
		if pop3Sessions(h.dv)[u] > 0 {
			frozenUser = u
			break
		}
		other.d.cmd.Process.Signal(syscall.SIGCONT)
	}
	if frozenUser == "" {
		t.Fatalf("%s could not be frozen in a POP3 session", other.id)
	}
	frozenAt := time.Now()
	// Frozen until the new owner logs in beside the frozen session (its lease lapses in about
	// 3.5 s, then the new owner claims the mailbox and polls it: on a loaded machine that took
	// longer than a fixed 8 s once), and resumed at once then, before that login's wait for the
	// maildrop's lock (10 s in Dovecot) could end in [IN-USE]. At most 30 s.
	before, _ := pop3Overlaps(h.dv.Log()) // logins beside an open session earlier in the test
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if waits, _ := pop3Overlaps(h.dv.Log()); waits[frozenUser] > before[frozenUser] {
			break
		}
	}
	frozenFor := time.Since(frozenAt)
	other.d.cmd.Process.Signal(syscall.SIGCONT)
	eventually20(t, 15*time.Second, "no two POP3 sessions of a user once the frozen replica resumed", func() bool {
		for _, n := range pop3Sessions(h.dv) {
			if n > 1 {
				return false
			}
		}
		return true
	})
	t.Logf("SIGSTOP %s for %s (in a POP3 session of %q) until the new owner logged in beside it, SIGCONT: no overlapping sessions %s after the SIGSTOP",
		other.id, frozenFor.Round(10*time.Millisecond), frozenUser, time.Since(frozenAt).Round(10*time.Millisecond))
	// It rejoins and takes its share back.
	owners = h.settled(r1, survivors, 2, 30*time.Second)

	// SIGTERM the other: it hands its mailboxes over to r1 at once.
	time.Sleep(2 * time.Second)
	stopped := time.Now()
	other.d.stop(t)
	var otherBoxes []string
	for id, o := range owners {
		if o == other.id {
			otherBoxes = append(otherBoxes, id)
			u := h.boxes[id]
			h.dv.Deliver(t, u, "INBOX", haMail(u, "after sigterm "+u))
			depMu.Lock()
			deposited[u] = append(deposited[u], "after sigterm "+u)
			subjects = append(subjects, "after sigterm "+u)
			depMu.Unlock()
		}
	}
	eventually20(t, 20*time.Second, "the SIGTERMed replica's mailboxes served by r1", func() bool {
		got := l.confirmedSubjects()
		for _, id := range otherBoxes {
			if !got["after sigterm "+h.boxes[id]] {
				return false
			}
		}
		return true
	})
	t.Logf("handover after SIGTERM of %s: its %d mailboxes' mail acknowledged after %s", other.id, len(otherBoxes), time.Since(stopped).Round(10*time.Millisecond))

	// A few more seconds of traffic on r1 alone, then the mail stops and the rest is drained.
	time.Sleep(3 * time.Second)
	stopMail()
	<-mailDone
	depMu.Lock()
	want := append([]string(nil), subjects...)
	depMu.Unlock()
	// Acknowledged: its ack was sent (an ack relayed to an owner SIGKILLed before it answered
	// may have been stored and applied, the message then deleted and not delivered again).
	var missing []string
	for wait := time.Now().Add(60 * time.Second); ; {
		_, acked := l.subjects()
		missing = missing[:0]
		for _, s := range want {
			if !acked[s] {
				missing = append(missing, s)
			}
		}
		if len(missing) == 0 || time.Now().After(wait) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("%d messages not acknowledged after 60 s, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	eventually20(t, 30*time.Second, "every maildrop emptied by the acknowledged deletions", func() bool {
		for _, u := range h.users {
			if m, _ := h.dv.Status(t, u, "INBOX"); m != 0 {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	<-sampleDone
	sampleOnce()
	checkAll(t, l, want)

	// No second POP3 session of a mailbox while one held it: Dovecot refused none (its log
	// says "Couldn't lock POP3 session" for each -ERR [IN-USE]), no replica reported one, and
	// no sample saw two sessions of a user (a second one waits up to 10 s for the lock).
	inUse := strings.Count(h.dv.Log(), "Couldn't lock POP3 session")
	daemonInUse := 0
	for _, r := range h.replicas {
		daemonInUse += strings.Count(r.d.logs.String(), "IN-USE")
	}
	if inUse > 0 || daemonInUse > 0 {
		t.Errorf("a POP3 session was refused [IN-USE] while another held the maildrop: %d times in Dovecot's log, %d in the replicas' logs", inUse, daemonInUse)
	}
	for u, n := range overlaps {
		t.Errorf("%d samples saw two POP3 sessions of %s at once", n, u)
	}
	// The frozen replica held frozenUser's maildrop when its lease lapsed: the new owner's
	// login came while that session was open (and waited for the lock), and the stale session
	// ended by its connection closing, not by QUIT.
	waits, staleQuits := pop3Overlaps(h.dv.Log())
	for _, q := range staleQuits {
		t.Errorf("a POP3 session still open when another logged in ended with QUIT (applying its DELEs): %s", q)
	}
	if waits[frozenUser] == 0 {
		t.Errorf("no login of %s while the frozen replica held its maildrop: the SIGSTOP tested nothing", frozenUser)
	}
	l.mu.Lock()
	redelivered := 0
	for _, k := range l.delivered {
		redelivered += k - 1
	}
	l.mu.Unlock()
	t.Logf("%d messages in %d POP3 mailboxes: %d redeliveries of unacknowledged messages, %d acks answered unknown, %d maildrop samples, %d POP3 logins, %d [IN-USE], logins beside an open session: %v",
		len(want), len(h.users), redelivered, len(l.unknown), samples, strings.Count(h.dv.Log(), "pop3-login: Info: Login:"), inUse, waits)
}
