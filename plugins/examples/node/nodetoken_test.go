// Package nodetoken_test drives the Node example provider (mailintake-auth-nodetoken) through the
// server's plugin host, exactly as mailintaked runs it: installed by install.sh (npm ci into a
// temporary directory, so no node_modules appears in the repository), started through go-plugin
// with automatic mutual TLS, listed, asked to validate and to issue, failing with typed errors,
// killed and restarted, and stopped.
package nodetoken_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/pluginhost"
	"github.com/mailintake/mailintake/plugins/authplugin"
	"github.com/mailintake/mailintake/plugins/authplugin/authplugintest"
)

const name = "nodetoken"

var (
	installOnce sync.Once
	installRoot string
	installErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if installRoot != "" {
		os.RemoveAll(installRoot)
	}
	os.Exit(code)
}

// install installs the provider once per test binary with install.sh and returns the plugin
// directory holding its wrapper and the directory it is installed in. A machine without Node.js
// fails the test: the example is part of what CI proves.
func install(t *testing.T) (pluginDir, dest string) {
	t.Helper()
	for _, tool := range []string{"node", "npm", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the Node example provider needs %s on PATH: install Node.js 18 or later and npm (Debian: apt-get install nodejs npm; coreutils for sha256sum)", tool)
		}
	}
	out, err := exec.Command("node", "-p", "process.versions.node").Output()
	if err != nil {
		t.Fatalf("node -p process.versions.node: %v", err)
	}
	if major, _ := strconv.Atoi(strings.SplitN(strings.TrimSpace(string(out)), ".", 2)[0]); major < 18 {
		t.Fatalf("the Node example provider needs Node.js 18 or later, found %s", out)
	}
	installOnce.Do(func() {
		installRoot, installErr = os.MkdirTemp("", "mailintake-nodetoken-")
		if installErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("sh", filepath.Join(filepath.Dir(file), "install.sh"),
			filepath.Join(installRoot, "opt"), filepath.Join(installRoot, "plugins"))
		if out, err := cmd.CombinedOutput(); err != nil {
			installErr = fmt.Errorf("install.sh (npm ci from the npm registry or npm's cache): %v\n%s", err, out)
		}
	})
	if installErr != nil {
		t.Fatal(installErr)
	}
	return filepath.Join(installRoot, "plugins"), filepath.Join(installRoot, "opt")
}

// logRecord is one record of the host's JSON log.
type logRecord map[string]any

func (r logRecord) str(k string) string { s, _ := r[k].(string); return s }

type hostLogs struct {
	mu sync.Mutex
	b  []byte
}

func (l *hostLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *hostLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

func (l *hostLogs) records(t *testing.T) []logRecord {
	t.Helper()
	var out []logRecord
	for line := range strings.SplitSeq(strings.TrimSpace(l.String()), "\n") {
		var r logRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("host log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func newHost(t *testing.T, dir string, pins map[string]string) (*pluginhost.Host, *hostLogs) {
	t.Helper()
	logs := &hostLogs{}
	h := pluginhost.New(pluginhost.Options{
		Dir:    dir,
		Pins:   pins,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug - 4})),
	})
	t.Cleanup(h.Close)
	return h, logs
}

func account(id string, cfg map[string]string, token string) authplugin.Account {
	return authplugin.Account{MailboxID: id, Protocol: "imap", Host: "imap.example.com", Port: 993,
		Username: "ops@example.com", Config: cfg, Secrets: map[string]string{"token": token}}
}

const token = "tok-0123456789-the-stored-bearer-token"

// The provider as the server sees it: listed with its fields, validating with typed field
// violations, issuing credentials, failing with typed errors, logging through the host.
func TestProviderThroughTheHost(t *testing.T) {
	dir, _ := install(t)
	h, logs := newHost(t, dir, nil)
	ctx := context.Background()

	infos, err := h.Providers(ctx)
	if err != nil || len(infos) != 1 || infos[0].Err != nil {
		t.Fatalf("Providers = %+v, %v\nhost logs:\n%s", infos, err, logs)
	}
	d := infos[0]
	if d.Name != name || d.Version != "0.1.0" || d.Interactive || len(d.SHA256) != 64 ||
		strings.Join(d.SASLMechanisms, ",") != "XOAUTH2,OAUTHBEARER" || strings.Join(d.Protocols, ",") != "imap,pop3,smtp" {
		t.Errorf("described as %+v", d)
	}
	fields := map[string]authplugin.Field{}
	for _, f := range d.Fields {
		fields[f.Name] = f
	}
	if f := fields["token"]; !f.Secret || !f.Required || f.Type != authplugin.FieldString {
		t.Errorf("token field %+v, want a required secret string", f)
	}
	if f := fields["mechanism"]; f.Secret || f.Type != authplugin.FieldEnum || f.Default != "XOAUTH2" || len(f.Options) != 2 {
		t.Errorf("mechanism field %+v", f)
	}
	if f := fields["lifetime_seconds"]; f.Type != authplugin.FieldInt || f.Help == "" {
		t.Errorf("lifetime_seconds field %+v", f)
	}
	if len(d.Fields) != 4 {
		t.Errorf("%d fields, want 4: %+v", len(d.Fields), d.Fields)
	}

	// A bad config: each bad field named, as a *authplugin.ValidationError.
	bad := account("m1", map[string]string{"mechanism": "PLAIN", "lifetime_seconds": "-5", "not_after": "tomorrow"}, "")
	bad.Username = ""
	err = h.Validate(ctx, name, bad)
	var verr *authplugin.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Validate(bad) = %v, want a *ValidationError", err)
	}
	var named []string
	for _, v := range verr.Violations {
		named = append(named, v.Field)
		if v.Description == "" {
			t.Errorf("violation of %s without a description", v.Field)
		}
	}
	if strings.Join(named, ",") != "token,mechanism,lifetime_seconds,not_after,username" {
		t.Errorf("violations %+v", verr.Violations)
	}
	good := account("m1", map[string]string{"mechanism": "OAUTHBEARER", "lifetime_seconds": "3600"}, token)
	if err := h.Validate(ctx, name, good); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}

	// A credential.
	c, err := h.Credential(ctx, name, good, false)
	if err != nil {
		t.Fatalf("Credential = %v", err)
	}
	if c.Mechanism != "OAUTHBEARER" || c.Identity != "ops@example.com" || c.Secret != token ||
		c.Expiry.Before(time.Now().Add(59*time.Minute)) || c.Expiry.After(time.Now().Add(61*time.Minute)) {
		t.Errorf("credential %+v, want OAUTHBEARER for an hour", c)
	}
	// A token about to expire: its expiry bounds the credential's, with a warning.
	soon := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	c, err = h.Credential(ctx, name, account("m2", map[string]string{"not_after": soon.Format(time.RFC3339)}, token), false)
	if err != nil || c.Mechanism != "XOAUTH2" || !c.Expiry.Equal(soon) {
		t.Errorf("credential with not_after: %+v, %v; want XOAUTH2 expiring at %s", c, err, soon)
	}
	if hl, ok := h.Health("m2"); !ok || hl.Token == nil || len(hl.Token.Warnings) != 1 || !strings.Contains(hl.Token.Warnings[0], "expires") {
		t.Errorf("health %+v, want one warning about the expiry", hl)
	}

	// Typed errors: an expired token is "invalid credentials" with the provider's code, action
	// and support id; a bad config is "configuration invalid"; neither is a plugin failure.
	_, err = h.Credential(ctx, name, account("m3", map[string]string{"not_after": "2020-01-01T00:00:00Z"}, token), false)
	e, ok := authplugin.AsError(err)
	if !ok || !errors.Is(err, authplugin.ErrInvalidCredentials) || e.Code != "TOKEN_EXPIRED" ||
		!strings.Contains(e.Message, "expired at 2020-01-01") || !strings.Contains(e.Action, "Store a new token") || len(e.SupportIDs["token_id"]) != 12 {
		t.Errorf("expired token: %#v (%v), want ErrInvalidCredentials with its code, action and token_id", e, err)
	}
	if errors.Is(err, pluginhost.ErrPluginFailed) {
		t.Errorf("a typed error reported as a plugin failure: %v", err)
	}
	_, err = h.Credential(ctx, name, account("m4", map[string]string{"mechanism": "PLAIN"}, token), false)
	if e, ok := authplugin.AsError(err); !ok || !errors.Is(err, authplugin.ErrConfigInvalid) || !strings.Contains(e.Message, "mechanism") {
		t.Errorf("bad config at issue: %v, want ErrConfigInvalid naming the field", err)
	}
	if _, err := h.BeginAuthorization(ctx, name, good); !errors.Is(err, authplugin.ErrNotInteractive) {
		t.Errorf("BeginAuthorization = %v, want ErrNotInteractive", err)
	}
	if n := h.Starts(name); n != 1 {
		t.Errorf("%d starts, want one process for every call", n)
	}

	// Logs: the provider's hclog JSON lines arrive with their level and fields; no secret.
	var issued bool
	for _, r := range logs.records(t) {
		if r.str("msg") == "issued the stored token" && r.str("level") == "DEBUG" && r.str("provider") == name && r.str("mailbox_id") == "m1" && len(r.str("token_id")) == 12 {
			issued = true
		}
	}
	if !issued {
		t.Errorf("no debug record of the issue from the provider in the host's logs:\n%s", logs)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the host's logs contain the token")
	}
}

// The host stops the provider through plugin.GRPCController/Shutdown: at once, not after
// go-plugin's 2 s grace, without a warning, and the process exits 0.
func TestGracefulStop(t *testing.T) {
	dir, _ := install(t)
	h, logs := newHost(t, dir, nil)
	if _, err := h.Describe(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	pid := h.Pid(name)
	start := time.Now()
	h.Close()
	if took := time.Since(start); took >= 2*time.Second {
		t.Errorf("stopping took %s: go-plugin waited its 2 s for an exit after Shutdown", took)
	}
	if alive(pid) {
		t.Errorf("the provider (pid %d) still runs after Close", pid)
	}
	var exited bool
	for _, r := range logs.records(t) {
		switch lvl := r.str("level"); {
		case r.str("msg") == "stopping auth provider plugin" && lvl == "WARN":
			// The host's own record of every stop.
		case r.str("msg") == "plugin process exited" && lvl == "INFO":
			exited = true
		case lvl == "WARN" || lvl == "ERROR":
			t.Errorf("%s record at stop: %v", lvl, r)
		}
	}
	if !exited {
		t.Errorf("no record of a clean exit (status 0):\n%s", logs)
	}
}

// A provider killed while it is in use is started again, and the call in flight succeeds on the
// new process.
func TestKilledProviderIsRestarted(t *testing.T) {
	dir, _ := install(t)
	h, logs := newHost(t, dir, nil)
	ctx := context.Background()
	good := account("m1", nil, token)
	if err := h.Validate(ctx, name, good); err != nil {
		t.Fatal(err)
	}
	pid := h.Pid(name)
	stop := make(chan struct{})
	done := make(chan error, 1)
	calls := 0
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := h.Validate(ctx, name, good); err != nil {
				done <- err
				return
			}
			calls++
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); h.Starts(name) < 2 || h.Pid(name) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no restart 15 s after the kill\n%s", logs)
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	if err := <-done; err != nil {
		t.Errorf("a call across the kill failed: %v", err)
	}
	if _, err := h.Credential(ctx, name, good, false); err != nil {
		t.Errorf("Credential after the kill: %v", err)
	}
	if n, p := h.Starts(name), h.Pid(name); n != 2 || p == pid || p == 0 || alive(pid) {
		t.Errorf("after SIGKILL: %d starts, pid %d (killed: %d); want one restart\n%s", n, p, pid, logs)
	}
	t.Logf("%d calls, one kill", calls)
}

// A pin of the wrapper install.sh writes covers the provider's files: a changed one is refused
// before node runs, and the provider is listed with the reason.
func TestPinCoversTheInstalledFiles(t *testing.T) {
	dir, dest := install(t)
	wrapper := filepath.Join(dir, "mailintake-auth-"+name)
	sum := sha256File(t, wrapper)
	h, _ := newHost(t, dir, map[string]string{name: sum})
	if _, err := h.Describe(context.Background(), name); err != nil {
		t.Fatalf("pinned wrapper: %v", err)
	}
	h.Close()

	file := filepath.Join(dest, "lib", "nodetoken.js")
	orig, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(file, orig, 0o644) })
	if err := os.WriteFile(file, append(orig, []byte("\n// changed\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	h2, logs := newHost(t, dir, map[string]string{name: sum})
	infos, err := h2.Providers(context.Background())
	if err != nil || len(infos) != 1 || !errors.Is(infos[0].Err, pluginhost.ErrPluginFailed) {
		t.Fatalf("with a changed file: %+v, %v; want the provider listed as failed", infos, err)
	}
	if !strings.Contains(logs.String(), "lib/nodetoken.js: FAILED") {
		t.Errorf("the host's logs do not name the changed file:\n%s", logs)
	}
	if err := os.WriteFile(file, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dest, "lib", "extra.js"), []byte("// added\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(filepath.Join(dest, "lib", "extra.js"))
	h3, logs := newHost(t, dir, map[string]string{name: sum})
	if _, err := h3.Describe(context.Background(), name); !errors.Is(err, pluginhost.ErrPluginFailed) || !strings.Contains(logs.String(), "added to or removed") {
		t.Errorf("with an added file: %v, want a failure naming it\n%s", err, logs)
	}
}

// The SDK's conformance check, which every provider author can run, finds nothing to report.
func TestConformance(t *testing.T) {
	dir, _ := install(t)
	r := authplugintest.Check(t, filepath.Join(dir, "mailintake-auth-"+name))
	if r.Name != name {
		t.Errorf("conformance report names %q:\n%s", r.Name, r)
	}
	t.Logf("\n%s", r)
}

// The handshake line and the certificate, checked as go-plugin's host checks them: six fields,
// the certificate in unpadded standard base64, valid for the name "localhost"; the server
// requires the host's certificate.
func TestHandshakeAndMutualTLS(t *testing.T) {
	dir, _ := install(t)
	hostCert, hostPEM := hostCertificate(t)
	cmd := exec.Command(filepath.Join(dir, "mailintake-auth-"+name))
	cmd.Env = append(os.Environ(), authplugin.Handshake.MagicCookieKey+"="+authplugin.Handshake.MagicCookieValue,
		"PLUGIN_PROTOCOL_VERSIONS=1", "PLUGIN_MIN_PORT=10000", "PLUGIN_MAX_PORT=25000", "PLUGIN_CLIENT_CERT="+hostPEM)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr hostLogs
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(10 * time.Second):
		t.Fatalf("no handshake line in 10 s; stderr:\n%s", stderr.String())
	}
	parts := strings.Split(line, "|")
	if len(parts) != 6 || parts[0] != "1" || parts[1] != "1" || parts[2] != "tcp" || parts[4] != "grpc" {
		t.Fatalf("handshake line %q", line)
	}
	port, _ := strconv.Atoi(strings.TrimPrefix(parts[3], "127.0.0.1:"))
	if port < 10000 || port > 25000 {
		t.Errorf("address %s: not a loopback port in PLUGIN_MIN_PORT..PLUGIN_MAX_PORT", parts[3])
	}
	der, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil {
		t.Fatalf("certificate field: %v (go-plugin decodes it with base64.RawStdEncoding)", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("localhost"); err != nil {
		t.Errorf("the certificate is not valid for localhost, the name go-plugin verifies: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	// As the host connects: its certificate, the provider's as the only root, ALPN h2.
	conf := &tls.Config{Certificates: []tls.Certificate{hostCert}, RootCAs: roots, ServerName: "localhost", NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	conn, err := tls.Dial("tcp", parts[3], conf)
	if err != nil {
		t.Fatalf("TLS as the host: %v", err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("ALPN %q, want h2 (gRPC-Go refuses TLS without it)", p)
	}
	conn.Close()
	// Without the host's certificate: refused.
	anon := conf.Clone()
	anon.Certificates = nil
	conn, err = tls.Dial("tcp", parts[3], anon)
	if err == nil {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("a client without the host's certificate was served (%v)", err)
	}
}

// Without the handshake cookie, or without the host's certificate, the provider refuses to run.
func TestRefusesToRunOutsideTheHost(t *testing.T) {
	dir, _ := install(t)
	exe := filepath.Join(dir, "mailintake-auth-"+name)
	out, err := exec.Command(exe).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "plugin directory") {
		t.Errorf("without the cookie: %v\n%s", err, out)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), authplugin.Handshake.MagicCookieKey+"="+authplugin.Handshake.MagicCookieValue)
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "PLUGIN_CLIENT_CERT") {
		t.Errorf("without PLUGIN_CLIENT_CERT: %v\n%s", err, out)
	}
}

// A provider whose server is killed (no chance to stop it) exits on its own.
func TestExitsWhenTheServerIsGone(t *testing.T) {
	dir, _ := install(t)
	_, hostPEM := hostCertificate(t)
	tmp := t.TempDir()
	pidFile, outFile := filepath.Join(tmp, "pid"), filepath.Join(tmp, "out")
	host := exec.Command("sh", "-c", `"$0" >"$2" 2>&1 & echo $! > "$1"; sleep 60`, filepath.Join(dir, "mailintake-auth-"+name), pidFile, outFile)
	host.Env = append(os.Environ(), authplugin.Handshake.MagicCookieKey+"="+authplugin.Handshake.MagicCookieValue,
		"PLUGIN_PROTOCOL_VERSIONS=1", "PLUGIN_CLIENT_CERT="+hostPEM)
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if time.Now().After(deadline) {
			t.Fatal("the provider did not start")
		}
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	// Serving (the handshake line printed), and still there a while later.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(outFile); strings.Contains(string(b), "|grpc|") {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(outFile)
			t.Fatalf("the provider did not serve within 10 s:\n%s", b)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if !alive(pid) {
		t.Fatal("the provider is not running while its server lives")
	}
	host.Process.Kill()
	host.Wait()
	for deadline := time.Now().Add(10 * time.Second); alive(pid); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the provider still runs 10 s after its server was killed")
		}
	}
}

// alive reports whether a process runs (and is not a zombie waiting to be reaped).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return !strings.Contains(string(b), ") Z ")
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sha256sum", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))[0]
}

// hostCertificate makes a certificate like the one go-plugin's host sends in PLUGIN_CLIENT_CERT.
func hostCertificate(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// The runtime in lib/authplugin.js with another provider: what it writes to stdout after the
// handshake reaches the host through plugin.GRPCStdio; a temporary failure travels as
// UNAVAILABLE with its detail (typed, with its retry time, and no restart); a thrown Error is a
// provider failure with its message.
func TestRuntimeWithAnotherProvider(t *testing.T) {
	_, dest := install(t)
	dir := t.TempDir()
	script := `#!/usr/bin/env node
'use strict';
const { serve, ProviderError, Reason } = require(` + strconv.Quote(filepath.Join(dest, "lib", "authplugin.js")) + `);
serve({
  describe() {
    console.log('hello from stdout');
    return { name: 'nodeedge', version: '1', fields: [], sasl_mechanisms: ['PLAIN'], protocols: ['imap'] };
  },
  validateConfig() { return []; },
  issueCredential({ account }) {
    switch (account.config.behavior) {
      case 'temporary':
        throw new ProviderError({ reason: Reason.TEMPORARY, code: 'BUSY', message: 'the token service is busy', retryAfterSeconds: 30 });
      case 'throw':
        throw new Error('something unexpected');
      default:
        return { credential: { mechanism: 'PLAIN', identity: account.username, secret: 'pw' } };
    }
  },
});
`
	if err := os.WriteFile(filepath.Join(dir, "mailintake-auth-nodeedge"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h, logs := newHost(t, dir, nil)
	ctx := context.Background()
	if _, err := h.Describe(ctx, "nodeedge"); err != nil {
		t.Fatal(err)
	}
	_, err := h.Credential(ctx, "nodeedge", account("m1", map[string]string{"behavior": "temporary"}, ""), false)
	if e, ok := authplugin.AsError(err); !ok || !errors.Is(err, authplugin.ErrTemporary) || e.Code != "BUSY" || e.RetryAfter != 30*time.Second {
		t.Errorf("temporary failure: %v, want ErrTemporary with code BUSY and a retry after 30 s", err)
	}
	_, err = h.Credential(ctx, "nodeedge", account("m2", map[string]string{"behavior": "throw"}, ""), false)
	if _, typed := authplugin.AsError(err); typed || !errors.Is(err, pluginhost.ErrPluginFailed) || !strings.Contains(err.Error(), "something unexpected") {
		t.Errorf("thrown Error: %v, want a provider failure with its message", err)
	}
	if c, err := h.Credential(ctx, "nodeedge", account("m3", nil, ""), false); err != nil || c.Secret != "pw" {
		t.Errorf("credential: %+v, %v", c, err)
	}
	if n := h.Starts("nodeedge"); n != 1 {
		t.Errorf("%d starts: an error answer restarted the provider", n)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var seen bool
		for _, r := range logs.records(t) {
			if r.str("msg") == "plugin output" && r.str("stream") == "stdout" && r.str("line") == "hello from stdout" {
				seen = true
			}
		}
		if seen {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the provider's stdout did not reach the host's log through GRPCStdio:\n%s", logs)
			break
		}
	}
}
