package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/cluster"
	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/relay"
	"github.com/mailintake/mailintake/internal/store"
	replicav1 "github.com/mailintake/mailintake/proto/mailintake/replica/v1"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Cluster is what the API needs when several replicas share one PostgreSQL database: the
// membership (who owns which mailbox), the edge that fans other replicas' messages into this
// replica's streams, the connections to the other replicas, and the replica credential.
type Cluster struct {
	Member *cluster.Member
	Edge   *relay.Edge
	Peers  *relay.Peers
	Key    *relay.Key
}

// errNoOwner is returned when no live replica holds a mailbox at the moment (after a failover,
// for a few seconds).
var errNoOwner = errors.New("no replica holds this mailbox at the moment (it is being taken over); try again in a few seconds")

// owner returns the replica that runs a mailbox's session: ok and self when it is this one (or
// the server is not clustered), a client for another replica otherwise.
func (s *Server) owner(mailboxID string) (client replicav1.ReplicaServiceClient, route cluster.Route, err error) {
	if s.cluster == nil {
		return nil, cluster.Route{Self: true}, nil
	}
	r, ok := s.cluster.Member.Route(mailboxID)
	if !ok {
		return nil, r, errNoOwner
	}
	if r.Self {
		return nil, r, nil
	}
	c, err := s.cluster.Peers.Client(r.Addr)
	if err != nil {
		return nil, r, fmt.Errorf("reaching replica %s at %s: %w", r.ReplicaID, r.Addr, err)
	}
	return c, r, nil
}

// reload makes the owner's session match a mailbox's stored definition (and the replicas look at
// the mailbox list again: a created or deleted mailbox).
func (s *Server) reload(ctx context.Context, mailboxID string) {
	s.sessions.Reload(ctx, mailboxID)
	s.hint(ctx, mailboxID)
}

// wake asks the owner's session to look for work now.
func (s *Server) wake(ctx context.Context, mailboxID string) {
	s.sessions.Wake(mailboxID)
	s.hint(ctx, mailboxID)
}

// hint tells the other replicas (LISTEN/NOTIFY) that a mailbox changed or has work. If the hint is
// lost, the owner's reconciliation finds the change within a second or two.
func (s *Server) hint(ctx context.Context, mailboxID string) {
	if s.cluster == nil {
		return
	}
	s.cluster.Member.Kick()
	if cs, ok := s.store.(store.Cluster); ok {
		if err := cs.Notify(context.WithoutCancel(ctx), mailboxID); err != nil {
			s.log.Debug("notifying the replicas", "mailbox_id", mailboxID, "err", err)
		}
	}
}

// scope is what a caller may see, for other replicas.
func scope(p Principal, mailboxIDs []string) *replicav1.Scope {
	return &replicav1.Scope{Tenant: p.Tenant, Admin: p.Admin, MailboxIds: mailboxIDs}
}

// ack records acknowledgements on the replicas that own their mailboxes: each owner records its
// part durably before it answers. Ids of mailboxes no replica holds now are unknown (their
// messages come again from the next owner).
func (s *Server) ack(ctx context.Context, ids []string, p Principal) (delivery.AckResult, error) {
	if s.cluster == nil {
		return s.broker.Ack(ctx, ids, p.canSee)
	}
	byOwner := map[string][]string{}
	clients := map[string]replicav1.ReplicaServiceClient{}
	var local, unrouted []string
	var res delivery.AckResult
	for _, id := range ids {
		k, err := delivery.ParseKey(id)
		if err != nil {
			res.Unknown = append(res.Unknown, id)
			continue
		}
		// A message this replica relayed goes back to the replica it came from; otherwise to
		// the owner by this replica's view of the leases.
		if h, ok := s.cluster.Edge.Holder(id); ok {
			if c, err := s.cluster.Peers.Client(h.Addr); err == nil {
				byOwner[h.ID] = append(byOwner[h.ID], id)
				clients[h.ID] = c
				continue
			}
		}
		c, r, err := s.owner(k.MailboxID)
		switch {
		case err != nil:
			unrouted = append(unrouted, id)
		case r.Self:
			local = append(local, id)
		default:
			byOwner[r.ReplicaID] = append(byOwner[r.ReplicaID], id)
			clients[r.ReplicaID] = c
		}
	}
	if len(unrouted) > 0 {
		// This replica's view of the owners is a moment old (a takeover in progress): ask
		// every replica; only the one holding a message in flight acknowledges it.
		local = append(local, unrouted...)
		for _, p := range s.cluster.Member.Peers() {
			if c, err := s.cluster.Peers.Client(p.Addr); err == nil {
				byOwner[p.ID] = append(byOwner[p.ID], unrouted...)
				clients[p.ID] = c
			}
		}
	}
	acked := map[string]bool{}
	if len(local) > 0 {
		r, err := s.broker.Ack(ctx, local, p.canSee)
		if err != nil {
			return delivery.AckResult{}, err
		}
		for _, id := range r.Acknowledged {
			acked[id] = true
		}
	}
	owners := make([]string, 0, len(byOwner))
	for o := range byOwner {
		owners = append(owners, o)
	}
	sort.Strings(owners)
	for _, o := range owners {
		r, err := clients[o].Ack(ctx, &replicav1.AckRequest{Scope: scope(p, nil), MessageIds: byOwner[o]})
		if err != nil {
			return delivery.AckResult{}, status.Errorf(codes.Unavailable,
				"recording acknowledgements on replica %s failed (%v); acknowledgements are idempotent: send the call again", o, status.Convert(err).Message())
		}
		for _, id := range r.GetAcknowledgedIds() {
			acked[id] = true
		}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if acked[id] {
			res.Acknowledged = append(res.Acknowledged, id)
		} else if !slices.Contains(res.Unknown, id) {
			res.Unknown = append(res.Unknown, id)
		}
	}
	return res, nil
}

// streamRaw writes a message's raw bytes to w, fetched by the mailbox's owner (only the owner
// connects to a mailbox).
func (s *Server) streamRaw(ctx context.Context, mb *store.Mailbox, k delivery.Key, w io.Writer) error {
	c, r, err := s.owner(k.MailboxID)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if r.Self {
		_, err := s.sessions.StreamRaw(ctx, mb, k, w)
		return err
	}
	rs, err := c.GetRawMessage(ctx, &replicav1.GetRawMessageRequest{MessageId: k.String()})
	if err != nil {
		return err
	}
	for {
		resp, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := w.Write(resp.GetChunk()); err != nil {
			return err
		}
	}
}

// liveStatus returns a mailbox's live status from its owner, nil when no replica runs it.
func (s *Server) liveStatus(ctx context.Context, mailboxID string) *mailintakev1.MailboxStatus {
	c, r, err := s.owner(mailboxID)
	switch {
	case err != nil:
		return &mailintakev1.MailboxStatus{MailboxId: mailboxID, State: mailintakev1.MailboxState_MAILBOX_STATE_CONNECTING, Message: errNoOwner.Error()}
	case r.Self:
		return s.sessions.Status(ctx, mailboxID)
	}
	resp, err := c.GetMailboxStatus(ctx, &replicav1.GetMailboxStatusRequest{MailboxId: mailboxID})
	if err != nil || resp.GetStatus() == nil {
		msg := fmt.Sprintf("replica %s owns the mailbox and is starting its session", r.ReplicaID)
		if err != nil {
			msg = fmt.Sprintf("replica %s owns the mailbox but did not answer: %s", r.ReplicaID, status.Convert(err).Message())
		}
		return &mailintakev1.MailboxStatus{MailboxId: mailboxID, State: mailintakev1.MailboxState_MAILBOX_STATE_CONNECTING, Message: msg,
			OwnerReplicaId: r.ReplicaID, OwnerEpoch: r.Epoch}
	}
	return resp.GetStatus()
}

// authenticateReplica checks the replica credential of a ReplicaService call.
func (s *Server) authenticateReplica(ctx context.Context) (context.Context, error) {
	if s.cluster == nil {
		return ctx, status.Error(codes.Unimplemented, "this server is not a replica of a cluster")
	}
	id, err := s.cluster.Key.Verify(ctx)
	if err != nil {
		return ctx, status.Error(codes.Unauthenticated, err.Error())
	}
	return context.WithValue(ctx, principalKey{}, Principal{TokenID: "replica:" + id}), nil
}

func replicaMethod(method string) bool { return strings.HasPrefix(method, relay.ServicePrefix) }

// clusterService implements ClusterService.
type clusterService struct {
	mailintakev1.UnimplementedClusterServiceServer
	s *Server
}

func (c *clusterService) GetClusterStatus(ctx context.Context, _ *mailintakev1.GetClusterStatusRequest) (*mailintakev1.GetClusterStatusResponse, error) {
	if !caller(ctx).Admin {
		return nil, status.Error(codes.PermissionDenied, "the cluster status needs the admin token")
	}
	if c.s.cluster == nil {
		return &mailintakev1.GetClusterStatusResponse{Clustered: false}, nil
	}
	m := c.s.cluster.Member
	st := m.Status()
	resp := &mailintakev1.GetClusterStatusResponse{ReplicaId: m.ID(), Clustered: true, UnownedMailboxes: int32(st.Unowned)}
	if !st.LastRound.IsZero() {
		resp.LastReconcileTime = timestamppb.New(st.LastRound)
	}
	if st.LastError != nil {
		resp.LastError = st.LastError.Error()
	}
	for _, r := range st.Replicas {
		resp.Replicas = append(resp.Replicas, &mailintakev1.ReplicaStatus{Id: r.ID, Addr: r.Addr, Alive: r.Alive, Incarnation: r.Incarnation,
			StartTime: timestamppb.New(r.StartTime), ExpireTime: timestamppb.New(r.ExpireTime), Mailboxes: int32(r.Mailboxes),
			MaxEpoch: r.MaxEpoch, Self: r.Self})
	}
	return resp, nil
}

// forwardedKey marks a call another replica forwarded to this one (its owner): it runs here,
// whatever this replica's view of the owners says, so a call is never forwarded twice.
type forwardedKey struct{}

func forwarded(ctx context.Context) bool { return ctx.Value(forwardedKey{}) != nil }

// replicaService serves ReplicaService: the relay's calls (relay.Service) and the calls that run
// the API's own handlers on the owner, as the forwarding caller may (TestConnection,
// PreviewFirstSync).
type replicaService struct {
	*relay.Service
	s *Server
}

// asCaller runs on the owner with the forwarding caller's view.
func asCaller(ctx context.Context, sc *replicav1.Scope) context.Context {
	p := Principal{TokenID: caller(ctx).TokenID, Tenant: sc.GetTenant(), Admin: sc.GetAdmin()}
	return context.WithValue(context.WithValue(ctx, principalKey{}, p), forwardedKey{}, true)
}

func (r *replicaService) TestConnection(ctx context.Context, req *replicav1.TestConnectionRequest) (*replicav1.TestConnectionResponse, error) {
	resp, err := (&mailboxService{s: r.s}).TestConnection(asCaller(ctx, req.GetScope()), req.GetRequest())
	if err != nil {
		return nil, err
	}
	return &replicav1.TestConnectionResponse{Response: resp}, nil
}

func (r *replicaService) StreamConnectionTest(req *replicav1.StreamConnectionTestRequest, stream grpc.ServerStreamingServer[replicav1.StreamConnectionTestResponse]) error {
	return (&mailboxService{s: r.s}).streamTest(asCaller(stream.Context(), req.GetScope()), req.GetRequest(), func(ev *mailintakev1.StreamConnectionTestResponse) error {
		return stream.Send(&replicav1.StreamConnectionTestResponse{Response: ev})
	})
}

func (r *replicaService) PreviewFirstSync(ctx context.Context, req *replicav1.PreviewFirstSyncRequest) (*replicav1.PreviewFirstSyncResponse, error) {
	resp, err := (&mailboxService{s: r.s}).PreviewFirstSync(asCaller(ctx, req.GetScope()), req.GetRequest())
	if err != nil {
		return nil, err
	}
	return &replicav1.PreviewFirstSyncResponse{Response: resp}, nil
}

// relayTest runs a streamed connection test on the mailbox's owner and passes its events on as
// they come. relayed is false, nothing sent, when the owner does not stream tests (an earlier
// release: UNIMPLEMENTED).
func relayTest(ctx context.Context, c replicav1.ReplicaServiceClient, req *mailintakev1.StreamConnectionTestRequest, send func(*mailintakev1.StreamConnectionTestResponse) error) (relayed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs, err := c.StreamConnectionTest(ctx, &replicav1.StreamConnectionTestRequest{Scope: scope(caller(ctx), nil), Request: req})
	if err != nil {
		return status.Code(err) != codes.Unimplemented, err
	}
	for sent := false; ; sent = true {
		r, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return sent || status.Code(err) != codes.Unimplemented, err
		}
		if err := send(r.GetResponse()); err != nil {
			return true, err
		}
	}
}

// ownerOf returns a client for the owner of a stored mailbox when a call about it must run there
// (another replica owns it and this call was not forwarded already); nil to run it here (this
// replica owns it, no replica does at the moment, or the server is not clustered).
func (s *Server) ownerOf(ctx context.Context, mailboxID string) replicav1.ReplicaServiceClient {
	if s.cluster == nil || mailboxID == "" || forwarded(ctx) {
		return nil
	}
	c, r, err := s.owner(mailboxID)
	if err != nil || r.Self {
		return nil
	}
	return c
}
