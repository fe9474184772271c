//go:build bench

package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/dovecot"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Many mailboxes at once: MAILINTAKE_BENCH_MANY Dovecot users (default 200) each holding
// MAILINTAKE_BENCH_MANY_PER messages (default 10) of Corpus(1, users×per), delivered before
// anything starts. Two contestants, interleaved over MAILINTAKE_BENCH_MANY_RUNS runs (default
// 3) after a warm-up round:
//
//   - floor-many: one Floor call per user, all at once; the wall time is until the last ends.
//   - many: a fresh mailintaked, every mailbox added at once (start from ALL, after-ack keep),
//     all consumed and acknowledged by one Go client; the wall time is from the first
//     CreateMailbox until the last acknowledgement.

type manyResult struct {
	*contest
	users, per int
	transport  string // "TLS", or why plaintext
}

func manyUser(i int) string { return fmt.Sprintf("many%04d@example.com", i) }

func manyBench(t *testing.T, bins string, users, per, runs int, profile string) manyResult {
	accounts := map[string]string{}
	for i := range users {
		accounts[manyUser(i)] = pass
	}
	dv := dovecot.Start(t, accounts)
	defer dv.Stop()
	return manyOn(t, bins, dv, users, per, runs, profile)
}

// manyOn delivers the mail to a Dovecot with the users manyUser(0…users-1) and measures. With
// profile set, the server's CPU profile of the last run is written there.
func manyOn(t *testing.T, bins string, dv *dovecot.Server, users, per, runs int, profile string) manyResult {
	mail := Corpus(1, users*per)
	for i := range users {
		dv.DeliverMany(t, manyUser(i), mail[i*per:(i+1)*per])
	}
	total := int64(0)
	for _, m := range mail {
		total += int64(len(m))
	}
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(dv.CACertFile(t))
	pool.AppendCertsFromPEM(ca)
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(dv.IMAPSPort))
	res := manyResult{users: users, per: per, transport: "TLS"}
	security, port := mailintakev1.Security_SECURITY_TLS, dv.IMAPSPort
	// Each TLS connection holds an imap-login process of Dovecot's (its TLS proxy) for as long
	// as it lasts; when Dovecot cannot hold one per mailbox, both contestants use plaintext.
	if held := logins(addr, users, tlsCfg); held < users {
		res.transport = fmt.Sprintf("plaintext IMAP: Dovecot held only %d of %d TLS sessions at once (its imap-login process_limit)", held, users)
		t.Logf("many: %s", res.transport)
		tlsCfg, security, port = nil, mailintakev1.Security_SECURITY_NONE, dv.IMAPPort
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(dv.IMAPPort))
		time.Sleep(time.Second) // the probe's sessions end
		if held := logins(addr, users, nil); held < users {
			t.Fatalf("Dovecot held only %d of %d plaintext sessions at once", held, users)
		}
	}
	t.Logf("many: %d mailboxes × %d messages, %.1f MB in all, over %s", users, per, float64(total)/1e6, strings.SplitN(res.transport, ":", 2)[0])

	floorMany := func(int) (sample, error) {
		self0, dv0 := selfCPU(), dovecotCPU(dv)
		results := make([]FloorResult, users)
		errs := make([]error, users)
		start := time.Now()
		var wg sync.WaitGroup
		for i := range users {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = Floor(addr, manyUser(i), pass, tlsCfg)
			}()
		}
		wg.Wait()
		s := sample{wall: time.Since(start), consumer: selfCPU() - self0, dovecot: dovecotCPU(dv) - dv0}
		for i, r := range results {
			if errs[i] != nil {
				return s, fmt.Errorf("%s: %v", manyUser(i), errs[i])
			}
			if r.Messages != per {
				return s, fmt.Errorf("%s: the floor read %d messages of %d", manyUser(i), r.Messages, per)
			}
			s.msgs += r.Messages
			s.bytes += r.Bytes
		}
		return s, nil
	}
	mailintakeMany := func(run int) (sample, error) {
		file := ""
		if run == runs {
			file = profile
		}
		d, profiled := startProfiled(t, bins, file)
		defer d.stop()
		pid := d.cmd.Process.Pid
		cpu0, self0, dv0 := treeCPU(pid), selfCPU(), dovecotCPU(dv)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := time.Now()
		var wg sync.WaitGroup
		for i := range users {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mb := &mailintakev1.Mailbox{Tenant: "many", DisplayName: manyUser(i), Enabled: true, Host: "127.0.0.1", Port: uint32(port),
					Security: security, CaPem: string(ca), Username: manyUser(i), AuthProvider: "basic",
					AuthSecrets: map[string]string{"password": pass}, StartFrom: mailintakev1.StartFrom_START_FROM_ALL,
					AfterAck: &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}}
				if security == mailintakev1.Security_SECURITY_NONE {
					mb.CaPem = ""
				}
				if _, err := d.c.Mailboxes.CreateMailbox(ctx, &mailintakev1.CreateMailboxRequest{Mailbox: mb}); err != nil {
					t.Errorf("adding %s: %v", manyUser(i), err)
					cancel() // the consumer stops too
				}
			}()
		}
		var bytes int64
		consumeCtx(ctx, t, d.c, users*per, func(m *mailintakev1.Message) { bytes += int64(m.GetRawSize()) })
		s := sample{wall: time.Since(start), server: treeCPU(pid) - cpu0, consumer: selfCPU() - self0, dovecot: dovecotCPU(dv) - dv0, msgs: users * per, bytes: bytes}
		_, s.peakRSS, _ = Memory(pid)
		wg.Wait()
		profiled()
		return s, nil
	}
	res.contest = interleave(t, "floor-many", []runner{
		{key: "floor-many", label: fmt.Sprintf("floor: %d raw fetches at once, one connection per mailbox, in-process", users),
			short: fmt.Sprintf("floor, %d connections", users), run: floorMany},
		{key: "many", label: fmt.Sprintf("mailintake: %d mailboxes added at once, one Go client consuming", users),
			short: fmt.Sprintf("mailintake, %d mailboxes", users), run: mailintakeMany},
	}, runs)
	res.contest.name = "many"
	return res
}

// logins opens one connection per user to a Dovecot at once (TLS when cfg is set), logs each
// in and holds them all, and returns how many were logged in within 15 s. Dovecot makes room
// for new connections by dropping those that have not logged in yet, so only sessions that
// log in show how many it holds at once.
func logins(addr string, users int, cfg *tls.Config) int {
	var mu sync.Mutex
	var conns []net.Conn
	ok := 0
	var wg sync.WaitGroup
	deadline := time.Now().Add(15 * time.Second)
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 15*time.Second)
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			c.SetDeadline(deadline)
			if cfg != nil {
				c = tls.Client(c, cfg)
			}
			r := bufio.NewReader(c)
			if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "* OK") {
				return
			}
			if _, err := fmt.Fprintf(c, "a LOGIN %q %q\r\n", manyUser(i), pass); err != nil {
				return
			}
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if strings.HasPrefix(line, "a ") {
					if strings.HasPrefix(line, "a OK") {
						mu.Lock()
						ok++
						mu.Unlock()
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	return ok
}

// manySummary is the medians and within-run ratios of the many-mailbox contest, as log lines.
func manySummary(m manyResult) []string {
	c := m.contest
	var lines []string
	for _, k := range c.keys {
		if !c.has(k) {
			lines = append(lines, fmt.Sprintf("%s: %s", k, c.notes[k]))
			continue
		}
		l := fmt.Sprintf("%s: median %s, %.0f msg/s, %.1f MB/s, CPU s:", k, time.Duration(c.med(k, wallOf)*float64(time.Second)).Round(time.Millisecond),
			c.med(k, sample.msgps), c.med(k, sample.mbps))
		if server := c.med(k, func(s sample) float64 { return s.server }); server > 0 {
			l += fmt.Sprintf(" mailintaked %.2f (%.2f ms/msg),", server, c.med(k, sample.serverMsPerMsg))
		}
		l += fmt.Sprintf(" consumer %.2f, Dovecot %.2f", c.med(k, func(s sample) float64 { return s.consumer }), c.med(k, func(s sample) float64 { return s.dovecot }))
		if k != c.floor {
			l += fmt.Sprintf("; peak RSS %.0f MB; %.2f× its run's floor", c.med(k, func(s sample) float64 { return float64(s.peakRSS) / 1024 }), c.vsFloor(k))
		}
		lines = append(lines, l)
	}
	return lines
}
