package main

import (
	"math"
	"runtime/debug"
	"testing"
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
