package main

import (
	"math"
	"runtime/debug"

	"github.com/mailintake/mailintake/internal/offheap"
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

// shareMemoryLimit lowers the Go memory limit the operator set (GOMEMLIMIT), if any, so that
// it and what lives outside the Go heap add up to it: the bodies between the sockets and the
// parser (internal/offheap), capped at a quarter of the Go limit (session.Options.BodyBudget),
// and the free buffers offheap keeps. It returns the Go limit in force.
func shareMemoryLimit() int64 {
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 {
		return limit
	}
	goLimit := max((limit-offheap.MaxCached)/5*4, limit/2)
	debug.SetMemoryLimit(goLimit)
	return goLimit
}
