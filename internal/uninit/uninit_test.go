package uninit

import (
	"bytes"
	"runtime"
	"testing"
	"unsafe"

	"github.com/mailintake/mailintake/internal/testutil"
)

// TestBytes checks the buffers: each is n bytes of its own, holds what is written into it, and
// stays alive through collections while only the slice refers to it (the allocation comes from
// a strings.Builder that is then dropped).
func TestBytes(t *testing.T) {
	if b := Bytes(0); b == nil || len(b) != 0 {
		t.Fatalf("Bytes(0) = %v (nil %v), want an empty buffer", b, b == nil)
	}
	sizes := []int{1, 7, 4096, 100 << 10, 3 << 20}
	bufs := make([][]byte, len(sizes))
	for i, n := range sizes {
		b := Bytes(n)
		if len(b) != n || cap(b) < n {
			t.Fatalf("Bytes(%d): len %d cap %d", n, len(b), cap(b))
		}
		copy(b, testutil.RandomBytes(n, uint64(i)))
		bufs[i] = b
	}
	// Garbage in between, and collections: a buffer the collector thought dead would be reused
	// for it and overwritten.
	for range 3 {
		for range 64 {
			junk := make([]byte, 256<<10)
			junk[0] = 0xff
			runtime.KeepAlive(junk)
		}
		runtime.GC()
	}
	for i, n := range sizes {
		if !bytes.Equal(bufs[i], testutil.RandomBytes(n, uint64(i))) {
			t.Fatalf("the %d-byte buffer changed after collections", n)
		}
	}
	// No two overlap.
	for i := range bufs {
		for j := range bufs {
			if i == j {
				continue
			}
			a, b := uintptr(unsafe.Pointer(&bufs[i][0])), uintptr(unsafe.Pointer(&bufs[j][0]))
			if a < b+uintptr(len(bufs[j])) && b < a+uintptr(len(bufs[i])) {
				t.Fatalf("buffers of %d and %d bytes overlap", sizes[i], sizes[j])
			}
		}
	}
}
