package grpccodec

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// message returns a Message of about n bytes, its text and attachment made of fill.
func message(n int, fill byte) *mailintakev1.Message {
	return &mailintakev1.Message{
		Id:       "m1",
		TextBody: strings.Repeat(string(fill), n/2),
		Attachments: []*mailintakev1.Attachment{{
			Filename: "a.bin", Data: bytes.Repeat([]byte{fill}, n/2),
		}},
	}
}

// TestRegistered checks that importing the package replaces gRPC's proto codec with this one.
func TestRegistered(t *testing.T) {
	if _, ok := encoding.GetCodecV2(Name).(codec); !ok {
		t.Fatalf("the %q codec is %T, not this package's", Name, encoding.GetCodecV2(Name))
	}
}

// TestMarshalReusesWithoutStaleBytes marshals large messages, then smaller ones into the same
// tiers once the large ones' buffers are back in the pool: each goes out as exactly
// proto.Marshal's bytes and reads back equal, none carries what an earlier one left.
func TestMarshalReusesWithoutStaleBytes(t *testing.T) {
	c := encoding.GetCodecV2(Name)
	for round, size := range []int{900 << 10, 600 << 10, 520 << 10, 3 << 20, 2 << 10, 40 << 10, 100} {
		fill := byte('a' + round)
		m := message(size, fill)
		data, err := c.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got := data.Materialize()
		want, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message of %d bytes: marshalled to %d bytes, not proto.Marshal's %d", size, len(got), len(want))
		}
		var back mailintakev1.Message
		if err := c.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&back, m) {
			t.Fatalf("message of %d bytes does not read back equal", size)
		}
		data.Free() // the buffer goes back to the pool for the next round
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Fatal("marshalling a string did not fail")
	}
}

// TestResultIsWhatWasWritten checks what goes out when the message changed between sizing and
// marshalling (shrank, grew within the buffer's capacity, grew past it): exactly the bytes
// written, never the buffer's stale tail, and never in a buffer the pool hands out again while
// it is being sent (other marshals of the same tier scribble over whatever they get).
func TestResultIsWhatWasWritten(t *testing.T) {
	for _, c := range []struct {
		name string
		n    int
	}{{"shrank", 2900}, {"grew within the capacity", 3100}, {"grew past the capacity", 5000}, {"as sized", 3000}} {
		buf := pool.Get(3000) // capacity 4096
		copy((*buf)[:cap(*buf)], bytes.Repeat([]byte("stale"), 1000))
		want := bytes.Repeat([]byte{'A'}, c.n)
		out := append((*buf)[:0], want...)
		r := result(buf, out)
		for range 8 {
			b := pool.Get(3500)
			copy(*b, bytes.Repeat([]byte{'B'}, len(*b)))
			defer pool.Put(b) // held until the end: the next Get cannot hand it out again either
		}
		if got := r.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("%s: sent %d bytes %.12q…, want the %d written", c.name, len(got), got, c.n)
		}
		r.Free()
	}
}

// TestTiers checks the pool's sizes: a buffer of n bytes from the tier of the next power of two,
// larger ones allocated to size, odd capacities not taken back.
func TestTiers(t *testing.T) {
	for _, n := range []int{1, 1000, 1024, 1025, 300 << 10, 1 << 20, 1<<maxTier + 1} {
		b := pool.Get(n)
		if len(*b) != n {
			t.Fatalf("Get(%d) gave %d bytes", n, len(*b))
		}
		want := 1
		for want < n {
			want <<= 1
		}
		if n > 1<<maxTier {
			want = n
		}
		if cap(*b) != want {
			t.Fatalf("Get(%d) gave capacity %d, want %d", n, cap(*b), want)
		}
		pool.Put(b)
	}
	odd := make([]byte, 3000)
	pool.Put(&odd) // not a tier's capacity: dropped, never handed out as a 4 KB buffer
	for range 100 {
		if b := pool.Get(3000); cap(*b) != 4096 {
			t.Fatalf("Get(3000) gave capacity %d", cap(*b))
		}
	}
}

var _ mem.BufferPool = pool
