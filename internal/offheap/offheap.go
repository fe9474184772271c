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
// What is kept is bounded: at most maxCached bytes of free buffers (counted as the bytes ever
// written to them, what can be resident), and nothing once no buffer has been lent or given back
// for idleRelease, so a server at rest holds none.
//
// A buffer must not be used once it is given back: it is lent again, or unmapped. With the
// environment variable MAILINTAKE_OFFHEAP_POISON=1 (make test sets it) a buffer given back is
// made inaccessible and never lent again, so any later use crashes the process at the faulty
// access instead of reading another message's bytes.
package offheap

import (
	"os"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/mailintake/mailintake/internal/uninit"
)

// MinSize is the smallest buffer lent from a mapping: smaller ones are allocated on the heap
// (uninit.Bytes), whose spans for small objects the runtime reuses without returning them.
const MinSize = 32 << 10

const (
	// maxCached bounds the bytes of free buffers kept for reuse.
	maxCached = 16 << 20
	// idleRelease: free buffers are unmapped once none was lent or given back for this long.
	idleRelease = 10 * time.Second
	// maxPoisoned bounds the inaccessible mappings kept in poison mode; the oldest are unmapped
	// (each is a kernel mapping, and their number is limited).
	maxPoisoned = 4096
)

// region is one mapping.
type region struct {
	mem     []byte // all of it
	touched int    // the most bytes ever lent from it: how much of it can be resident
}

type arena struct {
	maxCached int
	idle      time.Duration

	mu       sync.Mutex
	free     []*region         // by size, ascending
	cached   int               // touched bytes of free
	lent     map[*byte]*region // by the address of the buffer's first byte
	lastUse  time.Time
	timer    *time.Timer
	poison   bool
	poisoned []*region
}

var global = newArena(os.Getenv("MAILINTAKE_OFFHEAP_POISON") == "1")

func newArena(poison bool) *arena {
	return &arena{maxCached: maxCached, idle: idleRelease, lent: map[*byte]*region{}, poison: poison}
}

// Get returns a buffer of n bytes whose contents are whatever the memory held (the caller must
// write every byte before reading it, as with uninit.Bytes). Its capacity is n. Give it back
// with Free once nothing refers to its bytes; a buffer never given back is never reused and,
// when lent from a mapping, never unmapped.
func Get(n int) []byte { return global.get(n) }

// Free gives back a buffer that Get returned (the same slice, or one starting at the same
// byte). A buffer Get allocated on the heap, or any other slice, is left to the collector.
func Free(b []byte) { global.put(b) }

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
	a.lent[&r.mem[0]] = r
	return r.mem[:n:n]
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
	if cap(b) < MinSize {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	p := unsafe.SliceData(b)
	r := a.lent[p]
	if r == nil {
		return
	}
	delete(a.lent, p)
	if a.poison {
		protectNone(r.mem)
		a.poisoned = append(a.poisoned, r)
		if len(a.poisoned) > maxPoisoned {
			unmapRegion(a.poisoned[0].mem)
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
		a.free = a.free[:len(a.free)-1]
		a.cached -= last.touched
		unmapRegion(last.mem)
	}
	if a.timer == nil && len(a.free) > 0 {
		a.timer = time.AfterFunc(a.idle, a.releaseIdle)
	}
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
		unmapRegion(r.mem)
	}
	a.free, a.cached, a.timer = nil, 0, nil
}

func (a *arena) stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Stats{Lent: len(a.lent), Free: len(a.free), Cached: a.cached}
}
