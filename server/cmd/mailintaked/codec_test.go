package main

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/encoding"
)

// TestCodec checks that the daemon marshals with internal/grpccodec, not gRPC's own codec.
func TestCodec(t *testing.T) {
	if got := fmt.Sprintf("%T", encoding.GetCodecV2("proto")); got != "grpccodec.codec" {
		t.Fatalf("the daemon's proto codec is %s, want grpccodec.codec", got)
	}
}
