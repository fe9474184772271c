package session_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/store"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// A replica that stops trusting its leases (it was paused, or cut off from the database) and
// then gives its mailboxes up must end an idling session at once: its lease is released only
// when the session has closed its connection, and another replica waits for that lease. The
// IMAP layer refuses every command once untrusted, but must still end the IDLE (DONE) and log
// out; refusing DONE made each session wait for its command watchdog (seconds) before LOGOUT.
func TestUntrustedIdleSessionStopsPromptly(t *testing.T) {
	srv := newIMAP(t)
	var trusted atomic.Bool
	trusted.Store(true)
	opts := fastOpts
	opts.Clustered = true
	opts.Trusted = trusted.Load
	h := newHarnessWith(t, srv, opts)
	mb := h.addMailbox(nil)
	lease := store.Lease{MailboxID: mb.Id, ReplicaID: "r1", Incarnation: "i1", Epoch: 1, Tenant: mb.Tenant, Updated: mb.UpdateTime.AsTime()}
	h.sup.Own(map[string]store.Lease{mb.Id: lease})

	// After traffic: one message delivered and acknowledged, then the session idles.
	c := h.consume(10, 0)
	defer c.close()
	srv.Append(t, user, "INBOX", mail(1, "before the pause"))
	c.ack(c.take(1)...)
	eventually(t, "idle after the first message", func() bool {
		return h.sup.Status(context.Background(), mb.Id).GetState() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE
	})
	time.Sleep(100 * time.Millisecond) // IDLE is on the wire

	trusted.Store(false)
	start := time.Now()
	h.sup.Own(map[string]store.Lease{}) // returns when the session has ended
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("giving up an idling mailbox while untrusted took %s; its lease stays held meanwhile", took)
	}
}
