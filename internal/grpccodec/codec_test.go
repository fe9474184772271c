package grpccodec

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"

	"github.com/mailintake/mailintake/internal/offheap"
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

// TestMarshalWithoutStaleBytes marshals large messages, then smaller ones once the large ones
// are freed (their buffers are lent again by offheap, or their memory handed out again by the
// collector, not cleared): each goes out as exactly proto.Marshal's bytes and reads back equal,
// none carries what an earlier one left. A buffer lent from offheap goes back to it when gRPC
// frees the message.
func TestMarshalWithoutStaleBytes(t *testing.T) {
	c := encoding.GetCodecV2(Name)
	for round, size := range []int{900 << 10, 600 << 10, 520 << 10, 3 << 20, 2 << 10, 40 << 10, 100} {
		fill := byte('a' + round)
		m := message(size, fill)
		lent := offheap.CurrentStats().Lent
		data, err := c.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := offheap.CurrentStats().Lent - lent; got != 1 && size >= offheap.MinSize || got != 0 && size < offheap.MinSize {
			t.Errorf("message of %d bytes: %d buffers lent from offheap", size, got)
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
		data.Free()
		if got := offheap.CurrentStats().Lent; got != lent {
			t.Errorf("message of %d bytes: %d buffers lent after gRPC freed it, want %d", size, got, lent)
		}
		runtime.GC() // a heap buffer's memory is free for the next round's
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Fatal("marshalling a string did not fail")
	}
}

// TestMarshalIntoIsWhatWasWritten marshals into buffers full of stale bytes that are longer
// than the message (as if it shrank after it was sized), shorter (as if it grew, within or past
// their capacity) or of its size: exactly the bytes written come back, never the buffer's tail.
func TestMarshalIntoIsWhatWasWritten(t *testing.T) {
	m := message(3000, 'A')
	want, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	proto.Size(m) // marshalInto uses the cached size, as Marshal does
	for _, c := range []struct {
		name     string
		len, cap int
	}{{"buffer longer", len(want) + 100, len(want) + 100}, {"buffer shorter, capacity enough", len(want) - 100, len(want) + 50},
		{"buffer and capacity shorter", len(want) - 100, len(want) - 100}, {"buffer of its size", len(want), len(want)}} {
		buf := bytes.Repeat([]byte("stale"), c.cap/5+1)[:c.len:c.cap]
		got, err := marshalInto(buf, m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes %.12q…, want the %d written", c.name, len(got), got, len(want))
		}
	}
}
