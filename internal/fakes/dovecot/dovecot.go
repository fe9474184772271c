// Package dovecot starts a private Dovecot 2.3 IMAP server for interop tests: all state in a
// temporary directory, loopback ports only, passwd-file users, a certificate from a test CA. The
// tests fail (they do not skip) when Dovecot is not installed: `.ci/run` installs it.
//
// Options add Dovecot's POP3 service (dovecot-pop3d: POP3Port with STLS, POP3SPort with implicit
// TLS) and its submission service (dovecot-submissiond: SubmissionPort with STARTTLS,
// SubmissionSPort with implicit TLS), which relays what it accepts to an in-process go-smtp sink
// (internal/fakes/smtptest) the test reads with Sink. Both log in through the same passdbs as
// IMAP: the passwd-file users and, with IntrospectionURL, the oauth2 passdb (XOAUTH2,
// OAUTHBEARER).
package dovecot

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/smtptest"
	"github.com/mailintake/mailintake/internal/testutil"
)

// Server is a running Dovecot.
type Server struct {
	Dir       string
	IMAPPort  int // plaintext / STARTTLS
	IMAPSPort int // implicit TLS
	// POP3Port (plaintext / STLS) and POP3SPort (implicit TLS) are set with Options.POP3.
	POP3Port, POP3SPort int
	// SubmissionPort (plaintext / STARTTLS) and SubmissionSPort (implicit TLS) are set with
	// Options.Submission.
	SubmissionPort, SubmissionSPort int
	CA                              *testutil.CA
	conf                            string
	cmd                             *exec.Cmd
	sink                            *smtptest.Server
	t                               testing.TB
}

// freePort is testutil.FreePort.
var freePort = testutil.FreePort

// Start starts Dovecot with users (name → password). It stops when the test ends.
func Start(t testing.TB, users map[string]string) *Server {
	t.Helper()
	return StartWith(t, Options{Users: users})
}

// Options configure StartWith.
type Options struct {
	// Users maps user names to passwords (PLAIN and LOGIN).
	Users map[string]string
	// IntrospectionURL, when set, adds Dovecot's oauth2 passdb: XOAUTH2 and OAUTHBEARER tokens are
	// validated by RFC 7662 introspection at this URL (the fake identity platform's /introspect).
	IntrospectionURL string
	// POP3 adds the POP3 service (package dovecot-pop3d): STLS on POP3Port, implicit TLS on
	// POP3SPort, the same users, mail and passdbs as IMAP.
	POP3 bool
	// POP3LockSession keeps a POP3 session's maildrop locked from its login to its end
	// (pop3_lock_session, off by default in Dovecot), as RFC 1939 has it: a second session of
	// the same user waits for the lock after its login (10 s in Dovecot 2.3, not configurable),
	// then is refused -ERR [IN-USE], and Dovecot logs "Couldn't lock POP3 session".
	POP3LockSession bool
	// Submission adds the submission service (package dovecot-submissiond): STARTTLS on
	// SubmissionPort, implicit TLS on SubmissionSPort, AUTH PLAIN and LOGIN for the users and
	// XOAUTH2 and OAUTHBEARER through the oauth2 passdb. It relays every message it accepts,
	// without auth or TLS, to an in-process sink (Sink) that accepts everything.
	Submission bool
	// SinkDSN makes the sink offer DSN (RFC 3461) and Dovecot's submission service offer it to
	// its clients and pass NOTIFY, RET and ENVID on (Dovecot 2.3 offers DSN only when
	// submission_backend_capabilities names it; without, it offers none).
	SinkDSN bool
}

// StartWith starts Dovecot with options. It stops when the test ends.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	users := opts.Users
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		for _, p := range []string{"/usr/sbin/dovecot", "/usr/local/sbin/dovecot"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		t.Fatalf("dovecot is not installed (apt-get install dovecot-imapd): the interop suite needs it")
	}
	// Dovecot's auth and mail processes run as other users: every directory on the path must
	// be traversable, which rules out the test's own temp dir under some homes.
	dir, err := os.MkdirTemp("/tmp", "mailintake-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })

	s := &Server{Dir: dir, IMAPPort: freePort(t), IMAPSPort: freePort(t), CA: testutil.NewCA(t), t: t}
	certPEM, keyPEM := s.CA.IssuePEM(t, "127.0.0.1", "localhost")
	must(t, os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600))
	var passwd, userdb strings.Builder
	for u, pw := range users {
		home := filepath.Join(dir, "home", u)
		must(t, os.MkdirAll(home, 0o755))
		must(t, os.Chown(home, 65534, 65534))
		fmt.Fprintf(&passwd, "%s:{PLAIN}%s\n", strings.ToLower(u), pw)
		fmt.Fprintf(&userdb, "%s::65534:65534::%s::\n", strings.ToLower(u), home)
	}
	must(t, os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd.String()), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "users"), []byte(userdb.String()), 0o644))
	for _, sub := range []string{"run", "state"} {
		must(t, os.MkdirAll(filepath.Join(dir, sub), 0o755))
	}
	s.conf = filepath.Join(dir, "dovecot.conf")
	protocols, services := "imap", ""
	if opts.POP3 {
		s.POP3Port, s.POP3SPort = freePort(t), freePort(t)
		protocols += " pop3"
		services += fmt.Sprintf(`service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %d
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = %d
    ssl = yes
  }
}
protocol pop3 {
  mail_max_userip_connections = 50
  pop3_lock_session = %s
}
`, s.POP3Port, s.POP3SPort, yesNo(opts.POP3LockSession))
	}
	if opts.Submission {
		s.SubmissionPort, s.SubmissionSPort = freePort(t), freePort(t)
		backendCaps := ""
		if opts.SinkDSN {
			backendCaps = "submission_backend_capabilities = 8BITMIME DSN\n"
		}
		s.sink = smtptest.Start(t, smtptest.Options{NoAuthRequired: true, DSN: opts.SinkDSN, Domain: "sink.invalid"})
		protocols += " submission"
		services += fmt.Sprintf(`service submission-login {
  inet_listener submission {
    address = 127.0.0.1
    port = %d
  }
  inet_listener submissions {
    address = 127.0.0.1
    port = %d
    ssl = yes
  }
}
hostname = dovecot.invalid
submission_relay_host = %s
submission_relay_port = %d
submission_relay_ssl = no
submission_relay_trusted = no
%s`, s.SubmissionPort, s.SubmissionSPort, s.sink.Host, s.sink.Port, backendCaps)
	}
	mechs, oauthPassdb := "plain login", ""
	if opts.IntrospectionURL != "" {
		mechs = "plain login xoauth2 oauthbearer"
		oauthPassdb = fmt.Sprintf("passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = %s/oauth2.conf.ext\n}\n", dir)
		ext := fmt.Sprintf(`introspection_mode = post
introspection_url = %s
username_attribute = username
username_format = %%Lu
active_attribute = active
active_value = true
send_auth_headers = yes
timeout_msecs = 5000
`, opts.IntrospectionURL)
		must(t, os.WriteFile(filepath.Join(dir, "oauth2.conf.ext"), []byte(ext), 0o644))
	}
	conf := fmt.Sprintf(`instance_name = mailintake-%d
base_dir = %[2]s/run
state_dir = %[2]s/state
log_path = %[2]s/dovecot.log
protocols = %[7]s
listen = 127.0.0.1
ssl = yes
ssl_cert = <%[2]s/cert.pem
ssl_key = <%[2]s/key.pem
disable_plaintext_auth = no
auth_mechanisms = %[5]s
auth_username_format = %%Lu
auth_failure_delay = 0
auth_cache_size = 0
mail_location = maildir:~/Maildir
# The folder a Sent copy finds by SPECIAL-USE (RFC 6154), once created.
namespace inbox {
  inbox = yes
  mailbox "Sent Messages" {
    special_use = \Sent
  }
}
passdb {
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%%Lu %[2]s/passwd
}
%[6]s
userdb {
  driver = passwd-file
  args = username_format=%%Lu %[2]s/users
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[3]d
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = %[4]d
    ssl = yes
  }
  # Each TLS session keeps a login process: make bench holds 200 mailboxes at once.
  process_limit = 512
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
protocol imap {
  mail_max_userip_connections = 200
}
%[8]s`, time.Now().UnixNano(), dir, s.IMAPPort, s.IMAPSPort, mechs, oauthPassdb, protocols, services)
	must(t, os.WriteFile(s.conf, []byte(conf), 0o644))
	s.start(bin)
	t.Cleanup(s.Stop)
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (s *Server) start(bin string) {
	s.t.Helper()
	s.cmd = exec.Command(bin, "-F", "-c", s.conf)
	var out bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting dovecot: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.IMAPPort)))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.Dir, "dovecot.log"))
			s.t.Fatalf("dovecot did not start: %v\n%s\n%s", err, out.String(), log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Sink returns the in-process SMTP server the submission service relays to (nil without
// Options.Submission): its Accepted or WaitAccepted are the messages Dovecot passed on, with
// their envelopes.
func (s *Server) Sink() *smtptest.Server { return s.sink }

// Stop stops Dovecot (every connection drops).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	exec.Command("doveadm", "-c", s.conf, "stop").Run()
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// Restart starts Dovecot again after Stop, with the same mail.
func (s *Server) Restart() {
	s.t.Helper()
	bin, _ := exec.LookPath("dovecot")
	if bin == "" {
		bin = "/usr/sbin/dovecot"
	}
	s.start(bin)
}

// Doveadm runs doveadm against this instance.
func (s *Server) Doveadm(stdin []byte, args ...string) (string, error) {
	cmd := exec.Command("doveadm", append([]string{"-c", s.conf}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Deliver saves a message into a user's folder.
func (s *Server) Deliver(t testing.TB, user, folder string, raw []byte) {
	t.Helper()
	if out, err := s.Doveadm(raw, "save", "-u", user, "-m", folder); err != nil {
		t.Fatalf("doveadm save: %v: %s", err, out)
	}
}

// Status returns a folder's message and unseen counts.
func (s *Server) Status(t testing.TB, user, folder string) (messages, unseen int) {
	t.Helper()
	out, err := s.Doveadm(nil, "-f", "flow", "mailbox", "status", "-u", user, "messages unseen", folder)
	if err != nil {
		t.Fatalf("doveadm mailbox status: %v: %s", err, out)
	}
	for _, f := range strings.Fields(out) {
		k, v, _ := strings.Cut(f, "=")
		n, _ := strconv.Atoi(v)
		switch k {
		case "messages":
			messages = n
		case "unseen":
			unseen = n
		}
	}
	return messages, unseen
}

// CACertFile writes the CA that signed Dovecot's certificate and returns its path.
func (s *Server) CACertFile(t testing.TB) string { return s.CA.CAFile(t) }

// deliverySeq makes Maildir file names unique within the process.
var deliverySeq atomic.Int64

// DeliverMany drops messages into a user's INBOX as Maildir files (Dovecot's own delivery
// format), much faster than one doveadm call each; Dovecot assigns their UIDs when a client
// next looks (not necessarily in the slice's order).
func (s *Server) DeliverMany(t testing.TB, user string, raws [][]byte) {
	t.Helper()
	maildir := filepath.Join(s.Dir, "home", strings.ToLower(user), "Maildir")
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		must(t, os.MkdirAll(filepath.Join(maildir, sub), 0o700))
		must(t, os.Chown(filepath.Join(maildir, sub), 65534, 65534))
	}
	for _, raw := range raws {
		name := fmt.Sprintf("%d.M%dP%d.mailintake", time.Now().Unix(), deliverySeq.Add(1), os.Getpid())
		tmp := filepath.Join(maildir, "tmp", name)
		must(t, os.WriteFile(tmp, raw, 0o600))
		must(t, os.Chown(tmp, 65534, 65534))
		must(t, os.Rename(tmp, filepath.Join(maildir, "new", name)))
	}
}

// RecreateFolder deletes a user's folder and creates it again empty: its UIDVALIDITY changes.
func (s *Server) RecreateFolder(t testing.TB, user, folder string) {
	t.Helper()
	if out, err := s.Doveadm(nil, "mailbox", "delete", "-u", user, folder); err != nil {
		t.Fatalf("doveadm mailbox delete: %v: %s", err, out)
	}
	if out, err := s.Doveadm(nil, "mailbox", "create", "-u", user, folder); err != nil {
		t.Fatalf("doveadm mailbox create: %v: %s", err, out)
	}
}

// SetUIDValidity gives a user's folder a new UIDVALIDITY (INBOX too, which RecreateFolder
// cannot delete): IMAP clients must forget its UIDs, and POP3 unique-ids, built from the UID and
// the UIDVALIDITY, change for every message in it.
func (s *Server) SetUIDValidity(t testing.TB, user, folder string, uidValidity uint32) {
	t.Helper()
	if out, err := s.Doveadm(nil, "mailbox", "update", "-u", user, "--uid-validity", strconv.FormatUint(uint64(uidValidity), 10), folder); err != nil {
		t.Fatalf("doveadm mailbox update: %v: %s", err, out)
	}
}

// SetPassword changes a user's password (Dovecot rereads its passwd-file when it changes).
func (s *Server) SetPassword(t testing.TB, user, password string) {
	t.Helper()
	path := filepath.Join(s.Dir, "passwd")
	b, err := os.ReadFile(path)
	must(t, err)
	var out strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if name, _, _ := strings.Cut(line, ":"); name == strings.ToLower(user) {
			line = fmt.Sprintf("%s:{PLAIN}%s", name, password)
		}
		out.WriteString(line + "\n")
	}
	must(t, os.WriteFile(path, []byte(out.String()), 0o644))
	future := time.Now().Add(2 * time.Second) // a new mtime even within the same second
	must(t, os.Chtimes(path, future, future))
}

// Log returns Dovecot's log so far ("" when it cannot be read).
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "dovecot.log"))
	return string(b)
}

// AuthFailures counts the failed sign-ins in Dovecot's log so far.
func (s *Server) AuthFailures(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "dovecot.log"))
	must(t, err)
	return strings.Count(string(b), "auth failed")
}
