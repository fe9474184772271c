package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/mailintake/mailintake/internal/cluster"
	"github.com/mailintake/mailintake/internal/outbox"
	"github.com/mailintake/mailintake/internal/pluginhost"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/server"
)

// startOutbox starts the sender of the outbox (internal/outbox: the mail queued by
// OutboundService.SendMessage) and hands it to the API's options, so that a queued message wakes
// it. Alone, this process sends for every mailbox; as a replica (member set), only for the
// mailboxes whose lease it holds while it trusts its leases, with every write fenced by the lease,
// and it looks for mail queued on other replicas every second. The returned function stops it,
// letting a send in progress finish (up to outbox.Options.StopGrace). copies (the session
// supervisor) saves the Sent copies.
func startOutbox(ctx context.Context, opts *server.Options, st store.Store, plugins *pluginhost.Host, copies outbox.SentCopies, member *cluster.Member, log *slog.Logger) func() {
	o := outbox.Options{Store: st, Credentials: plugins, SentCopies: copies, Logger: log.With("component", "outbox")}
	if member != nil {
		o.PollInterval = time.Second
		o.Owns = func(mailboxID string) (store.Lease, bool) {
			if !member.Trusted() {
				return store.Lease{}, false
			}
			r, ok := member.Route(mailboxID)
			if !ok || !r.Self {
				return store.Lease{}, false
			}
			return store.Lease{MailboxID: mailboxID, ReplicaID: member.ID(), Incarnation: member.Incarnation(), Epoch: r.Epoch}, true
		}
	}
	s := outbox.New(o)
	opts.Outbox = s
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}
