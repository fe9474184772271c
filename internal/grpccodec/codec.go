// Package grpccodec registers, for the process that imports it, a protobuf codec for gRPC that
// marshals each outgoing message into a buffer of its size that is not cleared first.
//
// gRPC's own codec takes each outgoing message's buffer from its default pool, which clears the
// whole buffer before handing it out, and whose tiers jump from 32 KB to 1 MB: every message
// of the stream (a parsed mail of hundreds of kilobytes) cleared a megabyte, and a message over
// a megabyte was a fresh allocation cleared by the runtime, about 2.5% of the server's CPU per
// message in make bench's profile, for bytes the marshaller overwrites at once.
//
// Here a message is marshalled into a buffer of exactly its size that is not cleared. One of
// internal/offheap's size or more (most messages of the stream) is lent from outside the heap
// and given back once gRPC has written it, to be lent again: its pages stay mapped, where a fresh
// heap buffer was memory the runtime had handed back to the kernel and the kernel faulted in and
// cleared again (make bench's profile: a sixth of the server's page faults). Nothing is pooled on
// the heap: a pool's buffers are live heap between messages, which the collector's target
// doubles (with buffers rounded up to the next power of two, gRPC-style tiers held about 6 MB
// while mail streamed, and the server's peak RSS rose by 8 MB: make bench, 4 interleaved runs).
// The clearing guards against a reader of memory nobody wrote; here no such read can happen:
// what goes out is exactly the bytes the marshaller wrote, however the message's size was
// computed. Unmarshalling is gRPC's.
package grpccodec

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registered first: Unmarshal is its
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	"github.com/mailintake/mailintake/internal/offheap"
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

// Marshal marshals v into a buffer of its size that was not cleared (a message below gRPC's
// pooling threshold, a kilobyte, as gRPC's codec does: into its own).
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m := messageOf(v)
	if m == nil {
		return nil, fmt.Errorf("proto: cannot marshal %T, not a protocol buffer message", v)
	}
	size := proto.Size(m)
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := proto.MarshalOptions{UseCachedSize: true}.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := offheap.Get(size)
	out, err := marshalInto(buf, m)
	if err != nil || len(out) == 0 || &out[0] != &buf[0] {
		offheap.Free(buf) // failed, or grew past buf into a heap buffer of its own
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(out)}, nil
	}
	// gRPC frees the buffer (Put) once it no longer needs its bytes: they go back to offheap.
	// It does not when its connection ends with the message still queued (its transport frees
	// what it holds only while the connection lives): then the buffer goes back when the
	// handle is collected (offheap.Guard).
	handle := &out
	offheap.Guard(handle)
	return mem.BufferSlice{mem.NewBuffer(handle, lender{})}, nil
}

// lender is the mem.BufferPool of the buffers Marshal lends: Put gives one back to offheap.
type lender struct{}

func (lender) Get(n int) *[]byte {
	b := offheap.Get(n)
	return &b
}

func (lender) Put(b *[]byte) { offheap.Free(*b) }

// marshalInto marshals m, sized just before (its cached size is used), into buf's memory and
// returns exactly the bytes written: buf's earlier contents never go out, even if m changed
// since it was sized (it goes out as marshalled, shorter than buf or grown past it).
func marshalInto(buf []byte, m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf[:0], m)
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
