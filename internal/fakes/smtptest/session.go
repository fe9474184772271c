package smtptest

import (
	"errors"
	"io"

	"github.com/emersion/go-smtp"
)

// errCut is returned by a session method whose connection a fault closed: go-smtp's answer to
// it goes nowhere.
var errCut = errors.New("smtptest: connection cut by a fault")

// session is one client's SMTP session (go-smtp makes a new one after STARTTLS).
type session struct {
	srv      *Server
	conn     *smtp.Conn
	user     string
	from     string
	mailOpts smtp.MailOptions
	to       []string
	rcptOpts []smtp.RcptOptions
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	if err := s.strike(StepHello, "", c); err != nil {
		return nil, err
	}
	return &session{srv: s, conn: c}, nil
}

// strike applies the fault at step, if one strikes now: the error to answer with, or nil to go
// on.
func (s *Server) strike(step Step, rcpt string, c *smtp.Conn) error {
	f := s.fault(step, rcpt)
	if f == nil {
		return nil
	}
	switch f.Action {
	case Refuse:
		return f.reply()
	case Cut:
		c.Conn().Close()
		return errCut
	case Stall:
		s.stall(f.StallFor)
		if s.isClosed() {
			c.Conn().Close()
			return errCut
		}
	}
	return nil
}

func (s *session) Reset() {
	s.from, s.mailOpts, s.to, s.rcptOpts = "", smtp.MailOptions{}, nil, nil
}

func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if err := s.srv.strike(StepMail, "", s.conn); err != nil {
		return err
	}
	if s.user == "" && !s.srv.opts.NoAuthRequired {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.Reset()
	s.from = from
	if opts != nil {
		s.mailOpts = *opts
	}
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if err := s.srv.strike(StepRcpt, to, s.conn); err != nil {
		return err
	}
	s.to = append(s.to, to)
	var o smtp.RcptOptions
	if opts != nil {
		o = *opts
	}
	s.rcptOpts = append(s.rcptOpts, o)
	return nil
}

func (s *session) Data(r io.Reader) error {
	if err := s.srv.strike(StepData, "", s.conn); err != nil {
		return err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	m := Message{From: s.from, MailOptions: s.mailOpts, To: s.to, RcptOptions: s.rcptOpts, Data: data, User: s.user, TLS: isTLS}
	i := s.srv.record(m) // kept as not accepted until the answer is given
	if f := s.srv.fault(StepEndOfData, ""); f != nil {
		switch f.Action {
		case Refuse:
			return f.reply()
		case Cut:
			s.conn.Conn().Close()
			return errCut
		case Stall:
			s.srv.stall(f.StallFor)
			if s.srv.isClosed() {
				s.conn.Conn().Close()
				return errCut
			}
		}
	}
	id := s.srv.markAccepted(i)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}
