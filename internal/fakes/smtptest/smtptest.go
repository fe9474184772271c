// Package smtptest runs an in-process SMTP submission server (emersion/go-smtp's server) on a
// loopback port for tests and dev tooling: implicit TLS, STARTTLS or plaintext; AUTH PLAIN and
// LOGIN against users with passwords, XOAUTH2 and OAUTHBEARER against a token check (the fake
// identity platform's Valid); DSN, SMTPUTF8 and SIZE; a record of every message, login and
// byte on the wire; and faults injected at any step: a refusal with a given reply, a cut
// connection, or a stall.
package smtptest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Options configure a server.
type Options struct {
	// TLS is the server's certificate configuration. With ImplicitTLS the listener speaks TLS
	// from the first byte (port 465); without, STARTTLS is offered. Nil: plaintext only.
	TLS         *tls.Config
	ImplicitTLS bool
	// ValidateToken, when set, enables XOAUTH2 and OAUTHBEARER: it says whether an access token
	// is valid for a user (e.g. the fake identity platform's Valid).
	ValidateToken func(token, user string) bool
	// Mechanisms, when set, replaces the offered AUTH mechanisms (by default PLAIN and LOGIN,
	// plus XOAUTH2 and OAUTHBEARER with ValidateToken), e.g. Exchange Online's "LOGIN", "XOAUTH2".
	Mechanisms []string
	// NoAuthRequired accepts mail without a login (a relay sink).
	NoAuthRequired bool
	// InsecureAuth offers AUTH on an unencrypted connection.
	InsecureAuth bool
	// DSN, SMTPUTF8 advertise those extensions.
	DSN, SMTPUTF8 bool
	// MaxMessageBytes is the SIZE limit; 0: no limit announced.
	MaxMessageBytes int64
	// MaxAuthLine, when set, refuses an AUTH command line longer than this (with its initial
	// response) with 500 5.5.2, as Dovecot's submission service does above about 1 KiB.
	MaxAuthLine int
	// Domain is the name in the greeting; empty: "smtptest.invalid".
	Domain string
}

// Server is a running test SMTP server.
type Server struct {
	// Host and Port are where it listens.
	Host string
	Port int

	opts   Options
	srv    *smtp.Server
	ln     net.Listener
	queue  *chanListener
	stop   chan struct{}
	closed sync.Once

	mu       sync.Mutex
	users    map[string]string
	faults   []*Fault
	messages []Message
	auths    []AuthAttempt
	wire     bytes.Buffer
	raw      map[net.Conn]bool // connections not (yet) handed to go-smtp
	nextID   int

	// Connections counts accepted connections.
	Connections atomic.Int64
}

// Message is a message the server received whole (the final dot was read).
type Message struct {
	From        string
	MailOptions smtp.MailOptions
	To          []string
	RcptOptions []smtp.RcptOptions
	Data        []byte
	// User is the login that sent it ("" without one); TLS says the connection was encrypted.
	User string
	TLS  bool
	// Accepted says the server answered 250 (QueueID names it); false when a fault refused it
	// or cut the connection after the final dot.
	Accepted bool
	QueueID  string
}

// AuthAttempt is one AUTH exchange.
type AuthAttempt struct {
	Mechanism string
	User      string
	// InitialResponse says the client sent its response on the AUTH line; LineLength is that
	// line's length without CRLF.
	InitialResponse bool
	LineLength      int
	// ResponseLength is the length of the client's first response, base64-decoded.
	ResponseLength int
	OK             bool
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
		return nil, errors.New("smtptest: ImplicitTLS needs TLS")
	}
	if opts.Domain == "" {
		opts.Domain = "smtptest.invalid"
	}
	s := &Server{opts: opts, users: map[string]string{}, raw: map[net.Conn]bool{}, stop: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = opts.Domain
	srv.MaxLineLength = 64 << 10 // Exchange-sized XOAUTH2 responses; go-smtp's 2,000 is too short
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.AllowInsecureAuth = opts.InsecureAuth
	srv.EnableDSN = opts.DSN
	srv.EnableSMTPUTF8 = opts.SMTPUTF8
	srv.ErrorLog = discardLogger{}
	srv.Debug = writerFunc(func(p []byte) (int, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if room := maxTranscript - s.wire.Len(); room > 0 {
			s.wire.Write(p[:min(len(p), room)])
		}
		return len(p), nil
	})
	if opts.TLS != nil && !opts.ImplicitTLS {
		srv.TLSConfig = opts.TLS
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	s.Host = host
	s.Port, _ = strconv.Atoi(port)
	s.srv, s.ln = srv, ln
	s.queue = &chanListener{addr: ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}
	go s.acceptLoop()
	go srv.Serve(s.queue)
	return s, nil
}

// Addr returns host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Close stops the server, ends every stall and drops every connection.
func (s *Server) Close() {
	s.closed.Do(func() {
		close(s.stop)
		s.ln.Close()
		s.srv.Close()
		s.mu.Lock()
		for c := range s.raw {
			c.Close()
		}
		s.mu.Unlock()
	})
}

// AddUser adds a user that logs in with PLAIN or LOGIN.
func (s *Server) AddUser(user, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[user] = password
}

// Messages returns every message received whole, accepted or not.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Accepted returns the messages the server answered 250 to.
func (s *Server) Accepted() []Message {
	var out []Message
	for _, m := range s.Messages() {
		if m.Accepted {
			out = append(out, m)
		}
	}
	return out
}

// WaitAccepted waits until n messages were accepted, or d passed, and returns them.
func (s *Server) WaitAccepted(n int, d time.Duration) []Message {
	deadline := time.Now().Add(d)
	for {
		if m := s.Accepted(); len(m) >= n || time.Now().After(deadline) {
			return m
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Auths returns every AUTH exchange.
func (s *Server) Auths() []AuthAttempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AuthAttempt(nil), s.auths...)
}

// maxTranscript bounds the transcript: large messages and long runs (benchmarks) keep only its
// start.
const maxTranscript = 1 << 20

// Transcript returns what went over the wire (after TLS), both directions in the order the
// server read and wrote it ("EHLO …\r\n250-…"), its first MiB.
func (s *Server) Transcript() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wire.String()
}

// record keeps a message received whole and returns its index.
func (s *Server) record(m Message) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages = append(s.messages, m)
	return len(s.messages) - 1
}

// markAccepted marks message i accepted and returns its queue id.
func (s *Server) markAccepted(i int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	m := &s.messages[i]
	m.Accepted, m.QueueID = true, fmt.Sprintf("Q%06X", s.nextID)
	return m.QueueID
}

func (s *Server) recordAuth(a AuthAttempt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auths = append(s.auths, a)
}

func (s *Server) password(user string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.users[user]
	return p, ok
}

// stall waits until the server closes or d passes (0: until the server closes).
func (s *Server) stall(d time.Duration) {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-s.stop:
	case <-timeout:
	}
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var _ io.Writer = writerFunc(nil)
