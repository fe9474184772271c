//go:build bench

package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	"github.com/mailintake/mailintake/internal/testutil"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// The contestants of the corpus, measured run by run in turn (the machine's speed drifts
// between runs, so each figure is also compared with the floor of its own run), after a
// warm-up round that is not counted:
//
//   - floor: Floor in this process; its CPU is this process's.
//   - mbsync: mbsync -a into a fresh Maildir; its CPU is the process's (from wait4).
//   - e2e: mailintaked end to end, consumed and acknowledged by the Go client in this process.
//   - cli: the same with `mailintake tail --ack --quiet --limit N` as the consumer, a process
//     of its own whose CPU is counted apart; it exits after acknowledging the Nth message.
//   - baseline: the release before (git ref MAILINTAKE_BENCH_BASELINE, default a222271) built
//     from `git archive`, consumed by the Go client like e2e.
//
// Every contestant starts on the same Dovecot INBOX (after-ack keep, so nothing changes on
// the server) and every mailintaked is a fresh process with a fresh data directory.

// sample is one contestant's run.
type sample struct {
	run      int // 1…runs; 0 is the warm-up
	who      string
	wall     time.Duration
	server   float64 // CPU s of mailintaked and its plugins (0 for the floor and mbsync)
	consumer float64 // CPU s of the consumer: the floor client, mbsync, the Go client or the CLI
	dovecot  float64 // CPU s of the Dovecot instance
	msgs     int
	bytes    int64
	peakRSS  int64 // mailintaked's VmHWM, KiB
}

func (s sample) total() float64 { return s.server + s.consumer + s.dovecot }
func (s sample) mbps() float64  { return float64(s.bytes) / 1e6 / s.wall.Seconds() }
func (s sample) msgps() float64 { return float64(s.msgs) / s.wall.Seconds() }

// serverMsPerMsg and serverMsPerMB are mailintaked's CPU per message and per MB.
func (s sample) serverMsPerMsg() float64 { return s.server * 1000 / float64(s.msgs) }
func (s sample) serverMsPerMB() float64  { return s.server * 1000 / (float64(s.bytes) / 1e6) }

// contest is the interleaved runs of a set of contestants.
type contest struct {
	name    string            // in the run column of the table of every run ("" for the corpus)
	floor   string            // the key of the floor the others are compared with
	keys    []string          // the contestants, in the order of the tables
	labels  map[string]string // their names in the summary
	shorts  map[string]string // and in the table of every run
	notes   map[string]string // contestants that were left out or dropped, and why
	runs    int
	samples []sample // counted runs only
}

func (c *contest) get(run int, who string) (sample, bool) {
	for _, s := range c.samples {
		if s.run == run && s.who == who {
			return s, true
		}
	}
	return sample{}, false
}

func (c *contest) of(who string) []sample {
	var out []sample
	for _, s := range c.samples {
		if s.who == who {
			out = append(out, s)
		}
	}
	return out
}

// has reports whether who has counted runs.
func (c *contest) has(who string) bool { return len(c.of(who)) > 0 }

// med is the median of f over who's runs.
func (c *contest) med(who string, f func(sample) float64) float64 {
	var xs []float64
	for _, s := range c.of(who) {
		xs = append(xs, f(s))
	}
	return medianF(xs)
}

// ratio is the median over the runs of f(a)/f(b) within each run, and the number of runs
// that had both.
func (c *contest) ratio(a, b string, f func(sample) float64) (float64, int) {
	var xs []float64
	for r := 1; r <= c.runs; r++ {
		sa, okA := c.get(r, a)
		sb, okB := c.get(r, b)
		if okA && okB && f(sb) > 0 {
			xs = append(xs, f(sa)/f(sb))
		}
	}
	return medianF(xs), len(xs)
}

// vsFloor is the median of who's wall time over its run's floor's.
func (c *contest) vsFloor(who string) float64 {
	r, _ := c.ratio(who, c.floor, wallOf)
	return r
}

func wallOf(s sample) float64 { return s.wall.Seconds() }

func medianF(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// runner measures one contestant once.
type runner struct {
	key, label, short string
	run               func(run int) (sample, error)
	optional          bool // an error drops it from the remaining runs instead of failing the bench
}

// interleave runs every runner once per round, the warm-up round first (not counted), then
// runs rounds, each in an order rotated by one so that no contestant always follows the same
// one. Each contestant's line is logged.
func interleave(t *testing.T, floor string, runners []runner, runs int) *contest {
	c := &contest{floor: floor, labels: map[string]string{}, shorts: map[string]string{}, notes: map[string]string{}, runs: runs}
	for _, r := range runners {
		c.keys = append(c.keys, r.key)
		c.labels[r.key], c.shorts[r.key] = r.label, r.short
	}
	for round := 0; round <= runs; round++ {
		floorWall := time.Duration(0)
		for i := range runners {
			r := runners[(i+round)%len(runners)]
			if _, dropped := c.notes[r.key]; dropped {
				continue
			}
			time.Sleep(250 * time.Millisecond) // the previous contestant's processes wind down
			s, err := r.run(round)
			if err != nil {
				if !r.optional {
					t.Fatalf("%s, run %d: %v", r.key, round, err)
				}
				// One line: the note is a table cell.
				c.notes[r.key] = strings.Join(strings.Fields(fmt.Sprintf("failed in run %d: %.300v", round, err)), " ")
				t.Logf("%s dropped: %s", r.key, c.notes[r.key])
				continue
			}
			s.run, s.who = round, r.key
			if r.key == floor {
				floorWall = s.wall
			}
			if round > 0 {
				c.samples = append(c.samples, s)
			}
			t.Logf("%s: %s", runName(round), describe(s))
		}
		if round > 0 && floorWall > 0 {
			var parts []string
			for _, k := range c.keys {
				if s, ok := c.get(round, k); ok && k != floor {
					parts = append(parts, fmt.Sprintf("%s %.2f×", k, s.wall.Seconds()/floorWall.Seconds()))
				}
			}
			t.Logf("%s against its floor: %s", runName(round), strings.Join(parts, ", "))
		}
	}
	return c
}

func runName(round int) string {
	if round == 0 {
		return "warm-up"
	}
	return fmt.Sprintf("run %d", round)
}

// describe is one sample as a log line.
func describe(s sample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %9s, %6.1f MB/s, %5.0f msg/s; CPU s:", s.who, s.wall.Round(time.Millisecond), s.mbps(), s.msgps())
	if s.server > 0 {
		fmt.Fprintf(&b, " mailintaked %.2f (%.2f ms/msg, %.1f ms/MB),", s.server, s.serverMsPerMsg(), s.serverMsPerMB())
	}
	fmt.Fprintf(&b, " consumer %.2f, Dovecot %.2f, total %.2f", s.consumer, s.dovecot, s.total())
	if s.peakRSS > 0 {
		fmt.Fprintf(&b, "; peak RSS %d MB", s.peakRSS>>10)
	}
	return b.String()
}

// corpusEnv is what the corpus contestants share.
type corpusEnv struct {
	t        *testing.T
	bins     string // this tree's binaries
	baseline string // the baseline's binaries ("" when not built)
	dv       *dovecot.Server
	imaps    string
	tlsCfg   *tls.Config
	n        int
	total    int64
	profile  string // MAILINTAKE_BENCH_PROFILE: the last e2e run's CPU profile
	runs     int
}

// profileOf is where the server's CPU profile of run goes: MAILINTAKE_BENCH_PROFILE with suffix
// for the last run, "" (none) for the others or when no profile was asked for.
func (e *corpusEnv) profileOf(run int, suffix string) string {
	if run != e.runs || e.profile == "" {
		return ""
	}
	return e.profile + suffix
}

func (e *corpusEnv) runners(baseRef string) []runner {
	rs := []runner{{key: "floor", label: "floor: raw `UID FETCH 1:* (BODY.PEEK[])` over TLS, in-process", short: "floor", run: e.floor}}
	if _, err := exec.LookPath("mbsync"); err == nil {
		rs = append(rs, runner{key: "mbsync", label: "mbsync (isync) into a Maildir", short: "mbsync", run: e.mbsync, optional: true})
	}
	rs = append(rs,
		runner{key: "e2e", label: "mailintake end to end (fetch, parse, gRPC, ack), the Go client consuming", short: "mailintake, Go client", run: func(run int) (sample, error) {
			return e.goClient(e.bins, e.profileOf(run, ""))
		}},
		runner{key: "cli", label: "mailintake end to end, `mailintake tail --ack --quiet` consuming", short: "mailintake, CLI", run: func(run int) (sample, error) {
			return e.cliWith(e.bins, e.profileOf(run, "-cli"))
		}, optional: true})
	if e.baseline != "" {
		rs = append(rs, runner{key: "baseline", label: fmt.Sprintf("baseline mailintaked (%s) end to end, the Go client consuming", baseRef),
			short: "baseline " + baseRef, run: func(int) (sample, error) { return e.goClient(e.baseline, "") }, optional: true},
			// The issue's own measurement: the release's daemon consumed by the release's CLI.
			runner{key: "baseline-cli", label: fmt.Sprintf("baseline mailintaked (%s) end to end, its own `mailintake tail --ack --quiet` consuming", baseRef),
				short: "baseline CLI " + baseRef, run: func(int) (sample, error) { return e.cliWith(e.baseline, "") }, optional: true})
	}
	return rs
}

func (e *corpusEnv) floor(int) (sample, error) {
	self0, dv0 := selfCPU(), dovecotCPU(e.dv)
	f, err := Floor(e.imaps, user, pass, e.tlsCfg)
	if err != nil {
		return sample{}, err
	}
	if f.Messages != e.n {
		return sample{}, fmt.Errorf("the floor read %d messages of %d", f.Messages, e.n)
	}
	return sample{wall: f.Wall, consumer: selfCPU() - self0, dovecot: dovecotCPU(e.dv) - dv0, msgs: f.Messages, bytes: f.Bytes}, nil
}

func (e *corpusEnv) mbsync(int) (sample, error) {
	dir, err := os.MkdirTemp("", "mailintake-mbsync-")
	if err != nil {
		return sample{}, err
	}
	defer os.RemoveAll(dir)
	cmd := mbsync(e.t, dir, e.dv)
	dv0 := dovecotCPU(e.dv)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		return sample{}, fmt.Errorf("%v: %s", err, out)
	}
	got := 0
	for _, sub := range []string{"cur", "new"} {
		files, _ := os.ReadDir(filepath.Join(dir, "INBOX", sub))
		got += len(files)
	}
	if got != e.n {
		return sample{}, fmt.Errorf("mbsync stored %d messages of %d", got, e.n)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return sample{wall: wall, consumer: cpu.Seconds(), dovecot: dovecotCPU(e.dv) - dv0, msgs: got, bytes: e.total}, nil
}

// goClient runs mailintaked from bins on the corpus, consumed by the Go client in this
// process. With profile set, the server's CPU profile of the run is written there.
func (e *corpusEnv) goClient(bins, profile string) (sample, error) {
	t := e.t
	d, profiled := startProfiled(t, bins, profile)
	defer d.stop()
	pid := d.cmd.Process.Pid
	cpu0, self0, dv0 := treeCPU(pid), selfCPU(), dovecotCPU(e.dv)
	start := time.Now()
	d.addMailbox(t, dovecotMailbox(e.dv, t))
	var bytes int64
	consume(t, d.c, e.n, func(m *mailintakev1.Message) { bytes += int64(m.GetRawSize()) })
	s := sample{wall: time.Since(start), server: treeCPU(pid) - cpu0, consumer: selfCPU() - self0, dovecot: dovecotCPU(e.dv) - dv0, msgs: e.n, bytes: bytes}
	_, s.peakRSS, _ = Memory(pid)
	profiled()
	return s, nil
}

// cli runs mailintaked on the corpus with the CLI as the consumer: `mailintake tail --ack
// --quiet --limit N` (the server's default max in flight; each message acknowledged before
// the next is read), which exits once it has acknowledged the Nth message and prints one line
// with the count and bytes. The server's counters confirm that all N were acknowledged. The
// daemon and CLI come from bins; with profile set, the server's CPU profile of the run is
// written there.
func (e *corpusEnv) cliWith(bins, profile string) (sample, error) {
	t := e.t
	d, profiled := startProfiled(t, bins, profile)
	defer d.stop()
	pid := d.cmd.Process.Pid
	cpu0, dv0 := treeCPU(pid), dovecotCPU(e.dv)
	start := time.Now()
	id := d.addMailbox(t, dovecotMailbox(e.dv, t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bins, "mailintake"), "tail", "--addr", d.addr, "--data-dir", d.data,
		"--ack", "--quiet", "--limit", strconv.Itoa(e.n), "--timeout", "2m")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	s := sample{wall: time.Since(start), server: treeCPU(pid) - cpu0, dovecot: dovecotCPU(e.dv) - dv0, msgs: e.n}
	if err != nil {
		return s, fmt.Errorf("mailintake tail: %v: %s", err, stderr.String())
	}
	s.consumer = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	_, s.peakRSS, _ = Memory(pid)
	profiled()
	var got int
	if _, err := fmt.Sscanf(out.String(), "%d messages, %d bytes", &got, &s.bytes); err != nil || got != e.n {
		return s, fmt.Errorf("mailintake tail printed %q (want %d messages): %v", out.String(), e.n, err)
	}
	if acked := acknowledged(d, id); acked != e.n {
		return s, fmt.Errorf("the server counts %d messages acknowledged of %d", acked, e.n)
	}
	return s, nil
}

// acknowledged returns a mailbox's acknowledged count once it stops changing (at most 5 s).
func acknowledged(d *daemon, id string) int {
	last := -1
	for range 50 {
		st, err := d.c.Mailboxes.GetMailboxStatus(context.Background(), &mailintakev1.GetMailboxStatusRequest{Id: id})
		if err == nil {
			n := int(st.GetStatus().GetCounts().GetAcknowledged())
			if n == last {
				return n
			}
			last = n
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// buildBaseline builds the baseline release's mailintaked and basic auth plugin from git (ref
// MAILINTAKE_BENCH_BASELINE, default a222271; "none" skips it): `git archive` into a
// temporary directory, then go build there. It returns the binaries' directory and the ref
// as a short commit, or a note saying why there is no baseline.
func buildBaseline(t *testing.T) (dir, ref, note string) {
	ref = os.Getenv("MAILINTAKE_BENCH_BASELINE")
	if ref == "" {
		ref = "a222271"
	}
	if ref == "none" {
		return "", ref, "not measured (MAILINTAKE_BENCH_BASELINE=none)"
	}
	root := testutil.ModuleRoot()
	if out, err := exec.Command("git", "-C", root, "rev-parse", "--short", ref+"^{commit}").Output(); err == nil {
		ref = strings.TrimSpace(string(out))
	}
	src, tarball := t.TempDir(), filepath.Join(t.TempDir(), "baseline.tar")
	steps := []*exec.Cmd{
		exec.Command("git", "-C", root, "archive", "--format=tar", "-o", tarball, ref),
		exec.Command("tar", "-x", "-f", tarball, "-C", src),
		exec.Command("go", "build", "-buildvcs=false", "-o", filepath.Join(src, "bin")+"/", "./server/cmd/mailintaked", "./plugins/basic/cmd/mailintake-auth-basic", "./client/cmd/mailintake"),
	}
	steps[2].Dir = src
	steps[2].Env = append(os.Environ(), "GOWORK=off")
	for _, cmd := range steps {
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", ref, strings.Join(strings.Fields(fmt.Sprintf("not built: %s: %v: %.300s", strings.Join(cmd.Args[:2], " "), err, out)), " ")
		}
	}
	bin := filepath.Join(src, "bin")
	t.Cleanup(func() { killStrays(bin) })
	return bin, ref, ""
}

// corpusSummary is the medians and within-run ratios of the corpus contest, as log lines.
func corpusSummary(c *contest) []string {
	var lines []string
	for _, k := range c.keys {
		if !c.has(k) {
			lines = append(lines, fmt.Sprintf("%s: %s", k, c.notes[k]))
			continue
		}
		l := fmt.Sprintf("%s: median %s, %.1f MB/s, CPU s:", k, time.Duration(c.med(k, wallOf)*float64(time.Second)).Round(time.Millisecond), c.med(k, sample.mbps))
		if server := c.med(k, func(s sample) float64 { return s.server }); server > 0 {
			l += fmt.Sprintf(" mailintaked %.2f (%.2f ms/msg, %.1f ms/MB),", server, c.med(k, sample.serverMsPerMsg), c.med(k, sample.serverMsPerMB))
		}
		l += fmt.Sprintf(" consumer %.2f, Dovecot %.2f, total %.2f", c.med(k, func(s sample) float64 { return s.consumer }), c.med(k, func(s sample) float64 { return s.dovecot }), c.med(k, sample.total))
		if k != c.floor {
			l += fmt.Sprintf("; %.2f× its run's floor", c.vsFloor(k))
		}
		lines = append(lines, l)
	}
	for _, p := range [][2]string{{"e2e", "mbsync"}, {"cli", "mbsync"}, {"cli", "e2e"}, {"e2e", "baseline"}, {"cli", "baseline-cli"}} {
		if r, n := c.ratio(p[0], p[1], wallOf); n > 0 {
			lines = append(lines, fmt.Sprintf("wall %s / %s within the run: median %.2f× (%d runs)", p[0], p[1], r, n))
		}
	}
	if r, n := c.ratio("e2e", "baseline", sample.serverMsPerMsg); n > 0 {
		lines = append(lines, fmt.Sprintf("mailintaked CPU per message, current / baseline within the run: median %.2f× (%d runs)", r, n))
	}
	if r, n := c.ratio("cli", "baseline-cli", sample.serverMsPerMsg); n > 0 {
		lines = append(lines, fmt.Sprintf("mailintaked CPU per message with the CLI consuming, current / baseline (each with its own CLI) within the run: median %.2f× (%d runs)", r, n))
	}
	if r, n := c.ratio("e2e", "baseline", sample.total); n > 0 {
		lines = append(lines, fmt.Sprintf("machine CPU (mailintaked, consumer, Dovecot), current / baseline within the run: median %.2f× (%d runs)", r, n))
	}
	return lines
}

// startProfiled starts mailintaked from bins; with profile set, it records the server's CPU
// profile into that file from the start, and the returned func waits until it is written (the
// daemon must stay up until then). Without a profile the func does nothing.
func startProfiled(t *testing.T, bins, profile string) (*daemon, func()) {
	if profile == "" {
		return startDaemon(t, bins), func() {}
	}
	metrics := freeAddr()
	prof := make(chan error, 1)
	go func() { prof <- cpuProfile(metrics, profile) }()
	d := startDaemon(t, bins, "--metrics-listen", metrics, "--pprof")
	return d, func() {
		if err := <-prof; err != nil {
			t.Errorf("CPU profile: %v", err)
		}
	}
}
