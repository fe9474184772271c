package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/mailintake/mailintake/client"
)

// globals are the flags every command takes, before or after the command's name.
type globals struct {
	addr      string
	token     string
	tokenFile string
	dataDir   string
	json      bool
	tls       bool
	caFile    string
	certFile  string
	keyFile   string
	timeout   time.Duration
	insecure  bool
}

// register adds the global flags to fs. The server address defaults to MAILINTAKE_ADDR; the
// token's environment variable is read when the token is needed, so that help never shows it.
func (g *globals) register(fs *pflag.FlagSet) {
	fs.StringVar(&g.addr, "addr", envOr("MAILINTAKE_ADDR", client.DefaultAddr), "server address (env MAILINTAKE_ADDR)")
	fs.StringVar(&g.token, "token", "", "API token (env MAILINTAKE_TOKEN)")
	fs.StringVar(&g.tokenFile, "token-file", "", "file holding the API token")
	fs.StringVar(&g.dataDir, "data-dir", "", "the server's data directory: use its admin.token")
	fs.BoolVar(&g.json, "json", false, "print protobuf JSON")
	fs.BoolVar(&g.tls, "tls", false, "connect with TLS (the default for non-loopback addresses)")
	fs.StringVar(&g.caFile, "server-ca", "", "PEM CA that signed the server's certificate (implies --tls)")
	fs.StringVar(&g.certFile, "client-cert", "", "PEM client certificate for a server that requires mTLS (implies --tls)")
	fs.StringVar(&g.keyFile, "client-key", "", "PEM private key of --client-cert")
	fs.BoolVar(&g.insecure, "insecure", false, "allow plaintext to a non-loopback address")
	fs.DurationVar(&g.timeout, "rpc-timeout", 60*time.Second, "deadline of each call (not of tail)")
}

// envOr returns the environment variable key, or def when it is empty.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

var errNoToken = errors.New("no API token: give --token, --token-file, MAILINTAKE_TOKEN, or --data-dir of a local server (its admin.token)")

// resolveToken finds the API token: --token (or MAILINTAKE_TOKEN), --token-file, then
// DATA_DIR/admin.token.
func (g *globals) resolveToken() (string, error) {
	if tok := cmp.Or(g.token, os.Getenv("MAILINTAKE_TOKEN")); tok != "" {
		return strings.TrimSpace(tok), nil
	}
	path := g.tokenFile
	if path == "" && g.dataDir != "" {
		path = filepath.Join(g.dataDir, "admin.token")
	}
	if path == "" {
		return "", errNoToken
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w (%v)", errNoToken, err)
	}
	return strings.TrimSpace(string(data)), nil
}

// tlsConfig returns the TLS configuration the global flags ask for, or nil for plaintext.
func (g *globals) tlsConfig() (*tls.Config, error) {
	if !g.tls && g.caFile == "" && g.certFile == "" && (client.IsLoopback(g.addr) || g.insecure) {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if g.certFile != "" || g.keyFile != "" {
		cert, err := tls.LoadX509KeyPair(g.certFile, g.keyFile)
		if err != nil {
			return nil, usagef("--client-cert/--client-key: %v", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if g.caFile != "" {
		pem, err := os.ReadFile(g.caFile)
		if err != nil {
			return nil, usagef("--server-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--server-ca %s holds no PEM certificate", g.caFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// connect dials the server once per run.
func (a *app) connect() (*client.Client, error) {
	if a.cl != nil {
		return a.cl, nil
	}
	tok, err := a.g.resolveToken()
	if err != nil {
		return nil, err
	}
	tc, err := a.g.tlsConfig()
	if err != nil {
		return nil, err
	}
	cl, err := client.Dial(a.g.addr, client.Options{Token: tok, Insecure: a.g.insecure, TLS: tc})
	if err != nil {
		return nil, err
	}
	a.cl = cl
	return cl, nil
}

// rpcCtx bounds one call.
func (a *app) rpcCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.g.timeout)
}

var jsonOpts = protojson.MarshalOptions{Multiline: true, Indent: "  "}

// printJSON prints a message as protobuf JSON.
func (a *app) printJSON(m proto.Message) error {
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(a.stdout, string(b))
	return err
}
