package client

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// ackServer records the AckMessages calls it gets, and fails them once fail is set.
type ackServer struct {
	mailintakev1.UnimplementedMessageServiceServer
	mu    sync.Mutex
	calls [][]string
	fail  bool
}

func (s *ackServer) AckMessages(_ context.Context, req *mailintakev1.AckMessagesRequest) (*mailintakev1.AckMessagesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return nil, status.Error(codes.Unavailable, "down")
	}
	s.calls = append(s.calls, req.GetMessageIds())
	return &mailintakev1.AckMessagesResponse{}, nil
}

func ackClient(t *testing.T) (*Client, *ackServer) {
	l := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	as := &ackServer{}
	mailintakev1.RegisterMessageServiceServer(srv, as)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return l.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return New(conn), as
}

// Acks go out in batches of MaxBatch, the rest after Delay or on Flush, every id once and in
// order.
func TestAckerBatches(t *testing.T) {
	c, as := ackClient(t)
	a := c.NewAcker(context.Background(), AckerOptions{MaxBatch: 64, Delay: time.Hour})
	var want []string
	for i := range 150 {
		id := strconv.Itoa(i)
		want = append(want, id)
		if err := a.Ack(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	as.mu.Lock()
	var got []string
	var sizes []int
	for _, call := range as.calls {
		got = append(got, call...)
		sizes = append(sizes, len(call))
	}
	as.mu.Unlock()
	if !slices.Equal(sizes, []int{64, 64, 22}) || !slices.Equal(got, want) {
		t.Errorf("calls of %v ids: %v", sizes, got)
	}
	// A lone id goes out after Delay, without a Flush.
	b := c.NewAcker(context.Background(), AckerOptions{MaxBatch: 64, Delay: 20 * time.Millisecond})
	b.Ack("lone")
	deadline := time.Now().Add(5 * time.Second)
	for {
		as.mu.Lock()
		n := len(as.calls)
		as.mu.Unlock()
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a lone ack was never sent")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A failed batch is reported by the next Ack and by Flush.
func TestAckerReportsFailure(t *testing.T) {
	c, as := ackClient(t)
	as.fail = true
	a := c.NewAcker(context.Background(), AckerOptions{MaxBatch: 2})
	a.Ack("1")
	a.Ack("2") // a full batch: sent, and refused
	if err := a.Flush(); status.Code(err) != codes.Unavailable {
		t.Fatalf("Flush: %v", err)
	}
	if err := a.Ack("3"); status.Code(err) != codes.Unavailable {
		t.Errorf("Ack after a failed batch: %v", err)
	}
}
