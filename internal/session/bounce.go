package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/store"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// matchBounces closes the loop of sending: a delivery report about to be offered (a failure or
// a delay warning) that is about a message sent as a mailbox of the same tenant names it in
// Bounce.outbound_id, and a failure makes that outbound message BOUNCED with the failed
// recipients (store.OutboxStore.BounceOutbound). The match is by the report's
// Original-Envelope-Id (the outbound id, sent as the DSN ENVID), else by the Message-ID the
// report returns.
//
// It runs on the replica whose session parsed the report, before the report is offered, and
// writes under the session's lease (fenced like the session's other writes). A report delivered
// again (not acknowledged, a takeover) matches again and changes nothing more. A store error
// fails the round, as markCopies does, so the report is offered once it names its outbound
// message; a store that cannot write at all (store.ErrUnavailable) lets intake go on without the
// match.
func (d *deliverer) matchBounces(ctx context.Context, msgs []*mailintakev1.Message) error {
	for _, m := range msgs {
		sig := m.GetSignals()
		b := sig.GetBounceReport()
		if !sig.GetBounce() || b == nil || (b.GetOriginalEnvelopeId() == "" && b.GetOriginalMessageId() == "") {
			continue
		}
		failure := b.GetKind() == mailintakev1.BounceKind_BOUNCE_KIND_FAILURE
		if !failure && b.GetKind() != mailintakev1.BounceKind_BOUNCE_KIND_DELAY {
			continue
		}
		id := delivery.Key{MailboxID: d.s.queue.MailboxID, UIDValidity: m.GetUidValidity(), UID: m.GetUid()}.String()
		r := store.BounceReport{Tenant: m.GetTenant(), EnvelopeID: b.GetOriginalEnvelopeId(), MessageID: b.GetOriginalMessageId(), Failure: failure,
			Bounce: store.OutboundBounce{MessageID: id, Time: time.Now(), Recipients: failedRecipients(b)}}
		out, err := d.s.sup.store.BounceOutbound(ctx, d.s.id, r)
		if errors.Is(err, store.ErrUnavailable) {
			d.s.event("error", "a delivery report (UID %d) delivered without its outbound message: %v", m.GetUid(), err)
			continue
		}
		if err != nil {
			return fmt.Errorf("matching a delivery report with its outbound message: %w", err)
		}
		if out == "" {
			continue
		}
		b.OutboundId = out
		if failure {
			addrs := make([]string, 0, len(r.Bounce.Recipients))
			for _, rc := range r.Bounce.Recipients {
				addrs = append(addrs, rc.GetAddress())
			}
			d.s.sup.log.Info("outbound message bounced", "mailbox_id", d.s.id, "outbound_id", out, "uid", m.GetUid(), "recipients", len(addrs))
			d.s.event("bounce", "outbound message %s bounced (UID %d): %s", out, m.GetUid(), strings.Join(addrs, ", "))
		}
	}
	return nil
}

// failedRecipients returns a failure report's failed recipients: those whose action is not
// "delayed" (a report may mix both), or all of them when it gives no action.
func failedRecipients(b *mailintakev1.Bounce) []*mailintakev1.BounceRecipient {
	var out []*mailintakev1.BounceRecipient
	for _, r := range b.GetRecipients() {
		if a := strings.ToLower(r.GetAction()); a == "delayed" || a == "delivered" || a == "relayed" || a == "expanded" {
			continue
		}
		out = append(out, r)
	}
	return out
}
