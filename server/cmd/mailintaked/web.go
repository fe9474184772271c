package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mailintake/mailintake/internal/config"
	"github.com/mailintake/mailintake/internal/web"
	"github.com/mailintake/mailintake/internal/web/apiconn"
	"github.com/mailintake/mailintake/server"
)

// checkWebListen applies the API listener's rule to the web page's (--http-listen): plaintext
// only on a loopback address unless --insecure; with --tls-cert the page is served over HTTPS.
func checkWebListen(c *config.Config) error {
	if c.HTTPListen == "" || c.TLSCert != "" || isLoopback(c.HTTPListen) || c.Insecure {
		return nil
	}
	return fmt.Errorf("refusing to serve the web page on %s without TLS: give --tls-cert and --tls-key, or --insecure to accept plaintext on the network", c.HTTPListen)
}

// startWeb serves the admin web page on --http-listen, when set. The page calls the API in
// this process through an in-memory connection served with the API's own interceptors, with
// each signed-in user's token. The returned function stops it.
func startWeb(ctx context.Context, c *config.Config, srv *server.Server, log *slog.Logger) (func(), error) {
	if c.HTTPListen == "" {
		return func() {}, nil
	}
	log = log.With("component", "web")
	var tc *tls.Config
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("web page: TLS certificate: %w", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if c.ClientCA != "" {
			// The API requires client certificates: so does its page.
			pem, err := os.ReadFile(c.ClientCA)
			if err != nil {
				return nil, fmt.Errorf("web page: client CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("web page: client CA %s holds no PEM certificate", c.ClientCA)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
	}
	lis, err := net.Listen("tcp", c.HTTPListen)
	if err != nil {
		return nil, fmt.Errorf("web page: %w", err)
	}
	api, err := apiconn.Open(srv.ServerOptions(), srv.Register)
	if err != nil {
		lis.Close()
		return nil, fmt.Errorf("web page: %w", err)
	}
	var hosts []string
	if c.HTTPHosts != "" {
		hosts = strings.Split(c.HTTPHosts, ",")
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h, err := web.New(web.Options{API: api, Listen: lis.Addr().String(), Hosts: hosts, TLS: tc != nil, Logger: log, Context: bg})
	if err != nil {
		cancel()
		api.Close()
		lis.Close()
		return nil, err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: 3 * time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	scheme := "http"
	if tc != nil {
		scheme = "https"
		hs.TLSConfig = tc
		lis = tls.NewListener(lis, tc)
	}
	go func() {
		if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("web page stopped", "err", err)
		}
	}()
	log.Info("serving the web page", "url", scheme+"://"+lis.Addr().String()+"/")
	return func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		hs.Shutdown(sctx)
		cancel()
		api.Close()
	}, nil
}
