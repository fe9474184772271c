// Package uninit allocates byte buffers without clearing them, for callers that never read a
// byte they did not write.
//
// make([]byte, n) clears the memory the collector hands out again, and a message body read in
// full from a connection, or a protobuf message marshalled into its exact size, then
// overwrites all of it at once: on mail of hundreds of kilobytes that clearing was a twentieth
// of the server's CPU. A pool of cleared-once buffers saves the clearing too, but every byte
// it keeps is live heap, which the collector's target doubles into peak memory; a fresh
// buffer that is not cleared costs neither.
package uninit

import (
	"strings"
	"unsafe"
)

// Bytes returns a new buffer of n bytes whose contents are whatever the memory held: the
// caller must write every byte before reading it, and must never hand out a byte it did not
// write. strings.Builder.Grow allocates without clearing (the standard library's own way, for
// the same reason); its buffer is taken whole by its address. A Builder guarantees that, after
// Grow(n), n bytes are one allocation.
func Bytes(n int) []byte {
	if n <= 0 {
		return []byte{}
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteByte(0)
	return unsafe.Slice(unsafe.StringData(b.String()), n)
}
