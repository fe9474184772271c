package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailintake/mailintake/internal/store"
)

// eventQueue is AddEvent's group commit. Every session writes a few events (connected, first
// sync, delivered, acknowledged); when hundreds of mailboxes start or receive mail at once, one
// transaction per event meant one fsync each (synchronous=FULL) on the single write connection,
// in turn: the most costly store call of a many-mailbox start. Events that arrive while a batch
// is being written wait for the next one, which writes them all in one transaction, each under
// a savepoint of its own, so one that fails (its mailbox deleted meanwhile) fails alone. AddEvent
// still returns once its event is committed, or with its error.
type eventQueue struct {
	mu      sync.Mutex
	pending []*eventReq
	writing bool
	closed  bool           // Close was called: no more writers start
	writers sync.WaitGroup // the writer goroutine, which Close waits for
	batches atomic.Int64   // transactions written, for the tests
}

type eventReq struct {
	ctx  context.Context // the caller's: an event whose caller gave up before its batch is not written
	e    store.Event
	done chan error
}

// eventBatchTimeout bounds the writing of one batch (its callers may have gone).
const eventBatchTimeout = 30 * time.Second

// maxEventBatch bounds a batch, so one transaction never holds the write connection for long.
const maxEventBatch = 256

// AddEvent implements store.SyncStore.
func (s *Store) AddEvent(ctx context.Context, e store.Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &eventReq{ctx: ctx, e: e, done: make(chan error, 1)}
	q := &s.events
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return wrap(sql.ErrConnDone)
	}
	q.pending = append(q.pending, req)
	lead := !q.writing
	q.writing = true
	if lead {
		q.writers.Add(1)
	}
	q.mu.Unlock()
	if lead {
		go func() {
			defer q.writers.Done()
			s.writeEvents()
		}()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err() // the event may still be written
	}
}

// writeEvents writes the queued events, a batch per transaction, until none is left.
func (s *Store) writeEvents() {
	q := &s.events
	for {
		q.mu.Lock()
		batch := q.pending
		if len(batch) > maxEventBatch {
			batch = batch[:maxEventBatch]
		}
		q.pending = q.pending[len(batch):]
		if len(batch) == 0 {
			q.pending, q.writing = nil, false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		live := batch[:0:0]
		for _, r := range batch {
			if err := r.ctx.Err(); err != nil {
				r.done <- err // its caller gave up: not written, as before the group commit
				continue
			}
			live = append(live, r)
		}
		if len(live) == 0 {
			continue
		}
		errs := s.eventBatch(live)
		for i, r := range live {
			r.done <- errs[i]
		}
	}
}

// eventBatch writes a batch in one transaction and returns each event's error.
func (s *Store) eventBatch(batch []*eventReq) []error {
	s.events.batches.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), eventBatchTimeout)
	defer cancel()
	errs := make([]error, len(batch))
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	// Relaxed (relaxed.go): a power failure may lose the last events.
	err := s.relaxedTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		savepoint, rollback, release := tx.StmtContext(ctx, s.st.savepoint), tx.StmtContext(ctx, s.st.rollbackToSavepoint), tx.StmtContext(ctx, s.st.releaseSavepoint)
		for i, r := range batch {
			if _, err := savepoint.ExecContext(ctx); err != nil {
				return wrap(err)
			}
			if errs[i] = s.addEvent(ctx, tx, r.e); errs[i] != nil {
				if _, err := rollback.ExecContext(ctx); err != nil {
					return wrap(err)
				}
			}
			if _, err := release.ExecContext(ctx); err != nil {
				return wrap(err)
			}
		}
		return nil
	})
	if err != nil {
		return fail(err) // the written events are lost with it; the failed keep their own error
	}
	return errs
}
