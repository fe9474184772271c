//go:build !unix

package offheap

import "errors"

// mapRegion fails where there is no mmap: Get allocates on the heap.
func mapRegion(int) ([]byte, error) { return nil, errors.New("offheap: no anonymous mappings here") }

func unmapRegion([]byte) {}

func protectNone([]byte) {}
