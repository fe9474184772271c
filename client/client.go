// Package client is the Go client library of the mailintake API; the mailintake CLI is built on
// it. Dial connects with a bearer token; the service clients are the generated ones.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// DefaultAddr is the server's default listen address.
const DefaultAddr = "127.0.0.1:7465"

// MaxMessageSize is the largest gRPC message Dial accepts (a parsed message with its inline
// attachments). Clients in other languages should raise their receive limit likewise.
const MaxMessageSize = 128 << 20

// Options configure Dial.
type Options struct {
	// Token is the API token sent as "authorization: Bearer <token>".
	Token string
	// TLS, when set, protects the connection. Without it the connection is plaintext, which
	// Dial allows only to loopback addresses unless Insecure is set.
	TLS *tls.Config
	// Insecure allows plaintext to a non-loopback address (the token travels in the clear).
	Insecure bool
	// DialOptions are added to the connection's options.
	DialOptions []grpc.DialOption
}

// Client is a connection to a mailintake server.
type Client struct {
	conn      *grpc.ClientConn
	Mailboxes mailintakev1.MailboxServiceClient
	Messages  mailintakev1.MessageServiceClient
	Providers mailintakev1.AuthProviderServiceClient
	Tokens    mailintakev1.TokenServiceClient
	Cluster   mailintakev1.ClusterServiceClient
}

// bearer sends the token with every call.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: Dial itself refuses plaintext to non-loopback addresses.
func (b bearer) RequireTransportSecurity() bool { return false }

// IsLoopback reports whether addr (host:port) names this machine.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrPlaintext is returned by Dial for plaintext to a non-loopback address.
var ErrPlaintext = errors.New("refusing to send the API token in plaintext to a non-loopback address: use TLS, or allow it explicitly")

// Dial connects to addr. The connection is established lazily, on the first call.
func Dial(addr string, opts Options) (*Client, error) {
	var tc credentials.TransportCredentials
	switch {
	case opts.TLS != nil:
		tc = credentials.NewTLS(opts.TLS)
	case IsLoopback(addr) || opts.Insecure:
		tc = insecure.NewCredentials()
	default:
		return nil, fmt.Errorf("%s: %w", addr, ErrPlaintext)
	}
	// Messages carry their bodies and small attachments: allow more than gRPC's 4 MiB default.
	// A larger read buffer than gRPC's 32 KB: the stream's messages are read in fewer system calls.
	dopts := []grpc.DialOption{grpc.WithTransportCredentials(tc), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize)),
		grpc.WithReadBufferSize(256 << 10)}
	if opts.Token != "" {
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearer(opts.Token)))
	}
	dopts = append(dopts, opts.DialOptions...)
	conn, err := grpc.NewClient(addr, dopts...)
	if err != nil {
		return nil, err
	}
	return New(conn), nil
}

// New wraps an existing connection.
func New(conn *grpc.ClientConn) *Client {
	return &Client{
		conn:      conn,
		Mailboxes: mailintakev1.NewMailboxServiceClient(conn),
		Messages:  mailintakev1.NewMessageServiceClient(conn),
		Providers: mailintakev1.NewAuthProviderServiceClient(conn),
		Tokens:    mailintakev1.NewTokenServiceClient(conn),
		Cluster:   mailintakev1.NewClusterServiceClient(conn),
	}
}

// Conn returns the underlying connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
