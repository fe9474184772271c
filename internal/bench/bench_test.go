//go:build bench

package bench

import (
	"bufio"
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

// make bench: everything measured in one run on this machine, written as a Markdown table to
// standard output and to BENCHMARKS.md (MAILINTAKE_BENCH_OUT). Sizes: MAILINTAKE_BENCH_N
// (messages, default 2000), _RUNS (floor and end to end, default 5, medians reported),
// _PEER_RUNS (default 3), _SCALE (idle mailboxes,
// default 10000), _PUSH (push latency samples, default 200), _HA_KILLS and _HA_TERMS (failovers
// measured, default 10 and 5), _HA_RUNS (PostgreSQL against SQLite, default 3), _HA_IDLE (idle
// mailboxes of the planned restart, default 1000).
//
// For profiling by hand: MAILINTAKE_BENCH_ONLY=e2e measures only the floor and end to end (and
// writes no BENCHMARKS.md), MAILINTAKE_BENCH_ONLY=scale only the idle mailboxes, =ha only the
// replicas; MAILINTAKE_BENCH_PROFILE=FILE writes a CPU profile of the server
// during the last end-to-end run.

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
		"./internal/fakes/imaptest/cmd/mailintake-dev-imap")
	cmd.Dir = testutil.ModuleRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, out)
	}
	return dir
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
	go bufio.NewScanner(out).Scan() // keep the pipe drained enough; warnings are rare
	t.Cleanup(func() { d.cmd.Process.Kill(); d.cmd.Wait() })
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
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

type e2eResult struct {
	wall         time.Duration
	cpu          float64 // the server's
	consumerCPU  float64 // the consumer's (this process)
	dovecotCPU   float64 // the mail server's
	peakRSS      int64
	bytes, count int
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
	scaleN := envInt("MAILINTAKE_BENCH_SCALE", 10000)
	pushN := envInt("MAILINTAKE_BENCH_PUSH", 200)
	only := os.Getenv("MAILINTAKE_BENCH_ONLY")
	profile := os.Getenv("MAILINTAKE_BENCH_PROFILE")
	bins := buildBinaries(t)
	if only == "scale" {
		sc := scale(t, bins, scaleN)
		t.Logf("%d idle mailboxes after one message each (delivered and acknowledged in %s): up in %s, RSS %.1f KB per mailbox, CPU at rest %.2f%% of one core, %.2f IMAP commands per mailbox per minute",
			sc.n, sc.burst.Round(time.Millisecond), sc.up.Round(time.Millisecond), sc.rssPerMailbox, sc.cpuPct, sc.cmdsPerMin)
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
	// A first fetch builds Dovecot's cache files; it is not measured.
	if _, err := Floor(imaps, user, pass, tlsCfg); err != nil {
		t.Fatalf("warm-up fetch: %v", err)
	}
	// The floor, then end to end, alternating, several runs.
	var floors []FloorResult
	var e2es []e2eResult
	for r := range runs {
		f, err := Floor(imaps, user, pass, tlsCfg)
		if err != nil || f.Messages != n {
			t.Fatalf("floor: %d messages, %v", f.Messages, err)
		}
		floors = append(floors, f)
		var args []string
		var prof chan error
		if profile != "" && r == runs-1 {
			metrics := freeAddr()
			args = []string{"--metrics-listen", metrics, "--pprof"}
			prof = make(chan error, 1)
			go func() { prof <- cpuProfile(metrics, profile) }()
		}
		d := startDaemon(t, bins, args...)
		cpu0, _ := CPUSeconds(d.cmd.Process.Pid)
		self0, dv0 := selfCPU(), dovecotCPU()
		start := time.Now()
		d.addMailbox(t, dovecotMailbox(dv, t))
		bytes := 0
		consume(t, d.c, n, func(m *mailintakev1.Message) { bytes += int(m.GetRawSize()) })
		res := e2eResult{wall: time.Since(start), count: n, bytes: bytes, consumerCPU: selfCPU() - self0, dovecotCPU: dovecotCPU() - dv0}
		if prof != nil {
			// The profile covers the run; the daemon stays up until it is written.
			if err := <-prof; err != nil {
				t.Errorf("CPU profile: %v", err)
			}
		}
		cpu1, _ := CPUSeconds(d.cmd.Process.Pid)
		res.cpu = cpu1 - cpu0
		_, res.peakRSS, _ = Memory(d.cmd.Process.Pid)
		e2es = append(e2es, res)
		t.Logf("run %d: floor %s, end to end %s (%.2f×; CPU s: server %.1f, consumer %.1f, Dovecot %.1f; peak RSS %d MB)", r+1, f.Wall.Round(time.Millisecond),
			res.wall.Round(time.Millisecond), res.wall.Seconds()/f.Wall.Seconds(), res.cpu, res.consumerCPU, res.dovecotCPU, res.peakRSS>>10)
		d.cmd.Process.Kill() // nothing of this run competes with the next measurement
		d.cmd.Wait()
	}
	floor := median(floors, func(f FloorResult) float64 { return f.Wall.Seconds() })
	e2e := median(e2es, func(e e2eResult) float64 { return e.wall.Seconds() })
	if only == "e2e" {
		t.Logf("medians: floor %s, end to end %s = %.2f×", floor.Wall.Round(time.Millisecond), e2e.wall.Round(time.Millisecond), e2e.wall.Seconds()/floor.Wall.Seconds())
		return
	}

	// Peers.
	type peer struct {
		name string
		wall time.Duration
		note string
	}
	var peers []peer
	for _, p := range []struct {
		name, bin string
		run       func(dir string) *exec.Cmd
	}{
		{"mbsync (isync)", "mbsync", func(dir string) *exec.Cmd { return mbsync(t, dir, dv) }},
		{"getmail6", "getmail", func(dir string) *exec.Cmd { return getmail(t, dir, dv) }},
		{"fetchmail", "fetchmail", func(dir string) *exec.Cmd { return fetchmail(t, dir, dv) }},
		{"offlineimap", "offlineimap", func(dir string) *exec.Cmd { return offlineimap(t, dir, dv) }},
	} {
		if _, err := exec.LookPath(p.bin); err != nil {
			peers = append(peers, peer{name: p.name, note: "not installed"})
			continue
		}
		var walls []time.Duration
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
		}
		if len(walls) == 0 {
			peers = append(peers, peer{name: p.name, note: note})
			continue
		}
		peers = append(peers, peer{name: p.name, wall: median(walls, func(d time.Duration) float64 { return d.Seconds() })})
	}

	// Push latency: APPEND, then the consumer receives it.
	d := startDaemon(t, bins)
	d.addMailbox(t, dovecotMailbox(dv, t))
	consume(t, d.c, n, nil)
	lat := pushLatency(t, d, imaps, tlsCfg, pushN)

	// Scale: idle mailboxes on a separate in-memory IMAP server process.
	sc := scale(t, bins, scaleN)

	// Several replicas on PostgreSQL.
	ha := haBench(t, bins, dv, corpus)

	ratio := func(d time.Duration) string { return fmt.Sprintf("%.2f×", d.Seconds()/floor.Wall.Seconds()) }
	var b strings.Builder
	host, _ := os.Hostname()
	cpuModel := cpuName()
	fmt.Fprintf(&b, "# Benchmarks\n\nMeasured by `make bench` on %s: %s, %d cores, Go %s, Dovecot %s (private instance, TLS on loopback).\n",
		time.Now().UTC().Format("2006-01-02"), cpuModel, runtime.NumCPU(), strings.TrimPrefix(runtime.Version(), "go"), dovecotVersion())
	fmt.Fprintf(&b, "Corpus: %d generated service-desk messages (seed 1), %.1f MB. Medians of %d runs (the peers: %d). Reproduce: `make bench` (after `apt-get install dovecot-imapd isync getmail6 fetchmail offlineimap`).\n\n", n, float64(total)/1e6, runs, peerRuns)
	_ = host
	b.WriteString("| measurement | figure | vs floor |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| floor: raw `UID FETCH 1:* (BODY.PEEK[])` over TLS | %s, %.1f MB/s, %.0f msg/s | 1.00× |\n", floor.Wall.Round(time.Millisecond), float64(floor.Bytes)/1e6/floor.Wall.Seconds(), float64(n)/floor.Wall.Seconds())
	fmt.Fprintf(&b, "| mailintake end to end (fetch, parse, gRPC, ack) | %s, %.1f MB/s, %.0f msg/s, %.1f CPU s (the consumer %.1f, Dovecot %.1f), peak RSS %d MB | %s |\n",
		e2e.wall.Round(time.Millisecond), float64(e2e.bytes)/1e6/e2e.wall.Seconds(), float64(n)/e2e.wall.Seconds(), e2e.cpu, e2e.consumerCPU, e2e.dovecotCPU, e2e.peakRSS>>10, ratio(e2e.wall))
	for _, p := range peers {
		if p.note != "" {
			fmt.Fprintf(&b, "| %s | %s | |\n", p.name, p.note)
		} else {
			fmt.Fprintf(&b, "| %s | %s, %.1f MB/s | %s |\n", p.name, p.wall.Round(time.Millisecond), float64(total)/1e6/p.wall.Seconds(), ratio(p.wall))
		}
	}
	fmt.Fprintf(&b, "| push latency (APPEND → consumer), %d messages | p50 %s, p99 %s | |\n", len(lat), pct(lat, 50), pct(lat, 99))
	fmt.Fprintf(&b, "| %d idle mailboxes, each after one message delivered and acknowledged | %s to bring all sessions up; one message to every mailbox at once delivered and acknowledged in %s; RSS %.1f KB per mailbox (%d MB in all); CPU at rest %.1f%% of one core; %.2f IMAP commands per mailbox per minute at rest | |\n",
		sc.n, sc.up.Round(time.Millisecond), sc.burst.Round(time.Millisecond), sc.rssPerMailbox, sc.rss>>10, sc.cpuPct, sc.cmdsPerMin)
	for _, l := range haLines(ha) {
		fmt.Fprintf(&b, "| %s | %s | |\n", l[0], l[1])
	}
	for _, l := range parseLines {
		fmt.Fprintf(&b, "| %s | %s | |\n", l[0], l[1])
	}
	fmt.Print("\n" + b.String())
	out := os.Getenv("MAILINTAKE_BENCH_OUT")
	if out == "" {
		out = filepath.Join(testutil.ModuleRoot(), "BENCHMARKS.md")
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Error(err)
	}
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

func pushLatency(t *testing.T, d *daemon, imaps string, cfg *tls.Config, n int) []time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := d.c.Messages.StreamMessages(ctx, &mailintakev1.StreamMessagesRequest{MaxInFlight: 8})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 16)
	go func() {
		for {
			resp, err := s.Recv()
			if err != nil {
				return
			}
			d.c.Messages.AckMessages(ctx, &mailintakev1.AckMessagesRequest{MessageIds: []string{resp.GetMessage().GetId()}})
			got <- resp.GetMessage().GetEnvelope().GetSubject()
		}
	}()
	c, err := imapclient.DialTLS(imaps, &imapclient.Options{TLSConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the session idles
	var lat []time.Duration
	for i := range n {
		subject := fmt.Sprintf("push %d", i)
		raw := fmt.Sprintf("From: a@example.net\r\nTo: %s\r\nSubject: %s\r\n\r\npush\r\n", user, subject)
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

func scale(t *testing.T, bins string, n int) scaleResult {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	srv := exec.Command(filepath.Join(bins, "mailintake-dev-imap"), "--listen", addr, "--users", strconv.Itoa(n))
	out, _ := srv.StdoutPipe()
	ctl, _ := srv.StdinPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	srvOut := bufio.NewScanner(out)
	if !srvOut.Scan() {
		t.Fatal("the IMAP server did not start")
	}
	// ask sends a control command to the IMAP server and returns its answer's number.
	ask := func(cmd string) int64 {
		fmt.Fprintln(ctl, cmd)
		if !srvOut.Scan() {
			t.Fatalf("the IMAP server did not answer %q", cmd)
		}
		f := strings.Fields(srvOut.Text())
		v, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
		return v
	}
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	d := startDaemon(t, bins)
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
	time.Sleep(30 * time.Second)
	cpu1, _ := CPUSeconds(d.cmd.Process.Pid)
	res.cpuPct = (cpu1 - cpu0) / 30 * 100
	res.cmdsPerMin = float64(ask("commands")-cmds0) * 2 / float64(n)
	res.rss, _, _ = Memory(d.cmd.Process.Pid)
	res.rssPerMailbox = float64(res.rss-rss0) / float64(n)
	d.cmd.Process.Kill()
	srv.Process.Kill()
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

// cpuProfile waits for the server's profiler on addr, then records a CPU profile until the
// end-to-end run is over (it records 15 s) into file.
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

// selfCPU returns the CPU seconds this process has used.
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// dovecotCPU returns the CPU seconds used by the Dovecot processes running now (the private
// instance is the only one on a test machine).
func dovecotCPU() float64 {
	total := 0.0
	procs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, p := range procs {
		comm, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		switch strings.TrimSpace(string(comm)) {
		case "imap", "imap-login", "dovecot", "auth", "config", "log", "anvil", "stats", "indexer", "imap-hibernate":
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			if c, err := CPUSeconds(pid); err == nil {
				total += c
			}
		}
	}
	return total
}
