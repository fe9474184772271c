package smtptest

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"time"
)

// chanListener is the listener go-smtp serves: the accept loop hands it the connections that
// got past the greeting's faults (and, with implicit TLS, their handshake).
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

func (s *Server) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.Connections.Add(1)
		go s.handOver(c)
	}
}

// handOver applies a greeting fault, or passes the connection to go-smtp.
func (s *Server) handOver(c net.Conn) {
	s.mu.Lock()
	s.raw[c] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.raw, c)
		s.mu.Unlock()
	}()
	var conn net.Conn = c
	if s.opts.ImplicitTLS {
		tc := tls.Server(c, s.opts.TLS)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return
		}
		tc.SetDeadline(time.Time{})
		conn = tc
	}
	if f := s.fault(StepGreeting, ""); f != nil {
		switch f.Action {
		case Refuse:
			io.WriteString(conn, f.line())
			c.Close()
			return
		case Cut:
			c.Close()
			return
		case Stall:
			s.stall(f.StallFor)
			if s.isClosed() {
				c.Close()
				return
			}
		}
	}
	select {
	case s.queue.conns <- conn:
	case <-s.queue.done:
		c.Close()
	}
}

func (s *Server) isClosed() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}
