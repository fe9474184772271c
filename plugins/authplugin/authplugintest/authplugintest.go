// Package authplugintest checks that an auth provider executable behaves as mailintake's server
// expects, whatever language it is written in. It starts the provider the way the server does
// (the handshake environment, automatic mutual TLS) and reports, in words, each thing it gets
// wrong: its handshake line, its certificate, its health service, the go-plugin services the
// server calls, its Describe answer, an error without its typed detail, output on stdout after
// the handshake, slow answers, and whether it stops when asked.
//
// Go authors call [Check] from a test of their own:
//
//	func TestConformance(t *testing.T) {
//		bin := filepath.Join(t.TempDir(), "mailintake-auth-mine")
//		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
//			t.Fatalf("%v: %s", err, out)
//		}
//		authplugintest.Check(t, bin)
//	}
//
// [Run] returns the [Report] instead (`mailintake provider check PATH` prints it).
package authplugintest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mailintake/mailintake/plugins/authplugin"
	"github.com/mailintake/mailintake/plugins/authplugin/authpluginv1"
)

// The checks, as [Finding.Check] names them.
const (
	CheckExecutable  = "executable"         // the file and its name
	CheckHandshake   = "handshake"          // the line on stdout
	CheckCertificate = "certificate"        // the AutoMTLS certificate
	CheckClientAuth  = "client certificate" // only the server's certificate is accepted
	CheckHealth      = "health"             // grpc.health.v1, service "plugin"
	CheckServices    = "go-plugin services" // plugin.GRPCStdio and plugin.GRPCController
	CheckDescribe    = "describe"           // the description and its fields
	CheckValidate    = "validate"           // ValidateConfig names the missing required fields
	CheckErrors      = "typed errors"       // a failure carries an authplugin.v1.Error
	CheckStdout      = "stdout"             // nothing after the handshake line
	CheckSpeed       = "speed"              // answers within Options.SlowAnswer
	CheckShutdown    = "shutdown"           // exits when the server asks it to
	CheckServerStart = "server start"       // the server's own start (go-plugin) accepts it
)

// Options tune the checks. The zero value checks as the server runs by default.
type Options struct {
	// StartTimeout bounds the wait for the handshake line; zero means 10 s (the server's).
	StartTimeout time.Duration
	// CallTimeout bounds each call; zero means 30 s (the server's --plugin-timeout).
	CallTimeout time.Duration
	// SlowAnswer is the longest answer that is not reported as slow; zero means 2 s.
	SlowAnswer time.Duration
	// Stderr receives what the provider writes to its stderr; nil discards it (the report
	// quotes its last lines when the provider fails to start).
	Stderr io.Writer
}

func (o Options) withDefaults() Options {
	if o.StartTimeout == 0 {
		o.StartTimeout = 10 * time.Second
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.SlowAnswer == 0 {
		o.SlowAnswer = 2 * time.Second
	}
	return o
}

// Finding is one thing a provider gets wrong.
type Finding struct {
	// Check is the check that found it: one of the Check constants.
	Check string
	// Problem says what is wrong and what to do, in words.
	Problem string
	// Refused is set when the server refuses to use the provider because of it; otherwise the
	// provider works, worse (slower stops, lost detail, a misleading form).
	Refused bool
}

func (f Finding) String() string { return f.Check + ": " + f.Problem }

// Report is the result of [Run].
type Report struct {
	// Path is the executable checked.
	Path string
	// Name is the provider's name from Describe, when it answered.
	Name string
	// Protocol is the protocol version its handshake line announced (0 when unread).
	Protocol int
	// Findings lists what it gets wrong, in the order found.
	Findings []Finding
	// Checked lists the checks that ran, in order; those without a finding passed.
	Checked []string
	// Notes says what could not be checked, and why.
	Notes []string
}

// OK reports whether the provider passed every check.
func (r *Report) OK() bool { return len(r.Findings) == 0 }

// Refused reports whether the server would refuse the provider.
func (r *Report) Refused() bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Refused })
}

// Passed lists the checks that ran without a finding.
func (r *Report) Passed() []string {
	var out []string
	for _, c := range r.Checked {
		if !slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Check == c }) {
			out = append(out, c)
		}
	}
	return out
}

// String is the report in words, one finding per line.
func (r *Report) String() string {
	var b strings.Builder
	who := r.Path
	if r.Name != "" {
		who = fmt.Sprintf("%s (%s)", r.Name, r.Path)
	}
	switch {
	case r.OK():
		fmt.Fprintf(&b, "%s: no problems found\n", who)
	case r.Refused():
		fmt.Fprintf(&b, "%s: %d problem(s); the server refuses this provider\n", who, len(r.Findings))
	default:
		fmt.Fprintf(&b, "%s: %d problem(s); the server uses this provider, worse\n", who, len(r.Findings))
	}
	for _, f := range r.Findings {
		mark := "problem"
		if f.Refused {
			mark = "REFUSED"
		}
		fmt.Fprintf(&b, "  %-7s %s: %s\n", mark, f.Check, f.Problem)
	}
	if p := r.Passed(); len(p) > 0 {
		fmt.Fprintf(&b, "  passed: %s\n", strings.Join(p, ", "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	return b.String()
}

// TB is the part of testing.TB that [Check] uses.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// Check runs every check against the provider executable at path with the default [Options]
// and reports each finding with t.Errorf. It returns the report.
func Check(t TB, path string) *Report {
	t.Helper()
	r := Run(context.Background(), path, Options{})
	for _, f := range r.Findings {
		t.Errorf("%s: %s: %s", filepath.Base(path), f.Check, f.Problem)
	}
	return r
}

// Run runs every check against the provider executable at path and returns the report. It
// starts the provider twice: once by hand, to see everything it does, and, when nothing so far
// made the server refuse it, once through go-plugin exactly as the server does.
func Run(ctx context.Context, path string, opts Options) *Report {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs // a bare name is a file here, not a command on $PATH
	}
	c := &checker{ctx: ctx, opts: opts.withDefaults(), r: &Report{Path: path}}
	c.run()
	return c.r
}

type checker struct {
	ctx  context.Context
	opts Options
	r    *Report
}

func (c *checker) checked(check string) {
	if !slices.Contains(c.r.Checked, check) {
		c.r.Checked = append(c.r.Checked, check)
	}
}

// problem records a finding that degrades the provider; refuse one that makes the server refuse it.
func (c *checker) problem(check, format string, args ...any) {
	c.checked(check)
	c.r.Findings = append(c.r.Findings, Finding{Check: check, Problem: fmt.Sprintf(format, args...)})
}

func (c *checker) refuse(check, format string, args ...any) {
	c.checked(check)
	c.r.Findings = append(c.r.Findings, Finding{Check: check, Problem: fmt.Sprintf(format, args...), Refused: true})
}

func (c *checker) note(format string, args ...any) {
	c.r.Notes = append(c.r.Notes, fmt.Sprintf(format, args...))
}

func (c *checker) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, c.opts.CallTimeout)
}

func (c *checker) run() {
	name, ok := c.checkExecutable()
	if !ok {
		return
	}
	p, err := c.start()
	if err != nil {
		c.refuse(CheckHandshake, "cannot start it: %v", err)
		return
	}
	defer p.stop()
	hs, ok := c.checkHandshake(p)
	if !ok {
		return
	}
	conn, ok := c.connect(hs, p)
	if !ok {
		return
	}
	defer conn.Close()
	c.checkClientAuth(hs)
	stdio := c.watchStdio(conn)
	desc := c.checkDescribe(conn, name)
	c.checkValidateAndErrors(conn, desc)
	c.checkStdout(p, stdio)
	c.checkShutdown(conn, p)
	p.stop()
	if !c.r.Refused() {
		c.checkServerStart()
	}
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// checkExecutable returns the provider name the executable's file name gives.
func (c *checker) checkExecutable() (string, bool) {
	c.checked(CheckExecutable)
	st, err := os.Stat(c.r.Path)
	switch {
	case err != nil:
		c.refuse(CheckExecutable, "%v", err)
		return "", false
	case !st.Mode().IsRegular():
		c.refuse(CheckExecutable, "%s is not a regular file", c.r.Path)
		return "", false
	case st.Mode().Perm()&0o111 == 0:
		c.refuse(CheckExecutable, "%s is not executable (chmod +x): the server skips it", c.r.Path)
		return "", false
	}
	base := strings.TrimSuffix(filepath.Base(c.r.Path), ".exe")
	name, ok := strings.CutPrefix(base, authplugin.ExecutablePrefix)
	if !ok || !validName.MatchString(name) {
		c.refuse(CheckExecutable, "the file is named %q: the server finds providers named %s<name>, <name> in lower-case letters, digits, '-' and '_'",
			filepath.Base(c.r.Path), authplugin.ExecutablePrefix)
		return "", true
	}
	return name, true
}

// proc is a provider process started by hand, with its outputs.
type proc struct {
	cmd      *exec.Cmd
	clientTL tls.Certificate // the certificate the "server" presents
	first    chan string     // the first line on stdout
	exited   chan struct{}
	exitErr  error
	errDone  chan struct{} // stderr read to its end

	mu       sync.Mutex
	stdout   bytes.Buffer // stdout after the first line
	stderr   []string     // the last lines of stderr
	stopOnce sync.Once
}

func (p *proc) stderrTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.stderr) == 0 {
		return "nothing on stderr"
	}
	return "stderr: " + strings.Join(p.stderr, " | ")
}

func (p *proc) stdoutAfterHandshake() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.stdout.Bytes())
}

func (p *proc) stop() {
	p.stopOnce.Do(func() {
		killGroup(p.cmd)
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
}

// start runs the provider with the environment the server gives it.
func (c *checker) start() (*proc, error) {
	certPEM, cert, err := selfSigned("localhost")
	if err != nil {
		return nil, err
	}
	cmd := command(c.r.Path)
	var versions []string
	for _, v := range authplugin.ProtocolVersions() {
		versions = append(versions, strconv.Itoa(v))
	}
	cmd.Env = append(os.Environ(),
		authplugin.Handshake.MagicCookieKey+"="+authplugin.Handshake.MagicCookieValue,
		"PLUGIN_MIN_PORT=10000", "PLUGIN_MAX_PORT=25000",
		"PLUGIN_PROTOCOL_VERSIONS="+strings.Join(versions, ","),
		"PLUGIN_CLIENT_CERT="+string(certPEM))
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, clientTL: cert, first: make(chan string, 1), exited: make(chan struct{}), errDone: make(chan struct{})}
	go func() {
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	go func() {
		defer outR.Close()
		br := bufio.NewReader(outR)
		line, err := br.ReadString('\n')
		if err == nil || line != "" {
			p.first <- line
		}
		close(p.first)
		buf := make([]byte, 4096)
		for {
			n, err := br.Read(buf)
			p.mu.Lock()
			p.stdout.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer close(p.errDone)
		defer errR.Close()
		sc := bufio.NewScanner(errR)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if c.opts.Stderr != nil {
				fmt.Fprintln(c.opts.Stderr, sc.Text())
			}
			p.mu.Lock()
			p.stderr = append(p.stderr, sc.Text())
			if len(p.stderr) > 5 {
				p.stderr = p.stderr[1:]
			}
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, errR)
	}()
	return p, nil
}

// handshake is a parsed handshake line.
type handshake struct {
	network, address string
	certDER          []byte
}

const lineFormat = "CORE|APP|NETWORK|ADDRESS|PROTOCOL|CERTIFICATE, e.g. 1|1|tcp|127.0.0.1:PORT|grpc|MIIB…"

func quote(s string) string {
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return strconv.Quote(s)
}

// checkHandshake reads and checks the handshake line and its certificate.
func (c *checker) checkHandshake(p *proc) (*handshake, bool) {
	c.checked(CheckHandshake)
	var line string
	select {
	case l, ok := <-p.first:
		if !ok {
			<-p.exited
			select { // what it said on its way out
			case <-p.errDone:
			case <-time.After(time.Second):
			}
			c.refuse(CheckHandshake, "it exited (%v) without printing a handshake line on stdout (%s); "+
				"it must print one line, %s, once it listens", p.exitErr, p.stderrTail(), lineFormat)
			return nil, false
		}
		line = l
	case <-time.After(c.opts.StartTimeout):
		c.refuse(CheckHandshake, "no handshake line on stdout within %s (%s): the server gives up then; "+
			"print %s as soon as it listens, and end it with a newline (flush stdout)", c.opts.StartTimeout, p.stderrTail(), lineFormat)
		return nil, false
	case <-c.ctx.Done():
		c.refuse(CheckHandshake, "%v", c.ctx.Err())
		return nil, false
	}
	if !strings.HasSuffix(line, "\n") {
		c.problem(CheckHandshake, "the handshake line %s does not end with a newline before stdout closed", quote(line))
	}
	line = strings.TrimSpace(line)
	parts := strings.Split(line, "|")
	if len(parts) < 4 {
		c.refuse(CheckHandshake, "the first line on stdout is %s, not a handshake line: print %s before anything else, "+
			"and log to stderr", quote(line), lineFormat)
		return nil, false
	}
	ok := true
	if core, err := strconv.Atoi(parts[0]); err != nil || core != plugin.CoreProtocolVersion {
		c.refuse(CheckHandshake, "the first field (go-plugin's core protocol version) is %s: it must be %d", quote(parts[0]), plugin.CoreProtocolVersion)
		ok = false
	}
	app, err := strconv.Atoi(parts[1])
	switch {
	case err != nil:
		c.refuse(CheckHandshake, "the second field (the auth plugin protocol version) is %s, not a number: it must be %d", quote(parts[1]), authplugin.ProtocolVersion)
		ok = false
	case !slices.Contains(authplugin.ProtocolVersions(), app):
		c.r.Protocol = app
		c.refuse(CheckHandshake, "%v", &authplugin.ProtocolVersionError{Provider: app, Host: authplugin.ProtocolVersions()})
		// The rest may still be worth checking: go on.
	default:
		c.r.Protocol = app
	}
	hs := &handshake{network: parts[2], address: parts[3]}
	switch hs.network {
	case "tcp":
		addr, err := net.ResolveTCPAddr("tcp", hs.address)
		if err != nil {
			c.refuse(CheckHandshake, "the address %s is not HOST:PORT: %v", quote(hs.address), err)
			return nil, false
		}
		if !addr.IP.IsLoopback() {
			c.problem(CheckHandshake, "it listens on %s, which other machines may reach: listen on 127.0.0.1 (the server connects from this machine only)", hs.address)
		}
	case "unix":
		if _, err := os.Stat(hs.address); err != nil {
			c.refuse(CheckHandshake, "the Unix socket %s: %v", hs.address, err)
			return nil, false
		}
	default:
		c.refuse(CheckHandshake, "the network is %s: it must be tcp (or unix)", quote(hs.network))
		return nil, false
	}
	switch {
	case len(parts) < 5:
		c.refuse(CheckHandshake, "the line names no protocol (fifth field): it must be grpc (without it go-plugin assumes net/rpc)")
		ok = false
	case parts[4] != string(plugin.ProtocolGRPC):
		c.refuse(CheckHandshake, "the protocol (fifth field) is %s: the server speaks only grpc", quote(parts[4]))
		ok = false
	}
	// go-plugin reads a certificate only from a sixth field longer than 50 characters.
	if len(parts) < 6 || len(parts[5]) <= 50 {
		c.refuse(CheckCertificate, "the handshake line carries no certificate (sixth field): the server starts every provider with "+
			"automatic mutual TLS (PLUGIN_CLIENT_CERT is set), so the line must end with |CERTIFICATE, the provider's self-signed "+
			"certificate (DER) in unpadded standard base64, with the DNS name localhost as a subject alternative name")
		return hs, ok
	}
	c.checkCertificate(hs, parts[5])
	return hs, ok
}

// checkCertificate decodes and checks the handshake line's certificate as go-plugin and the
// server's TLS client do.
func (c *checker) checkCertificate(hs *handshake, field string) {
	c.checked(CheckCertificate)
	der, err := base64.RawStdEncoding.DecodeString(field)
	if err != nil {
		switch {
		case decodes(base64.StdEncoding, field):
			c.refuse(CheckCertificate, "the certificate is padded base64 (it ends with '='): go-plugin decodes unpadded standard base64 only; drop the padding")
		case decodes(base64.RawURLEncoding, field), decodes(base64.URLEncoding, field):
			c.refuse(CheckCertificate, "the certificate is URL-safe base64: go-plugin decodes unpadded standard base64 (+ and /) only")
		default:
			c.refuse(CheckCertificate, "the certificate is not base64: %v", err)
		}
		if d, err := base64.StdEncoding.DecodeString(field); err == nil {
			hs.certDER = d
		}
		return
	}
	if bytes.HasPrefix(der, []byte("-----BEGIN")) {
		c.refuse(CheckCertificate, "the certificate is PEM: send its DER bytes (the PEM block's content), base64-encoded without padding")
		if b, _ := pem.Decode(der); b != nil {
			hs.certDER = b.Bytes
		}
		return
	}
	hs.certDER = der
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		c.refuse(CheckCertificate, "the certificate does not parse as DER: %v", err)
		return
	}
	if err := cert.VerifyHostname("localhost"); err != nil {
		c.refuse(CheckCertificate, "the certificate is valid for %s, not for the DNS name localhost: the server verifies the name localhost, "+
			"so the certificate must carry it as a DNS subject alternative name (one for 127.0.0.1, or with only a common name, is refused)",
			certNames(cert))
		return
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: roots}); err != nil {
		c.refuse(CheckCertificate, "the server's TLS client refuses the certificate: %v (it must be self-signed, valid now, "+
			"and usable for server authentication)", err)
	}
}

func decodes(enc *base64.Encoding, s string) bool {
	_, err := enc.DecodeString(s)
	return err == nil
}

// certNames says whom a certificate names.
func certNames(cert *x509.Certificate) string {
	var names []string
	for _, d := range cert.DNSNames {
		names = append(names, "DNS name "+d)
	}
	for _, ip := range cert.IPAddresses {
		names = append(names, "IP address "+ip.String())
	}
	if len(names) == 0 {
		if cert.Subject.CommonName != "" {
			return fmt.Sprintf("no name (it has no subject alternative name, and TLS clients ignore its common name %q)", cert.Subject.CommonName)
		}
		return "no name"
	}
	return strings.Join(names, ", ")
}

// dialer connects to the address of a handshake line.
func (hs *handshake) dial(ctx context.Context, _ string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, hs.network, hs.address)
}

// connect opens the connection the server would, checking the health service on it. Problems
// with the certificate are reported by checkCertificate; this connection accepts the
// certificate the provider serves when it is the handshake line's, so the checks go on.
func (c *checker) connect(hs *handshake, p *proc) (*grpc.ClientConn, bool) {
	var served []byte
	cfg := &tls.Config{
		Certificates:       []tls.Certificate{p.clientTL},
		ServerName:         "localhost",
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified by hand below, and checkCertificate said the rest
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the provider served no certificate")
			}
			served = cs.PeerCertificates[0].Raw
			if hs.certDER != nil && !bytes.Equal(served, hs.certDER) {
				return errors.New("the provider serves a certificate other than the one in its handshake line")
			}
			return nil
		},
	}
	conn, err := grpc.NewClient("passthrough:///provider", grpc.WithContextDialer(hs.dial),
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		c.refuse(CheckHandshake, "cannot connect to %s: %v", hs.address, err)
		return nil, false
	}
	c.checked(CheckHealth)
	ctx, cancel := c.call()
	defer cancel()
	resp, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	st := status.Convert(err)
	switch {
	case err == nil && resp.GetStatus() == grpc_health_v1.HealthCheckResponse_SERVING:
	case err == nil:
		c.refuse(CheckHealth, "its grpc.health.v1.Health service reports %s for the service %q: the server refuses a provider that does not report SERVING",
			resp.GetStatus(), plugin.GRPCServiceName)
	case st.Code() == codes.Unimplemented:
		c.refuse(CheckHealth, "it serves no grpc.health.v1.Health service: serve one reporting SERVING for the service %q (the server asks it after every start)",
			plugin.GRPCServiceName)
	case st.Code() == codes.NotFound:
		c.refuse(CheckHealth, "its grpc.health.v1.Health service does not know the service %q: report SERVING for it", plugin.GRPCServiceName)
	case st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded:
		switch {
		case strings.Contains(st.Message(), "other than the one in its handshake line"):
			c.refuse(CheckCertificate, "the TLS certificate it serves is not the one in its handshake line: the server trusts only that one")
		case strings.Contains(st.Message(), "first record does not look like a TLS handshake"):
			c.refuse(CheckCertificate, "it does not serve TLS: with PLUGIN_CLIENT_CERT set, serve TLS with the certificate of the handshake line")
		case strings.Contains(st.Message(), "tls:") || strings.Contains(st.Message(), "x509"):
			c.refuse(CheckClientAuth, "the TLS handshake failed: %s; it must accept the server's client certificate, the PEM in PLUGIN_CLIENT_CERT", st.Message())
		default:
			c.refuse(CheckHandshake, "cannot connect to %s %s (%s): listen before printing the handshake line (%s)", hs.network, hs.address, st.Message(), p.stderrTail())
		}
		conn.Close()
		return nil, false
	default:
		c.refuse(CheckHealth, "its health check failed: %s: %s", st.Code(), st.Message())
	}
	return conn, true
}

// checkClientAuth connects with a certificate the server did not give the provider: the
// provider must refuse it.
func (c *checker) checkClientAuth(hs *handshake) {
	c.checked(CheckClientAuth)
	_, stranger, err := selfSigned("localhost")
	if err != nil {
		c.note("client certificate not checked: %v", err)
		return
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{stranger}, ServerName: "localhost", MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}
	conn, err := grpc.NewClient("passthrough:///provider", grpc.WithContextDialer(hs.dial), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return
	}
	defer conn.Close()
	ctx, cancel := c.call()
	defer cancel()
	if _, err := authpluginv1.NewProviderServiceClient(conn).Describe(ctx, &authpluginv1.DescribeRequest{}); err == nil {
		c.problem(CheckClientAuth, "it answers a client whose certificate is not the one in PLUGIN_CLIENT_CERT: require a client certificate "+
			"and verify it against that one, or any process on this machine can ask it for credentials")
	}
}

// stdio collects what the provider sends over plugin.GRPCStdio.
type stdio struct {
	mu            sync.Mutex
	unimplemented bool
	stdout        bytes.Buffer
}

func (c *checker) watchStdio(conn *grpc.ClientConn) *stdio {
	s := &stdio{}
	ctx, cancel := context.WithCancel(c.ctx)
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/plugin.GRPCStdio/StreamStdio")
	if err == nil {
		err = stream.SendMsg(&emptypb.Empty{})
	}
	if err == nil {
		err = stream.CloseSend()
	}
	if err != nil {
		cancel()
		s.unimplemented = status.Code(err) == codes.Unimplemented
		return s
	}
	go func() {
		defer cancel()
		for {
			// StdioData{channel = 1 (1: stdout, 2: stderr), data = 2}, read as the unknown fields of an Empty.
			m := &emptypb.Empty{}
			if err := stream.RecvMsg(m); err != nil {
				if status.Code(err) == codes.Unimplemented {
					s.mu.Lock()
					s.unimplemented = true
					s.mu.Unlock()
				}
				return
			}
			channel, data := parseStdioData(m.ProtoReflect().GetUnknown())
			if channel == 1 {
				s.mu.Lock()
				s.stdout.Write(data)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func parseStdioData(b []byte) (channel int, data []byte) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return channel, data
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return channel, data
			}
			channel, b = int(v), b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return channel, data
			}
			data, b = append(data, v...), b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return channel, data
			}
			b = b[n:]
		}
	}
	return channel, data
}

// timed runs a call and reports it when it is slow.
func (c *checker) timed(what string, fn func(ctx context.Context) error) error {
	c.checked(CheckSpeed)
	ctx, cancel := c.call()
	defer cancel()
	start := time.Now()
	err := fn(ctx)
	took := time.Since(start)
	switch {
	case status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
		c.refuse(CheckSpeed, "%s did not answer within %s: the server kills a provider then and starts it again", what, c.opts.CallTimeout)
	case took > c.opts.SlowAnswer:
		c.problem(CheckSpeed, "%s took %.1fs: answer within %s (the server asks every provider at once to list them, and waits for each answer "+
			"before it validates a mailbox or logs in)", what, took.Seconds(), c.opts.SlowAnswer)
	}
	return err
}

var saslMechanisms = []string{"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"}
var protocols = []string{"imap", "pop3", "smtp"}
var fieldName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func (c *checker) checkDescribe(conn *grpc.ClientConn, name string) *authpluginv1.DescribeResponse {
	c.checked(CheckDescribe)
	client := authpluginv1.NewProviderServiceClient(conn)
	var d *authpluginv1.DescribeResponse
	err := c.timed("Describe", func(ctx context.Context) error {
		var err error
		d, err = client.Describe(ctx, &authpluginv1.DescribeRequest{})
		return err
	})
	if err != nil {
		if status.Code(err) != codes.DeadlineExceeded {
			c.refuse(CheckDescribe, "Describe failed: %s: %s", status.Code(err), status.Convert(err).Message())
		}
		return nil
	}
	c.r.Name = d.GetName()
	switch {
	case d.GetName() == "":
		c.problem(CheckDescribe, "Describe names no provider: set name to %q, the end of the executable's name", name)
	case name != "" && d.GetName() != name:
		c.problem(CheckDescribe, "Describe names the provider %q, but the executable is %s%s: the server knows it by the executable's name; make them equal",
			d.GetName(), authplugin.ExecutablePrefix, name)
	}
	if d.GetVersion() == "" {
		c.problem(CheckDescribe, "Describe gives no version: the server shows it in the provider listing")
	}
	if len(d.GetSaslMechanisms()) == 0 {
		c.problem(CheckDescribe, "Describe names no SASL mechanism: list those its credentials are for (%s)", strings.Join(saslMechanisms, ", "))
	}
	for _, m := range d.GetSaslMechanisms() {
		if !slices.Contains(saslMechanisms, m) {
			c.problem(CheckDescribe, "SASL mechanism %q is not one the server speaks (%s)", m, strings.Join(saslMechanisms, ", "))
		}
	}
	if len(d.GetProtocols()) == 0 {
		c.problem(CheckDescribe, "Describe names no protocol: list those it serves (%s)", strings.Join(protocols, ", "))
	}
	for _, p := range d.GetProtocols() {
		if !slices.Contains(protocols, p) {
			c.problem(CheckDescribe, "protocol %q is not one of %s", p, strings.Join(protocols, ", "))
		}
	}
	seen := map[string]bool{}
	for i, f := range d.GetFields() {
		c.checkField(i, f, seen)
	}
	return d
}

// checkField checks one field of a description: what the server and a form need of it.
func (c *checker) checkField(i int, f *authpluginv1.Field, seen map[string]bool) {
	n := f.GetName()
	who := fmt.Sprintf("field %q", n)
	switch {
	case n == "":
		c.problem(CheckDescribe, "field %d has no name", i+1)
		who = fmt.Sprintf("field %d", i+1)
	case !fieldName.MatchString(n):
		c.problem(CheckDescribe, "%s: a field name is a key of the mailbox's auth_config or auth_secrets: use lower-case letters, digits and '_', starting with a letter", who)
	case seen[n]:
		c.problem(CheckDescribe, "%s is described twice", who)
	}
	seen[n] = true
	t := f.GetType()
	if _, known := authpluginv1.FieldType_name[int32(t)]; !known {
		c.problem(CheckDescribe, "%s has type %d, which is not an authplugin.v1.FieldType", who, int32(t))
	}
	opts := f.GetOptions()
	def := f.GetDefaultValue()
	if t == authpluginv1.FieldType_FIELD_TYPE_ENUM {
		if len(opts) == 0 {
			c.problem(CheckDescribe, "%s is an enum without options: list the values it allows", who)
		}
		dup := map[string]bool{}
		for _, o := range opts {
			if o == "" || dup[o] {
				c.problem(CheckDescribe, "%s: the option %q is empty or given twice", who, o)
			}
			dup[o] = true
		}
		if def != "" && len(opts) > 0 && !slices.Contains(opts, def) {
			c.problem(CheckDescribe, "%s: the default %q is not one of its options %v", who, def, opts)
		}
	} else if len(opts) > 0 {
		c.problem(CheckDescribe, "%s has options but is not an enum (type %s): make it FIELD_TYPE_ENUM or drop the options", who, t)
	}
	if def != "" {
		switch t {
		case authpluginv1.FieldType_FIELD_TYPE_BOOL:
			if def != "true" && def != "false" {
				c.problem(CheckDescribe, "%s is a bool with the default %q: use \"true\" or \"false\"", who, def)
			}
		case authpluginv1.FieldType_FIELD_TYPE_INT:
			if _, err := strconv.ParseInt(def, 10, 64); err != nil {
				c.problem(CheckDescribe, "%s is an int with the default %q, not a whole number", who, def)
			}
		}
	}
	if f.GetSecret() && def != "" {
		c.problem(CheckDescribe, "%s is secret but has a default value: a default is shown to every reader of the description; drop it", who)
	}
	if f.GetSecret() && (t == authpluginv1.FieldType_FIELD_TYPE_ENUM || t == authpluginv1.FieldType_FIELD_TYPE_BOOL) {
		c.problem(CheckDescribe, "%s is secret but a %s: a choice among known values is no secret (and a secret is never shown back); make it not secret", who, t)
	}
}

// checkValidateAndErrors sends an account without any config: ValidateConfig must name each
// required field, IssueCredential must fail with a typed error.
func (c *checker) checkValidateAndErrors(conn *grpc.ClientConn, d *authpluginv1.DescribeResponse) {
	client := authpluginv1.NewProviderServiceClient(conn)
	acct := &authpluginv1.Account{MailboxId: "authplugintest", Protocol: "imap", Host: "imap.invalid", Port: 993}
	var required []string
	for _, f := range d.GetFields() {
		if f.GetRequired() && f.GetDefaultValue() == "" && f.GetName() != "" {
			required = append(required, f.GetName())
		}
	}

	c.checked(CheckValidate)
	var vresp *authpluginv1.ValidateConfigResponse
	err := c.timed("ValidateConfig", func(ctx context.Context) error {
		var err error
		vresp, err = client.ValidateConfig(ctx, &authpluginv1.ValidateConfigRequest{Account: acct})
		return err
	})
	switch {
	case status.Code(err) == codes.DeadlineExceeded:
	case err != nil:
		c.problem(CheckValidate, "ValidateConfig of an account without config failed (%s: %s): answer with a FieldViolation per bad field instead",
			status.Code(err), status.Convert(err).Message())
	default:
		named := map[string]bool{}
		for _, v := range vresp.GetViolations() {
			named[v.GetField()] = true
			if v.GetDescription() == "" {
				c.problem(CheckValidate, "the violation of %q has no description: say what is wrong", v.GetField())
			}
		}
		for _, f := range required {
			if !named[f] {
				c.problem(CheckValidate, "ValidateConfig accepted an account without the required field %q: name it in a FieldViolation", f)
			}
		}
	}

	c.checked(CheckErrors)
	var trailer metadata.MD
	err = c.timed("IssueCredential", func(ctx context.Context) error {
		_, err := client.IssueCredential(ctx, &authpluginv1.IssueCredentialRequest{Account: acct}, grpc.Trailer(&trailer))
		return err
	})
	st := status.Convert(err)
	switch {
	case err == nil && len(required) > 0:
		c.problem(CheckErrors, "IssueCredential issued a credential for an account without its required fields (%s): fail with an "+
			"authplugin.v1.Error (reason REASON_CONFIG_INVALID) instead", strings.Join(required, ", "))
		return
	case err == nil:
		c.note("typed errors not checked: IssueCredential issued a credential for an account without any config")
		return
	case st.Code() == codes.DeadlineExceeded:
		return
	case st.Code() == codes.Unimplemented:
		c.refuse(CheckErrors, "IssueCredential is not implemented")
		return
	}
	what := fmt.Sprintf("IssueCredential of an account without config failed (%s: %q)", st.Code(), st.Message())
	switch {
	case st.Code() == codes.Internal && strings.HasPrefix(st.Message(), "grpc-status-details-bin mismatch"):
		c.problem(CheckErrors, "the code of the google.rpc.Status in its grpc-status-details-bin trailer differs from the call's grpc-status: "+
			"gRPC then turns the failure into INTERNAL and drops its detail; give both the same code (%s)", st.Message())
		return
	case len(trailer.Get("grpc-status-details-bin")) == 0:
		c.problem(CheckErrors, "%s without a typed detail: the server shows such a failure as the provider's own failure, "+
			"without reason or action. Send a google.rpc.Status in the grpc-status-details-bin trailer whose details hold an "+
			"authplugin.v1.Error (type URL type.googleapis.com/authplugin.v1.Error)", what)
		return
	case len(st.Proto().GetDetails()) == 0:
		c.problem(CheckErrors, "%s with a grpc-status-details-bin trailer that holds no detail, or no google.rpc.Status: its bytes must be a "+
			"serialized google.rpc.Status whose details hold an authplugin.v1.Error", what)
		return
	}
	var perr *authpluginv1.Error
	for _, a := range st.Proto().GetDetails() {
		if a.GetTypeUrl() != "type.googleapis.com/authplugin.v1.Error" {
			continue
		}
		e := &authpluginv1.Error{}
		if err := proto.Unmarshal(a.GetValue(), e); err != nil {
			c.problem(CheckErrors, "%s with an authplugin.v1.Error detail that does not decode: %v", what, err)
			return
		}
		perr = e
	}
	if perr == nil {
		urls := make([]string, 0, len(st.Proto().GetDetails()))
		for _, a := range st.Proto().GetDetails() {
			urls = append(urls, a.GetTypeUrl())
		}
		c.problem(CheckErrors, "%s with details of type %s but no authplugin.v1.Error: pack it with the type URL type.googleapis.com/authplugin.v1.Error",
			what, strings.Join(urls, ", "))
		return
	}
	if perr.GetReason() == authpluginv1.Reason_REASON_UNSPECIFIED {
		c.problem(CheckErrors, "%s with an authplugin.v1.Error without a reason: the admin reads \"unknown\"; set one (REASON_CONFIG_INVALID here)", what)
	}
	if perr.GetMessage() == "" {
		c.problem(CheckErrors, "%s with an authplugin.v1.Error without a message: say what went wrong", what)
	}
	if st.Code() != codes.FailedPrecondition && st.Code() != codes.Unavailable {
		c.problem(CheckErrors, "%s: a failure with an authplugin.v1.Error travels as FAILED_PRECONDITION (UNAVAILABLE for a temporary one)", what)
	}
}

// checkStdout reports output on stdout after the handshake line, on the pipe or over
// plugin.GRPCStdio (where a Go provider's os.Stdout goes).
func (c *checker) checkStdout(p *proc, s *stdio) {
	c.checked(CheckStdout)
	time.Sleep(100 * time.Millisecond) // what it printed while answering, still in the pipe
	out := p.stdoutAfterHandshake()
	s.mu.Lock()
	out = append(out, s.stdout.Bytes()...)
	noStdio := s.unimplemented
	s.mu.Unlock()
	c.checked(CheckServices)
	if noStdio {
		c.problem(CheckServices, "it serves no plugin.GRPCStdio: the server asks for it at every start and logs \"stdio service not available\"; "+
			"serve StreamStdio, sending nothing if it has nothing to send (proto/third_party/hashicorp/go-plugin/grpc_stdio.proto)")
	}
	if len(out) > 0 {
		c.problem(CheckStdout, "it wrote %s to stdout after its handshake line: stdout carries the handshake and nothing else "+
			"(the server drops or merely debug-logs the rest); log JSON lines to stderr", quote(string(out)))
	}
}

// checkShutdown asks the provider to stop as the server does, and checks that it does.
func (c *checker) checkShutdown(conn *grpc.ClientConn, p *proc) {
	c.checked(CheckServices)
	c.checked(CheckShutdown)
	// The stdio stream ends when the provider stops or the connection closes.
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	defer cancel()
	err := conn.Invoke(ctx, "/plugin.GRPCController/Shutdown", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) == codes.Unimplemented {
		c.problem(CheckServices, "it serves no plugin.GRPCController/Shutdown: the server stops a provider by calling it, so every stop "+
			"(a restart, a pin change, the server's own) waits 2 s, logs \"plugin failed to exit gracefully\" and kills it; "+
			"serve it and exit when called (proto/third_party/hashicorp/go-plugin/grpc_controller.proto)")
	}
	conn.Close()
	select {
	case <-p.exited:
	case <-time.After(2 * time.Second):
		if status.Code(err) != codes.Unimplemented {
			c.problem(CheckShutdown, "it was still running 2 s after plugin.GRPCController/Shutdown: the server then kills it; exit when asked")
		}
	}
}

// checkServerStart starts the provider through go-plugin exactly as the server does.
func (c *checker) checkServerStart() {
	c.checked(CheckServerStart)
	cmd := command(c.r.Path)
	cfg := authplugin.ClientConfig(cmd)
	cfg.Logger = hclog.NewNullLogger()
	cfg.StartTimeout = c.opts.StartTimeout
	cfg.SyncStdout, cfg.SyncStderr = io.Discard, io.Discard
	client := plugin.NewClient(cfg)
	defer func() {
		killGroup(cmd)
		client.Kill()
	}()
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.StartTimeout)
	defer cancel()
	if _, err := authplugin.Connect(ctx, client); err != nil {
		c.refuse(CheckServerStart, "the server's own start (go-plugin) fails although the checks above passed: %v", err)
	}
}

// selfSigned makes a certificate like go-plugin's automatic mTLS does, for name.
func selfSigned(name string) (certPEM []byte, cert tls.Certificate, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, cert, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"mailintake authplugintest"}},
		DNSNames:              []string{name},
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		NotBefore:             time.Now().Add(-30 * time.Second),
		NotAfter:              time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, cert, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return certPEM, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
