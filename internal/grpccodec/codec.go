// Package grpccodec registers, for the process that imports it, a protobuf codec for gRPC that
// marshals into pooled buffers without clearing them first.
//
// gRPC's own codec takes each outgoing message's buffer from its default pool, which clears the
// whole buffer before handing it out, and whose tiers jump from 32 KB to 1 MB: every message
// of the stream (a parsed mail of hundreds of kilobytes) cleared a megabyte, and a message over
// a megabyte was a fresh allocation cleared by the runtime, about 2.5% of the server's CPU per
// message in make bench's profile, for bytes the marshaller overwrites at once. The clearing
// guards against a reader of memory nobody wrote; here no such read can happen: what goes out is
// cut to exactly the bytes the marshaller wrote, a buffer goes back to the pool only when gRPC
// frees it after the write (or at once when the marshaller outgrew it and wrote elsewhere), and
// nothing else takes buffers from this pool. Unmarshalling is gRPC's.
package grpccodec

import (
	"fmt"
	"math/bits"
	"sync"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registered first: Unmarshal is its
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

func init() {
	base := encoding.GetCodecV2(Name)
	if base == nil {
		panic("grpccodec: gRPC's " + Name + " codec is not registered")
	}
	encoding.RegisterCodecV2(codec{base: base})
}

// Name is the codec's name: it replaces gRPC's codec of that name.
const Name = "proto"

type codec struct{ base encoding.CodecV2 }

func (codec) Name() string { return Name }

// Marshal marshals v into a pooled buffer of its size (small messages into their own).
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m := messageOf(v)
	if m == nil {
		return nil, fmt.Errorf("proto: cannot marshal %T, not a protocol buffer message", v)
	}
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true} // the size just computed
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := pool.Get(size)
	out, err := opts.MarshalAppend((*buf)[:0], m)
	if err != nil {
		pool.Put(buf)
		return nil, err
	}
	return result(buf, out), nil
}

// result is what goes out once the marshaller wrote out into buf: buf, cut to out, when out is in
// buf's memory (every byte of it was written, whatever the size said: a message that changed
// between sizing and marshalling goes out as marshalled, never with an earlier message's tail);
// otherwise out, which outgrew buf into memory of its own, and buf goes back to the pool.
func result(buf *[]byte, out []byte) mem.BufferSlice {
	if cap(out) > 0 && &out[:1][0] == &(*buf)[:1][0] {
		*buf = out
		return mem.BufferSlice{mem.NewBuffer(buf, pool)}
	}
	pool.Put(buf)
	return mem.BufferSlice{mem.SliceBuffer(out)}
}

// Unmarshal is gRPC's.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

func messageOf(v any) proto.Message {
	switch v := v.(type) {
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v)
	case protoadapt.MessageV2:
		return v
	}
	return nil
}

// pool is the codec's buffer pool: a buffer of n bytes comes from the tier of the next power of
// two (so at most twice what is asked is held), with its earlier contents; buffers of other
// capacities are not kept.
var pool = &tiered{}

// maxTier is the largest pooled capacity, 1<<maxTier; a larger buffer is allocated each time.
const maxTier = 26

type tiered struct{ tiers [maxTier + 1]sync.Pool }

func (p *tiered) Get(n int) *[]byte {
	t := bits.Len(uint(max(n, 1) - 1))
	if t > maxTier {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.tiers[t].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<t)
	return &b
}

func (p *tiered) Put(b *[]byte) {
	c := cap(*b)
	if c == 0 || c&(c-1) != 0 {
		return
	}
	if t := bits.Len(uint(c - 1)); t <= maxTier {
		p.tiers[t].Put(b)
	}
}
