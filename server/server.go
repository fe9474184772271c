// Package server implements the mailintake gRPC API: the services of mailintake.v1 and the
// interceptors that authenticate every call and turn domain errors into gRPC statuses (errors.go
// is the one place that does). Handlers translate requests and delegate to the store and the
// plugin host.
package server

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/outbox"
	"github.com/mailintake/mailintake/internal/pluginhost"
	"github.com/mailintake/mailintake/internal/relay"
	"github.com/mailintake/mailintake/internal/session"
	"github.com/mailintake/mailintake/internal/store"
	replicav1 "github.com/mailintake/mailintake/proto/mailintake/replica/v1"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// Options configure a Server.
type Options struct {
	Store    store.Store
	Plugins  *pluginhost.Host
	Sessions *session.Supervisor
	Broker   *delivery.Broker
	Logger   *slog.Logger
	// Cluster is set when several replicas share the database (PostgreSQL).
	Cluster *Cluster
	// Replica serves the other replicas (ReplicaService's relay calls); set with Cluster.
	Replica *relay.Service
	// Outbox, when set, is woken when a message is queued (OutboundService) or a mailbox's
	// sending changes; it sends in the background. Without it, queued mail waits for a sender.
	Outbox *outbox.Sender
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Server holds the API's dependencies and implements its services.
type Server struct {
	store    store.Store
	plugins  *pluginhost.Host
	sessions *session.Supervisor
	broker   *delivery.Broker
	cluster  *Cluster
	replica  *relay.Service
	outbox   *outbox.Sender
	log      *slog.Logger
	now      func() time.Time
	health   *health.Server
	closing  chan struct{}
	once     sync.Once

	storeMu      sync.Mutex
	storeErr     string    // the last store failure an RPC met, for GetMailboxStatus
	storeErrTime time.Time // when
}

// noteStore remembers a store failure an RPC met, so that every mailbox's status shows it.
func (s *Server) noteStore(err error) {
	if !errors.Is(err, store.ErrUnavailable) {
		return
	}
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	s.storeErr, s.storeErrTime = err.Error(), s.now()
}

// storeFailure returns the last store failure of the past ten minutes, if any.
func (s *Server) storeFailure() (string, time.Time) {
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	if s.storeErr == "" || s.now().Sub(s.storeErrTime) > 10*time.Minute {
		return "", time.Time{}
	}
	return s.storeErr, s.storeErrTime
}

// New returns a Server.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{store: opts.Store, plugins: opts.Plugins, sessions: opts.Sessions, broker: opts.Broker, cluster: opts.Cluster, replica: opts.Replica, outbox: opts.Outbox,
		log: opts.Logger, now: opts.Now, health: health.NewServer(), closing: make(chan struct{})}
}

// ServerOptions returns the grpc.ServerOptions the API needs (its interceptors).
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.UnaryInterceptor),
		grpc.ChainStreamInterceptor(s.StreamInterceptor),
		// Messages of hundreds of kilobytes go out in fewer, larger writes (gRPC's default
		// 32 KB buffer made a write system call per two HTTP/2 frames).
		grpc.WriteBufferSize(writeBufferSize),
		// SendMessage carries the message's bodies and attachments.
		grpc.MaxRecvMsgSize(maxRequestBytes),
	}
}

// writeBufferSize is each API connection's write buffer.
const writeBufferSize = 256 << 10

// maxRequestBytes bounds a request: a SendMessage with a message of maxOutboundBytes and a little
// room for its other fields (gRPC's default is 4 MiB).
const maxRequestBytes = maxOutboundBytes + 4<<20

// Register registers the services, the health service and reflection on g.
func (s *Server) Register(g *grpc.Server) {
	mailintakev1.RegisterMailboxServiceServer(g, &mailboxService{s: s})
	mailintakev1.RegisterMessageServiceServer(g, &messageService{s: s})
	mailintakev1.RegisterAuthProviderServiceServer(g, &authProviderService{s: s})
	mailintakev1.RegisterTokenServiceServer(g, &tokenService{s: s})
	mailintakev1.RegisterClusterServiceServer(g, &clusterService{s: s})
	mailintakev1.RegisterOutboundServiceServer(g, &outboundService{s: s})
	if s.replica != nil {
		replicav1.RegisterReplicaServiceServer(g, &replicaService{Service: s.replica, s: s})
	}
	healthpb.RegisterHealthServer(g, s.health)
	reflection.Register(g)
	for name := range g.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
}

// Shutdown marks the server as not serving, so health checks fail while it drains, and ends the
// message streams (their unacknowledged messages are delivered again after the restart).
func (s *Server) Shutdown() {
	s.health.Shutdown()
	s.once.Do(func() { close(s.closing) })
}
