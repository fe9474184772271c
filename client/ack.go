package client

import (
	"context"
	"sync"
	"time"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Acker acknowledges messages in batches: one AckMessages call for many messages instead of one
// per message, which costs the server a round trip and a store write each. Ack queues a message
// id; a batch goes out once it holds AckerOptions.MaxBatch ids, or AckerOptions.Delay after its
// first id, whichever comes first. A message acknowledged late is only delivered again if the
// stream breaks meanwhile: at least once, as before.
//
// An Acker is safe for concurrent use. Close (or Flush) sends what is queued.
type Acker struct {
	c    *Client
	ctx  context.Context
	opts AckerOptions

	mu      sync.Mutex
	batch   []string
	timer   *time.Timer
	err     error // the first failed batch's
	sending sync.WaitGroup
	sendMu  sync.Mutex // batches go out one at a time, in order
}

// AckerOptions tune an Acker. The zero value uses the defaults.
type AckerOptions struct {
	// MaxBatch is the most ids in one call (default 8, half the server's default
	// max_in_flight of 16). Keep it below the stream's max_in_flight, or batches only go out
	// after Delay, while the server waits for them.
	MaxBatch int
	// Delay is how long the first id of a batch waits for others (default 10ms).
	Delay time.Duration
	// Timeout bounds each AckMessages call (default 30s).
	Timeout time.Duration
}

// NewAcker returns an Acker whose calls use ctx.
func (c *Client) NewAcker(ctx context.Context, opts AckerOptions) *Acker {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 8
	}
	if opts.Delay <= 0 {
		opts.Delay = 10 * time.Millisecond
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	return &Acker{c: c, ctx: ctx, opts: opts}
}

// Ack queues id for acknowledgement. It returns the error of an earlier batch that failed, if
// one did (the ids of that batch stay unacknowledged and are delivered again).
func (a *Acker) Ack(id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	a.batch = append(a.batch, id)
	switch {
	case len(a.batch) >= a.opts.MaxBatch:
		a.sendLocked()
	case len(a.batch) == 1:
		a.timer = time.AfterFunc(a.opts.Delay, func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			a.sendLocked()
		})
	}
	return nil
}

// sendLocked sends the queued batch in the background. a.mu is held.
func (a *Acker) sendLocked() {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	if len(a.batch) == 0 {
		return
	}
	ids := a.batch
	a.batch = nil
	a.sending.Add(1)
	a.sendMu.Lock() // taken here, in queue order; released by the goroutine
	go func() {
		defer a.sending.Done()
		ctx, cancel := context.WithTimeout(a.ctx, a.opts.Timeout)
		_, err := a.c.Messages.AckMessages(ctx, &mailintakev1.AckMessagesRequest{MessageIds: ids})
		cancel()
		a.sendMu.Unlock() // before taking mu: Ack may hold mu while it waits for sendMu
		if err != nil {
			a.mu.Lock()
			if a.err == nil {
				a.err = err
			}
			a.mu.Unlock()
		}
	}()
}

// Flush sends what is queued and waits until every batch has been answered. It returns the
// first error of a batch, if one failed.
func (a *Acker) Flush() error {
	a.mu.Lock()
	a.sendLocked()
	a.mu.Unlock()
	a.sending.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Close is Flush.
func (a *Acker) Close() error { return a.Flush() }
