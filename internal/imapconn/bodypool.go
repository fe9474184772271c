package imapconn

import (
	"slices"
	"sync"
)

// Message bodies are read into buffers kept between messages: a fresh buffer of a body's size
// is zeroed by the runtime before the body overwrites it, and left to the collector after the
// parse — for mail of hundreds of kilobytes, a tenth of the server's CPU per message.
//
// The pool is small and bounded, so it does not raise the process's peak memory: at most
// maxPooledBytes in all, in buffers of at most maxPooledBody, each reused for a body that
// fills at least two thirds of it. A body that finds none gets a new buffer.
const (
	maxPooledBytes = 8 << 20
	maxPooledBody  = 2 << 20
)

var bodyPool struct {
	sync.Mutex
	free  [][]byte // by capacity, ascending
	bytes int
}

// getBody returns a buffer of n bytes with stale contents: the caller overwrites all of them.
func getBody(n int64) []byte {
	if n <= maxPooledBody {
		bodyPool.Lock()
		i, _ := slices.BinarySearchFunc(bodyPool.free, n, func(b []byte, n int64) int { return cmpInt(int64(cap(b)), n) })
		if i < len(bodyPool.free) && int64(cap(bodyPool.free[i])) <= n*3/2 {
			b := bodyPool.free[i]
			bodyPool.free = slices.Delete(bodyPool.free, i, i+1)
			bodyPool.bytes -= cap(b)
			bodyPool.Unlock()
			return b[:n]
		}
		bodyPool.Unlock()
	}
	return make([]byte, n)
}

// putBody gives a buffer back; its bytes must no longer be referenced. When the pool is full,
// its smallest buffers make room for a larger one (they save the least zeroing).
func putBody(b []byte) {
	if b == nil || cap(b) > maxPooledBody {
		return
	}
	b = b[:0]
	bodyPool.Lock()
	defer bodyPool.Unlock()
	for bodyPool.bytes+cap(b) > maxPooledBytes && len(bodyPool.free) > 0 && cap(bodyPool.free[0]) < cap(b) {
		bodyPool.bytes -= cap(bodyPool.free[0])
		bodyPool.free = slices.Delete(bodyPool.free, 0, 1)
	}
	if bodyPool.bytes+cap(b) > maxPooledBytes {
		return
	}
	i, _ := slices.BinarySearchFunc(bodyPool.free, cap(b), func(x []byte, c int) int { return cmpInt(cap(x), c) })
	bodyPool.free = slices.Insert(bodyPool.free, i, b)
	bodyPool.bytes += cap(b)
}

func cmpInt[T int | int64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
