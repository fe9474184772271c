// Package mox starts a private mox (github.com/mjl-/mox, pinned at Version) IMAP server for interop
// tests: a third real IMAP server next to Dovecot and Courier, written in Go, IMAP4rev2, with "/"
// as the hierarchy delimiter and an empty personal namespace prefix.
//
// Start runs `mox serve` with a hand-written mox.conf and domains.conf (not localserve): one
// listener on 127.0.0.1 with plaintext IMAP (LOGIN and AUTHENTICATE PLAIN allowed without TLS,
// STARTTLS offered) and implicit-TLS IMAPS, both on free ports, a certificate from a test CA, and
// one mox account per user, named after the user's lower-cased email address, whose only address
// is that email address. Users log in with the full address; their passwords are set through
// mox's control socket (`mox setaccountpassword`) once the server is up. mox requires passwords of
// at least 8 characters. Everything (configuration, account data, the log) lives in a temporary
// directory that is removed when the test ends.
//
// `mox serve` insists on starting as root and handing its listening sockets to an unprivileged
// child; this package plays that root parent itself: it binds the ports and opens the TLS files,
// then passes them to mox the way mox passes them to its child ($MOX_SOCKETS, $MOX_FILES). So it
// works as any user; as root it runs mox as nobody (uid 65534).
//
// mox limits each client IP (here always 127.0.0.1), with no configuration knob, in memory (a
// restart resets the counts): at most 30 concurrent IMAP connections, 300 new connections a
// minute, and 10 failed logins a minute or 50 a day (beyond that, new connections get
// "* BYE too many auth failures"). From a connection's fourth failed login on, mox also waits
// 1s, 2s, … before answering.
//
// The tests fail (they do not skip) when mox is not installed: run .ci/install-mox.
package mox

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/testutil"
)

// Version is the mox release .ci/install-mox installs and this package expects.
const Version = "v0.0.15"

// nobody is the uid and gid mox runs as when the tests run as root.
const nobody = 65534

// Server is a running mox.
type Server struct {
	// Host is the loopback address both ports listen on.
	Host string
	// Port is the plaintext IMAP port: LOGIN and AUTHENTICATE PLAIN work without TLS, and
	// STARTTLS is offered.
	Port int
	// TLSPort is the implicit-TLS (IMAPS) port.
	TLSPort int
	// CA signed the server's certificate (for 127.0.0.1 and localhost).
	CA *testutil.CA
	// Dir holds the server's state: config/ (mox.conf, domains.conf, the certificate), data/
	// (accounts, the control socket) and mox.log.
	Dir string
	// Users maps each user's login (a lower-cased email address, also the mox account name) to
	// its password.
	Users map[string]string

	t       testing.TB
	bin     string
	conf    string
	logFile string
	cred    *syscall.Credential // nil unless the tests run as root

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// InstallDir returns where .ci/install-mox puts the mox binary: $MAILINTAKE_MOX_ROOT, or
// .tools/mox in the repository.
func InstallDir() string {
	if d := os.Getenv("MAILINTAKE_MOX_ROOT"); d != "" {
		return d
	}
	return filepath.Join(testutil.ModuleRoot(), ".tools", "mox")
}

var (
	versionOnce sync.Once
	versionOut  string
	versionErr  error
)

// binary returns the installed mox binary, failing the test when it is missing or is not Version.
func binary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(InstallDir(), "mox")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("mox is not installed (%v): run .ci/install-mox", err)
	}
	versionOnce.Do(func() {
		out, err := exec.Command(bin, "version").CombinedOutput()
		versionOut, versionErr = strings.TrimSpace(string(out)), err
	})
	if versionErr != nil || !strings.HasPrefix(versionOut, Version+"-") {
		t.Fatalf("%s is not mox %s (%q, %v): run .ci/install-mox", bin, Version, versionOut, versionErr)
	}
	return bin
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Start starts mox with users (email address → password, at least 8 characters; addresses are
// case-insensitive). Each user can log in with its full address using LOGIN or AUTHENTICATE
// PLAIN, with or without TLS. The server stops when the test ends.
func Start(t testing.TB, users map[string]string) *Server {
	t.Helper()
	bin := binary(t)

	s := &Server{Host: "127.0.0.1", Users: map[string]string{}, t: t}
	domains := map[string]bool{}
	for u, pw := range users {
		addr := strings.ToLower(u)
		local, domain, ok := strings.Cut(addr, "@")
		if !ok || local == "" || domain == "" || strings.ContainsAny(addr, " \t\r\n") {
			t.Fatalf("mox user %q: users are email addresses (they log in with the full address)", u)
		}
		if len(pw) < 8 || strings.ContainsAny(pw, "\r\n") {
			t.Fatalf("mox user %q: mox requires passwords of at least 8 characters, on one line", u)
		}
		if _, dup := s.Users[addr]; dup {
			t.Fatalf("mox user %q appears twice (addresses are case-insensitive)", u)
		}
		s.Users[addr] = pw
		domains[domain] = true
	}

	// As root, mox runs as nobody, who must be able to reach the directory: use /tmp rather than
	// a temp dir that may be under a private home.
	base := ""
	if os.Geteuid() == 0 {
		base = "/tmp"
		s.cred = &syscall.Credential{Uid: nobody, Gid: nobody}
	}
	dir, err := os.MkdirTemp(base, "mailintake-mox-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	s.Dir = dir
	s.conf = filepath.Join(dir, "config", "mox.conf")
	s.logFile = filepath.Join(dir, "mox.log")
	s.bin = bin
	for _, sub := range []string{"config", "data"} {
		must(t, os.Mkdir(filepath.Join(dir, sub), 0o750))
	}

	// mox makes this key on first start, then tries to give it to group 0, which fails (and is
	// logged as an error) when not root.
	receivedID := make([]byte, 16+8)
	rand.Read(receivedID)
	must(t, os.WriteFile(filepath.Join(dir, "data", "receivedid.key"), receivedID, 0o640))

	s.CA = testutil.NewCA(t)
	certPEM, keyPEM := s.CA.IssuePEM(t, "127.0.0.1", "localhost")
	must(t, os.WriteFile(filepath.Join(dir, "config", "cert.pem"), certPEM, 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "config", "key.pem"), keyPEM, 0o600))

	// Take two free ports now; start binds them again (and hands them to mox).
	s.Port, s.TLSPort = freePort(t), freePort(t)
	for s.TLSPort == s.Port {
		s.TLSPort = freePort(t)
	}

	logLevel := os.Getenv("MAILINTAKE_MOX_LOGLEVEL")
	if logLevel == "" {
		logLevel = "info"
	}
	moxConf := fmt.Sprintf(`DataDir: %[1]s/data
LogLevel: %[2]s
User: %[3]d
NoFixPermissions: true
Hostname: localhost
NoOutgoingDMARCReports: true
NoOutgoingTLSReports: true
Listeners:
	local:
		IPs:
			- 127.0.0.1
		TLS:
			KeyCerts:
				-
					CertFile: cert.pem
					KeyFile: key.pem
		IMAP:
			Enabled: true
			Port: %[4]d
			NoRequireSTARTTLS: true
		IMAPS:
			Enabled: true
			Port: %[5]d
Postmaster:
	Account: mox-postmaster
	Mailbox: Inbox
`, dir, logLevel, s.uid(), s.Port, s.TLSPort)
	must(t, os.WriteFile(s.conf, []byte(moxConf), 0o640))

	if len(domains) == 0 {
		domains["example.com"] = true // mox needs one
	}
	var dc strings.Builder
	dc.WriteString("Domains:\n")
	for _, d := range sortedKeys(domains) {
		fmt.Fprintf(&dc, "\t%s:\n\t\tLocalpartCaseSensitive: false\n", d)
	}
	// The postmaster account (mox requires one) has no address: nobody can log in to it.
	dc.WriteString("Accounts:\n\tmox-postmaster:\n\t\tDomain: localhost\n")
	for _, addr := range sortedKeys(s.Users) {
		_, domain, _ := strings.Cut(addr, "@")
		fmt.Fprintf(&dc, "\t%[1]s:\n\t\tDomain: %[2]s\n\t\tDestinations:\n\t\t\t%[1]s: nil\n", addr, domain)
	}
	must(t, os.WriteFile(filepath.Join(dir, "config", "domains.conf"), []byte(dc.String()), 0o640))

	if s.cred != nil {
		// nobody must be able to run the binary, which may sit under a private home: link (or
		// copy) it into the directory.
		s.bin = filepath.Join(dir, "mox")
		if err := os.Link(bin, s.bin); err != nil {
			must(t, copyFile(bin, s.bin))
		}
		must(t, filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
			if err != nil || p == s.bin {
				return err
			}
			return os.Lchown(p, nobody, nobody)
		}))
		must(t, os.Chmod(dir, 0o755))
	}

	t.Cleanup(s.dumpLogOnFailure)
	t.Cleanup(s.Kill)
	s.start()
	s.setPasswords(t)
	return s
}

// setPasswords sets every user's password, concurrently (each costs mox a bcrypt hash).
func (s *Server) setPasswords(t testing.TB) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]string, len(s.Users))
	for i, addr := range sortedKeys(s.Users) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := s.Mox([]byte(s.Users[addr]+"\n"), "setaccountpassword", addr); err != nil {
				errs[i] = fmt.Sprintf("mox setaccountpassword %s: %v: %s", addr, err, out)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Fatal(e)
		}
	}
}

func (s *Server) uid() int {
	if s.cred != nil {
		return nobody
	}
	return os.Getuid()
}

// freePort is testutil.FreePort.
var freePort = testutil.FreePort

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// listenFile binds a loopback port and returns the socket as a file to pass to mox.
func listenFile(port int) (*os.File, error) {
	var l net.Listener
	var err error
	// A port released by a stopped mox can take a moment to become free again.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		l, err = net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return l.(*net.TCPListener).File()
}

// start runs `mox serve`, handing it the listening sockets and the TLS files as its root parent
// would, and waits until its control socket is up.
func (s *Server) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatalf("mox is already running")
	}
	ctl := filepath.Join(s.Dir, "data", "ctl")
	os.Remove(ctl) // left behind if mox was killed

	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var sockets []string
	for _, port := range []int{s.Port, s.TLSPort} {
		f, err := listenFile(port)
		if err != nil {
			s.t.Fatalf("mox: listening on port %d: %v", port, err)
		}
		files = append(files, f)
		sockets = append(sockets, net.JoinHostPort(s.Host, strconv.Itoa(port)))
	}
	// mox reads the certificate, then the key, each through a passed descriptor.
	tlsFiles := []string{filepath.Join(s.Dir, "config", "cert.pem"), filepath.Join(s.Dir, "config", "key.pem")}
	for _, p := range tlsFiles {
		f, err := os.Open(p)
		must(s.t, err)
		files = append(files, f)
	}

	log, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	must(s.t, err)
	defer log.Close()

	cmd := exec.Command(s.bin, "-config", s.conf, "serve")
	cmd.Dir = s.Dir
	cmd.Env = append(cleanEnv(), "MOX_SOCKETS="+strings.Join(sockets, ","), "MOX_FILES="+strings.Join(tlsFiles, ","))
	cmd.ExtraFiles = files
	cmd.Stdout, cmd.Stderr = log, log
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting mox: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(15 * time.Second)
	for {
		if fi, err := os.Stat(ctl); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return
		}
		select {
		case <-done:
			s.cmd = nil
			s.t.Fatalf("mox exited during startup (%v); its log follows", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("mox did not start within 15s; its log follows")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cleanEnv is the environment without mox's own variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MOX_") && !strings.HasPrefix(kv, "MOXCONF=") {
			env = append(env, kv)
		}
	}
	return env
}

// Stop stops mox gracefully (SIGTERM), as a service manager would. mox's shutdown takes at least
// a second, and about 4 seconds when clients are connected: it refuses new connections with
// "* BYE mox shutting down" at once, but cuts connections waiting for a command only after 3
// seconds (those using NOTIFY get "* BYE shutting down" at once). Kill is the fast alternative.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Kill stops mox at once, as a crash would (SIGKILL): connections drop without a BYE. Mail that
// mox acknowledged survives (it syncs before answering). Much faster than Stop when clients are
// connected.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts mox again after Stop or Kill, on the same ports, with the same mail and
// passwords.
func (s *Server) Restart() {
	s.t.Helper()
	s.start()
}

// Addr is the plaintext IMAP address, host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// TLSAddr is the implicit-TLS IMAP address, host:port.
func (s *Server) TLSAddr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.TLSPort)) }

// TLSConfig returns a client configuration that trusts the server's certificate.
func (s *Server) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(s.CA.Cert)
	return &tls.Config{RootCAs: pool, ServerName: s.Host}
}

// CACertFile writes the CA that signed mox's certificate and returns its path.
func (s *Server) CACertFile(t testing.TB) string { return s.CA.CAFile(t) }

// Mox runs the mox command line against this instance (most commands talk to the running server
// through its control socket) and returns the combined output.
func (s *Server) Mox(stdin []byte, args ...string) (string, error) {
	cmd := exec.Command(s.bin, append([]string{"-config", s.conf}, args...)...)
	cmd.Dir = s.Dir
	cmd.Env = cleanEnv()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// SetPassword changes a user's password (at least 8 characters) on the running server; the user
// must be one of those Start was given.
func (s *Server) SetPassword(t testing.TB, user, password string) {
	t.Helper()
	user = strings.ToLower(user)
	if out, err := s.Mox([]byte(password+"\n"), "setaccountpassword", user); err != nil {
		t.Fatalf("mox setaccountpassword %s: %v: %s", user, err, out)
	}
	s.Users[user] = password
}

// Deliver delivers a message to a user's address as mox delivers incoming mail (into Inbox,
// unless the account's rules say otherwise), without SMTP.
func (s *Server) Deliver(t testing.TB, user string, raw []byte) {
	t.Helper()
	if out, err := s.Mox(raw, "deliver", strings.ToLower(user)); err != nil {
		t.Fatalf("mox deliver %s: %v: %s", user, err, out)
	}
}

// logTail returns the end of mox.log.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logFile)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

func (s *Server) dumpLogOnFailure() {
	if s.t.Failed() {
		s.t.Logf("mox.log (end):\n%s", s.logTail())
	}
}
