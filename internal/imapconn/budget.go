package imapconn

import (
	"context"
	"sync"
)

// Budget bounds the bytes of message bodies held at once by every connection that shares it:
// a body's bytes are taken from the budget before they are read from the socket and given back
// when the caller is done with them (Fetched.Release), so many sessions receiving large mail at
// the same moment wait their turn instead of holding every body at once. A body larger than the
// whole budget takes all of it. Waiters are served in order, so a large body is not starved by
// small ones.
type Budget struct {
	mu      sync.Mutex
	total   int64
	used    int64
	peak    int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

// NewBudget returns a budget of total bytes.
func NewBudget(total int64) *Budget { return &Budget{total: total} }

// Acquire takes n bytes (at most the whole budget), waiting for them while ctx lasts. It
// returns what it took, to give back with Release.
func (b *Budget) Acquire(ctx context.Context, n int64) (int64, error) {
	if b == nil || n <= 0 {
		return 0, nil
	}
	n = min(n, b.total)
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.total {
		b.take(n)
		b.mu.Unlock()
		return n, nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return n, nil
	case <-ctx.Done():
		b.mu.Lock()
		select {
		case <-w.ready: // granted meanwhile: give it back
			b.mu.Unlock()
			b.Release(n)
		default:
			for i, x := range b.waiters {
				if x == w {
					b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
					break
				}
			}
			b.grant() // the head may have changed
			b.mu.Unlock()
		}
		return 0, ctx.Err()
	}
}

// Release gives back n bytes taken by Acquire.
func (b *Budget) Release(n int64) {
	if b == nil || n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.grant()
	b.mu.Unlock()
}

func (b *Budget) take(n int64) {
	b.used += n
	b.peak = max(b.peak, b.used)
}

// grant serves waiters in order while the head fits. b.mu is held.
func (b *Budget) grant() {
	for len(b.waiters) > 0 && b.used+b.waiters[0].n <= b.total {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.take(w.n)
		close(w.ready)
	}
}

// Used returns the bytes taken now, and the most ever taken at once.
func (b *Budget) Used() (now, peak int64) {
	if b == nil {
		return 0, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.peak
}

// Total returns the budget's size.
func (b *Budget) Total() int64 {
	if b == nil {
		return 0
	}
	return b.total
}
