// Package imaptest runs an in-process IMAP server (go-imap's imapserver with imapmemserver) on a
// loopback port for tests, with implicit TLS or plaintext, users with passwords, and counters of
// what clients asked for.
package imaptest

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
)

// Server is a running test IMAP server.
type Server struct {
	Host string
	Port int

	mem   *imapmemserver.Server
	srv   *imapserver.Server
	ln    net.Listener
	opts  Options
	mu    sync.Mutex
	users map[string]*imapmemserver.User
	// unreadable are UIDs whose body the server cannot read.
	unreadable map[uint32]bool
	// refuseCopy, when set, is the text of a NO [OVERQUOTA] for every COPY and MOVE.
	refuseCopy string
	// commands counts the commands clients sent, by name ("IDLE", "UID SEARCH", "DONE").
	commands map[string]int64

	// BodyFetches counts FETCH commands that asked for a body section; BodiesAsked counts the
	// UIDs they named (explicit UID sets only).
	BodyFetches, BodiesAsked atomic.Int64
	// Logins counts successful logins; FailedLogins refused ones; TokenLogins successful
	// XOAUTH2/OAUTHBEARER logins.
	Logins, FailedLogins, TokenLogins atomic.Int64
}

// Options configure Start.
type Options struct {
	// TLS, when set, makes the listener implicit TLS.
	TLS *tls.Config
	// ValidateToken, when set, enables SASL XOAUTH2 and OAUTHBEARER: it says whether an access
	// token is valid for a user (e.g. the fake identity platform's Valid).
	ValidateToken func(token, user string) bool
	// NoMove, NoUIDPlus and NoIdle leave MOVE, UIDPLUS and IDLE out of the capabilities, as
	// Courier (no MOVE) and older servers do.
	NoMove, NoUIDPlus, NoIdle bool
	// InboxNamespace puts the personal namespace under "INBOX/" as Courier and Cyrus do under
	// "INBOX.": NAMESPACE answers (("INBOX/" "/")) and CREATE outside it is refused.
	InboxNamespace bool
	// LoginDelay holds the answer to every password login (LOGIN, AUTHENTICATE PLAIN) this
	// long, as a slow directory behind a server does: a connection test is seen mid-way.
	LoginDelay time.Duration
}

// Start starts a server that stops when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// Listen starts a server on addr outside a test (the benchmarks' separate server process).
func Listen(addr string, opts Options) (*Server, error) {
	s := &Server{mem: imapmemserver.New(), users: map[string]*imapmemserver.User{}, opts: opts, commands: map[string]int64{}}
	if err := s.listen(addr); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) listen(addr string) error {
	caps := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapMove: {}, imap.CapUIDPlus: {}, imap.CapNamespace: {}}
	if s.opts.NoMove {
		delete(caps, imap.CapMove)
	}
	if s.opts.NoUIDPlus {
		delete(caps, imap.CapUIDPlus)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &session{srv: s}, nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
		Logger:       discardLogger{},
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if s.opts.TLS != nil {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	ln = &tapListener{Listener: ln, srv: s}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	s.mu.Lock()
	s.srv, s.ln = srv, ln
	s.Host = host
	s.Port, _ = strconv.Atoi(port)
	s.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

// Stop stops the server and drops every connection; the mail stays for Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	srv.Close()
}

// Restart serves again on the same port with the same mail.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	var err error
	for range 50 {
		if err = s.listen(addr); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal(err)
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// AddUser adds a user with an INBOX.
func (s *Server) AddUser(t testing.TB, username, password string) {
	t.Helper()
	if err := s.Add(username, password); err != nil {
		t.Fatal(err)
	}
}

// Add adds a user with an INBOX (AddUser outside a test).
func (s *Server) Add(username, password string) error {
	u := imapmemserver.NewUser(username, password)
	if err := u.Create("INBOX", nil); err != nil {
		return err
	}
	s.mem.AddUser(u)
	s.mu.Lock()
	s.users[username] = u
	s.mu.Unlock()
	return nil
}

func (s *Server) user(t testing.TB, username string) *imapmemserver.User {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[username]
	if !ok {
		t.Fatalf("no user %q", username)
	}
	return u
}

// Append adds a message to a user's folder and returns its UID.
func (s *Server) Append(t testing.TB, username, folder string, raw []byte, flags ...imap.Flag) uint32 {
	t.Helper()
	s.user(t, username)
	uid, err := s.AppendTo(username, folder, raw, flags...)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

// AppendTo is Append outside a test.
func (s *Server) AppendTo(username, folder string, raw []byte, flags ...imap.Flag) (uint32, error) {
	s.mu.Lock()
	u := s.users[username]
	s.mu.Unlock()
	if u == nil {
		return 0, fmt.Errorf("no user %q", username)
	}
	data, err := u.Append(folder, &literal{Reader: bytes.NewReader(raw), n: int64(len(raw))}, &imap.AppendOptions{Flags: flags, Time: time.Now()})
	if err != nil {
		return 0, err
	}
	return uint32(data.UID), nil
}

// MakeUnreadable makes the server fail every FETCH of these UIDs' bodies with NO, as a server
// does with a damaged message file (the other messages of the command are still sent).
func (s *Server) MakeUnreadable(uids ...uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unreadable == nil {
		s.unreadable = map[uint32]bool{}
	}
	for _, u := range uids {
		s.unreadable[u] = true
	}
}

func (s *Server) isUnreadable(uid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unreadable[uid]
}

// CreateFolder creates a folder.
func (s *Server) CreateFolder(t testing.TB, username, folder string) {
	t.Helper()
	if err := s.user(t, username).Create(folder, nil); err != nil {
		t.Fatal(err)
	}
}

// DeleteFolder deletes a folder (recreating it changes its UIDVALIDITY).
func (s *Server) DeleteFolder(t testing.TB, username, folder string) {
	t.Helper()
	if err := s.user(t, username).Delete(folder); err != nil {
		t.Fatal(err)
	}
}

// Status returns a folder's message count and unseen count.
func (s *Server) Status(t testing.TB, username, folder string) (messages, unseen uint32) {
	t.Helper()
	st, err := s.user(t, username).Status(folder, &imap.StatusOptions{NumMessages: true, NumUnseen: true})
	if err != nil {
		t.Fatal(err)
	}
	return *st.NumMessages, *st.NumUnseen
}

// RefuseCopies makes every COPY and MOVE fail with NO [OVERQUOTA] text ("" serves them again).
func (s *Server) RefuseCopies(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuseCopy = text
}

func (s *Server) copyRefusal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuseCopy == "" {
		return nil
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: s.refuseCopy}
}

// Deleted returns how many messages of a user's folder are flagged \Deleted.
func (s *Server) Deleted(t testing.TB, username, folder string) uint32 {
	t.Helper()
	st, err := s.user(t, username).Status(folder, &imap.StatusOptions{NumDeleted: true})
	if err != nil {
		t.Fatal(err)
	}
	return *st.NumDeleted
}

// Commands returns how many commands clients sent with this name ("IDLE", "UID SEARCH",
// "NOOP"; "DONE" counts the ends of IDLE).
func (s *Server) Commands(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands[strings.ToUpper(name)]
}

// CommandTotal returns how many commands clients sent in all (each DONE counted too).
func (s *Server) CommandTotal() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, c := range s.commands {
		n += c
	}
	return n
}

func (s *Server) count(line string) {
	name := CommandName(line)
	if name == "" {
		return
	}
	s.mu.Lock()
	s.commands[name]++
	s.mu.Unlock()
}

// CommandName names the command a client's line sends: "IDLE", "UID FETCH", "DONE"; a SASL
// response (one token) is "(continuation)", so a test never logs it as it is; "" for a blank
// line. Tests that count commands at a real server (through a proxy) use it too.
func CommandName(line string) string {
	f := strings.Fields(line)
	switch {
	case len(f) == 1 && strings.EqualFold(f[0], "DONE"):
		return "DONE"
	case len(f) == 1:
		return "(continuation)"
	case len(f) >= 3 && strings.EqualFold(f[1], "UID"):
		return "UID " + strings.ToUpper(f[2])
	case len(f) >= 2:
		return strings.ToUpper(f[1])
	}
	return ""
}

// tapListener hands out connections that count the client's commands and, with NoIdle, hide
// IDLE from the capabilities the server announces.
type tapListener struct {
	net.Listener
	srv *Server
}

func (l *tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tapConn{Conn: c, srv: l.srv}, nil
}

type tapConn struct {
	net.Conn
	srv  *Server
	line []byte // the start of the client's current line
	n    int    // its length so far
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	for _, b := range p[:n] {
		if b == '\n' {
			c.srv.count(string(c.line))
			c.line, c.n = c.line[:0], 0
			continue
		}
		if c.n < 64 {
			c.line = append(c.line, b)
		}
		c.n++
	}
	return n, err
}

func (c *tapConn) Write(p []byte) (int, error) {
	if c.srv.opts.NoIdle && bytes.Contains(p, []byte("CAPABILITY")) {
		q := bytes.ReplaceAll(p, []byte(" IDLE"), nil)
		if _, err := c.Conn.Write(q); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

type literal struct {
	*bytes.Reader
	n int64
}

func (l *literal) Size() int64 { return l.n }

// session wraps imapmemserver's session to count what clients do.
type session struct {
	*imapmemserver.UserSession
	srv *Server
}

func (s *session) Close() error {
	if s.UserSession == nil {
		return nil
	}
	return s.UserSession.Close()
}

func (s *session) Login(username, password string) error {
	time.Sleep(s.srv.opts.LoginDelay)
	s.srv.mu.Lock()
	u := s.srv.users[username]
	s.srv.mu.Unlock()
	if u == nil || u.Login(username, password) != nil {
		s.srv.FailedLogins.Add(1)
		return imapserver.ErrAuthFailed
	}
	s.srv.Logins.Add(1)
	s.UserSession = imapmemserver.NewUserSession(u)
	return nil
}

// Idle reports the updates queued before the IDLE command first, as real servers (Dovecot) do:
// go-imap's SessionTracker.Idle only reports updates that arrive while idling, so mail appended
// between a client's last command and its IDLE would otherwise wait for the next update.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.UserSession == nil {
		return nil
	}
	if err := s.UserSession.Poll(w, true); err != nil {
		return err
	}
	return s.UserSession.Idle(w, stop)
}

// Namespace puts the personal namespace under "INBOX/" with Options.InboxNamespace.
func (s *session) Namespace() (*imap.NamespaceData, error) {
	if s.srv.opts.InboxNamespace {
		return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "INBOX/", Delim: '/'}}}, nil
	}
	return s.UserSession.Namespace()
}

// Create refuses folders outside "INBOX/" with Options.InboxNamespace, as Courier does.
func (s *session) Create(name string, options *imap.CreateOptions) error {
	if s.srv.opts.InboxNamespace && !strings.HasPrefix(strings.ToUpper(name), "INBOX/") {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid mailbox name."}
	}
	return s.UserSession.Create(name, options)
}

// Copy fails as RefuseCopies says.
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	if err := s.srv.copyRefusal(); err != nil {
		return nil, err
	}
	return s.UserSession.Copy(numSet, dest)
}

// Move fails as RefuseCopies says.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if err := s.srv.copyRefusal(); err != nil {
		return err
	}
	return s.UserSession.Move(w, numSet, dest)
}

func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	if len(options.BodySection) == 0 {
		return s.UserSession.Fetch(w, numSet, options)
	}
	s.srv.BodyFetches.Add(1)
	// As Dovecot does with a damaged mail file: the other messages are sent, then the command
	// fails.
	set, ok := numSet.(imap.UIDSet)
	if !ok {
		return s.UserSession.Fetch(w, numSet, options)
	}
	var readable imap.UIDSet
	failed := false
	for _, r := range set {
		if r.Stop == 0 || r.Stop < r.Start || r.Stop-r.Start > 100000 {
			readable = append(readable, r) // open or huge ranges are served as they are
			continue
		}
		s.srv.BodiesAsked.Add(int64(r.Stop-r.Start) + 1)
		for u := r.Start; u <= r.Stop; u++ {
			if s.srv.isUnreadable(uint32(u)) {
				failed = true
			} else {
				readable.AddNum(u)
			}
		}
	}
	if len(readable) > 0 {
		if err := s.UserSession.Fetch(w, readable, options); err != nil {
			return err
		}
	}
	if failed {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Internal error occurred. Refer to server log for more information."}
	}
	return nil
}

// AuthenticateMechanisms implements imapserver.SessionSASL.
func (s *session) AuthenticateMechanisms() []string {
	if s.srv.opts.ValidateToken != nil {
		return []string{"PLAIN", "XOAUTH2", "OAUTHBEARER"}
	}
	return []string{"PLAIN"}
}

// Authenticate implements imapserver.SessionSASL.
func (s *session) Authenticate(mech string) (sasl.Server, error) {
	switch mech {
	case "PLAIN":
		return sasl.NewPlainServer(func(_, username, password string) error { return s.Login(username, password) }), nil
	case "XOAUTH2":
		if s.srv.opts.ValidateToken != nil {
			return &xoauth2Server{sess: s}, nil
		}
	case "OAUTHBEARER":
		if s.srv.opts.ValidateToken != nil {
			return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
				if !s.tokenLogin(o.Username, o.Token) {
					return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
				}
				return nil
			}), nil
		}
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "unsupported mechanism"}
}

func (s *session) tokenLogin(user, token string) bool {
	s.srv.mu.Lock()
	u := s.srv.users[user]
	s.srv.mu.Unlock()
	if u == nil || !s.srv.opts.ValidateToken(token, user) {
		s.srv.FailedLogins.Add(1)
		return false
	}
	s.srv.TokenLogins.Add(1)
	s.UserSession = imapmemserver.NewUserSession(u)
	return true
}

// xoauth2Server is the server side of XOAUTH2 as Gmail and Dovecot implement it: a bad token gets
// a JSON error challenge, the client answers it with an empty response, then the login fails.
type xoauth2Server struct {
	sess   *session
	failed bool
}

func (x *xoauth2Server) Next(response []byte) ([]byte, bool, error) {
	if x.failed {
		return nil, true, imapserver.ErrAuthFailed
	}
	if response == nil {
		return []byte{}, false, nil
	}
	var user, token string
	for _, kv := range strings.Split(string(response), "\x01") {
		switch {
		case strings.HasPrefix(kv, "user="):
			user = strings.TrimPrefix(kv, "user=")
		case strings.HasPrefix(kv, "auth=Bearer "):
			token = strings.TrimPrefix(kv, "auth=Bearer ")
		}
	}
	if !x.sess.tokenLogin(user, token) {
		x.failed = true
		return []byte(`{"status":"401","schemes":"bearer","scope":"mail"}`), false, nil
	}
	return nil, true, nil
}
