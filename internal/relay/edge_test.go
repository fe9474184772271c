package relay

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/store"
	replicav1 "github.com/mailintake/mailintake/proto/mailintake/replica/v1"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

type nopRecorder struct{}

func (nopRecorder) RecordAcks(context.Context, map[string][]store.Ack) error { return nil }

type members struct {
	id    string
	peers []store.Replica
}

func (m members) ID() string             { return m.id }
func (m members) Peers() []store.Replica { return m.peers }

// fakeSession offers n messages of a mailbox as the broker gives it slots, as a mailbox session does.
func fakeSession(ctx context.Context, b *delivery.Broker, mailbox string, n int) {
	q := b.Queue(mailbox, "acme")
	q.SetUIDValidity(1)
	next := uint32(1)
	for next <= uint32(n) && ctx.Err() == nil {
		free := q.Reserve(1)
		if free > 0 {
			msg := &mailintakev1.Message{MailboxId: mailbox, UidValidity: 1, Uid: next, Sha256: "h"}
			if q.Offer(msg) == delivery.Delivered {
				next++
			}
			q.Release()
			continue
		}
		q.Settle()
		select {
		case <-q.Wake():
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// TestEdgeHoldsMaxInFlightAcrossReplicas streams two mailboxes, one on this replica and one on
// another reached through a real ReplicaService relay, to one consumer: never more in flight
// than it asked for, and acknowledgements on the owner free slots for more.
func TestEdgeHoldsMaxInFlightAcrossReplicas(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bx := box(t, 7)
	edgeKey, ownerKey := NewKey(bx, "edge"), NewKey(bx, "owner")

	owner := delivery.New(nopRecorder{})
	defer owner.Close()
	g := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if _, err := ownerKey.Verify(ss.Context()); err != nil {
			return status.Error(codes.Unauthenticated, err.Error())
		}
		return h(srv, ss)
	}))
	replicav1.RegisterReplicaServiceServer(g, &Service{Broker: owner})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)
	defer g.Stop()

	local := delivery.New(nopRecorder{})
	defer local.Close()
	peers := NewPeers(edgeKey, nil)
	defer peers.Close()
	var lagMu sync.Mutex
	lags := 0
	e := &Edge{Broker: local, Peers: peers, Refresh: 50 * time.Millisecond,
		Lag: func(d time.Duration) {
			lagMu.Lock()
			lags++
			lagMu.Unlock()
		},
		Member: members{id: "edge", peers: []store.Replica{{ID: "owner", Incarnation: "i1", Addr: ln.Addr().String(), Alive: true}}}}

	const each, window = 10, 4
	go fakeSession(ctx, local, "mine", each)
	go fakeSession(ctx, owner, "theirs", each)

	var mu sync.Mutex
	var got []*mailintakev1.Message
	go e.Serve(ctx, &replicav1.Scope{Admin: true}, window, time.Hour, func(m *mailintakev1.Message) error {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		return nil
	})
	received := func() []*mailintakev1.Message {
		mu.Lock()
		defer mu.Unlock()
		return append([]*mailintakev1.Message(nil), got...)
	}
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(received()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("received %d messages, want %d", len(received()), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	all := func(string) bool { return true }
	acked := 0
	for acked < 2*each {
		waitFor(acked + min(window, 2*each-acked))
		time.Sleep(200 * time.Millisecond) // give the edge time to exceed the window, if it would
		msgs := received()
		if inFlight := len(msgs) - acked; inFlight > window {
			t.Fatalf("%d messages in flight, max_in_flight is %d", inFlight, window)
		}
		for _, m := range msgs[acked:] {
			b := local
			if strings.HasPrefix(m.GetId(), "theirs:") {
				b = owner
			}
			if res, err := b.Ack(ctx, []string{m.GetId()}, all); err != nil || len(res.Acknowledged) != 1 {
				t.Fatalf("ack %s: %v %v", m.GetId(), res, err)
			}
		}
		acked = len(msgs)
	}
	from := map[string]int{}
	for _, m := range received() {
		from[m.GetMailboxId()]++
	}
	if from["mine"] != each || from["theirs"] != each {
		t.Errorf("delivered %v, want %d of each mailbox", from, each)
	}
	lagMu.Lock()
	defer lagMu.Unlock()
	if lags != each {
		t.Errorf("relay lag observed %d times, want once per relayed message (%d)", lags, each)
	}
}

// TestRelayToALapsedEdgeIsClosed: an edge that froze keeps its connection open, but once its
// heartbeat lapsed the owner closes the relay, and the messages in flight on it come back at once
// instead of after their ack deadline.
func TestRelayToALapsedEdgeIsClosed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bx := box(t, 9)
	owner := delivery.New(nopRecorder{})
	defer owner.Close()
	var mu sync.Mutex
	lapsed := false
	g := grpc.NewServer()
	replicav1.RegisterReplicaServiceServer(g, &Service{Broker: owner, Lapsed: func(id string) bool {
		mu.Lock()
		defer mu.Unlock()
		return id == "edge" && lapsed
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)
	defer g.Stop()
	local := delivery.New(nopRecorder{})
	defer local.Close()
	peers := NewPeers(NewKey(bx, "edge"), nil)
	defer peers.Close()
	e := &Edge{Broker: local, Peers: peers, Refresh: time.Hour,
		Member: members{id: "edge", peers: []store.Replica{{ID: "owner", Incarnation: "i1", Addr: ln.Addr().String(), Alive: true}}}}
	go fakeSession(ctx, owner, "theirs", 1)
	got := make(chan *mailintakev1.Message, 1)
	go e.Serve(ctx, &replicav1.Scope{Admin: true}, 4, time.Hour, func(m *mailintakev1.Message) error { got <- m; return nil })
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the relayed message never came")
	}
	q := owner.Queue("theirs", "acme")
	if _, _, pending := q.Counts(); pending != 1 {
		t.Fatalf("in flight on the owner: %d, want 1", pending)
	}
	mu.Lock()
	lapsed = true
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, pending := q.Counts(); pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the message stayed in flight on a relay to an edge whose heartbeat lapsed (it would wait for its one-hour ack deadline)")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
