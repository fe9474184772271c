package pop3test

import "strings"

// authAllowed reports whether a login may happen on this connection.
func (ss *session) authAllowed() bool {
	o := ss.srv.opts
	return ss.tls || o.TLS == nil || o.ImplicitTLS || o.InsecureAuth
}

// plaintextRefused is Dovecot's answer to a login before STLS where it wants TLS.
const plaintextRefused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."

// userPass answers USER and PASS (RFC 1939).
func (ss *session) userPass(cmd, arg string) bool {
	switch {
	case ss.user != nil:
		return ss.answer("-ERR Already logged in.")
	case ss.srv.opts.NoUSER:
		return ss.answer("-ERR Unknown command.")
	case !ss.authAllowed():
		return ss.answer(plaintextRefused)
	case cmd == "USER":
		ss.userName = arg
		return ss.answer("+OK")
	case ss.userName == "":
		return ss.answer("-ERR No username given.")
	}
	name := ss.userName
	ss.userName = ""
	ss.srv.mu.Lock()
	u := ss.srv.users[strings.ToLower(name)]
	ok := u != nil && u.password == arg
	ss.srv.mu.Unlock()
	return ss.loggedIn(AuthAttempt{Mechanism: "USER", User: name, TLS: ss.tls}, ok)
}

// loggedIn finishes a login: refused, locked out, or holding the maildrop.
func (ss *session) loggedIn(a AuthAttempt, ok bool) bool {
	s := ss.srv
	s.mu.Lock()
	u := s.users[strings.ToLower(a.User)]
	locked := ok && u.locked
	a.OK = ok && !locked
	s.auths = append(s.auths, a)
	if a.OK {
		u.locked = true
		ss.user, ss.login = u, a.User
		ss.msgs = append([]*stored(nil), u.msgs...)
		if s.opts.RotateEachSession && len(ss.msgs) > 0 {
			k := s.logins % len(ss.msgs)
			ss.msgs = append(ss.msgs[k:], ss.msgs[:k]...)
		}
		ss.deleted = map[int]bool{}
		s.logins++
	}
	s.mu.Unlock()
	switch {
	case !ok:
		s.FailedLogins.Add(1)
		if s.opts.Exchange {
			return ss.answer("-ERR Authentication failure: unknown user name or bad password.")
		}
		return ss.answer("-ERR [AUTH] Authentication failed.")
	case locked:
		return ss.answer("-ERR [IN-USE] Mailbox is locked by another POP3 session.")
	}
	s.Logins.Add(1)
	if a.Mechanism == "XOAUTH2" || a.Mechanism == "OAUTHBEARER" {
		s.TokenLogins.Add(1)
	}
	if s.opts.Exchange {
		return ss.answer("+OK User successfully authenticated.")
	}
	return ss.answer("+OK Logged in.")
}

// unlock gives the maildrop's lock back when the session ends.
func (ss *session) unlock() {
	if ss.user == nil {
		return
	}
	ss.srv.mu.Lock()
	ss.user.locked = false
	ss.srv.mu.Unlock()
}
