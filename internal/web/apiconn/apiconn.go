// Package apiconn connects the admin web page to the API in the same process, over an
// in-memory listener: the calls go through a gRPC server with the API's own interceptors
// (authentication by bearer token, tenant scoping, validation, error mapping, logging), exactly
// as the CLI's calls do, without a network port and without the API listener's TLS.
package apiconn

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
)

// MaxMessageSize is the largest API response the page accepts (as the Go client library).
const MaxMessageSize = 128 << 20

// Conn is an in-process connection to the API.
type Conn struct {
	*grpc.ClientConn
	srv *grpc.Server
	lis *bufconn.Listener
}

// Open starts a gRPC server with opts, lets register add the services to it, serves it on an
// in-memory listener and connects to it. The connection carries no token: each call adds its
// caller's (WithToken).
func Open(opts []grpc.ServerOption, register func(*grpc.Server)) (*Conn, error) {
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer(opts...)
	register(g)
	go g.Serve(lis)
	cc, err := grpc.NewClient("passthrough:///mailintake-web",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize)))
	if err != nil {
		g.Stop()
		return nil, err
	}
	return &Conn{ClientConn: cc, srv: g, lis: lis}, nil
}

// Close closes the connection and stops the server, ending calls in flight.
func (c *Conn) Close() error {
	err := c.ClientConn.Close()
	c.srv.Stop()
	return err
}

// WithToken returns ctx with the bearer token every call made with it sends.
func WithToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}
