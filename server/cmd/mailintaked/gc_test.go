package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/mailintake/mailintake/internal/offheap"
)

// The collector runs less often when a memory limit bounds the heap, and keeps the Go default
// without one, or when GOGC says otherwise.
func TestTuneGC(t *testing.T) {
	prevPercent, prevLimit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(prevPercent); debug.SetMemoryLimit(prevLimit) })
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if p := tuneGC(getenv); p != 100 {
		t.Errorf("no memory limit: GC percent %d, want the default 100", p)
	}
	debug.SetMemoryLimit(512 << 20)
	if p := tuneGC(getenv); p != gcPercentWithMemoryLimit || debug.SetGCPercent(100) != gcPercentWithMemoryLimit {
		t.Errorf("with a memory limit: GC percent %d, want %d", p, gcPercentWithMemoryLimit)
	}
	env["GOGC"] = "50"
	debug.SetGCPercent(50)
	if p := tuneGC(getenv); p != 50 {
		t.Errorf("GOGC=50 with a memory limit: GC percent %d, want 50", p)
	}
}

// With a memory limit, the Go heap's share leaves room for the bodies and buffers kept outside
// it: the Go limit, the bodies' budget (a quarter of it) and offheap's free buffers add up to
// the limit the operator set. Without one, nothing changes.
func TestShareMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	if got := shareMemoryLimit(); got != math.MaxInt64 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("no memory limit: %d", got)
	}
	const limit = 1 << 30
	debug.SetMemoryLimit(limit)
	goLimit := shareMemoryLimit()
	if debug.SetMemoryLimit(-1) != goLimit {
		t.Fatalf("the Go limit in force is %d, not the %d returned", debug.SetMemoryLimit(-1), goLimit)
	}
	if total := goLimit + goLimit/4 + offheap.MaxCached; total > limit || total < limit-1<<20 {
		t.Errorf("Go limit %d + bodies %d + free buffers %d = %d, want %d", goLimit, goLimit/4, offheap.MaxCached, total, limit)
	}
}
