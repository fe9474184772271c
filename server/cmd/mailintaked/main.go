// Command mailintaked is the mailintake server: it serves the gRPC API on an embedded SQLite
// store and runs the auth provider plugins.
//
//	mailintaked --listen 127.0.0.1:7465 --data-dir ./data [--plugin-dir DIR] [--config FILE]
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/mailintake/mailintake/internal/cluster"
	"github.com/mailintake/mailintake/internal/config"
	"github.com/mailintake/mailintake/internal/delivery"
	_ "github.com/mailintake/mailintake/internal/grpccodec" // gRPC's proto codec, its buffers not cleared
	"github.com/mailintake/mailintake/internal/metrics"
	"github.com/mailintake/mailintake/internal/pluginhost"
	"github.com/mailintake/mailintake/internal/relay"
	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/session"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/postgres"
	"github.com/mailintake/mailintake/internal/store/sqlite"
	"github.com/mailintake/mailintake/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tuneGC(os.Getenv)
	shareMemoryLimit()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailintaked:", err)
		os.Exit(1)
	}
}

func newLogger(c *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func secretBox(c *config.Config, log *slog.Logger) (*secrets.Box, error) {
	var key []byte
	var err error
	if c.SecretKey != "" {
		key, err = secrets.ParseKey(c.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("MAILINTAKE_SECRET_KEY: %w", err)
		}
	} else {
		var created bool
		key, created, err = secrets.LoadOrCreateKeyFile(c.SecretKeyFile)
		if err != nil {
			return nil, fmt.Errorf("secret key: %w", err)
		}
		if created {
			log.Warn("generated a new secret key; back it up; without it stored secrets cannot be read", "path", c.SecretKeyFile)
		}
	}
	return secrets.NewBox(key)
}

func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func transportCredentials(c *config.Config) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCA != "" {
		pem, err := os.ReadFile(c.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s holds no PEM certificate", c.ClientCA)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(tc), nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	c, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(c, stderr)

	var serverOpts []grpc.ServerOption
	switch {
	case c.TLSCert != "":
		creds, err := transportCredentials(c)
		if err != nil {
			return err
		}
		serverOpts = append(serverOpts, grpc.Creds(creds))
	case !isLoopback(c.Listen) && !c.Insecure:
		return fmt.Errorf("refusing to serve %s without TLS: give --tls-cert and --tls-key, or --insecure to accept plaintext on the network", c.Listen)
	}
	if err := checkWebListen(c); err != nil {
		return err
	}

	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	box, err := secretBox(c, log)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, c, box, log)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.VerifyKey(ctx); err != nil {
		if errors.Is(err, store.ErrKeyMismatch) {
			return fmt.Errorf("%w: this server's key (%s) cannot read what the database holds; give it the key the database was set up with "+
				"(every replica needs the same key; a lost key cannot be recovered: the mailboxes' passwords and tokens would have to be entered again)", err, keySource(c))
		}
		return err
	}

	plugins := pluginhost.New(pluginhost.Options{
		Dir: c.PluginDir, Pins: c.PluginPins, CallTimeout: c.PluginTimeout, State: st, Logger: log.With("component", "pluginhost"),
	})
	defer plugins.Close()
	if names, err := plugins.Discover(); err != nil {
		log.Warn("no auth providers found", "plugin_dir", c.PluginDir, "err", err)
	} else {
		log.Info("auth providers found", "plugin_dir", c.PluginDir, "providers", names)
	}

	lis, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	defer lis.Close()

	m := metrics.New()
	broker := delivery.New(st)
	defer broker.Close()
	sessCtx, stopSessions := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSessions()
	sessOpts := session.Options{}
	var member *cluster.Member
	cs, clustered := st.(store.Cluster)
	if clustered {
		if err := c.ResolveReplica(lis.Addr().String()); err != nil {
			return err
		}
		sessOpts.Clustered = true
		sessOpts.Trusted = func() bool { return member.Trusted() }
	}
	sessions := session.NewSupervisor(st, plugins, broker, m, log.With("component", "session"), sessOpts)
	// Sessions end before the store and the plugins close (deferred calls run in reverse).
	defer func() { stopSessions(); sessions.Wait() }()
	srvOpts := server.Options{Store: st, Plugins: plugins, Sessions: sessions, Broker: broker, Logger: log}
	if clustered {
		cm := m.NewCluster()
		member = cluster.New(cs, sessions, cluster.Options{ReplicaID: c.ReplicaID, Addr: c.AdvertiseAddr,
			Logger: log.With("component", "cluster", "replica_id", c.ReplicaID), Metrics: cm})
		key := relay.NewKey(box, c.ReplicaID)
		peerCreds, err := peerCredentials(c)
		if err != nil {
			return err
		}
		peers := relay.NewPeers(key, peerCreds)
		defer peers.Close()
		srvOpts.Cluster = &server.Cluster{Member: member, Peers: peers, Key: key,
			Edge: &relay.Edge{Broker: broker, Member: member, Peers: peers, Log: log.With("component", "relay"), Lag: cm.RelayLag}}
		srvOpts.Replica = &relay.Service{Store: st, Broker: broker, Sessions: sessions, Log: log.With("component", "relay"), Lapsed: member.Lapsed}
	}
	defer startOutbox(sessCtx, &srvOpts, st, plugins, sessions, member, log)() // sending (outbox.go)
	srv := server.New(srvOpts)
	tokenPath := filepath.Join(c.DataDir, server.AdminTokenFile)
	created, err := server.EnsureAdminToken(ctx, st, tokenPath, time.Now(), c.DatabaseURL != "")
	switch {
	case errors.Is(err, server.ErrAdminTokenElsewhere):
		log.Info(err.Error())
	case err != nil:
		return fmt.Errorf("admin token: %w", err)
	case created:
		log.Info("wrote a new admin token", "path", tokenPath)
	default:
		log.Info("admin token", "path", tokenPath)
	}

	if c.MetricsListen != "" {
		ml, err := net.Listen("tcp", c.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
		if c.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(ml)
		defer hs.Close()
		log.Info("serving metrics", "listen", ml.Addr().String(), "path", "/metrics")
	}
	if err := sessions.Start(sessCtx); err != nil {
		return fmt.Errorf("starting mailbox sessions: %w", err)
	}
	memberCtx, stopMember := context.WithCancel(sessCtx)
	memberDone := make(chan struct{})
	if member != nil {
		if err := member.Join(ctx); err != nil {
			stopMember()
			return fmt.Errorf("joining the replicas on the database: %w", err)
		}
		go func() { defer close(memberDone); member.Run(memberCtx) }()
		log.Info("joined the cluster", "replica_id", c.ReplicaID, "advertise_addr", c.AdvertiseAddr, "incarnation", member.Incarnation())
	} else {
		close(memberDone)
	}
	// leave hands this replica's mailboxes to the others at once (a planned stop): no lease
	// has to lapse first.
	leave := func() {
		stopMember()
		<-memberDone
		if member == nil {
			return
		}
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := member.Leave(lctx); err != nil {
			log.Warn("handing the mailboxes over", "err", err)
		} else {
			log.Info("handed every mailbox over to the other replicas")
		}
	}
	serverOpts = append(serverOpts,
		// Replicas ping each other every 10 s on their relays; consumers that vanished without
		// closing their connection are found within 15 s, and their messages delivered again.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}))
	g := grpc.NewServer(append(serverOpts, srv.ServerOptions()...)...)
	srv.Register(g)
	stopWeb, err := startWeb(ctx, c, srv, log) // the admin web page (web.go)
	if err != nil {
		leave()
		return err
	}
	defer stopWeb()

	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	log.Info("serving", "listen", lis.Addr().String(), "tls", c.TLSCert != "", "mtls", c.ClientCA != "", "data_dir", c.DataDir)

	select {
	case err := <-errc:
		leave()
		return err
	case <-ctx.Done():
	}
	log.Info("stopping")
	srv.Shutdown()
	leave()
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		log.Warn("graceful stop timed out; closing remaining streams")
		g.Stop()
	}
	stopSessions()
	sessions.Wait()
	log.Info("stopped")
	return nil
}

// openStore opens the embedded SQLite store in the data directory or, with --database-url, the
// PostgreSQL database that several replicas share.
func openStore(ctx context.Context, c *config.Config, box *secrets.Box, log *slog.Logger) (store.Store, error) {
	if c.DatabaseURL == "" {
		log.Info("store", "kind", "sqlite", "path", filepath.Join(c.DataDir, sqlite.FileName))
		return sqlite.Open(ctx, c.DataDir, box)
	}
	log.Info("store", "kind", "postgres", "url", config.RedactURL(c.DatabaseURL))
	st, err := postgres.Open(ctx, c.DatabaseURL, box)
	if err != nil {
		return nil, fmt.Errorf("opening the PostgreSQL store at %s: %w", config.RedactURL(c.DatabaseURL), err)
	}
	return st, nil
}

// keySource says where the secret key came from, for messages.
func keySource(c *config.Config) string {
	if c.SecretKey != "" {
		return "MAILINTAKE_SECRET_KEY"
	}
	return c.SecretKeyFile
}

// peerCredentials are the transport credentials for reaching the other replicas: none (plaintext)
// when the API is served without TLS; otherwise TLS trusting the system's roots, --client-ca and
// --peer-ca, presenting this replica's own certificate (so an API that requires client
// certificates accepts its peers).
func peerCredentials(c *config.Config) (credentials.TransportCredentials, error) {
	if c.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range []struct{ flag, path string }{{"--client-ca", c.ClientCA}, {"--peer-ca", c.PeerCA}} {
		if f.path == "" {
			continue
		}
		pem, err := os.ReadFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.flag, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s %s holds no PEM certificate", f.flag, f.path)
		}
	}
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}), nil
}
