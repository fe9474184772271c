//go:build bench

package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/smtptest"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// The sending measurement (MAILINTAKE_BENCH_ONLY=send): mailintaked's outbox against the
// in-process submission server (internal/fakes/smtptest, plaintext, PLAIN login from the basic
// provider, DSN on), mailboxes with sending on and reading off.
//
//   - burst: MAILINTAKE_BENCH_SEND messages (default 2000) queued at once over
//     MAILINTAKE_BENCH_SEND_MAILBOXES mailboxes (default 10; each sends on one connection, one
//     message at a time, as the outbox does), by 8 callers; sends per second from the first
//     queued to the last sent (the server's own create and sent times), the queued → sent latency
//     of each message (which includes the wait behind the others of its mailbox), and
//     mailintaked's CPU per message;
//   - one at a time: MAILINTAKE_BENCH_SEND_SINGLE messages (default 200), each queued once the
//     previous is SENT, so each one wakes the sender, dials, logs in and sends: the queued → sent
//     latency of a reply on an idle server.
type sendResult struct {
	n, mailboxes  int
	perSecond     float64
	burstLat      []time.Duration
	cpuMsPerMsg   float64
	singleLat     []time.Duration
	accepted, dup int
}

func sendBench(t *testing.T, bins, profile string) sendResult {
	n := envInt("MAILINTAKE_BENCH_SEND", 2000)
	mailboxes := envInt("MAILINTAKE_BENCH_SEND_MAILBOXES", 10)
	single := envInt("MAILINTAKE_BENCH_SEND_SINGLE", 200)
	sink := smtptest.Start(t, smtptest.Options{InsecureAuth: true, DSN: true})
	sink.AddUser(user, pass)
	d, profiled := startProfiled(t, bins, profile)
	defer d.stop()
	ctx := context.Background()
	out := mailintakev1.NewOutboundServiceClient(d.c.Conn())
	ids := make([]string, mailboxes)
	for i := range ids {
		ids[i] = d.addMailbox(t, &mailintakev1.Mailbox{Tenant: "bench", DisplayName: fmt.Sprintf("send %d", i), Enabled: false,
			Host: "127.0.0.1", Port: 1, Security: mailintakev1.Security_SECURITY_NONE, Username: user, AuthProvider: "basic",
			AuthSecrets: map[string]string{"password": pass}, SendingEnabled: true, SmtpHost: sink.Host, SmtpPort: uint32(sink.Port),
			SmtpSecurity: mailintakev1.Security_SECURITY_NONE, SmtpMaxPerMinute: 10000})
	}
	queue := func(key string, mailbox string) *mailintakev1.OutboundMessage {
		resp, err := out.SendMessage(ctx, &mailintakev1.SendMessageRequest{MailboxId: mailbox, IdempotencyKey: key,
			Content: &mailintakev1.SendMessageRequest_Draft{Draft: &mailintakev1.Draft{To: []string{"customer@example.net"},
				Subject: "Re: [#" + key + "] The printer on the second floor", TextBody: "Hello,\n\nthe printer is fixed: the fuser was replaced.\n\nKind regards,\nService desk\n"}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetOutboundMessage()
	}
	waitAll := func(want int) []*mailintakev1.OutboundMessage {
		deadline := time.Now().Add(10 * time.Minute)
		for {
			var all []*mailintakev1.OutboundMessage
			token := ""
			for {
				r, err := out.ListOutboundMessages(ctx, &mailintakev1.ListOutboundMessagesRequest{PageSize: 1000, PageToken: token,
					State: mailintakev1.OutboundState_OUTBOUND_STATE_SENT})
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, r.GetOutboundMessages()...)
				if token = r.GetNextPageToken(); token == "" {
					break
				}
			}
			if len(all) >= want {
				return all
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d messages sent after 10 minutes", len(all), want)
			}
			// The times are the server's: looking less often costs no precision, and less of
			// mailintaked's CPU goes to the listing.
			time.Sleep(250 * time.Millisecond)
		}
	}

	// One message at a time first, on an idle server.
	var res sendResult
	for i := range single {
		m := queue(fmt.Sprintf("single-%d", i), ids[0])
		for {
			r, err := out.GetOutboundMessage(ctx, &mailintakev1.GetOutboundMessageRequest{Id: m.GetId()})
			if err != nil {
				t.Fatal(err)
			}
			if o := r.GetOutboundMessage(); o.GetState() == mailintakev1.OutboundState_OUTBOUND_STATE_SENT {
				res.singleLat = append(res.singleLat, o.GetSentTime().AsTime().Sub(o.GetCreateTime().AsTime()))
				break
			} else if o.GetState() != mailintakev1.OutboundState_OUTBOUND_STATE_QUEUED && o.GetState() != mailintakev1.OutboundState_OUTBOUND_STATE_SENDING {
				t.Fatalf("%s: %v", o.GetId(), o)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	// The burst.
	cpu0 := treeCPU(d.cmd.Process.Pid)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				queue(fmt.Sprintf("burst-%d", i), ids[i%mailboxes])
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	all := waitAll(single + n)
	cpu := treeCPU(d.cmd.Process.Pid) - cpu0
	profiled()
	var first, last time.Time
	for _, o := range all {
		if o.GetIdempotencyKey() == "" || o.GetIdempotencyKey()[:5] != "burst" {
			continue
		}
		c, s := o.GetCreateTime().AsTime(), o.GetSentTime().AsTime()
		if first.IsZero() || c.Before(first) {
			first = c
		}
		if s.After(last) {
			last = s
		}
		res.burstLat = append(res.burstLat, s.Sub(c))
	}
	res.n, res.mailboxes = n, mailboxes
	res.perSecond = float64(n) / last.Sub(first).Seconds()
	res.cpuMsPerMsg = cpu * 1000 / float64(n)
	res.accepted = len(sink.Accepted())
	seen := map[string]bool{}
	for _, a := range sink.Accepted() {
		if seen[a.MailOptions.EnvelopeID] {
			res.dup++
		}
		seen[a.MailOptions.EnvelopeID] = true
	}
	if res.accepted != single+n || res.dup != 0 {
		t.Errorf("the submission server accepted %d messages (%d twice), want %d once each", res.accepted, res.dup, single+n)
	}
	return res
}

// sendLines is the sending measurement as summary rows.
func sendLines(r sendResult) [][2]string {
	return [][2]string{
		{fmt.Sprintf("sending: %d messages queued at once over %d mailboxes, through the in-process SMTP server", r.n, r.mailboxes),
			fmt.Sprintf("**%.0f sends per second**; queued → sent p50 %s, p99 %s (waiting behind the mailbox's earlier messages); mailintaked CPU %.2f ms per message",
				r.perSecond, pct(r.burstLat, 50), pct(r.burstLat, 99), r.cpuMsPerMsg)},
		{fmt.Sprintf("sending: %d messages one at a time (each queued once the previous is sent: wake-up, connect, login, send)", len(r.singleLat)),
			fmt.Sprintf("queued → sent **p50 %s, p99 %s**", pct(r.singleLat, 50), pct(r.singleLat, 99))},
	}
}
