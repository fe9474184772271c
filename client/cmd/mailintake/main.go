// Command mailintake is the command-line client of the mailintake server: manage mailboxes and
// API tokens, list auth providers, follow the message stream, show the cluster's replicas, and
// parse a message offline.
//
// Exit codes: 0 success, 1 the operation failed (the server said no), 2 usage error, 3 the server
// cannot be reached or the caller is not authenticated.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/mailintake/mailintake/client"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnreachable = 3
)

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// failure is an operation that failed for a reason already explained to the user.
type failure struct{ msg string }

func (e *failure) Error() string { return e.msg }

// globals are the flags every command takes.
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

func defaultGlobals() globals {
	return globals{addr: envOr("MAILINTAKE_ADDR", client.DefaultAddr), token: os.Getenv("MAILINTAKE_TOKEN"), timeout: 60 * time.Second}
}

// register adds the global flags to fs with their current values as defaults, so that a
// command's flag set keeps what the top level already parsed.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "addr", g.addr, "server address (env MAILINTAKE_ADDR)")
	fs.StringVar(&g.token, "token", g.token, "API token (env MAILINTAKE_TOKEN)")
	fs.StringVar(&g.tokenFile, "token-file", g.tokenFile, "file holding the API token")
	fs.StringVar(&g.dataDir, "data-dir", g.dataDir, "the server's data directory: use its admin.token")
	fs.BoolVar(&g.json, "json", g.json, "print protobuf JSON")
	fs.BoolVar(&g.tls, "tls", g.tls, "connect with TLS (the default for non-loopback addresses)")
	fs.StringVar(&g.caFile, "server-ca", g.caFile, "PEM CA that signed the server's certificate (implies --tls)")
	fs.StringVar(&g.certFile, "client-cert", g.certFile, "PEM client certificate for a server that requires mTLS (implies --tls)")
	fs.StringVar(&g.keyFile, "client-key", g.keyFile, "PEM private key of --client-cert")
	fs.BoolVar(&g.insecure, "insecure", g.insecure, "allow plaintext to a non-loopback address")
	fs.DurationVar(&g.timeout, "rpc-timeout", g.timeout, "deadline of each call (not of tail)")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// app is one run of the CLI.
type app struct {
	g      globals
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	cl     *client.Client
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const topUsage = `Usage: mailintake [global flags] COMMAND [flags]

Commands:
  mailbox add|list|get|update|enable|disable|rm|status|test|authorize
                    manage mailboxes
  tail              follow the message stream as JSON lines
  parse FILE|-      parse a message offline and print it as JSON
  providers         list the installed auth providers and their fields
  quarantine list MAILBOX_ID | replay ID | release ID
                    messages that could not be delivered, and what to do with them
  token create|list|revoke
                    manage API tokens (admin token)
  cluster status    the replicas sharing the database and the mailboxes each holds (admin token)

Global flags (also accepted after the command):
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{g: defaultGlobals(), stdin: stdin, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("mailintake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	a.g.register(fs)
	fs.Usage = func() { fmt.Fprint(stderr, topUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	err := a.dispatch(ctx, fs.Arg(0), fs.Args()[1:])
	if a.cl != nil {
		a.cl.Close()
	}
	return a.report(err)
}

func (a *app) dispatch(ctx context.Context, cmd string, args []string) error {
	switch cmd {
	case "mailbox", "mailboxes":
		return a.mailbox(ctx, args)
	case "tail":
		return a.tail(ctx, args)
	case "parse":
		return a.parse(args)
	case "providers":
		return a.providers(ctx, args)
	case "token", "tokens":
		return a.tokenCmd(ctx, args)
	case "quarantine":
		return a.quarantine(ctx, args)
	case "cluster":
		return a.cluster(ctx, args)
	case "help":
		fmt.Fprint(a.stdout, topUsage)
		return nil
	default:
		return usagef("unknown command %q (commands: mailbox, tail, parse, providers, quarantine, token, cluster)", cmd)
	}
}

// report prints err and returns the exit code.
func (a *app) report(err error) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	var f *failure
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(a.stderr, "mailintake:", ue.msg)
		fmt.Fprintln(a.stderr, "Run 'mailintake COMMAND -h' for the command's flags.")
		return exitUsage
	case errors.As(err, &f):
		fmt.Fprintln(a.stderr, "mailintake:", f.msg)
		return exitFailed
	case errors.Is(err, errNoToken):
		fmt.Fprintln(a.stderr, "mailintake:", err)
		return exitUnreachable
	case errors.Is(err, client.ErrPlaintext):
		fmt.Fprintln(a.stderr, "mailintake:", err, "(--tls or --insecure)")
		return exitUnreachable
	}
	st, ok := status.FromError(err)
	if !ok {
		fmt.Fprintln(a.stderr, "mailintake:", err)
		return exitFailed
	}
	switch st.Code() {
	case codes.Unavailable:
		fmt.Fprintf(a.stderr, "mailintake: cannot reach the server at %s: %s\n", a.g.addr, st.Message())
		return exitUnreachable
	case codes.Unauthenticated:
		fmt.Fprintln(a.stderr, "mailintake: not authenticated:", st.Message())
		return exitUnreachable
	case codes.DeadlineExceeded:
		fmt.Fprintf(a.stderr, "mailintake: the server at %s did not answer in time\n", a.g.addr)
		return exitUnreachable
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			fmt.Fprintln(a.stderr, "mailintake: invalid request:")
			for _, v := range br.GetFieldViolations() {
				fmt.Fprintf(a.stderr, "  %s: %s\n", v.GetField(), v.GetDescription())
			}
			return exitFailed
		}
	}
	fmt.Fprintf(a.stderr, "mailintake: %s: %s\n", humanCode(st.Code()), st.Message())
	return exitFailed
}

func humanCode(c codes.Code) string {
	switch c {
	case codes.InvalidArgument:
		return "invalid request"
	case codes.NotFound:
		return "not found"
	case codes.PermissionDenied:
		return "permission denied"
	case codes.Unimplemented:
		return "not supported by this server"
	case codes.FailedPrecondition:
		return "cannot do that now"
	default:
		return strings.ToLower(c.String())
	}
}

var errNoToken = errors.New("no API token: give --token, --token-file, MAILINTAKE_TOKEN, or --data-dir of a local server (its admin.token)")

// resolveToken finds the API token: --token (or MAILINTAKE_TOKEN), --token-file, then
// DATA_DIR/admin.token.
func (g *globals) resolveToken() (string, error) {
	if g.token != "" {
		return strings.TrimSpace(g.token), nil
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

// connect dials the server once per run.
func (a *app) connect() (*client.Client, error) {
	if a.cl != nil {
		return a.cl, nil
	}
	tok, err := a.g.resolveToken()
	if err != nil {
		return nil, err
	}
	opts := client.Options{Token: tok, Insecure: a.g.insecure}
	if a.g.tls || a.g.caFile != "" || a.g.certFile != "" || (!client.IsLoopback(a.g.addr) && !a.g.insecure) {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if a.g.certFile != "" || a.g.keyFile != "" {
			cert, err := tls.LoadX509KeyPair(a.g.certFile, a.g.keyFile)
			if err != nil {
				return nil, usagef("--client-cert/--client-key: %v", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		if a.g.caFile != "" {
			pem, err := os.ReadFile(a.g.caFile)
			if err != nil {
				return nil, usagef("--server-ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, usagef("--server-ca %s holds no PEM certificate", a.g.caFile)
			}
			tc.RootCAs = pool
		}
		opts.TLS = tc
	}
	cl, err := client.Dial(a.g.addr, opts)
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

// newFlags returns a command's flag set with the global flags registered too.
func (a *app) newFlags(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	a.g.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "Usage: mailintake %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags and positional arguments in any order.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
