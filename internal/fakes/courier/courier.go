// Package courier starts a private Courier-IMAP 5 server for interop tests: a second real IMAP
// server that behaves differently from Dovecot (no MOVE, personal namespace "INBOX." with "."
// as the hierarchy delimiter, IDLE through FAM/Gamin, its own TLS wrapper).
//
// Debian's courier-imap conflicts with dovecot-imapd, so it is never installed: .ci/install-courier
// unpacks its .deb files into ${MAILINTAKE_COURIER_ROOT:-<repo>/.tools/courier}, and Start runs the
// unpacked couriertcpd/imaplogin/imapd/couriertls from there, as root, on free loopback ports, with
// all state (certificate, logs, Maildirs) in a temporary directory. Users are authenticated by this
// package: it answers Courier's authdaemon protocol on a Unix socket in that directory (an
// LD_PRELOAD shim built by the install script points Courier's compiled-in socket path there),
// and every user's mail is a Maildir owned by nobody under Dir/home/<user>/Maildir.
//
// The tests fail (they do not skip) when Courier is not installed: run .ci/install-courier.
package courier

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/testutil"
)

// mailUID and mailGID own the Maildirs: imapd runs as nobody/nogroup after login.
const mailUID, mailGID = 65534, 65534

// Capabilities advertised before and after login (Debian's defaults without the CRAM mechanisms,
// which this package's authenticator does not implement, plus AUTH=PLAIN without TLS). Courier
// appends ACL, ACL2=UNION, STARTTLS (plaintext port only), ENABLE and UTF8=ACCEPT itself.
const capabilities = "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE AUTH=PLAIN"

// Server is a running Courier-IMAP.
type Server struct {
	// Host is the loopback address both ports listen on.
	Host string
	// Port is the plaintext IMAP port; STARTTLS is offered on it.
	Port int
	// TLSPort is the implicit-TLS (IMAPS) port.
	TLSPort int
	// CA signed the server's certificate (for 127.0.0.1 and localhost).
	CA *testutil.CA
	// Dir holds the server's state: its certificate, courier.log, the authdaemon socket and the
	// users' homes (home/<user>/Maildir).
	Dir string

	t        testing.TB
	root     string // unpacked packages (…/unpacked)
	shim     string // LD_PRELOAD shim
	logFile  string
	authSock string
	auth     net.Listener

	mu    sync.Mutex
	users map[string]string // lower-cased name → password
	procs []*process
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// InstallDir returns where .ci/install-courier unpacks Courier:
// $MAILINTAKE_COURIER_ROOT, or .tools/courier in the repository.
func InstallDir() string {
	if d := os.Getenv("MAILINTAKE_COURIER_ROOT"); d != "" {
		return d
	}
	return filepath.Join(testutil.ModuleRoot(), ".tools", "courier")
}

// freePort is testutil.FreePort.
var freePort = testutil.FreePort

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Start starts Courier-IMAP with users (name → password; names are case-insensitive), who can
// sign in with LOGIN or AUTHENTICATE PLAIN, with or without TLS. It stops when the test ends.
func Start(t testing.TB, users map[string]string) *Server {
	t.Helper()
	install := InstallDir()
	root := filepath.Join(install, "unpacked")
	shim := filepath.Join(install, "lib", "mailintake-courier-shim.so")
	for _, p := range []string{
		filepath.Join(install, ".installed"), shim,
		filepath.Join(root, "usr/sbin/couriertcpd"), filepath.Join(root, "usr/bin/imapd"),
	} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("Courier-IMAP is not installed in %s (%v): run .ci/install-courier (as root)", install, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatalf("the Courier-IMAP fake must run as root (imaplogin switches to the mail user)")
	}
	// imapd runs as nobody: every directory on the path to the Maildirs must be traversable,
	// which rules out the test's own temp dir under some homes.
	dir, err := os.MkdirTemp("/tmp", "mailintake-courier-")
	must(t, err)
	must(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { os.RemoveAll(dir) })

	s := &Server{
		Host: "127.0.0.1", Port: freePort(t), TLSPort: freePort(t), CA: testutil.NewCA(t), Dir: dir,
		t: t, root: root, shim: shim, logFile: filepath.Join(dir, "courier.log"),
		authSock: filepath.Join(dir, "authdaemon.sock"), users: map[string]string{},
	}
	// imapd (as nobody) runs from the install: copy it when nobody cannot reach it there.
	if !traversableByOthers(install) {
		s.root = filepath.Join(dir, "courier-root")
		s.shim = filepath.Join(dir, "mailintake-courier-shim.so")
		must(t, copyTree(root, s.root))
		must(t, copyFile(shim, s.shim, 0o755))
	}

	certPEM, keyPEM := s.CA.IssuePEM(t, "127.0.0.1", "localhost")
	pemFile := filepath.Join(dir, "imapd.pem")
	must(t, os.WriteFile(pemFile, append(certPEM, keyPEM...), 0o600))
	// couriertls switches to the "courier" user before reading it: nobody, through the install's
	// shim, unless the host has a real courier user.
	pemUID, pemGID := mailUID, mailGID
	if u, err := user.Lookup("courier"); err == nil {
		pemUID, _ = strconv.Atoi(u.Uid)
		pemGID, _ = strconv.Atoi(u.Gid)
	}
	must(t, os.Chown(pemFile, pemUID, pemGID))

	for u, pw := range users {
		s.addUser(t, u, pw)
	}

	s.auth, err = net.Listen("unix", s.authSock)
	must(t, err)
	must(t, os.Chmod(s.authSock, 0o777))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.serveAuth()
	}()
	t.Cleanup(func() {
		s.auth.Close()
		wg.Wait()
	})

	s.start()
	t.Cleanup(s.Stop)
	return s
}

// Addr returns the plaintext (STARTTLS) address, host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// TLSAddr returns the implicit-TLS address, host:port.
func (s *Server) TLSAddr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.TLSPort)) }

// CACertFile writes the CA that signed Courier's certificate and returns its path.
func (s *Server) CACertFile(t testing.TB) string { return s.CA.CAFile(t) }

// Maildir returns the path of a user's Maildir (INBOX; folder F is the subdirectory ".F").
func (s *Server) Maildir(user string) string {
	return filepath.Join(s.Dir, "home", strings.ToLower(user), "Maildir")
}

// Log returns what Courier has logged so far (connections, logins, errors).
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}

// SetPassword changes a user's password (or adds the user); it applies to the next sign-in.
func (s *Server) SetPassword(t testing.TB, user, password string) {
	t.Helper()
	s.addUser(t, user, password)
}

func (s *Server) addUser(t testing.TB, user, password string) {
	t.Helper()
	user = strings.ToLower(user)
	if user == "" || strings.ContainsAny(user, "/\n\x00") || user == "." || user == ".." {
		t.Fatalf("courier: unusable user name %q", user)
	}
	home := filepath.Join(s.Dir, "home", user)
	must(t, os.MkdirAll(home, 0o755))
	must(t, os.Chown(home, mailUID, mailGID))
	maildir := filepath.Join(home, "Maildir")
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		p := filepath.Join(maildir, sub)
		must(t, os.MkdirAll(p, 0o700))
		must(t, os.Chown(p, mailUID, mailGID))
	}
	s.mu.Lock()
	s.users[user] = password
	s.mu.Unlock()
}

func (s *Server) env() []string {
	libPath := []string{filepath.Join(s.root, "usr/lib")}
	if archDirs, _ := filepath.Glob(filepath.Join(s.root, "usr/lib/*-linux-gnu")); len(archDirs) > 0 {
		libPath = append(libPath, archDirs...)
	}
	return []string{
		"PATH=/usr/bin:/bin",
		"LANG=C",
		// Marks every process of this instance (including gam_server, which detaches) for Stop.
		"MAILINTAKE_COURIER_INSTANCE=" + s.Dir,
		"LD_LIBRARY_PATH=" + strings.Join(libPath, ":"),
		"LD_PRELOAD=" + s.shim,
		"COURIER_AUTHDAEMON_SOCKET=" + s.authSock,
		// Real-time IDLE: imapd watches the Maildir through FAM, served by Gamin's gam_server
		// (spawned on demand, one per GAM_CLIENT_ID).
		"IMAP_ENHANCEDIDLE=1",
		"IMAP_USELOCKS=1",
		"IMAP_IDLE_TIMEOUT=60",
		"GAMIN_DEBUG_SERVER=" + filepath.Join(s.root, "usr/libexec/gam_server"),
		"GAM_CLIENT_ID=" + filepath.Base(s.Dir),
		"IMAP_CAPABILITY=" + capabilities,
		"IMAP_CAPABILITY_TLS=" + capabilities,
		"IMAP_KEYWORDS=1",
		"IMAP_ACL=1",
		"IMAP_PROXY=0",
		"IMAP_MAILBOX_SANITY_CHECK=1",
		"IMAP_DISABLETHREADSORT=0",
		"IMAP_CHECK_ALL_FOLDERS=0",
		"IMAP_OBSOLETE_CLIENT=0",
		"IMAP_TRASHFOLDERNAME=Trash",
		"IMAP_EMPTYTRASH=",
		"IMAP_MOVE_EXPUNGE_TO_TRASH=0",
		"IMAP_SHAREDINDEXFILE=" + filepath.Join(s.Dir, "shared", "index"),
		"IMAP_TLS_REQUIRED=0",
		"COURIERTLS=" + filepath.Join(s.root, "usr/bin/couriertls"),
		"TLS_CERTFILE=" + filepath.Join(s.Dir, "imapd.pem"),
		"TLS_VERIFYPEER=NONE",
	}
}

func (s *Server) start() {
	s.t.Helper()
	log, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	must(s.t, err)
	defer log.Close()
	tcpd := filepath.Join(s.root, "usr/sbin/couriertcpd")
	imaplogin := filepath.Join(s.root, "usr/lib/courier/courier/imaplogin")
	imapd := filepath.Join(s.root, "usr/bin/imapd")
	common := []string{"-address=" + s.Host, "-maxprocs=200", "-maxperip=200", "-nodnslookup", "-noidentlookup"}

	plain := exec.Command(tcpd, append(common, strconv.Itoa(s.Port), imaplogin, imapd, "Maildir")...)
	plain.Env = append(s.env(), "IMAP_STARTTLS=YES")
	imaps := exec.Command(tcpd, append(common, strconv.Itoa(s.TLSPort),
		filepath.Join(s.root, "usr/bin/couriertls"), "-server", "-tcpd", "-user=courier",
		imaplogin, imapd, "Maildir")...)
	imaps.Env = append(s.env(), "IMAP_STARTTLS=NO", "IMAP_TLS=1")

	var started []*process
	for _, cmd := range []*exec.Cmd{plain, imaps} {
		cmd.Dir = s.Dir
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			s.mu.Lock()
			s.procs = started
			s.mu.Unlock()
			s.Stop()
			s.t.Fatalf("starting couriertcpd: %v", err)
		}
		p := &process{cmd: cmd, done: make(chan struct{})}
		go func() { cmd.Wait(); close(p.done) }()
		started = append(started, p)
	}
	s.mu.Lock()
	s.procs = started
	s.mu.Unlock()

	deadline := time.Now().Add(10 * time.Second)
	for _, port := range []int{s.Port, s.TLSPort} {
		for {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(s.Host, strconv.Itoa(port)), time.Second)
			if err == nil {
				c.Close()
				break
			}
			exited := false
			for _, p := range started {
				select {
				case <-p.done:
					exited = true
				default:
				}
			}
			if exited || time.Now().After(deadline) {
				s.Stop()
				s.t.Fatalf("courier did not start on port %d: %v\n%s", port, err, s.Log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Stop stops Courier: every connection drops. The mail stays for Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	for _, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM) // couriertcpd terminates its connections
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	// Whatever is left of this instance: gam_server (it detaches), connections still closing.
	for attempt := 0; attempt < 50; attempt++ {
		pids := s.instancePIDs()
		if len(pids) == 0 {
			return
		}
		sig := syscall.SIGTERM
		if attempt >= 25 {
			sig = syscall.SIGKILL
		}
		for _, pid := range pids {
			syscall.Kill(pid, sig)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// instancePIDs lists the live processes started for this server (they carry its marker).
func (s *Server) instancePIDs() []int {
	marker := []byte("MAILINTAKE_COURIER_INSTANCE=" + s.Dir + "\x00")
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, marker) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			// Zombies (state Z) are already dead; their parent reaps them.
			if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// Restart starts Courier again after Stop, on the same ports, with the same mail.
func (s *Server) Restart() {
	s.t.Helper()
	s.start()
}

// serveAuth answers Courier's authdaemon protocol (what authdaemond does with authuserdb):
// "AUTH <n>\n<service>\nlogin\n<user>\n<password>\n" and "PRE . <service> <user>\n" get the
// account ("UID=…\nGID=…\nHOME=…\nADDRESS=…\n.\n") or "FAIL\n".
func (s *Server) serveAuth() {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := s.auth.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			s.authRequest(bufio.NewReader(c), c)
		}()
	}
}

func (s *Server) authRequest(r *bufio.Reader, w io.Writer) {
	var verb, rest string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		v, arg, _ := strings.Cut(line, " ")
		switch v {
		case "AUTH", "PRE", "PASSWD", "ENUMERATE":
			verb, rest = v, arg
		default:
			continue // metadata such as TCPREMOTEIP=… precedes the request
		}
		break
	}
	switch verb {
	case "AUTH":
		n, err := strconv.Atoi(strings.TrimSpace(rest))
		if err != nil || n < 0 || n > 64<<10 {
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		// service, authentication type, then (for "login", which PLAIN also becomes) user and password.
		parts := strings.SplitN(string(body), "\n", 4)
		if len(parts) == 4 && parts[1] == "login" {
			user, password := strings.ToLower(parts[2]), strings.TrimSuffix(parts[3], "\n")
			s.mu.Lock()
			want, ok := s.users[user]
			s.mu.Unlock()
			if ok && password == want {
				io.WriteString(w, s.account(user))
				return
			}
		}
	case "PRE": // PRE <module> <service> <user>
		if f := strings.Fields(rest); len(f) == 3 {
			user := strings.ToLower(f[2])
			s.mu.Lock()
			_, ok := s.users[user]
			s.mu.Unlock()
			if ok {
				io.WriteString(w, s.account(user))
				return
			}
		}
	case "ENUMERATE":
		io.WriteString(w, ".\n")
		return
	}
	io.WriteString(w, "FAIL\n")
}

func (s *Server) account(user string) string {
	return fmt.Sprintf("UID=%d\nGID=%d\nHOME=%s\nADDRESS=%s\nNAME=%s\n.\n",
		mailUID, mailGID, filepath.Join(s.Dir, "home", user), user, user)
}

// traversableByOthers reports whether every directory from / to dir lets others through.
func traversableByOthers(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for p := abs; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if p == filepath.Dir(p) {
			return true
		}
	}
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return copyFile(path, target, info.Mode().Perm()|0o444)
		default:
			return nil
		}
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}
