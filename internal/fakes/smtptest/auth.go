package smtptest

import (
	"encoding/base64"
	"errors"
	"slices"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// AuthMechanisms implements smtp.AuthSession.
func (s *session) AuthMechanisms() []string {
	if len(s.srv.opts.Mechanisms) > 0 {
		return s.srv.opts.Mechanisms
	}
	m := []string{sasl.Plain, sasl.Login}
	if s.srv.opts.ValidateToken != nil {
		m = append(m, "XOAUTH2", sasl.OAuthBearer)
	}
	return m
}

// Auth implements smtp.AuthSession.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if !slices.Contains(s.AuthMechanisms(), mech) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	rs := &recordingServer{sess: s, attempt: AuthAttempt{Mechanism: mech}}
	switch mech {
	case sasl.Plain:
		rs.inner = sasl.NewPlainServer(func(_, user, password string) error { return rs.login(user, password) })
	case sasl.Login:
		rs.inner = &loginServer{check: rs.login}
	case "XOAUTH2":
		rs.inner = &xoauth2Server{check: rs.tokenLogin}
	case sasl.OAuthBearer:
		rs.inner = sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if rs.tokenLogin(o.Username, o.Token) != nil {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			return nil
		})
	default:
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return rs, nil
}

// recordingServer records an AUTH exchange, applies the AUTH line limit and the AUTH faults, and
// runs the mechanism.
type recordingServer struct {
	sess    *session
	inner   sasl.Server
	attempt AuthAttempt
	started bool
}

func (r *recordingServer) Next(response []byte) ([]byte, bool, error) {
	if !r.started {
		r.started = true
		r.attempt.LineLength = len("AUTH " + r.attempt.Mechanism)
		if response != nil {
			r.attempt.InitialResponse = true
			r.attempt.LineLength += 1 + max(1, base64.StdEncoding.EncodedLen(len(response)))
		}
		if max := r.sess.srv.opts.MaxAuthLine; max > 0 && r.attempt.LineLength > max {
			r.sess.srv.recordAuth(r.attempt)
			return nil, false, &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line too long"}
		}
		if err := r.sess.srv.strike(StepAuth, "", r.sess.conn); err != nil {
			r.sess.srv.recordAuth(r.attempt)
			return nil, false, err
		}
	}
	if response != nil && r.attempt.ResponseLength == 0 {
		r.attempt.ResponseLength = len(response)
	}
	challenge, done, err := r.inner.Next(response)
	var se *smtp.SMTPError
	if err != nil && !errors.As(err, &se) {
		err = smtp.ErrAuthFailed // a mechanism's own error (go-sasl's OAUTHBEARER) is a refused login
	}
	if done || err != nil {
		r.attempt.OK = done && err == nil
		r.sess.srv.recordAuth(r.attempt)
		if r.attempt.OK {
			r.sess.user = r.attempt.User
		}
	}
	return challenge, done, err
}

func (r *recordingServer) login(user, password string) error {
	r.attempt.User = user
	if p, ok := r.sess.srv.password(user); !ok || p != password {
		return smtp.ErrAuthFailed
	}
	return nil
}

func (r *recordingServer) tokenLogin(user, token string) error {
	r.attempt.User = user
	if r.sess.srv.opts.ValidateToken == nil || !r.sess.srv.opts.ValidateToken(token, user) {
		return smtp.ErrAuthFailed
	}
	return nil
}

// loginServer is the server side of LOGIN: "Username:", then "Password:" (an initial response
// is the user name).
type loginServer struct {
	check func(user, password string) error
	step  int
	user  string
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		if response == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.user, string(response))
}

// xoauth2Server is the server side of XOAUTH2 as Gmail and Dovecot implement it: a bad token gets
// a JSON error challenge, the client answers it with an empty line, then 535.
type xoauth2Server struct {
	check  func(user, token string) error
	failed bool
}

func (x *xoauth2Server) Next(response []byte) ([]byte, bool, error) {
	if x.failed {
		return nil, true, smtp.ErrAuthFailed
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
	if x.check(user, token) != nil {
		x.failed = true
		return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
	}
	return nil, true, nil
}
