//go:build unix

package offheap

import "golang.org/x/sys/unix"

// mapRegion maps size bytes of anonymous private memory.
func mapRegion(size int) ([]byte, error) {
	return unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
}

// unmapRegion unmaps what mapRegion mapped. It cannot fail on such a mapping.
func unmapRegion(mem []byte) { _ = unix.Munmap(mem) }

// protectNone makes a mapping inaccessible, any access faulting, and frees its pages.
func protectNone(mem []byte) {
	_ = unix.Madvise(mem, unix.MADV_DONTNEED)
	_ = unix.Mprotect(mem, unix.PROT_NONE)
}
