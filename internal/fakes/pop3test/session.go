package pop3test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"time"
)

// maxLine bounds a line the server reads (SASL responses are long).
const maxLine = 64 << 10

// session is one connection's state.
type session struct {
	srv *Server
	raw net.Conn // the TCP connection
	nc  net.Conn // raw or TLS over it
	br  *bufio.Reader
	bw  *bufio.Writer
	tls bool

	userName string    // given with USER
	login    string    // the logged-in user's name
	user     *user     // set once logged in, holding the maildrop's lock
	msgs     []*stored // the maildrop as this session sees it: message n is msgs[n-1]
	deleted  map[int]bool

	silent    bool   // a Drop fault: carry out, answer nothing
	trailing  []byte // a Trailing fault's bytes, sent after the next answer
	bodyFault Action // a fault for the next message body (0: none)
}

func (ss *session) setStream(nc net.Conn) {
	ss.nc = nc
	ss.br = bufio.NewReaderSize(nc, maxLine)
	ss.bw = bufio.NewWriter(nc)
}

func (s *Server) serve(nc net.Conn) {
	defer nc.Close()
	ss := &session{srv: s, raw: nc}
	ss.setStream(nc)
	if s.opts.ImplicitTLS {
		tc := tls.Server(nc, s.opts.TLS)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			return
		}
		tc.SetDeadline(time.Time{})
		ss.setStream(tc)
		ss.tls = true
	}
	defer ss.unlock()
	greeting := "+OK POP3 test server ready."
	if s.opts.Exchange {
		greeting = "+OK The Microsoft Exchange POP3 service is ready."
	}
	if f := s.fault("greeting"); f != nil {
		if !ss.strike(f) || ss.silent {
			return
		}
		if f.Action != Refuse && f.Action != Garbage && (!ss.answer(greeting) || !ss.flushTrailing()) {
			return
		}
	} else if !ss.answer(greeting) {
		return
	}
	for {
		line, err := ss.readLine()
		if err != nil {
			return
		}
		cmd, arg, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		s.mu.Lock()
		s.commands[cmd]++
		s.mu.Unlock()
		if len(line)+2 > s.opts.MaxCommandLine {
			if !ss.answer("-ERR Command line too long.") {
				return
			}
			continue
		}
		ss.silent, ss.bodyFault = false, 0
		if f := s.fault(cmd); f != nil {
			if !ss.strike(f) {
				return
			}
			if f.Action == Refuse || f.Action == Garbage {
				continue
			}
		}
		open := ss.dispatch(cmd, arg, line)
		if ss.silent {
			return
		}
		if !open || !ss.flushTrailing() {
			return
		}
	}
}

// strike applies a fault before its command is carried out; false closes the connection.
func (ss *session) strike(f *Fault) bool {
	switch f.Action {
	case Refuse:
		return ss.answer(f.Reply)
	case Cut:
		return false
	case Drop:
		ss.silent = true
	case Stall:
		ss.stall(f.StallFor)
	case EndlessLine:
		ss.bw.WriteString("+OK ")
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for ss.write(chunk) {
		}
		return false
	case EndlessBody, CutMidBody, Unstuffed:
		ss.bodyFault = f.Action
	case Garbage:
		return ss.write([]byte(f.Reply))
	case Trailing:
		ss.trailing = []byte(f.Reply)
	}
	return true
}

// stall waits for d (0: until the connection or the server closes).
func (ss *session) stall(d time.Duration) {
	if d > 0 {
		ss.raw.SetReadDeadline(time.Now().Add(d))
	}
	// Peek returns when the client sends, closes, or the deadline passes; nothing is lost.
	ss.br.Peek(1)
	ss.raw.SetReadDeadline(time.Time{})
}

func (ss *session) readLine() (string, error) {
	b, err := ss.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		ss.answer("-ERR Line too long.")
		return "", err
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// write sends bytes at once; false when the connection is gone.
func (ss *session) write(b []byte) bool {
	if ss.silent {
		return true
	}
	if ss.trailing != nil {
		// in the same write, so that it arrives with the answer
		b = append(b[:len(b):len(b)], ss.trailing...)
		ss.trailing = nil
	}
	if _, err := ss.bw.Write(b); err != nil {
		return false
	}
	return ss.bw.Flush() == nil
}

// answer sends a line.
func (ss *session) answer(line string) bool { return ss.write([]byte(line + "\r\n")) }

// flushTrailing sends a Trailing fault's bytes if no answer took them.
func (ss *session) flushTrailing() bool {
	if ss.trailing == nil {
		return true
	}
	b := ss.trailing
	ss.trailing = nil
	return ss.write(b)
}
