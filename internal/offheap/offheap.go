// Package offheap lends large byte buffers that live outside the Go heap and are reused: the
// bodies read from IMAP, whole, and the messages marshalled for the delivery stream.
//
// Those buffers are the server's largest allocations (hundreds of kilobytes to megabytes per
// message, freed once the message is parsed or sent), and on the Go heap each was memory the
// kernel had to fault in and clear again. The runtime's scavenger keeps the pages it retains
// near a tenth above the heap in use after the last collection, so memory allocated above that
// between two collections is handed back to the kernel and faulted in afresh by the next large
// allocation: on make bench's corpus about 400 MB per 2,000 messages (GODEBUG=scavtrace=1),
// 110,000 page faults, a tenth of the server's CPU. Here those buffers are anonymous mappings
// kept for the next buffer that fits, so their pages stay mapped; and being outside the heap
// they neither count toward the collector's target (which would double them into peak RSS, as a
// pool on the heap did) nor make the collector run.
//
// What is kept is bounded: at most MaxCached bytes of free buffers (counted as the bytes ever
// written to them, what can be resident), and nothing once no buffer has been lent or given back
// for idleRelease, so a server at rest holds none.
//
// A buffer must not be used once it is given back: it is lent again, or unmapped. A holder that
// may drop a buffer without giving it back (gRPC, whose transport frees what it still holds
// only while its connection lives) registers its handle with Guard: the buffer is then given
// back when the handle is collected. With the
// environment variable MAILINTAKE_OFFHEAP_POISON=1 (make test sets it) a buffer given back is
// made inaccessible and never lent again, so any later use crashes the process at the faulty
// access instead of reading another message's bytes.
package offheap

import (
	"os"
	"runtime"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/mailintake/mailintake/internal/uninit"
)

// MinSize is the smallest buffer lent from a mapping: smaller ones are allocated on the heap
// (uninit.Bytes), whose spans for small objects the runtime reuses without returning them.
const MinSize = 32 << 10

// MaxCached bounds the bytes of free buffers kept for reuse.
const MaxCached = 16 << 20

const (
	// idleRelease: free buffers are unmapped once none was lent or given back for this long.
	idleRelease = 10 * time.Second
	// maxPoisoned bounds the inaccessible mappings kept in poison mode; the oldest are unmapped
	// (each is a kernel mapping, and their number is limited).
	maxPoisoned = 4096
)

// region is one mapping.
type region struct {
	mem     []byte // all of it; nil once unmapped
	touched int    // the most bytes ever lent from it: how much of it can be resident
	loan    uint64 // which loan of the arena it is lent under, while lent
}

type arena struct {
	maxCached int
	idle      time.Duration

	mu       sync.Mutex
	free     []*region           // by size, ascending
	cached   int                 // touched bytes of free
	lent     map[uintptr]*region // by the address of the buffer's first byte
	loans    uint64              // loans made: each lent buffer's loan number
	lastUse  time.Time
	timer    *time.Timer
	poison   bool
	poisoned []*region
}

var global = newArena(os.Getenv("MAILINTAKE_OFFHEAP_POISON") == "1")

func newArena(poison bool) *arena {
	return &arena{maxCached: MaxCached, idle: idleRelease, lent: map[uintptr]*region{}, poison: poison}
}

// Get returns a buffer of n bytes whose contents are whatever the memory held (the caller must
// write every byte before reading it, as with uninit.Bytes). Its capacity is n. Give it back
// with Free once nothing refers to its bytes; a buffer never given back is never reused and,
// when lent from a mapping, never unmapped.
func Get(n int) []byte { return global.get(n) }

// Free gives back a buffer that Get returned (the same slice, or any slice starting at its first
// byte). A buffer Get allocated on the heap, or any other slice, is left to the collector.
func Free(b []byte) { global.put(b) }

// Guard gives back the buffer *handle (lent by Get) when handle is collected, if it is still
// lent under the same loan then: a safety net for a holder that may drop the buffer without
// calling Free. A Free before that makes the net do nothing, even if the buffer has been lent
// again since.
func Guard(handle *[]byte) { global.guard(handle) }

// Stats is what the arena holds.
type Stats struct {
	Lent   int // buffers lent from mappings and not given back
	Free   int // free mappings kept for reuse
	Cached int // their touched bytes
}

// CurrentStats returns what the arena holds now.
func CurrentStats() Stats { return global.stats() }

func (a *arena) get(n int) []byte {
	if n < MinSize {
		return uninit.Bytes(n)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastUse = time.Now()
	i, _ := slices.BinarySearchFunc(a.free, n, func(r *region, n int) int {
		if len(r.mem) < n {
			return -1
		}
		return 1
	})
	var r *region
	if i < len(a.free) {
		r = a.free[i]
		a.free = slices.Delete(a.free, i, i+1)
		a.cached -= r.touched
	} else {
		mem, err := mapRegion(sizeFor(n))
		if err != nil {
			return uninit.Bytes(n) // out of mappings or address space: the heap will do
		}
		r = &region{mem: mem}
	}
	r.touched = max(r.touched, n)
	a.loans++
	r.loan = a.loans
	a.lent[addr(r.mem)] = r
	return r.mem[:n:n]
}

// addr is the address of b's first byte, or 0.
func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// loan names one loan of one buffer.
type loan struct {
	addr uintptr
	n    uint64
}

func (a *arena) guard(handle *[]byte) {
	a.mu.Lock()
	r := a.lent[addr(*handle)]
	a.mu.Unlock()
	if r == nil {
		return
	}
	runtime.AddCleanup(handle, a.putLoan, loan{addr(*handle), r.loan})
}

// putLoan gives back the buffer at l.addr if it is still lent under loan l.n.
func (a *arena) putLoan(l loan) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.lent[l.addr]; r != nil && r.loan == l.n {
		a.giveBack(l.addr, r)
	}
}

// sizeFor is the size of a new mapping for n bytes: the next power of two, so that it fits
// the next buffers of up to twice n. Pages never written are not resident.
func sizeFor(n int) int {
	size := MinSize
	for size < n {
		size <<= 1
	}
	return size
}

func (a *arena) put(b []byte) {
	p := addr(b)
	if p == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.lent[p]; r != nil {
		a.giveBack(p, r)
	}
}

// giveBack takes r, lent at p, back: to the free mappings, or (poison mode) out of reach.
func (a *arena) giveBack(p uintptr, r *region) {
	delete(a.lent, p)
	r.loan = 0
	if a.poison {
		protectNone(r.mem)
		a.poisoned = append(a.poisoned, r)
		if len(a.poisoned) > maxPoisoned {
			unmap(a.poisoned[0])
			a.poisoned[0] = nil
			a.poisoned = a.poisoned[1:]
		}
		return
	}
	a.lastUse = time.Now()
	i, _ := slices.BinarySearchFunc(a.free, len(r.mem), func(x *region, size int) int {
		if len(x.mem) < size {
			return -1
		}
		return 1
	})
	a.free = slices.Insert(a.free, i, r)
	a.cached += r.touched
	// Over the bound, the largest go first: an outlier (a message of tens of megabytes) must
	// not pin its memory, and the common sizes are served by the smaller mappings.
	for a.cached > a.maxCached {
		last := a.free[len(a.free)-1]
		a.free[len(a.free)-1] = nil
		a.free = a.free[:len(a.free)-1]
		a.cached -= last.touched
		unmap(last)
	}
	if a.timer == nil && len(a.free) > 0 {
		a.timer = time.AfterFunc(a.idle, a.releaseIdle)
	}
}

// unmap unmaps r, which nothing refers to any more.
func unmap(r *region) {
	unmapRegion(r.mem)
	r.mem = nil // no pointer into memory that is not mapped (the Go heap could be, later)
}

// releaseIdle unmaps the free mappings once the arena has been idle for a.idle.
func (a *arena) releaseIdle() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if wait := a.idle - time.Since(a.lastUse); wait > 0 {
		a.timer.Reset(wait)
		return
	}
	for _, r := range a.free {
		unmap(r)
	}
	a.free, a.cached, a.timer = nil, 0, nil
}

func (a *arena) stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Stats{Lent: len(a.lent), Free: len(a.free), Cached: a.cached}
}
