package main

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// fakeStream sends its messages on StreamMessages, records each request's max_in_flight and
// the ids acknowledged.
type fakeStream struct {
	mailintakev1.UnimplementedMessageServiceServer
	messages []*mailintakev1.Message

	mu       sync.Mutex
	inFlight []uint32
	acked    []string
}

func (f *fakeStream) StreamMessages(req *mailintakev1.StreamMessagesRequest, s grpc.ServerStreamingServer[mailintakev1.StreamMessagesResponse]) error {
	f.mu.Lock()
	f.inFlight = append(f.inFlight, req.GetMaxInFlight())
	f.mu.Unlock()
	for _, m := range f.messages {
		if err := s.Send(&mailintakev1.StreamMessagesResponse{Message: m}); err != nil {
			return err
		}
	}
	<-s.Context().Done()
	return nil
}

func (f *fakeStream) AckMessages(_ context.Context, req *mailintakev1.AckMessagesRequest) (*mailintakev1.AckMessagesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acked = append(f.acked, req.GetMessageIds()...)
	return &mailintakev1.AckMessagesResponse{AcknowledgedIds: req.GetMessageIds()}, nil
}

// TestTailWindow checks the max_in_flight tail asks for: 64 with --ack (acks batched while the
// server keeps sending), the server's default without it, and --max-in-flight as given; and that
// --ack acknowledges every message it printed before it exits.
func TestTailWindow(t *testing.T) {
	tests := []struct {
		args []string
		want uint32
		ack  bool
	}{
		{[]string{"--ack"}, 64, true},
		{nil, 0, false},
		{[]string{"--ack", "--max-in-flight", "4"}, 4, true},
		{[]string{"--max-in-flight", "200"}, 200, false},
	}
	for _, tc := range tests {
		f := &fakeStream{messages: []*mailintakev1.Message{{Id: "m-1", RawSize: 10}, {Id: "m-2", RawSize: 20}, {Id: "m-3", RawSize: 30}}}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer()
		mailintakev1.RegisterMessageServiceServer(g, f)
		go g.Serve(lis)
		code, out, errOut := runCLI(t, lis.Addr().String(), adminToken, append([]string{"tail", "--limit", "3", "--quiet"}, tc.args...)...)
		g.Stop()
		if code != exitOK || !strings.HasPrefix(out, "3 messages, 60 bytes") {
			t.Fatalf("tail %v: exit %d, stdout %q, stderr %q", tc.args, code, out, errOut)
		}
		f.mu.Lock()
		if !slices.Equal(f.inFlight, []uint32{tc.want}) {
			t.Errorf("tail %v: max_in_flight %v, want [%d]", tc.args, f.inFlight, tc.want)
		}
		slices.Sort(f.acked)
		if want := []string{"m-1", "m-2", "m-3"}; tc.ack != slices.Equal(f.acked, want) || (!tc.ack && len(f.acked) > 0) {
			t.Errorf("tail %v: acknowledged %v (ack %v)", tc.args, f.acked, tc.ack)
		}
		f.mu.Unlock()
	}
}
