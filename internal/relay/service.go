package relay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/session"
	"github.com/mailintake/mailintake/internal/store"
	replicav1 "github.com/mailintake/mailintake/proto/mailintake/replica/v1"
)

// Service is the owner's side of ReplicaService: it serves the mailboxes whose sessions run on
// this replica to the other replicas.
type Service struct {
	replicav1.UnimplementedReplicaServiceServer
	Store    store.Store
	Broker   *delivery.Broker
	Sessions *session.Supervisor
	Log      *slog.Logger
	// Lapsed, when set, tells whether a replica's heartbeat lapsed: a relay to an edge whose
	// heartbeat lapsed (it died or froze without closing its connection) is closed, so its
	// messages in flight are delivered again within seconds, not after their ack deadline.
	Lapsed func(replicaID string) bool
}

// Filter returns the stream filter of a scope.
func Filter(sc *replicav1.Scope) func(mailboxID, tenant string) bool {
	wanted := map[string]bool{}
	for _, id := range sc.GetMailboxIds() {
		wanted[id] = true
	}
	return func(mailboxID, tenant string) bool {
		if len(wanted) > 0 {
			return wanted[mailboxID]
		}
		return sc.GetAdmin() || sc.GetTenant() == tenant
	}
}

// Relay implements ReplicaService.
func (s *Service) Relay(rs replicav1.ReplicaService_RelayServer) error {
	ctx := rs.Context()
	first, err := rs.Recv()
	if err != nil {
		return err
	}
	sub := first.GetSubscribe()
	if sub == nil {
		return status.Error(codes.InvalidArgument, "the first relay message must be a subscribe")
	}
	deadline := delivery.DefaultAckDeadline
	if d := sub.GetAckDeadline(); d != nil {
		deadline = min(max(d.AsDuration(), delivery.MinAckDeadline), delivery.MaxAckDeadline)
	}
	st := s.Broker.OpenCredited(Filter(sub.GetScope()), deadline)
	defer s.Broker.CloseStream(st)

	returned := make(chan int32, 16)
	recvErr := make(chan error, 2)
	if s.Lapsed != nil && sub.GetEdgeReplicaId() != "" {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				if s.Lapsed(sub.GetEdgeReplicaId()) {
					recvErr <- status.Errorf(codes.Unavailable, "replica %s's heartbeat lapsed; its relay is closed", sub.GetEdgeReplicaId())
					return
				}
			}
		}()
	}
	go func() {
		for {
			req, err := rs.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			c := req.GetCredit()
			if c.GetGrant() > 0 {
				st.Grant(int(c.GetGrant()))
			}
			if c.GetRevoke() > 0 {
				select {
				case returned <- int32(st.Revoke(int(c.GetRevoke()))):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return feed(ctx, st, recvErr, returned, func(r *replicav1.RelayResponse) error { return rs.Send(r) })
}

// feed turns a credited broker stream's events into relay responses until ctx ends, stop
// reports, or out fails. It serves both remote edges (out sends on the gRPC stream) and the
// edge's own local source.
func feed(ctx context.Context, st *delivery.Stream, stop <-chan error, returned <-chan int32, out func(*replicav1.RelayResponse) error) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastDemand := -1
	demand := func() error {
		d := st.Demand()
		if d == lastDemand {
			return nil
		}
		lastDemand = d
		return out(&replicav1.RelayResponse{Kind: &replicav1.RelayResponse_Demand{Demand: &replicav1.Demand{Waiting: int32(d)}}})
	}
	if err := demand(); err != nil {
		return err
	}
	for {
		var err error
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-stop:
			if errors.Is(e, io.EOF) {
				return nil
			}
			return e
		case msg := <-st.Out():
			err = out(&replicav1.RelayResponse{Kind: &replicav1.RelayResponse_Message{Message: msg}, SentTime: timestamppb.Now()})
		case k := <-st.Left():
			ids := []string{k.String()}
		more:
			for len(ids) < 512 {
				select {
				case k := <-st.Left():
					ids = append(ids, k.String())
				default:
					break more
				}
			}
			err = out(&replicav1.RelayResponse{Kind: &replicav1.RelayResponse_Done{Done: &replicav1.Done{MessageIds: ids}}})
		case n := <-returned:
			err = out(&replicav1.RelayResponse{Kind: &replicav1.RelayResponse_Returned{Returned: &replicav1.Returned{Credits: n}}})
		case <-st.Notify():
			err = demand()
		case <-tick.C:
			err = demand()
		}
		if err != nil {
			return err
		}
	}
}

// Ack implements ReplicaService: the acknowledgements are recorded here, on the owner, which
// knows each message's hash, before the answer.
func (s *Service) Ack(ctx context.Context, req *replicav1.AckRequest) (*replicav1.AckResponse, error) {
	sc := req.GetScope()
	res, err := s.Broker.Ack(ctx, req.GetMessageIds(), func(tenant string) bool { return sc.GetAdmin() || sc.GetTenant() == tenant })
	if err != nil {
		return nil, err
	}
	return &replicav1.AckResponse{AcknowledgedIds: res.Acknowledged, UnknownIds: res.Unknown}, nil
}

// chunkWriter sends what is written to it as GetRawMessage chunks.
type chunkWriter struct {
	rs replicav1.ReplicaService_GetRawMessageServer
}

func (w chunkWriter) Write(p []byte) (int, error) {
	const chunk = 64 << 10
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), chunk)
		if err := w.rs.Send(&replicav1.GetRawMessageResponse{Chunk: p[:k]}); err != nil {
			return 0, err
		}
		p = p[k:]
	}
	return n, nil
}

// GetRawMessage implements ReplicaService.
func (s *Service) GetRawMessage(req *replicav1.GetRawMessageRequest, rs replicav1.ReplicaService_GetRawMessageServer) error {
	k, err := delivery.ParseKey(req.GetMessageId())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	mb, err := s.Store.GetMailbox(rs.Context(), k.MailboxID)
	if err != nil {
		return err
	}
	_, err = s.Sessions.StreamRaw(rs.Context(), mb, k, chunkWriter{rs})
	return err
}

// GetMailboxStatus implements ReplicaService.
func (s *Service) GetMailboxStatus(ctx context.Context, req *replicav1.GetMailboxStatusRequest) (*replicav1.GetMailboxStatusResponse, error) {
	return &replicav1.GetMailboxStatusResponse{Status: s.Sessions.Status(ctx, req.GetMailboxId())}, nil
}
