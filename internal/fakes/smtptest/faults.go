package smtptest

import (
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Step is where a fault strikes.
type Step string

// Steps of a session.
const (
	// StepGreeting: the connection's first line (after the TLS handshake with implicit TLS).
	StepGreeting Step = "greeting"
	// StepHello: EHLO (also the one after STARTTLS).
	StepHello Step = "EHLO"
	// StepAuth: the AUTH command, before the credential is checked.
	StepAuth Step = "AUTH"
	// StepMail: MAIL FROM.
	StepMail Step = "MAIL"
	// StepRcpt: RCPT TO (of Fault.Recipient only, when set). A Cut here is the connection lost
	// before DATA.
	StepRcpt Step = "RCPT"
	// StepData: after the 354 (go-smtp sends it before the server sees the message), before
	// the message is read: a Refuse answers after the client's final dot without keeping the
	// message; a Cut closes the connection while the client is still writing (a client whose
	// message fit in the socket buffers cannot tell this from a cut after its final dot).
	StepData Step = "DATA"
	// StepEndOfData: after the final dot was read, before the reply: a Refuse is a refusal
	// after DATA (Exchange's 554 5.2.252); a Cut or a Stall leave the client without an answer
	// to a message the server has whole.
	StepEndOfData Step = "end of data"
)

// Action is what a fault does.
type Action int

// Actions.
const (
	// Refuse answers with the fault's Code, Enhanced and Text.
	Refuse Action = iota
	// Cut closes the connection without an answer.
	Cut
	// Stall holds the answer for StallFor (0: until the server closes, then the connection is
	// closed), then goes on as if nothing happened.
	Stall
)

// Fault is a failure injected at a step.
type Fault struct {
	Step   Step
	Action Action
	// Code, Enhanced ("5.7.139") and Text are a Refuse's reply; Code 0 is 554.
	Code     int
	Enhanced string
	Text     string
	// Recipient limits a StepRcpt fault to one address.
	Recipient string
	// Times is how often the fault strikes; 0: every time.
	Times int
	// StallFor is a Stall's length; 0: until the server closes.
	StallFor time.Duration

	struck int
}

// Inject adds a fault; faults at the same step strike in the order they were added.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// fault returns the fault that strikes now at step, if any.
func (s *Server) fault(step Step, rcpt string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Step != step || (f.Recipient != "" && !strings.EqualFold(f.Recipient, rcpt)) || (f.Times > 0 && f.struck >= f.Times) {
			continue
		}
		f.struck++
		c := *f
		return &c
	}
	return nil
}

// reply is a Refuse's reply as go-smtp writes it.
func (f *Fault) reply() *smtp.SMTPError {
	e := &smtp.SMTPError{Code: f.Code, Message: f.Text}
	if e.Code == 0 {
		e.Code = 554
	}
	if e.Message == "" {
		e.Message = "injected fault"
	}
	e.EnhancedCode = smtp.EnhancedCodeNotSet
	if p := strings.Split(f.Enhanced, "."); len(p) == 3 {
		for i := range p {
			e.EnhancedCode[i], _ = strconv.Atoi(p[i])
		}
	}
	return e
}

// line is a Refuse's reply as one line on the wire (for the greeting).
func (f *Fault) line() string {
	r := f.reply()
	s := strconv.Itoa(r.Code)
	if f.Enhanced != "" {
		s += " " + f.Enhanced
	}
	return s + " " + r.Message + "\r\n"
}
