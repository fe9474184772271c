package authplugin

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// The host side: how mailintake's server starts a provider. Provider authors need none of this;
// it is here so that the server and the conformance check (package authplugintest) start a
// provider the same way.

// ClientConfig returns the go-plugin client configuration with which the server starts the
// provider cmd runs: the handshake (magic cookie), every protocol version the SDK speaks, the
// gRPC protocol only, and automatic mutual TLS (the server verifies the provider's certificate
// for the name "localhost"). The caller adds its logger, output sinks, pin and start timeout.
func ClientConfig(cmd *exec.Cmd) *plugin.ClientConfig {
	return &plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: versionedPlugins(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
	}
}

// Connect starts c's provider process if it has not started, checks its health and returns the
// provider. It refuses a provider that speaks no protocol version the SDK speaks (a
// [*ProtocolVersionError] naming both), whose certificate is not valid for "localhost", or
// whose grpc.health.v1 service does not report SERVING for the service "plugin". Other start
// errors come back as go-plugin reported them (errors.Is(err, plugin.ErrChecksumsDoNotMatch)
// holds for a pin mismatch). The caller kills c when Connect fails.
func Connect(ctx context.Context, c *plugin.Client) (*Client, error) {
	rpc, err := c.Client()
	if err != nil {
		return nil, explainStartError(err)
	}
	gc, ok := rpc.(*plugin.GRPCClient)
	if !ok {
		return nil, fmt.Errorf("the provider speaks go-plugin's %T protocol, not gRPC", rpc)
	}
	// go-plugin itself never asks: the first call on the connection is this one, so it is also
	// where the TLS handshake fails.
	resp, err := grpc_health_v1.NewHealthClient(gc.Conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	if err != nil {
		return nil, healthError(err)
	}
	if s := resp.GetStatus(); s != grpc_health_v1.HealthCheckResponse_SERVING {
		return nil, fmt.Errorf("the provider's health service reports %s for the service %q: a provider must report SERVING once it serves",
			s, plugin.GRPCServiceName)
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		return nil, err
	}
	p, ok := raw.(*Client)
	if !ok {
		return nil, fmt.Errorf("go-plugin dispensed %T, not a provider", raw)
	}
	return p, nil
}

// healthError says what a failed health check means.
func healthError(err error) error {
	st := status.Convert(err)
	switch {
	case st.Code() == codes.Unimplemented:
		return fmt.Errorf("the provider serves no grpc.health.v1.Health service: it must serve one reporting SERVING for the service %q (%s)",
			plugin.GRPCServiceName, st.Message())
	case st.Code() == codes.NotFound:
		return fmt.Errorf("the provider's grpc.health.v1.Health service does not know the service %q: it must report SERVING for it (%s)",
			plugin.GRPCServiceName, st.Message())
	case strings.Contains(st.Message(), "x509") || strings.Contains(st.Message(), "certificate"):
		return fmt.Errorf("connecting to the provider over TLS failed: %s; with automatic mutual TLS the certificate in the provider's "+
			"handshake line must carry the DNS name \"localhost\" as a subject alternative name (the server verifies that name) "+
			"and the provider must trust the server's certificate from PLUGIN_CLIENT_CERT", st.Message())
	}
	return fmt.Errorf("the provider's health check failed: %s: %s", st.Code(), st.Message())
}
