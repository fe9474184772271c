package pop3test

import (
	"strings"
	"time"
)

// Action is what a fault does.
type Action int

// Actions.
const (
	// Refuse answers Fault.Reply (a whole line without CRLF, e.g. "-ERR [IN-USE] locked")
	// instead of carrying the command out.
	Refuse Action = iota
	// Cut closes the connection without carrying the command out or answering.
	Cut
	// Drop carries the command out (QUIT: deletes the marked messages), then closes the
	// connection without answering: the client cannot know it happened.
	Drop
	// Stall holds the answer for StallFor (0: until the client or the server closes), then
	// goes on as if nothing happened.
	Stall
	// EndlessLine answers with a line that never ends, until the client goes.
	EndlessLine
	// EndlessBody (RETR, TOP) answers +OK and then message lines forever.
	EndlessBody
	// CutMidBody (RETR, TOP) answers +OK and half the message, then closes.
	CutMidBody
	// Unstuffed (RETR, TOP) sends the message without dot-stuffing its lines: a line "." in
	// it ends the answer early, and lines beginning with "." lose their dot at the client.
	Unstuffed
	// Garbage sends Fault.Reply's bytes as they are (no CRLF added) instead of the answer.
	Garbage
	// Trailing carries the command out and answers, then sends Fault.Reply's bytes as they
	// are: data nobody asked for (after +OK to STLS: plaintext injected before the handshake).
	Trailing
)

// Fault is a failure injected at a command ("greeting" for the connection's first line).
type Fault struct {
	// Command is the command it strikes ("RETR", "PASS", "AUTH", "greeting"), any case.
	Command string
	// Action is what it does there.
	Action Action
	// Reply is a Refuse's line, or the bytes of Garbage and Trailing.
	Reply string
	// Times is how often the fault strikes; 0: every time.
	Times int
	// StallFor is a Stall's length; 0: until the connection closes.
	StallFor time.Duration

	struck int
}

// Inject adds a fault; faults at the same command strike in the order they were added.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.Command = strings.ToUpper(f.Command)
	if f.Command == "GREETING" {
		f.Command = "greeting"
	}
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// fault returns the fault that strikes now at a command, if any.
func (s *Server) fault(cmd string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Command != cmd || (f.Times > 0 && f.struck >= f.Times) {
			continue
		}
		f.struck++
		c := *f
		return &c
	}
	return nil
}
