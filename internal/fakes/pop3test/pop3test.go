// Package pop3test runs an in-process POP3 server on a loopback port for tests: plaintext,
// implicit TLS or STLS; USER/PASS and SASL PLAIN and LOGIN against users with passwords,
// XOAUTH2 and OAUTHBEARER against a token check (the fake identity platform's Valid); a
// maildrop per user that tests add messages to and remove them from between sessions, locked
// while a session holds it (a second session gets -ERR [IN-USE]), with DELE applied only on a
// clean QUIT; and faults: duplicate unique-ids (AddWithUID), message numbers that change
// between sessions, sizes that lie, and at any command a refusal, a cut, a stall, an endless
// line, an endless or cut message, a message that is not dot-stuffed, garbage, or data after
// the answer.
//
// It is written by hand (no POP3 server module is served either) and kept close to what
// Dovecot and Exchange Online answer.
package pop3test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Options configure a server.
type Options struct {
	// TLS is the server's certificate configuration. With ImplicitTLS the listener speaks TLS
	// from the first byte (port 995); without, STLS is offered. Nil: plaintext only.
	TLS         *tls.Config
	ImplicitTLS bool
	// InsecureAuth accepts logins before STLS when STLS is offered (a plaintext-only server
	// always accepts them).
	InsecureAuth bool
	// ValidateToken, when set, enables XOAUTH2 and OAUTHBEARER: it says whether an access
	// token is valid for a user (e.g. the fake identity platform's Valid).
	ValidateToken func(token, user string) bool
	// Mechanisms, when not nil, replaces the SASL mechanisms offered (by default PLAIN and
	// LOGIN, plus XOAUTH2 and OAUTHBEARER with ValidateToken); empty: no SASL at all.
	Mechanisms []string
	// NoUSER leaves USER out of CAPA and refuses USER/PASS.
	NoUSER bool
	// NoCAPA answers -ERR to CAPA, as an RFC 1939 server does.
	NoCAPA bool
	// NoUIDL and NoTOP leave those out of CAPA and refuse the commands.
	NoUIDL, NoTOP bool
	// Exchange answers as Exchange Online does: its greeting, its CAPA ("SASL PLAIN
	// XOAUTH2" unless Mechanisms says otherwise), and "-ERR Authentication failure: unknown
	// user name or bad password." to every failed login, with no JSON challenge for XOAUTH2.
	Exchange bool
	// MaxCommandLine refuses longer command lines (CRLF included) with -ERR; zero means 255
	// (RFC 2449). The SASL responses after "+" are not limited.
	MaxCommandLine int
	// RotateEachSession changes message numbers between sessions: the n-th login sees the
	// maildrop rotated by n positions (each message keeps its unique-id).
	RotateEachSession bool
	// ListedSize, when set, replaces the size that STAT, LIST and RETR's +OK announce for a
	// message (a server that lies about sizes).
	ListedSize func(m Message) int64
}

// Server is a running test POP3 server.
type Server struct {
	// Host and Port are where it listens.
	Host string
	Port int

	opts   Options
	ln     net.Listener
	stop   chan struct{}
	closed sync.Once
	wg     sync.WaitGroup

	mu       sync.Mutex
	users    map[string]*user
	faults   []*Fault
	conns    map[net.Conn]bool
	auths    []AuthAttempt
	commands map[string]int64
	logins   int // successful logins, for RotateEachSession
	nextUID  int

	// Connections counts accepted connections; Logins successful logins; FailedLogins
	// refused ones; TokenLogins successful XOAUTH2/OAUTHBEARER logins; Updates clean QUITs
	// after a login (the UPDATE state, where DELE applies).
	Connections, Logins, FailedLogins, TokenLogins, Updates atomic.Int64
}

// user is an account and its maildrop.
type user struct {
	password string
	msgs     []*stored
	locked   bool
}

// stored is a message in a maildrop.
type stored struct {
	uid string
	raw []byte
}

// Message is a message in a maildrop.
type Message struct {
	// UID is its unique-id, as UIDL lists it.
	UID string
	// Raw is the message with CRLF line endings, as the server sends it (before dot-stuffing).
	Raw []byte
}

// AuthAttempt is one login (USER/PASS or AUTH).
type AuthAttempt struct {
	// Mechanism is the SASL mechanism, or "USER" for USER/PASS.
	Mechanism string
	// User is the user name the client gave.
	User string
	// InitialResponse says the client sent its response on the AUTH line; LineLength is the
	// AUTH line's length without CRLF.
	InitialResponse bool
	LineLength      int
	// TLS says the connection was encrypted.
	TLS bool
	OK  bool
}

// Start starts a server on a loopback port that stops when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Listen starts a server on addr outside a test (dev tooling).
func Listen(addr string, opts Options) (*Server, error) {
	if opts.ImplicitTLS && opts.TLS == nil {
		return nil, errors.New("pop3test: ImplicitTLS needs TLS")
	}
	if opts.MaxCommandLine <= 0 {
		opts.MaxCommandLine = 255
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, ln: ln, stop: make(chan struct{}), users: map[string]*user{},
		conns: map[net.Conn]bool{}, commands: map[string]int64{}}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	s.Host = host
	s.Port, _ = strconv.Atoi(port)
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Close stops the server, ends every stall and drops every connection.
func (s *Server) Close() {
	s.closed.Do(func() {
		close(s.stop)
		s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.Connections.Add(1)
		s.mu.Lock()
		select {
		case <-s.stop:
			s.mu.Unlock()
			nc.Close()
			return
		default:
		}
		s.conns[nc] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(nc)
			s.mu.Lock()
			delete(s.conns, nc)
			s.mu.Unlock()
		}()
	}
}

// AddUser adds a user (or changes its password) that logs in with USER/PASS, PLAIN or LOGIN,
// and with a token when ValidateToken accepts it.
func (s *Server) AddUser(name, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[strings.ToLower(name)]; u != nil {
		u.password = password
		return
	}
	s.users[strings.ToLower(name)] = &user{password: password}
}

// Add appends a message to a user's maildrop under a new unique-id, which it returns. Bare LF
// line endings become CRLF, and a final CRLF is added when missing, as a server stores mail.
func (s *Server) Add(name string, raw []byte) string {
	s.mu.Lock()
	s.nextUID++
	uid := "uid-" + strconv.Itoa(s.nextUID)
	s.mu.Unlock()
	s.AddWithUID(name, uid, raw)
	return uid
}

// AddWithUID appends a message under a given unique-id; another message may already carry it
// (a server with duplicate unique-ids). The user must exist.
func (s *Server) AddWithUID(name, uid string, raw []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[strings.ToLower(name)]
	if u == nil {
		panic("pop3test: no user " + name)
	}
	u.msgs = append(u.msgs, &stored{uid: uid, raw: normalize(raw)})
}

// Remove removes the messages with a unique-id from a user's maildrop (another client
// deleting them); it returns how many there were. A session that holds the maildrop keeps
// seeing them until it ends.
func (s *Server) Remove(name, uid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[strings.ToLower(name)]
	if u == nil {
		return 0
	}
	n := 0
	kept := u.msgs[:0]
	for _, m := range u.msgs {
		if m.uid == uid {
			n++
			continue
		}
		kept = append(kept, m)
	}
	clear(u.msgs[len(kept):])
	u.msgs = kept
	return n
}

// Messages returns a user's maildrop, in storage order.
func (s *Server) Messages(name string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[strings.ToLower(name)]
	if u == nil {
		return nil
	}
	out := make([]Message, 0, len(u.msgs))
	for _, m := range u.msgs {
		out = append(out, Message{UID: m.uid, Raw: bytes.Clone(m.raw)})
	}
	return out
}

// Locked reports whether a session holds the user's maildrop.
func (s *Server) Locked(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[strings.ToLower(name)]
	return u != nil && u.locked
}

// AuthAttempts returns every login so far.
func (s *Server) AuthAttempts() []AuthAttempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AuthAttempt(nil), s.auths...)
}

// Commands returns how often clients sent a command ("USER", "RETR").
func (s *Server) Commands(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands[strings.ToUpper(name)]
}

// normalize gives a message CRLF line endings and a final CRLF.
func normalize(raw []byte) []byte {
	out := bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	out = bytes.ReplaceAll(out, []byte("\n"), []byte("\r\n"))
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out
}
