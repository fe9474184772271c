// Package imapscript is a hostile IMAP server for tests: it speaks enough IMAP4rev1 to let a
// client sign in, select INBOX and search, then misbehaves in a chosen way (truncated or huge
// literals, a body larger than the size it announced, wrong UIDs, a flood of unsolicited and
// malformed responses, garbage). It checks that the client survives, not that it succeeds.
package imapscript

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Mode is how the server misbehaves.
type Mode string

// Modes.
const (
	// TruncatedLiteral announces a 5,000-byte body literal, sends 100 bytes and hangs up.
	TruncatedLiteral Mode = "truncated-literal"
	// HugeLiteral announces a 2 GB body literal and streams bytes until the client hangs up.
	HugeLiteral Mode = "huge-literal"
	// LyingSize announces RFC822.SIZE 100 and sends a 64 MiB body.
	LyingSize Mode = "lying-size"
	// LateUID is LyingSize with the UID sent after the body, so a client fetching several
	// messages at once cannot tell which one the oversized body belongs to.
	LateUID Mode = "late-uid"
	// WrongUIDs answers every FETCH with UIDs the client did not ask for.
	WrongUIDs Mode = "wrong-uids"
	// Unsolicited sends a burst of unsolicited and malformed untagged responses before every
	// tagged answer.
	Unsolicited Mode = "unsolicited"
	// Garbage answers every command after the sign-in with binary garbage.
	Garbage Mode = "garbage"
)

// Modes lists every mode.
var Modes = []Mode{TruncatedLiteral, HugeLiteral, LyingSize, LateUID, WrongUIDs, Unsolicited, Garbage}

// Server is a running hostile server.
type Server struct {
	Host string
	Port int
	Mode Mode
	ln   net.Listener
	mu   sync.Mutex
	sent int64 // body bytes sent, all connections
}

// Start starts a server in a mode; it stops when the test ends.
func Start(t testing.TB, mode Mode) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, Mode: mode, ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

// BodyBytesSent returns how many body bytes the server has sent.
func (s *Server) BodyBytesSent() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

func (s *Server) count(n int) {
	s.mu.Lock()
	s.sent += int64(n)
	s.mu.Unlock()
}

const message = "From: a@example.com\r\nSubject: hostile\r\n\r\nbody\r\n"

// unsolicited is a burst of untagged responses a client must survive.
var unsolicited = []string{
	"* 4294967295 EXISTS",
	"* 0 RECENT",
	"* 99999 EXPUNGE",
	"* 0 EXPUNGE",
	"* 7 FETCH (FLAGS (\\Seen \\Bogus))",
	"* 0 FETCH (UID 0)",
	"* OK [UIDVALIDITY 0] zero",
	"* OK [UIDNEXT 4294967295] max",
	"* SEARCH 0 -1 abc",
	"* LIST () NIL",
	"* FLAGS (",
	"* )))((( garbage",
	"* STATUS INBOX (MESSAGES -5)",
	"* CAPABILITY",
	"* NO [ALERT] the server is being hostile",
	"* 1 FETCH (BODY[] {3}\r\nabc UID 1)",
	"* " + strings.Repeat("A", 100000),
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	say := func(line string) bool {
		w.WriteString(line + "\r\n")
		return w.Flush() == nil
	}
	if !say("* OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS MOVE AUTH=PLAIN] hostile server ready") {
		return
	}
	signedIn := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		tag, rest, _ := strings.Cut(line, " ")
		cmd, args, _ := strings.Cut(rest, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "UID" {
			sub, a, _ := strings.Cut(args, " ")
			cmd, args = "UID "+strings.ToUpper(sub), a
		}
		if signedIn && s.Mode == Unsolicited {
			for _, u := range unsolicited {
				if !say(u) {
					return
				}
			}
		}
		if signedIn && s.Mode == Garbage && cmd != "LOGOUT" {
			junk := make([]byte, 4096)
			for i := range junk {
				junk[i] = byte(i*7 + 3)
			}
			w.Write(junk)
			w.Flush()
			continue
		}
		switch cmd {
		case "CAPABILITY":
			say("* CAPABILITY IMAP4rev1 IDLE UIDPLUS MOVE AUTH=PLAIN")
			say(tag + " OK CAPABILITY done")
		case "LOGIN":
			signedIn = true
			say(tag + " OK LOGIN done")
		case "AUTHENTICATE":
			if !strings.Contains(args, " ") { // the initial response comes on its own line
				say("+ ")
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
			}
			signedIn = true
			say(tag + " OK AUTHENTICATE done")
		case "ENABLE", "ID", "NOOP", "CHECK":
			say(tag + " OK done")
		case "LIST":
			say(`* LIST () "/" INBOX`)
			say(tag + " OK LIST done")
		case "SELECT", "EXAMINE":
			say("* 3 EXISTS")
			say("* 0 RECENT")
			say("* FLAGS (\\Seen \\Deleted)")
			say("* OK [UIDVALIDITY 7] ok")
			say("* OK [UIDNEXT 4] ok")
			say(tag + " OK [READ-WRITE] SELECT done")
		case "STATUS":
			say("* STATUS INBOX (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 7 UNSEEN 3)")
			say(tag + " OK STATUS done")
		case "UID SEARCH", "SEARCH":
			say("* SEARCH 1 2 3")
			say(tag + " OK SEARCH done")
		case "UID FETCH", "FETCH":
			if !s.fetch(w, r, tag, args) {
				return
			}
		case "UID STORE", "UID MOVE", "UID EXPUNGE", "EXPUNGE", "UID COPY":
			say(tag + " OK done")
		case "IDLE":
			say("+ idling")
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			say(tag + " OK IDLE done")
		case "LOGOUT":
			say("* BYE bye")
			say(tag + " OK LOGOUT done")
			return
		default:
			say(tag + " BAD unknown command")
		}
	}
}

// fetch answers a FETCH in the server's mode; false means the connection is over.
func (s *Server) fetch(w *bufio.Writer, r *bufio.Reader, tag, args string) bool {
	set, _, _ := strings.Cut(args, " ")
	uid := uint32(1)
	if n, err := strconv.ParseUint(strings.Split(strings.Split(set, ",")[0], ":")[0], 10, 32); err == nil && n > 0 {
		uid = uint32(n)
	}
	body := strings.Contains(strings.ToUpper(args), "BODY")
	say := func(line string) bool {
		w.WriteString(line + "\r\n")
		return w.Flush() == nil
	}
	switch {
	case !body && (s.Mode == LyingSize || s.Mode == LateUID):
		for u := uint32(1); u <= 3; u++ {
			say(fmt.Sprintf(`* %d FETCH (UID %d RFC822.SIZE 100 INTERNALDATE "01-Jan-2026 00:00:00 +0000" FLAGS ())`, u, u))
		}
	case !body && s.Mode == WrongUIDs:
		say(`* 1 FETCH (UID 4000000000 RFC822.SIZE 50 INTERNALDATE "01-Jan-2026 00:00:00 +0000" FLAGS ())`)
	case !body:
		for u := uint32(1); u <= 3; u++ {
			say(fmt.Sprintf(`* %d FETCH (UID %d RFC822.SIZE %d INTERNALDATE "01-Jan-2026 00:00:00 +0000" FLAGS ())`, u, u, len(message)))
		}
	case s.Mode == TruncatedLiteral:
		w.WriteString(fmt.Sprintf("* %d FETCH (UID %d BODY[] {5000}\r\n", uid, uid))
		w.WriteString(strings.Repeat("x", 100))
		w.Flush()
		s.count(100)
		return false
	case s.Mode == HugeLiteral || s.Mode == LyingSize || s.Mode == LateUID:
		size := int64(2_000_000_000)
		if s.Mode != HugeLiteral {
			size = 64 << 20
		}
		if s.Mode == LateUID {
			w.WriteString(fmt.Sprintf("* %d FETCH (RFC822.SIZE 100 BODY[] {%d}\r\n", uid, size))
		} else {
			w.WriteString(fmt.Sprintf("* %d FETCH (UID %d RFC822.SIZE 100 BODY[] {%d}\r\n", uid, uid, size))
		}
		chunk := []byte(strings.Repeat("0123456789abcdef", 4096))
		for sent := int64(0); sent < size; {
			n := int64(len(chunk))
			if size-sent < n {
				n = size - sent
			}
			if _, err := w.Write(chunk[:n]); err != nil {
				return false
			}
			sent += n
			s.count(int(n))
		}
		if s.Mode == LateUID {
			fmt.Fprintf(w, " UID %d", uid)
		}
		w.WriteString(")\r\n")
		w.Flush()
	case s.Mode == WrongUIDs:
		say(fmt.Sprintf("* 1 FETCH (UID %d BODY[] {%d}\r\n%s)", uid+1000, len(message), message))
		say(fmt.Sprintf("* 2 FETCH (UID 0 BODY[] {%d}\r\n%s)", len(message), message))
	default:
		say(fmt.Sprintf("* %d FETCH (UID %d RFC822.SIZE %d BODY[] {%d}\r\n%s)", uid, uid, len(message), len(message), message))
	}
	io.WriteString(w, tag+" OK FETCH done\r\n")
	return w.Flush() == nil
}
