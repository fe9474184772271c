package relay

import (
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	replicav1 "github.com/mailintake/mailintake/proto/mailintake/replica/v1"
)

// Peers keeps one gRPC connection per other replica, made on first use.
type Peers struct {
	key   *Key
	creds credentials.TransportCredentials // nil: plaintext

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewPeers returns the connection cache. creds are the transport credentials to reach other
// replicas (TLS, with this replica's certificate when the API requires client certificates);
// nil means plaintext, for an API served without TLS.
func NewPeers(key *Key, creds credentials.TransportCredentials) *Peers {
	return &Peers{key: key, creds: creds, conns: map[string]*grpc.ClientConn{}}
}

// Client returns a ReplicaService client for the replica at addr.
func (p *Peers) Client(addr string) (replicav1.ReplicaServiceClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return replicav1.NewReplicaServiceClient(c), nil
	}
	tc := p.creds
	if tc == nil {
		tc = insecure.NewCredentials()
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tc), grpc.WithPerRPCCredentials(p.key),
		// A replica that froze or vanished without closing its connections is noticed in
		// seconds, not when the kernel gives up on the connection.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: false}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(128<<20)))
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return replicav1.NewReplicaServiceClient(c), nil
}

// Close closes every connection.
func (p *Peers) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		c.Close()
		delete(p.conns, addr)
	}
}
