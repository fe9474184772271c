//go:build bench

package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailintake/mailintake/client"
	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	"github.com/mailintake/mailintake/internal/testutil"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// make bench: everything measured in one run on this machine, written as Markdown tables to
// standard output and to BENCHMARKS.md (MAILINTAKE_BENCH_OUT): a summary, then every run of the
// interleaved measurements (each with its ratio to the floor of the same run).
//
// The corpus (contest_test.go): the floor, mbsync, mailintake end to end with the Go client,
// mailintake with the CLI (`mailintake tail --ack --quiet`) as the consumer, and the baseline
// release's mailintaked, in turn run by run after a warm-up round; wall time and CPU seconds
// of mailintaked, of the consumer and of Dovecot for each. Many mailboxes at once
// (many_test.go): the floor with one connection per mailbox against mailintake, interleaved.
// Then the other peers (getmail6, fetchmail, offlineimap; not interleaved), push latency, idle
// mailboxes, the replicas (ha_test.go), sending through the in-process SMTP server (send_test.go)
// and the parser's benchmarks.
//
// Environment:
//
//	MAILINTAKE_BENCH_N          messages in the corpus (default 2000)
//	MAILINTAKE_BENCH_RUNS       interleaved runs of the corpus contestants (default 5)
//	MAILINTAKE_BENCH_BASELINE   git ref of the baseline mailintaked (default a222271; none: skip)
//	MAILINTAKE_BENCH_PEER_RUNS  runs of getmail6, fetchmail and offlineimap (default 3)
//	MAILINTAKE_BENCH_MANY       mailboxes receiving mail at once (default 200)
//	MAILINTAKE_BENCH_MANY_PER   messages in each of them (default 10)
//	MAILINTAKE_BENCH_MANY_RUNS  interleaved runs of the many mailboxes (default 3)
//	MAILINTAKE_BENCH_SCALE      idle mailboxes (default 10000)
//	MAILINTAKE_BENCH_PUSH       push latency samples, a mailbox that keeps receiving (default 200)
//	MAILINTAKE_BENCH_PUSH_REST  push latency samples, a mailbox at rest, each server (default 50)
//	MAILINTAKE_BENCH_HA_KILLS, _HA_TERMS  failovers measured (default 10 and 5)
//	MAILINTAKE_BENCH_HA_RUNS    PostgreSQL against SQLite runs (default 3)
//	MAILINTAKE_BENCH_HA_IDLE    idle mailboxes of the planned restart (default 1000)
//	MAILINTAKE_BENCH_SEND       messages queued at once for sending (default 2000), over
//	                            MAILINTAKE_BENCH_SEND_MAILBOXES mailboxes (default 10); then
//	MAILINTAKE_BENCH_SEND_SINGLE messages sent one at a time (default 200)
//	MAILINTAKE_BENCH_OUT        where the Markdown goes (default BENCHMARKS.md at the module root)
//	MAILINTAKE_BENCH_PROFILE    FILE: a CPU profile (15 s) of mailintaked from the start of the
//	                            last e2e run, and FILE-cli of the last CLI run (with
//	                            MAILINTAKE_BENCH_ONLY=many: the last many run; with =send: the
//	                            sending measurement; with =scale: 15 s of the idle mailboxes at
//	                            rest)
//
// For profiling by hand, MAILINTAKE_BENCH_ONLY measures one part, logs it and writes no
// BENCHMARKS.md: e2e (the interleaved corpus contestants), many (many mailboxes at once),
// scale (the idle mailboxes), ha (the replicas), send (sending through the in-process SMTP
// server), push (push latency).

const (
	user = "bench@example.com"
	pass = "bench-pw"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func buildBinaries(t *testing.T) string {
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./server/cmd/mailintaked", "./plugins/basic/cmd/mailintake-auth-basic",
		"./client/cmd/mailintake", "./internal/fakes/imaptest/cmd/mailintake-dev-imap")
	cmd.Dir = testutil.ModuleRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, out)
	}
	t.Cleanup(func() { killStrays(dir) })
	return dir
}

// killTree kills a process and the children it has now (mailintaked's auth plugins outlive a
// SIGKILL of the daemon), and waits for it; once only.
func killTree(cmd *exec.Cmd) {
	if cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	kids := childrenOf(cmd.Process.Pid)
	cmd.Process.Kill()
	cmd.Wait()
	for _, pid := range kids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// killStrays kills the processes still running a binary from dir: the plugins of daemons
// killed without killTree (the failovers of the replicas' measurements).
func killStrays(dir string) {
	exes, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, p := range exes {
		if exe, err := os.Readlink(p); err == nil && strings.HasPrefix(exe, dir+"/") {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

type daemon struct {
	cmd  *exec.Cmd
	addr string
	data string
	c    *client.Client
}

func freeAddr() string {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	return l.Addr().String()
}

func startDaemon(t *testing.T, bins string, args ...string) *daemon {
	addr := freeAddr()
	d := &daemon{addr: addr, data: t.TempDir()}
	d.cmd = exec.Command(filepath.Join(bins, "mailintaked"), append([]string{"--listen", addr, "--data-dir", d.data, "--log-level", "warn"}, args...)...)
	out, _ := d.cmd.StderrPipe()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out) // drained, so a burst of warnings never blocks the daemon
	t.Cleanup(func() { killTree(d.cmd) })
	var tok []byte
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if tok, err = os.ReadFile(filepath.Join(d.data, "admin.token")); err == nil && len(tok) > 0 {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not start")
		}
	}
	c, err := client.Dial(addr, client.Options{Token: strings.TrimSpace(string(tok))})
	if err != nil {
		t.Fatal(err)
	}
	d.c = c
	t.Cleanup(func() { c.Close() })
	return d
}

// stop ends the daemon, its client and its plugins.
func (d *daemon) stop() {
	d.c.Close()
	killTree(d.cmd)
}

func (d *daemon) addMailbox(t *testing.T, mb *mailintakev1.Mailbox) string {
	resp, err := d.c.Mailboxes.CreateMailbox(context.Background(), &mailintakev1.CreateMailboxRequest{Mailbox: mb})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetMailbox().GetId()
}

func dovecotMailbox(dv *dovecot.Server, t *testing.T) *mailintakev1.Mailbox {
	ca, _ := os.ReadFile(dv.CACertFile(t))
	return &mailintakev1.Mailbox{Tenant: "bench", DisplayName: "bench", Enabled: true, Host: "127.0.0.1", Port: uint32(dv.IMAPSPort),
		Security: mailintakev1.Security_SECURITY_TLS, CaPem: string(ca), Username: user, AuthProvider: "basic",
		AuthSecrets: map[string]string{"password": pass}, StartFrom: mailintakev1.StartFrom_START_FROM_ALL,
		AfterAck: &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}}
}

// consume acknowledges n messages (in batches) and returns when it has.
func consume(t *testing.T, c *client.Client, n int, got func(*mailintakev1.Message)) {
	consumeCtx(context.Background(), t, c, n, got)
}

// consumeCtx is consume, given up when ctx ends.
func consumeCtx(ctx context.Context, t *testing.T, c *client.Client, n int, got func(*mailintakev1.Message)) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	s, err := c.Messages.StreamMessages(ctx, &mailintakev1.StreamMessagesRequest{MaxInFlight: 64})
	if err != nil {
		t.Fatal(err)
	}
	acks := make(chan string, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var batch []string
		flush := func() {
			if len(batch) > 0 {
				if _, err := c.Messages.AckMessages(ctx, &mailintakev1.AckMessagesRequest{MessageIds: batch}); err != nil {
					t.Error(err)
				}
				batch = batch[:0]
			}
		}
		for {
			select {
			case id, ok := <-acks:
				if !ok {
					flush()
					return
				}
				batch = append(batch, id)
				if len(batch) >= 32 {
					flush()
				}
			case <-time.After(5 * time.Millisecond):
				flush()
			}
		}
	}()
	for range n {
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got != nil {
			got(resp.GetMessage())
		}
		acks <- resp.GetMessage().GetId()
	}
	close(acks)
	<-done
}

func median[T any](xs []T, key func(T) float64) T {
	s := slices.Clone(xs)
	sort.Slice(s, func(i, j int) bool { return key(s[i]) < key(s[j]) })
	return s[len(s)/2]
}

func TestBench(t *testing.T) {
	n := envInt("MAILINTAKE_BENCH_N", 2000)
	runs := envInt("MAILINTAKE_BENCH_RUNS", 5)
	peerRuns := envInt("MAILINTAKE_BENCH_PEER_RUNS", 3)
	manyN := envInt("MAILINTAKE_BENCH_MANY", 200)
	manyPer := envInt("MAILINTAKE_BENCH_MANY_PER", 10)
	manyRuns := envInt("MAILINTAKE_BENCH_MANY_RUNS", 3)
	scaleN := envInt("MAILINTAKE_BENCH_SCALE", 10000)
	pushN := envInt("MAILINTAKE_BENCH_PUSH", 200)
	pushRestN := envInt("MAILINTAKE_BENCH_PUSH_REST", 50)
	only := os.Getenv("MAILINTAKE_BENCH_ONLY")
	if !slices.Contains([]string{"", "e2e", "many", "scale", "ha", "send", "push"}, only) {
		t.Fatalf("MAILINTAKE_BENCH_ONLY=%s: one of e2e, many, scale, ha, send, push", only)
	}
	bins := buildBinaries(t)
	switch only {
	case "send":
		for _, l := range sendLines(sendBench(t, bins, os.Getenv("MAILINTAKE_BENCH_PROFILE"))) {
			t.Logf("%s: %s", l[0], l[1])
		}
		return
	case "scale":
		sc := scale(t, bins, scaleN, os.Getenv("MAILINTAKE_BENCH_PROFILE"))
		t.Logf("%d idle mailboxes after one message each (delivered and acknowledged in %s): up in %s, RSS %.1f KB per mailbox, CPU at rest %.2f%% of one core, %.2f IMAP commands per mailbox per minute",
			sc.n, sc.burst.Round(time.Millisecond), sc.up.Round(time.Millisecond), sc.rssPerMailbox, sc.cpuPct, sc.cmdsPerMin)
		return
	case "many":
		m := manyBench(t, bins, manyN, manyPer, manyRuns, os.Getenv("MAILINTAKE_BENCH_PROFILE"))
		for _, l := range manySummary(m) {
			t.Logf("%s", l)
		}
		return
	}
	// The parser's benchmarks first, while nothing else runs on the machine.
	var parseLines [][2]string
	if only == "" {
		parseLines = parseBench(t)
	}

	corpus := Corpus(1, n)
	total := 0
	for _, m := range corpus {
		total += len(m)
	}
	dv := dovecot.Start(t, map[string]string{user: pass})
	dv.DeliverMany(t, user, corpus)
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(dv.CACertFile(t))
	pool.AppendCertsFromPEM(ca)
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	imaps := net.JoinHostPort("127.0.0.1", strconv.Itoa(dv.IMAPSPort))
	t.Logf("corpus: %d messages, %.1f MB", n, float64(total)/1e6)

	if only == "ha" {
		h := haBench(t, bins, dv, corpus)
		for _, l := range haLines(h) {
			t.Logf("%s: %s", l[0], l[1])
		}
		return
	}
	if only == "push" {
		for _, l := range pushLines(pushBench(t, bins, dv, imaps, tlsCfg, n, pushN, pushRestN)) {
			t.Logf("%s: %s", l[0], l[1])
		}
		return
	}

	// The corpus contestants, interleaved run by run after a warm-up round (which also builds
	// Dovecot's index and cache files).
	baseDir, baseRef, baseNote := buildBaseline(t)
	if baseNote != "" {
		t.Logf("baseline %s: %s", baseRef, baseNote)
	}
	env := &corpusEnv{t: t, bins: bins, baseline: baseDir, dv: dv, imaps: imaps, tlsCfg: tlsCfg, n: n, total: int64(total),
		profile: os.Getenv("MAILINTAKE_BENCH_PROFILE"), runs: runs}
	c := interleave(t, "floor", env.runners(baseRef), runs)
	if baseNote != "" {
		c.keys = append(c.keys, "baseline")
		c.labels["baseline"], c.shorts["baseline"] = fmt.Sprintf("baseline mailintaked (%s)", baseRef), "baseline"
		c.notes["baseline"] = baseNote
	}
	if !c.has("mbsync") && c.notes["mbsync"] == "" {
		c.keys = slices.Insert(c.keys, 1, "mbsync")
		c.labels["mbsync"], c.shorts["mbsync"] = "mbsync (isync)", "mbsync"
		c.notes["mbsync"] = "not installed"
	}
	for _, l := range corpusSummary(c) {
		t.Logf("%s", l)
	}
	if only == "e2e" {
		return
	}

	// The other peers: not interleaved, compared with the median floor.
	var peers []peer
	for _, p := range []struct {
		name, bin string
		run       func(dir string) *exec.Cmd
	}{
		{"getmail6", "getmail", func(dir string) *exec.Cmd { return getmail(t, dir, dv) }},
		{"fetchmail", "fetchmail", func(dir string) *exec.Cmd { return fetchmail(t, dir, dv) }},
		{"offlineimap", "offlineimap", func(dir string) *exec.Cmd { return offlineimap(t, dir, dv) }},
	} {
		if _, err := exec.LookPath(p.bin); err != nil {
			peers = append(peers, peer{name: p.name, note: "not installed"})
			continue
		}
		var walls []time.Duration
		var cpus []float64
		var note string
		for range peerRuns {
			dir := t.TempDir()
			cmd := p.run(dir)
			start := time.Now()
			out, err := cmd.CombinedOutput()
			if err != nil {
				// One line: the note is a table cell.
				note = strings.Join(strings.Fields(fmt.Sprintf("failed: %v: %.200s", err, out)), " ")
				break
			}
			walls = append(walls, time.Since(start))
			cpus = append(cpus, (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds())
		}
		if len(walls) == 0 {
			peers = append(peers, peer{name: p.name, note: note})
			continue
		}
		peers = append(peers, peer{name: p.name, wall: median(walls, func(d time.Duration) float64 { return d.Seconds() }), cpu: medianF(cpus)})
	}

	// Many mailboxes at once, on a Dovecot of their own.
	many := manyBench(t, bins, manyN, manyPer, manyRuns, "")
	for _, l := range manySummary(many) {
		t.Logf("%s", l)
	}

	// Push latency: APPEND, then the consumer receives it.
	push := pushBench(t, bins, dv, imaps, tlsCfg, n, pushN, pushRestN)

	// Scale: idle mailboxes on a separate in-memory IMAP server process.
	sc := scale(t, bins, scaleN, "")

	// Several replicas on PostgreSQL.
	ha := haBench(t, bins, dv, corpus)

	// Sending through the in-process SMTP server.
	send := sendBench(t, bins, "")

	md := report(reportInput{n: n, total: total, peerRuns: peerRuns, corpus: c, peers: peers, many: many, push: push, scale: sc, ha: ha, send: send, parse: parseLines})
	fmt.Print("\n" + md)
	out := os.Getenv("MAILINTAKE_BENCH_OUT")
	if out == "" {
		out = filepath.Join(testutil.ModuleRoot(), "BENCHMARKS.md")
	}
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		t.Error(err)
	}
}

// peer is a peer's median run, not interleaved.
type peer struct {
	name string
	wall time.Duration
	cpu  float64 // its own CPU seconds
	note string
}

type reportInput struct {
	n, total, peerRuns int
	corpus             *contest
	peers              []peer
	many               manyResult
	push               pushResult
	scale              scaleResult
	ha                 haResult
	send               sendResult
	parse              [][2]string
}

// report is BENCHMARKS.md: the summary table, then every run of the interleaved measurements.
func report(in reportInput) string {
	c := in.corpus
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nMeasured by `make bench` on %s: %s, %d cores, Go %s, Dovecot %s (private instance, TLS on loopback).\n",
		time.Now().UTC().Format("2006-01-02"), cpuName(), runtime.NumCPU(), strings.TrimPrefix(runtime.Version(), "go"), dovecotVersion())
	fmt.Fprintf(&b, "Corpus: %d generated service-desk messages (seed 1), %.1f MB. The floor, mbsync and mailintake ran in turn, run by run: %d runs after a warm-up round that is not counted. "+
		"Figures are medians of the runs; each ratio is the median of the ratios within a run (the machine's speed drifts between runs). "+
		"CPU is user+system seconds of mailintaked (with its auth plugin), of the consumer and of Dovecot. "+
		"getmail6, fetchmail and offlineimap: medians of %d runs, not interleaved, against the median floor. "+
		"Reproduce: `make bench` (after `apt-get install dovecot-imapd isync getmail6 fetchmail offlineimap`).\n\n", in.n, float64(in.total)/1e6, c.runs, in.peerRuns)
	b.WriteString("| measurement | figure | vs floor |\n|---|---|---|\n")
	cpuOf := func(k string, f func(sample) float64) float64 { return c.med(k, f) }
	server := func(s sample) float64 { return s.server }
	consumer := func(s sample) float64 { return s.consumer }
	dovecotS := func(s sample) float64 { return s.dovecot }
	wallMed := func(c *contest, k string) time.Duration {
		return time.Duration(c.med(k, wallOf) * float64(time.Second)).Round(time.Millisecond)
	}
	x := func(r float64) string { return fmt.Sprintf("%.2f×", r) }
	for _, k := range c.keys {
		label := c.labels[k]
		if !c.has(k) {
			fmt.Fprintf(&b, "| %s | %s | |\n", label, c.notes[k])
			continue
		}
		fig := fmt.Sprintf("%s, %.1f MB/s, %.0f msg/s", wallMed(c, k), c.med(k, sample.mbps), c.med(k, sample.msgps))
		switch k {
		case "floor":
			fig += fmt.Sprintf("; CPU s: the client %.2f, Dovecot %.2f", cpuOf(k, consumer), cpuOf(k, dovecotS))
		case "mbsync":
			fig += fmt.Sprintf("; CPU s: mbsync %.2f, Dovecot %.2f, in all %.2f", cpuOf(k, consumer), cpuOf(k, dovecotS), cpuOf(k, sample.total))
		default:
			fig += fmt.Sprintf("; mailintaked CPU **%.2f ms per message**, %.1f ms per MB (%.2f s)", cpuOf(k, sample.serverMsPerMsg), cpuOf(k, sample.serverMsPerMB), cpuOf(k, server))
			if base := map[string]string{"e2e": "baseline", "cli": "baseline-cli"}[k]; base != "" {
				if r, n := c.ratio(k, base, sample.serverMsPerMsg); n > 0 {
					fig += fmt.Sprintf(" = **%.2f× the baseline's** (%s) in the same run", r, c.shorts[base])
				}
			}
			who := "the Go client"
			if k == "cli" || k == "baseline-cli" {
				who = "the CLI"
			}
			fig += fmt.Sprintf("; CPU s: %s %.2f, Dovecot %.2f, in all %.2f; peak RSS %.0f MB", who, cpuOf(k, consumer), cpuOf(k, dovecotS), cpuOf(k, sample.total),
				c.med(k, func(s sample) float64 { return float64(s.peakRSS) / 1024 }))
			if r, n := c.ratio(k, "mbsync", wallOf); n > 0 {
				fig += fmt.Sprintf("; wall %.2f× mbsync's", r)
			}
			if k == "cli" {
				if r, n := c.ratio(k, "e2e", wallOf); n > 0 {
					fig += fmt.Sprintf(", %.2f× the Go client's", r)
				}
			}
			if k == "e2e" {
				if r, n := c.ratio(k, "baseline", wallOf); n > 0 {
					fig += fmt.Sprintf(", %.2f× the baseline's", r)
				}
			}
		}
		if note := c.notes[k]; note != "" {
			fig += "; then " + note
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", label, fig, x(c.vsFloor(k)))
	}
	floorMed := c.med("floor", wallOf)
	for _, p := range in.peers {
		if p.note != "" {
			fmt.Fprintf(&b, "| %s | %s | |\n", p.name, p.note)
		} else {
			fmt.Fprintf(&b, "| %s (not interleaved) | %s, %.1f MB/s; CPU %.2f s | %s (median floor) |\n", p.name, p.wall.Round(time.Millisecond),
				float64(in.total)/1e6/p.wall.Seconds(), p.cpu, x(p.wall.Seconds()/floorMed))
		}
	}
	m := in.many
	if mc := m.contest; mc != nil {
		what := fmt.Sprintf("%d mailboxes × %d messages at once (%s)", m.users, m.per, m.transport)
		for _, k := range mc.keys {
			if !mc.has(k) {
				fmt.Fprintf(&b, "| %s, %s | %s | |\n", what, mc.labels[k], mc.notes[k])
				continue
			}
			fig := fmt.Sprintf("%s, %.0f msg/s, %.1f MB/s", wallMed(mc, k), mc.med(k, sample.msgps), mc.med(k, sample.mbps))
			if k == mc.floor {
				fig += fmt.Sprintf("; CPU s: the client %.2f, Dovecot %.2f", mc.med(k, consumer), mc.med(k, dovecotS))
			} else {
				fig += fmt.Sprintf("; mailintaked CPU **%.2f ms per message** (%.2f s); CPU s: the Go client %.2f, Dovecot %.2f, in all %.2f; peak RSS %.0f MB",
					mc.med(k, sample.serverMsPerMsg), mc.med(k, server), mc.med(k, consumer), mc.med(k, dovecotS), mc.med(k, sample.total),
					mc.med(k, func(s sample) float64 { return float64(s.peakRSS) / 1024 }))
			}
			fmt.Fprintf(&b, "| %s, %s | %s | %s (the many-connection floor) |\n", what, mc.labels[k], fig, x(mc.vsFloor(k)))
		}
	}
	for _, l := range pushLines(in.push) {
		fmt.Fprintf(&b, "| %s | %s | |\n", l[0], l[1])
	}
	sc := in.scale
	fmt.Fprintf(&b, "| %d idle mailboxes, each after one message delivered and acknowledged | %s to bring all sessions up; one message to every mailbox at once delivered and acknowledged in %s; **RSS %.1f KB per mailbox** (%d MB in all); **CPU at rest %.2f%% of one core**; %.2f IMAP commands per mailbox per minute at rest | |\n",
		sc.n, sc.up.Round(time.Millisecond), sc.burst.Round(time.Millisecond), sc.rssPerMailbox, sc.rss>>10, sc.cpuPct, sc.cmdsPerMin)
	for _, l := range haLines(in.ha) {
		fmt.Fprintf(&b, "| %s | %s | |\n", l[0], l[1])
	}
	for _, l := range sendLines(in.send) {
		fmt.Fprintf(&b, "| %s | %s | |\n", l[0], l[1])
	}
	for _, l := range in.parse {
		fmt.Fprintf(&b, "| %s | %s | |\n", l[0], l[1])
	}
	b.WriteString("\n## Every run\n\nEach interleaved run, with its ratio to the floor of the same run (for the many mailboxes: the floor with one connection per mailbox). CPU in seconds; mailintaked's per message in milliseconds.\n\n")
	b.WriteString(runTable(c, m.contest))
	return b.String()
}

// runTable is every counted run of the contests as a Markdown table.
func runTable(contests ...*contest) string {
	var b strings.Builder
	b.WriteString("| run | contestant | wall | × this run's floor | CPU mailintaked | CPU consumer | CPU Dovecot | CPU in all | mailintaked ms/msg | MB/s |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range contests {
		if c == nil {
			continue
		}
		for r := 1; r <= c.runs; r++ {
			f, hasFloor := c.get(r, c.floor)
			for _, k := range c.keys {
				s, ok := c.get(r, k)
				if !ok {
					continue
				}
				ratio, server, perMsg := "", "—", "—"
				if hasFloor {
					ratio = fmt.Sprintf("%.2f×", s.wall.Seconds()/f.wall.Seconds())
				}
				if s.server > 0 {
					server, perMsg = fmt.Sprintf("%.2f", s.server), fmt.Sprintf("%.2f", s.serverMsPerMsg())
				}
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.2f | %.2f | %.2f | %s | %.1f |\n", strings.TrimSpace(c.name+" "+strconv.Itoa(r)), c.shorts[k], s.wall.Round(time.Millisecond), ratio,
					server, s.consumer, s.dovecot, s.total(), perMsg, s.mbps())
			}
		}
	}
	return b.String()
}

func pct(xs []time.Duration, p int) time.Duration {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)].Round(time.Millisecond)
}

func cpuName() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func dovecotVersion() string {
	out, _ := exec.Command("dovecot", "--version").Output()
	return strings.Fields(string(out) + " ?")[0]
}

// pushResult is push latency three ways (see pushLatency): on Dovecot while the mailbox keeps
// receiving, on Dovecot at rest, and at rest on the in-memory IMAP server, which sends its IDLE
// notification at once where Dovecot waits 500 ms to gather changes (NOTIFY_DELAY_MSECS in its
// mailbox-watch.c): that one is mailintake's own latency.
type pushResult struct {
	busy, rest, restMem []time.Duration
}

// pushBench measures push latency once the corpus of dv's mailbox (corpusN messages) was
// delivered and acknowledged: n messages to the busy mailbox, restN each way at rest.
func pushBench(t *testing.T, bins string, dv *dovecot.Server, imaps string, tlsCfg *tls.Config, corpusN, n, restN int) pushResult {
	var r pushResult
	d := startDaemon(t, bins)
	dovecotTarget := pushTarget{addr: imaps, tls: tlsCfg, user: user, pass: pass, id: d.addMailbox(t, dovecotMailbox(dv, t))}
	consume(t, d.c, corpusN, nil)
	r.busy = pushLatency(t, d, dovecotTarget, n, true)
	r.rest = pushLatency(t, d, dovecotTarget, restN, false)
	d.stop()

	imap := startDevIMAP(t, bins, 1)
	d = startDaemon(t, bins)
	mb := imap.mailbox(0)
	mb.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}
	r.restMem = pushLatency(t, d, pushTarget{addr: net.JoinHostPort(imap.host, strconv.Itoa(imap.port)), user: mb.GetUsername(), pass: "pw", id: d.addMailbox(t, mb)}, restN, false)
	d.stop()
	return r
}

// pushLines are the report's rows of a pushResult.
func pushLines(r pushResult) [][2]string {
	row := func(lat []time.Duration) string {
		return fmt.Sprintf("p50 %s, p99 %s, max %s", pct(lat, 50), pct(lat, 99), slices.Max(lat).Round(time.Millisecond))
	}
	return [][2]string{
		{fmt.Sprintf("push latency (APPEND → consumer), Dovecot, a mailbox that keeps receiving (each message appended as the one before arrives), %d messages", len(r.busy)), row(r.busy)},
		{fmt.Sprintf("push latency, Dovecot, a mailbox at rest (each message appended once the session is back in IDLE; Dovecot sends IDLE news 500 ms after a change), %d messages", len(r.rest)), row(r.rest)},
		{fmt.Sprintf("push latency, a mailbox at rest on the in-memory IMAP server (IDLE news at once: mailintake's own latency), %d messages", len(r.restMem)), row(r.restMem)},
	}
}

// pushTarget is where push latency is measured: an IMAP server a test client APPENDs to as
// user, and the daemon's mailbox (id) that watches that user's INBOX.
type pushTarget struct {
	addr       string
	tls        *tls.Config // nil: plaintext
	user, pass string
	id         string
}

// pushLatency measures n times from the APPEND of a message to its arrival at a consumer, on a
// daemon that watches only pt's mailbox, with nothing waiting in it. busy: each message is appended as soon as the one
// before arrived, while the consumer's ack of it is on its way (a mailbox that keeps receiving:
// the round that applies the ack finds the new mail); else only once the ack was applied and
// the session is back in IDLE for a while (a mailbox at rest: the server's IDLE notification
// is all that can bring the mail).
func pushLatency(t *testing.T, d *daemon, pt pushTarget, n int, busy bool) []time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := d.c.Messages.StreamMessages(ctx, &mailintakev1.StreamMessagesRequest{MaxInFlight: 8})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 16)
	acked := make(chan struct{}, n) // one for each ack that went through
	go func() {
		for {
			resp, err := s.Recv()
			if err != nil {
				return
			}
			subject := resp.GetMessage().GetEnvelope().GetSubject()
			if busy {
				got <- subject
			}
			if _, err := d.c.Messages.AckMessages(ctx, &mailintakev1.AckMessagesRequest{MessageIds: []string{resp.GetMessage().GetId()}}); err == nil {
				acked <- struct{}{}
			}
			if !busy {
				got <- subject
			}
		}
	}()
	var c *imapclient.Client
	if pt.tls != nil {
		c, err = imapclient.DialTLS(pt.addr, &imapclient.Options{TLSConfig: pt.tls})
	} else {
		c, err = imapclient.DialInsecure(pt.addr, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(pt.user, pt.pass).Wait(); err != nil {
		t.Fatal(err)
	}
	// atRest waits until the session applied what it had to and is back in IDLE.
	atRest := func() {
		time.Sleep(200 * time.Millisecond) // the ack reaches the session, which leaves IDLE to apply it
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			st, err := d.c.Mailboxes.GetMailboxStatus(ctx, &mailintakev1.GetMailboxStatusRequest{Id: pt.id})
			if err == nil && st.GetStatus().GetState() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the session did not come to rest")
			}
		}
		time.Sleep(50 * time.Millisecond) // IDLE is sent just after the state is set
	}
	atRest()
	var lat []time.Duration
	for i := range n {
		subject := fmt.Sprintf("push %d", i)
		raw := fmt.Sprintf("From: a@example.net\r\nTo: %s\r\nSubject: %s\r\n\r\npush\r\n", pt.user, subject)
		start := time.Now()
		cmd := c.Append("INBOX", int64(len(raw)), nil)
		cmd.Write([]byte(raw))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if s != subject {
				t.Fatalf("got %q, want %q", s, subject)
			}
			lat = append(lat, time.Since(start))
		case <-time.After(30 * time.Second):
			t.Fatalf("push %d never arrived", i)
		}
		if !busy {
			atRest()
		}
	}
	for range n {
		select {
		case <-acked: // the next measurement finds nothing of this one unacknowledged
		case <-time.After(30 * time.Second):
			t.Fatal("an ack did not go through")
		}
	}
	return lat
}

type scaleResult struct {
	n             int
	up            time.Duration
	rss           int64
	rssPerMailbox float64
	cpuPct        float64
	cmdsPerMin    float64       // IMAP commands per mailbox per minute at rest, counted at the server
	burst         time.Duration // one message to every mailbox at once: until all are acknowledged
}

// scale measures n idle mailboxes on the in-memory IMAP server; with profile set, a CPU profile
// of mailintaked at rest (15 s of the 30 s measured) goes to that file.
func scale(t *testing.T, bins string, n int, profile string) scaleResult {
	imap := startDevIMAP(t, bins, n)
	ask := func(cmd string) int64 { return imap.ask(t, cmd) }
	host, port := imap.host, imap.port
	var d *daemon
	metrics := ""
	if profile != "" {
		metrics = freeAddr()
		d = startDaemon(t, bins, "--metrics-listen", metrics, "--pprof")
	} else {
		d = startDaemon(t, bins)
	}
	time.Sleep(time.Second)
	rss0, _, _ := Memory(d.cmd.Process.Pid)
	start := time.Now()
	ids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ids[i] = d.addMailbox(t, &mailintakev1.Mailbox{Tenant: "scale", DisplayName: "scale", Enabled: true, Host: host, Port: uint32(port),
				Security: mailintakev1.Security_SECURITY_NONE, Username: fmt.Sprintf("user%05d@example.com", i), AuthProvider: "basic",
				AuthSecrets: map[string]string{"password": "pw"}})
		}()
	}
	wg.Wait()
	for {
		idle := 0
		for _, id := range ids {
			st, err := d.c.Mailboxes.GetMailboxStatus(context.Background(), &mailintakev1.GetMailboxStatusRequest{Id: id})
			if err == nil && st.GetStatus().GetState() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE {
				idle++
			}
		}
		if idle == n {
			break
		}
		if time.Since(start) > 10*time.Minute {
			t.Fatalf("only %d of %d sessions idle after 10 minutes", idle, n)
		}
		time.Sleep(time.Second)
	}
	res := scaleResult{n: n, up: time.Since(start)}
	// At rest after traffic, not only on a fresh start: every mailbox receives one message,
	// which a consumer takes and acknowledges, before anything is measured.
	ask("deliver")
	deliverStart := time.Now()
	consume(t, d.c, n, nil) // acknowledged in batches, as a PSA backend does
	res.burst = time.Since(deliverStart)
	time.Sleep(10 * time.Second) // settle: the after-ack actions are applied
	cpu0, _ := CPUSeconds(d.cmd.Process.Pid)
	cmds0 := ask("commands")
	prof := make(chan error, 1)
	if profile != "" {
		go func() { prof <- cpuProfile(metrics, profile) }()
	}
	time.Sleep(30 * time.Second)
	if profile != "" {
		if err := <-prof; err != nil {
			t.Errorf("CPU profile: %v", err)
		}
	}
	cpu1, _ := CPUSeconds(d.cmd.Process.Pid)
	res.cpuPct = (cpu1 - cpu0) / 30 * 100
	res.cmdsPerMin = float64(ask("commands")-cmds0) * 2 / float64(n)
	res.rss, _, _ = Memory(d.cmd.Process.Pid)
	res.rssPerMailbox = float64(res.rss-rss0) / float64(n)
	d.stop()
	imap.stop()
	return res
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+)\s+\d+\s+(\d+) ns/op\s+([\d.]+) MB/s\s+(\d+) B/op\s+(\d+) allocs/op`)

func parseBench(t *testing.T) [][2]string {
	cmd := exec.Command("go", "test", "-run", "XXX", "-bench", ".", "-benchmem", "-count", "3", "./internal/parse/")
	cmd.Dir = testutil.ModuleRoot()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("parse benchmarks: %v: %s", err, out)
	}
	byName := map[string][][]string{}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if m := benchLine.FindStringSubmatch(line); m != nil {
			if _, ok := byName[m[1]]; !ok {
				names = append(names, m[1])
			}
			byName[m[1]] = append(byName[m[1]], m)
		}
	}
	var rows [][2]string
	for _, name := range names {
		m := median(byName[name], func(m []string) float64 { f, _ := strconv.ParseFloat(m[3], 64); return f })
		what := map[string]string{"BenchmarkParse-" + strconv.Itoa(runtime.NumCPU()): "parse (the parser over an attachment-heavy corpus)",
			"BenchmarkGoMessageWalk-" + strconv.Itoa(runtime.NumCPU()): "go-message's bare walk of the same corpus"}[name]
		if what == "" {
			what = name
		}
		b, _ := strconv.ParseInt(m[4], 10, 64)
		rows = append(rows, [2]string{what, fmt.Sprintf("%s MB/s, %.1f MB/op, %s allocs/op", m[3], float64(b)/1e6, m[5])})
	}
	return rows
}

// The peers' configurations: each fetches the same INBOX over TLS into a Maildir under dir,
// keeping the mail on the server.

func mbsync(t *testing.T, dir string, dv *dovecot.Server) *exec.Cmd {
	cfg := fmt.Sprintf(`IMAPAccount bench
Host 127.0.0.1
Port %d
User %s
Pass %s
SSLType IMAPS
CertificateFile %s

IMAPStore remote
Account bench

MaildirStore local
Path %s/
Inbox %s/INBOX

Channel bench
Far :remote:
Near :local:
Patterns INBOX
Create Near
Sync Pull
SyncState *
`, dv.IMAPSPort, user, pass, dv.CACertFile(t), dir, dir)
	path := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(path, []byte(cfg), 0o600)
	return exec.Command("mbsync", "-q", "-c", path, "-a")
}

func getmail(t *testing.T, dir string, dv *dovecot.Server) *exec.Cmd {
	// getmail run as root delivers as an unprivileged user, who must reach the Maildir: it
	// lives in a directory of its own under the system temp dir, not in the test's.
	top, err := os.MkdirTemp("", "mailintake-getmail-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	os.Chmod(top, 0o755)
	md := filepath.Join(top, "Maildir")
	for _, s := range []string{"", "cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(md, s), 0o777)
		os.Chmod(filepath.Join(md, s), 0o777)
	}
	cfg := fmt.Sprintf(`[retriever]
type = SimpleIMAPSSLRetriever
server = 127.0.0.1
port = %d
username = %s
password = %s
ca_certs = %s
mailboxes = ("INBOX",)

[destination]
type = Maildir
path = %s/
user = nobody

[options]
read_all = true
delete = false
verbose = 0
`, dv.IMAPSPort, user, pass, dv.CACertFile(t), md)
	os.WriteFile(filepath.Join(dir, "getmailrc"), []byte(cfg), 0o600)
	return exec.Command("getmail", "--getmaildir", dir, "--rcfile", "getmailrc")
}

func fetchmail(t *testing.T, dir string, dv *dovecot.Server) *exec.Cmd {
	md := filepath.Join(dir, "Maildir")
	os.MkdirAll(md, 0o700)
	cfg := fmt.Sprintf(`set no syslog
poll localhost via 127.0.0.1 protocol IMAP port %d
  user "%s" password "%s"
  ssl sslcertck sslcertfile "%s" sslcommonname "localhost"
  keep fetchall
  mda "cat > /dev/null"
`, dv.IMAPSPort, user, pass, dv.CACertFile(t))
	path := filepath.Join(dir, "fetchmailrc")
	os.WriteFile(path, []byte(cfg), 0o600)
	cmd := exec.Command("fetchmail", "-f", path, "--pidfile", filepath.Join(dir, "pid"), "-s")
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	return cmd
}

func offlineimap(t *testing.T, dir string, dv *dovecot.Server) *exec.Cmd {
	cfg := fmt.Sprintf(`[general]
accounts = bench
metadata = %s/meta
ui = quiet

[Account bench]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = %s/mail

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = %d
remoteuser = %s
remotepass = %s
ssl = yes
sslcacertfile = %s
folderfilter = lambda f: f == 'INBOX'
readonly = True
`, dir, dir, dv.IMAPSPort, user, pass, dv.CACertFile(t))
	path := filepath.Join(dir, "offlineimaprc")
	os.WriteFile(path, []byte(cfg), 0o600)
	return exec.Command("offlineimap", "-c", path, "-o", "-u", "quiet")
}

var _ = imap.FlagSeen

// cpuProfile waits for the server's profiler on addr, then records a CPU profile of 15 s (the
// daemon stays up until it is written) into file.
func cpuProfile(addr, file string) error {
	var resp *http.Response
	var err error
	for range 200 {
		if resp, err = http.Get("http://" + addr + "/debug/pprof/profile?seconds=15"); err == nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profiler: %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
