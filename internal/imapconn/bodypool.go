package imapconn

import (
	"slices"
	"sync"

	"github.com/mailintake/mailintake/internal/uninit"
)

// recycler keeps the body buffers of one FetchBodies call for its next bodies: a fresh buffer
// of a body's size costs an allocation (unzeroed: the body overwrites it) and is left to the
// collector after the parse; with make's zeroing that was a tenth of the server's CPU per
// message on mail of hundreds of kilobytes. The buffers live only as long as the call's bodies
// do (a few are between the connection and the parsers at any time): nothing is kept between
// batches or while a mailbox is idle. What it keeps is bounded in bytes too: keeping the
// largest bodies of a batch (several megabytes each) raised the server's peak RSS by a fifth
// for a saving that, per byte, is no larger than on ordinary mail.
type recycler struct {
	mu    sync.Mutex
	free  [][]byte // by capacity, ascending
	bytes int      // the capacity of free, summed
}

// A recycler keeps at most maxRecycled buffers of at most maxRecycledBytes in all, none larger
// than maxRecycledBuffer; the rest are left to the collector.
const (
	maxRecycled       = 8
	maxRecycledBytes  = 4 << 20
	maxRecycledBuffer = 1 << 20
)

// get returns a buffer of n bytes with stale contents: the caller overwrites all of them. The
// smallest free buffer large enough is reused.
func (r *recycler) get(n int64) []byte {
	if r == nil {
		return uninit.Bytes(int(n))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	i, _ := slices.BinarySearchFunc(r.free, n, func(b []byte, n int64) int {
		if int64(cap(b)) < n {
			return -1
		}
		return 1
	})
	if i == len(r.free) {
		return uninit.Bytes(int(n))
	}
	b := r.free[i]
	r.free = slices.Delete(r.free, i, i+1)
	r.bytes -= cap(b)
	return b[:n]
}

// put gives a buffer back; its bytes must no longer be referenced.
func (r *recycler) put(b []byte) {
	if r == nil || b == nil || cap(b) > maxRecycledBuffer {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.free) > 0 && (len(r.free) >= maxRecycled || r.bytes+cap(b) > maxRecycledBytes) {
		r.bytes -= cap(r.free[0])
		r.free = r.free[1:] // the smallest saves the least zeroing
	}
	r.bytes += cap(b)
	i, _ := slices.BinarySearchFunc(r.free, cap(b), func(x []byte, c int) int {
		if cap(x) < c {
			return -1
		}
		return 1
	})
	r.free = slices.Insert(r.free, i, b[:0])
}
