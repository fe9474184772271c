package authplugin

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/mailintake/mailintake/plugins/authplugin/authpluginv1"
)

// PluginName is the name under which the provider is dispensed through go-plugin.
const PluginName = "auth_provider"

// ExecutablePrefix is the prefix of provider executables: mailintake-auth-<name>.
const ExecutablePrefix = "mailintake-auth-"

// Handshake is the go-plugin handshake shared by the host and every provider. The cookie is a
// guard against running a provider by hand, not a security measure; integrity comes from the
// host's SHA-256 pins and go-plugin's automatic mTLS. Its ProtocolVersion is the oldest one the
// SDK speaks; [ProtocolVersions] lists them all.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "MAILINTAKE_AUTH_PLUGIN",
	MagicCookieValue: "6c1f0b0e-provider-v1",
}

// Serve serves p as a plugin process. It returns only when the host ends the process. It
// offers every protocol version the SDK speaks ([ProtocolVersions]); go-plugin settles on the
// newest one the host speaks too.
func Serve(p Provider) {
	// A host that is killed or crashes cannot stop its plugins: each exits on its own once its
	// parent is gone, instead of waiting forever for calls that cannot come.
	go exitWithParent(os.Getppid(), time.Second, os.Getppid, func() { os.Exit(0) })
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: versionedPlugins(p),
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}

// processStderr is the process's real stderr, kept before Serve redirects os.Stderr into
// go-plugin's stdio stream: the host parses log lines only on the real one.
var processStderr = os.Stderr

// Logger returns a logger that writes hclog-style JSON lines to the process's stderr, which the
// host reads with their levels. Use it instead of writing to stdout, which carries the plugin
// handshake.
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(processStderr, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.LevelKey:
				return slog.String("@level", strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			case slog.TimeKey:
				// go-plugin parses exactly hclog's timestamp layout.
				return slog.String("@timestamp", a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			}
			return a
		},
	}))
}

// GRPCPlugin is the go-plugin glue for providers. Plugin authors do not use it directly: [Serve]
// does. The host dispenses it to obtain a [Provider] that calls the plugin process.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the provider served (plugin side only).
	Impl Provider
}

// GRPCServer registers the provider's gRPC service (plugin side).
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	authpluginv1.RegisterProviderServiceServer(s, &grpcServer{impl: p.Impl})
	return nil
}

// GRPCClient returns a *Client that calls the plugin process (host side).
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return &Client{rpc: authpluginv1.NewProviderServiceClient(cc)}, nil
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// exitWithParent calls exit once getppid no longer returns parent (the parent died and the
// process was re-parented), checking every interval.
func exitWithParent(parent int, interval time.Duration, getppid func() int, exit func()) {
	for {
		time.Sleep(interval)
		if getppid() != parent {
			exit()
			return
		}
	}
}
