package main

import (
	"math"
	"runtime/debug"
)

// gcPercentWithMemoryLimit is the collector's target when the operator set a memory limit
// (GOMEMLIMIT) and no GOGC: the limit bounds the heap, so the collector may let garbage grow
// further between cycles and spend less CPU per message. Without a limit the Go default (100)
// stays: it keeps the process's peak memory low.
const gcPercentWithMemoryLimit = 400

// tuneGC applies the collector defaults above; getenv reads the environment. It returns the GC
// percent in force.
func tuneGC(getenv func(string) string) int {
	if getenv("GOGC") != "" || debug.SetMemoryLimit(-1) == math.MaxInt64 {
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(gcPercentWithMemoryLimit)
	return gcPercentWithMemoryLimit
}
