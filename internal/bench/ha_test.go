//go:build bench

package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailintake/mailintake/client"
	"github.com/mailintake/mailintake/internal/cluster"
	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	pgserver "github.com/mailintake/mailintake/internal/fakes/postgres"
	"github.com/mailintake/mailintake/internal/secrets"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// The replicas' figures (PostgreSQL, several mailintaked processes): failover after SIGKILL and
// handover on SIGTERM (first message delivered by the new owner), one replica on PostgreSQL
// against the SQLite process end to end, three replicas draining mailboxes against one, and a
// planned restart of a replica owning many idle mailboxes.

type haResult struct {
	kills, terms         []time.Duration
	pgWall, sqliteWall   time.Duration
	pgCPU, sqliteCPU     float64
	oneWall, threeWall   time.Duration
	oneCPU, threeCPU     float64
	drained              int
	idleN                int
	restartAway, restart time.Duration
}

// devIMAP is a mailintake-dev-imap process with users user00000… (password pw).
type devIMAP struct {
	cmd  *exec.Cmd
	host string
	port int
	ctl  io.Writer
	out  *bufio.Scanner
	mu   sync.Mutex
}

func startDevIMAP(t *testing.T, bins string, users int) *devIMAP {
	addr := freeAddr()
	srv := exec.Command(filepath.Join(bins, "mailintake-dev-imap"), "--listen", addr, "--users", strconv.Itoa(users))
	out, _ := srv.StdoutPipe()
	ctl, _ := srv.StdinPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	d := &devIMAP{cmd: srv, ctl: ctl, out: bufio.NewScanner(out)}
	if !d.out.Scan() {
		t.Fatal("the IMAP server did not start")
	}
	host, port, _ := net.SplitHostPort(addr)
	d.host = host
	d.port, _ = strconv.Atoi(port)
	return d
}

// stop ends the server (it is ended at the test's end anyway).
func (d *devIMAP) stop() { d.cmd.Process.Kill() }

// ask sends the server a control command and returns the number its answer ends with.
func (d *devIMAP) ask(t *testing.T, cmd string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintln(d.ctl, cmd)
	if !d.out.Scan() {
		t.Fatalf("the IMAP server did not answer %q", cmd)
	}
	f := strings.Fields(d.out.Text())
	v, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
	return v
}

func (d *devIMAP) mailbox(i int) *mailintakev1.Mailbox {
	return &mailintakev1.Mailbox{Tenant: "ha", DisplayName: "ha", Enabled: true, Host: d.host, Port: uint32(d.port),
		Security: mailintakev1.Security_SECURITY_NONE, Username: fmt.Sprintf("user%05d@example.com", i), AuthProvider: "basic",
		AuthSecrets: map[string]string{"password": "pw"}}
}

// replicaSet is mailintaked replicas on one database.
type replicaSet struct {
	t       *testing.T
	bins    string
	url     string
	keyFile string
	token   string
	procs   map[string]*daemon
}

func newReplicaSet(t *testing.T, bins, url string) *replicaSet {
	key := filepath.Join(t.TempDir(), "secret.key")
	if _, _, err := secrets.LoadOrCreateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	return &replicaSet{t: t, bins: bins, url: url, keyFile: key, procs: map[string]*daemon{}}
}

// start starts (or restarts, keeping its data directory) replica id and waits until it serves.
func (rs *replicaSet) start(id string) *daemon {
	t := rs.t
	old := rs.procs[id]
	d := &daemon{addr: freeAddr(), data: t.TempDir()}
	if old != nil {
		d.data = old.data
	}
	d.cmd = exec.Command(filepath.Join(rs.bins, "mailintaked"), "--listen", d.addr, "--data-dir", d.data, "--log-level", "warn",
		"--database-url", rs.url, "--replica-id", id, "--secret-key-file", rs.keyFile)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killTree(d.cmd) })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if rs.token == "" {
			if tok, err := os.ReadFile(filepath.Join(d.data, "admin.token")); err == nil && len(tok) > 0 {
				rs.token = strings.TrimSpace(string(tok))
			}
		}
		if c, err := net.Dial("tcp", d.addr); err == nil && rs.token != "" {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s did not start", id)
		}
	}
	c, err := client.Dial(d.addr, client.Options{Token: rs.token})
	if err != nil {
		t.Fatal(err)
	}
	d.c = c
	rs.procs[id] = d
	return d
}

// cpu returns the CPU seconds of every running replica.
func (rs *replicaSet) cpu() float64 {
	sum := 0.0
	for _, d := range rs.procs {
		if d.cmd.ProcessState == nil {
			s, _ := CPUSeconds(d.cmd.Process.Pid)
			sum += s
		}
	}
	return sum
}

func (rs *replicaSet) stopAll() {
	for _, d := range rs.procs {
		killTree(d.cmd)
	}
}

// owners returns each mailbox's state and owner as seen through d (16 calls at a time).
func owners(d *daemon, ids []string) (owner map[string]string, idle int) {
	owner = map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			st, err := d.c.Mailboxes.GetMailboxStatus(ctx, &mailintakev1.GetMailboxStatusRequest{Id: id})
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			owner[id] = st.GetStatus().GetOwnerReplicaId()
			if st.GetStatus().GetState() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE {
				idle++
			}
		}()
	}
	wg.Wait()
	return owner, idle
}

// waitSpread waits until every mailbox is idle and owned by one of want, each of which owns
// at least one, and returns the owners.
func waitSpread(t *testing.T, via *daemon, ids []string, want ...string) (map[string]string, time.Duration) {
	start := time.Now()
	for {
		owner, idle := owners(via, ids)
		held := map[string]int{}
		ok := idle == len(ids)
		for _, id := range ids {
			held[owner[id]]++
		}
		for _, w := range want {
			if held[w] == 0 {
				ok = false
			}
		}
		if len(held) != len(want) {
			ok = false
		}
		if ok {
			return owner, time.Since(start)
		}
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("mailboxes not idle on %v after 5 minutes: %d idle, owners %v", want, idle, held)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// receiver streams from a replica and reports when each subject arrives.
type receiver struct {
	mu   sync.Mutex
	got  map[string]time.Time
	wake chan struct{}
}

func receive(ctx context.Context, d *daemon) *receiver {
	r := &receiver{got: map[string]time.Time{}, wake: make(chan struct{}, 1)}
	go func() {
		for ctx.Err() == nil {
			s, err := d.c.Messages.StreamMessages(ctx, &mailintakev1.StreamMessagesRequest{MaxInFlight: 64})
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			for {
				resp, err := s.Recv()
				if err != nil {
					break
				}
				m := resp.GetMessage()
				r.mu.Lock()
				if _, ok := r.got[m.GetEnvelope().GetSubject()]; !ok {
					r.got[m.GetEnvelope().GetSubject()] = time.Now()
				}
				r.mu.Unlock()
				select {
				case r.wake <- struct{}{}:
				default:
				}
				d.c.Messages.AckMessages(ctx, &mailintakev1.AckMessagesRequest{MessageIds: []string{m.GetId()}})
			}
		}
	}()
	return r
}

func (r *receiver) waitFor(t *testing.T, subject string, within time.Duration) time.Time {
	deadline := time.After(within)
	for {
		r.mu.Lock()
		at, ok := r.got[subject]
		r.mu.Unlock()
		if ok {
			return at
		}
		select {
		case <-r.wake:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%q not received within %s", subject, within)
		}
	}
}

func haBench(t *testing.T, bins string, dv *dovecot.Server, corpus [][]byte) haResult {
	var res haResult
	pg := pgserver.Start(t)
	kills := envInt("MAILINTAKE_BENCH_HA_KILLS", 10)
	terms := envInt("MAILINTAKE_BENCH_HA_TERMS", 5)

	// Failover and handover: three replicas, 12 or more mailboxes on the in-memory IMAP server, a
	// consumer on r1; each time the owner (r2 or r3) of a mailbox is killed or stopped, a message
	// arrives in that mailbox, and the time until r1's consumer has it is measured.
	{
		imap := startDevIMAP(t, bins, 24)
		rs := newReplicaSet(t, bins, pg.CreateDatabase(t, ""))
		replicas := []string{"r1", "r2", "r3"}
		for _, id := range replicas {
			rs.start(id)
		}
		r1 := rs.procs["r1"]
		time.Sleep(6 * time.Second) // every replica settled: each claims its own share
		var ids []string
		user := map[string]int{}
		// At least 12 mailboxes, and more until each replica owns one: the owners are a hash of
		// the mailbox ids (cluster.Pick), and 12 random ids leave a replica without a mailbox
		// about once in 40 runs.
		owns := map[string]int{}
		for i := 0; i < 12 || len(owns) < len(replicas); i++ {
			if i == 24 {
				t.Fatalf("24 mailboxes and a replica owns none: %v", owns)
			}
			id := r1.addMailbox(t, imap.mailbox(i))
			ids = append(ids, id)
			user[id] = i
			owns[cluster.Pick(id, replicas)]++
		}
		ctx, cancel := context.WithCancel(context.Background())
		rcv := receive(ctx, r1)
		owner, _ := waitSpread(t, r1, ids, replicas...)
		seq := 0
		for k := 0; k < kills+terms; k++ {
			victim := []string{"r2", "r3"}[k%2]
			var box string
			for _, id := range ids {
				if owner[id] == victim {
					box = id
					break
				}
			}
			if box == "" {
				t.Fatalf("%s owns no mailbox: %v", victim, owner)
			}
			d := rs.procs[victim]
			seq++
			at := time.Now()
			if k < kills {
				d.cmd.Process.Kill()
			} else {
				d.cmd.Process.Signal(syscall.SIGTERM)
			}
			// The mail arrives once the owner is gone, so only its successor can deliver it.
			d.cmd.Wait()
			imap.ask(t, fmt.Sprintf("deliver %d", user[box]))
			got := rcv.waitFor(t, fmt.Sprintf("scale %d %d", user[box], seq), 2*time.Minute)
			if k < kills {
				res.kills = append(res.kills, got.Sub(at))
			} else {
				res.terms = append(res.terms, got.Sub(at))
			}
			rs.start(victim)
			owner, _ = waitSpread(t, r1, ids, replicas...)
		}
		cancel()
		rs.stopAll()
	}

	// One replica on PostgreSQL against the SQLite process, end to end on the corpus, interleaved.
	{
		n := len(corpus)
		runs := envInt("MAILINTAKE_BENCH_HA_RUNS", 3)
		var pgW, sqW []time.Duration
		var pgC, sqC []float64
		for range runs {
			for _, kind := range []string{"sqlite", "postgres"} {
				var d *daemon
				if kind == "sqlite" {
					d = startDaemon(t, bins)
				} else {
					rs := newReplicaSet(t, bins, pg.CreateDatabase(t, ""))
					d = rs.start("solo")
				}
				cpu0, _ := CPUSeconds(d.cmd.Process.Pid)
				start := time.Now()
				d.addMailbox(t, dovecotMailbox(dv, t))
				consume(t, d.c, n, nil)
				wall := time.Since(start)
				cpu1, _ := CPUSeconds(d.cmd.Process.Pid)
				if kind == "sqlite" {
					sqW, sqC = append(sqW, wall), append(sqC, cpu1-cpu0)
				} else {
					pgW, pgC = append(pgW, wall), append(pgC, cpu1-cpu0)
				}
				killTree(d.cmd)
			}
		}
		res.pgWall = median(pgW, func(d time.Duration) float64 { return d.Seconds() })
		res.sqliteWall = median(sqW, func(d time.Duration) float64 { return d.Seconds() })
		res.pgCPU = median(pgC, func(f float64) float64 { return f })
		res.sqliteCPU = median(sqC, func(f float64) float64 { return f })
	}

	// Three replicas draining 30 mailboxes against one replica: the corpus spread over 30
	// Dovecot users, consumed through one replica.
	{
		const boxes = 30
		users := map[string]string{}
		for i := range boxes {
			users[fmt.Sprintf("desk%02d@example.com", i)] = pass
		}
		dv30 := dovecot.Start(t, users)
		per := make([][][]byte, boxes)
		for i, m := range corpus {
			per[i%boxes] = append(per[i%boxes], m)
		}
		for i := range boxes {
			dv30.DeliverMany(t, fmt.Sprintf("desk%02d@example.com", i), per[i])
		}
		ca, _ := os.ReadFile(dv30.CACertFile(t))
		res.drained = len(corpus)
		for _, replicas := range []int{1, 3, 1, 3} {
			rs := newReplicaSet(t, bins, pg.CreateDatabase(t, ""))
			for i := range replicas {
				rs.start(fmt.Sprintf("r%d", i+1))
			}
			r1 := rs.procs["r1"]
			if replicas > 1 {
				time.Sleep(6 * time.Second)
			}
			cpu0 := rs.cpu()
			start := time.Now()
			for i := range boxes {
				r1.addMailbox(t, &mailintakev1.Mailbox{Tenant: "bench", DisplayName: "bench", Enabled: true, Host: "127.0.0.1", Port: uint32(dv30.IMAPSPort),
					Security: mailintakev1.Security_SECURITY_TLS, CaPem: string(ca), Username: fmt.Sprintf("desk%02d@example.com", i), AuthProvider: "basic",
					AuthSecrets: map[string]string{"password": pass}, StartFrom: mailintakev1.StartFrom_START_FROM_ALL,
					AfterAck: &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}})
			}
			consume(t, r1.c, len(corpus), nil)
			wall, cpu := time.Since(start), rs.cpu()-cpu0
			if replicas == 1 && (res.oneWall == 0 || wall < res.oneWall) {
				res.oneWall, res.oneCPU = wall, cpu
			}
			if replicas == 3 && (res.threeWall == 0 || wall < res.threeWall) {
				res.threeWall, res.threeCPU = wall, cpu
			}
			rs.stopAll()
		}
	}

	// A planned restart of a replica among two that share 1,000 idle mailboxes: the time until
	// the other watches them all, then until the restarted one has its share back.
	{
		n := envInt("MAILINTAKE_BENCH_HA_IDLE", 1000)
		res.idleN = n
		imap := startDevIMAP(t, bins, n)
		rs := newReplicaSet(t, bins, pg.CreateDatabase(t, ""))
		r1, r2 := rs.start("r1"), rs.start("r2")
		time.Sleep(6 * time.Second)
		ids := make([]string, n)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ids[i] = r1.addMailbox(t, imap.mailbox(i))
			}()
		}
		wg.Wait()
		waitSpread(t, r1, ids, "r1", "r2")
		start := time.Now()
		r2.cmd.Process.Signal(syscall.SIGTERM)
		r2.cmd.Wait()
		waitSpread(t, r1, ids, "r1")
		res.restartAway = time.Since(start)
		start = time.Now()
		rs.start("r2")
		waitSpread(t, r1, ids, "r1", "r2")
		res.restart = time.Since(start)
		rs.stopAll()
	}
	return res
}

// percentiles returns the median and the maximum.
func percentiles(ds []time.Duration) (p50, maxD time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	p50 = median(ds, func(d time.Duration) float64 { return d.Seconds() })
	for _, d := range ds {
		maxD = max(maxD, d)
	}
	return p50, maxD
}

// haLines are the replicas' rows of BENCHMARKS.md.
func haLines(h haResult) [][2]string {
	k50, kmax := percentiles(h.kills)
	t50, tmax := percentiles(h.terms)
	perMsg := func(cpu float64) float64 { return cpu / float64(h.drained) * 1000 }
	return [][2]string{
		{fmt.Sprintf("replicas: failover after SIGKILL of a mailbox's owner (3 replicas on PostgreSQL): from the kill to the first message delivered by the new owner, %d kills", len(h.kills)),
			fmt.Sprintf("p50 %s, max %s", k50.Round(10*time.Millisecond), kmax.Round(10*time.Millisecond))},
		{fmt.Sprintf("replicas: handover on SIGTERM of a mailbox's owner: from the signal to the first message delivered by the new owner (the mail arrives after the old owner exited), %d stops", len(h.terms)),
			fmt.Sprintf("p50 %s, max %s", t50.Round(10*time.Millisecond), tmax.Round(10*time.Millisecond))},
		{"replicas: one replica on PostgreSQL against the SQLite process, end to end on the corpus (medians, interleaved)",
			fmt.Sprintf("%s vs %s = %.2f×; server CPU %.1f s vs %.1f s", h.pgWall.Round(time.Millisecond), h.sqliteWall.Round(time.Millisecond),
				h.pgWall.Seconds()/h.sqliteWall.Seconds(), h.pgCPU, h.sqliteCPU)},
		{"replicas: the corpus spread over 30 Dovecot mailboxes, drained through one replica's API, 3 replicas against 1 (best of 2 each)",
			fmt.Sprintf("3 replicas %s (%.0f msg/s, %.2f CPU ms per message in all replicas) vs 1 replica %s (%.0f msg/s, %.2f CPU ms per message)",
				h.threeWall.Round(time.Millisecond), float64(h.drained)/h.threeWall.Seconds(), perMsg(h.threeCPU),
				h.oneWall.Round(time.Millisecond), float64(h.drained)/h.oneWall.Seconds(), perMsg(h.oneCPU))},
		{fmt.Sprintf("replicas: planned restart (SIGTERM, start) of one of 2 replicas sharing %d idle mailboxes", h.idleN),
			fmt.Sprintf("every mailbox watched by the other %s after the SIGTERM; the restarted replica has its share back, all watched, %s after its start", h.restartAway.Round(10*time.Millisecond), h.restart.Round(10*time.Millisecond))},
	}
}
