package pop3test

import (
	"bytes"
	"crypto/tls"
	"strconv"
	"strings"
	"time"
)

// dispatch carries out a command; false closes the connection.
func (ss *session) dispatch(cmd, arg, line string) bool {
	switch cmd {
	case "CAPA":
		return ss.capa()
	case "STLS":
		return ss.stls()
	case "USER", "PASS":
		return ss.userPass(cmd, arg)
	case "AUTH":
		return ss.auth(arg, line)
	case "APOP":
		return ss.answer("-ERR APOP is not supported.")
	case "QUIT":
		return ss.quit()
	}
	if ss.user == nil {
		return ss.answer("-ERR Unknown command or not logged in.")
	}
	switch cmd {
	case "STAT":
		n, size := 0, int64(0)
		for i, m := range ss.msgs {
			if !ss.deleted[i+1] {
				n++
				size += ss.size(m)
			}
		}
		return ss.answer("+OK " + strconv.Itoa(n) + " " + strconv.FormatInt(size, 10))
	case "LIST", "UIDL":
		if cmd == "UIDL" && ss.srv.opts.NoUIDL {
			return ss.answer("-ERR Unknown command.")
		}
		return ss.list(cmd, arg)
	case "TOP":
		if ss.srv.opts.NoTOP {
			return ss.answer("-ERR Unknown command.")
		}
		return ss.top(arg)
	case "RETR":
		_, m, errText := ss.msg(arg)
		if m == nil {
			return ss.answer(errText)
		}
		return ss.body("+OK "+strconv.FormatInt(ss.size(m), 10)+" octets", m.raw)
	case "DELE":
		n, m, errText := ss.msg(arg)
		if m == nil {
			return ss.answer(errText)
		}
		ss.deleted[n] = true
		return ss.answer("+OK Marked to be deleted.")
	case "RSET":
		clear(ss.deleted)
		return ss.answer("+OK")
	case "NOOP":
		return ss.answer("+OK")
	}
	return ss.answer("-ERR Unknown command.")
}

// capa answers CAPA.
func (ss *session) capa() bool {
	o := ss.srv.opts
	if o.NoCAPA {
		return ss.answer("-ERR Unknown command.")
	}
	var lines []string
	if !o.NoTOP {
		lines = append(lines, "TOP")
	}
	if !o.NoUIDL {
		lines = append(lines, "UIDL")
	}
	lines = append(lines, "RESP-CODES", "AUTH-RESP-CODE")
	if !o.NoUSER && ss.user == nil {
		lines = append(lines, "USER")
	}
	if o.TLS != nil && !o.ImplicitTLS && !ss.tls && ss.user == nil {
		lines = append(lines, "STLS")
	}
	if m := ss.mechanisms(); len(m) > 0 && ss.user == nil {
		lines = append(lines, "SASL "+strings.Join(m, " "))
	}
	if !o.Exchange {
		lines = append(lines, "IMPLEMENTATION pop3test")
	}
	return ss.multi("+OK Capability list follows", lines)
}

// mechanisms returns the SASL mechanisms offered.
func (ss *session) mechanisms() []string {
	o := ss.srv.opts
	switch {
	case o.Mechanisms != nil:
		return o.Mechanisms
	case o.Exchange:
		return []string{"PLAIN", "XOAUTH2"}
	case o.ValidateToken != nil:
		return []string{"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"}
	}
	return []string{"PLAIN", "LOGIN"}
}

// stls answers STLS and starts TLS.
func (ss *session) stls() bool {
	o := ss.srv.opts
	if o.TLS == nil || o.ImplicitTLS || ss.tls || ss.user != nil {
		return ss.answer("-ERR STLS is not available.")
	}
	if !ss.answer("+OK Begin TLS negotiation now.") || !ss.flushTrailing() {
		return false
	}
	tc := tls.Server(ss.raw, o.TLS)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return false
	}
	tc.SetDeadline(time.Time{})
	ss.setStream(tc)
	ss.tls, ss.userName = true, ""
	return true
}

// quit ends the session; after a login, the marked messages are deleted (UPDATE state).
func (ss *session) quit() bool {
	if ss.user == nil {
		ss.answer("+OK Logging out.")
		return false
	}
	gone := map[*stored]bool{}
	for n := range ss.deleted {
		gone[ss.msgs[n-1]] = true
	}
	s := ss.srv
	s.mu.Lock()
	kept := ss.user.msgs[:0]
	for _, m := range ss.user.msgs {
		if !gone[m] {
			kept = append(kept, m)
		}
	}
	clear(ss.user.msgs[len(kept):])
	ss.user.msgs = kept
	ss.user.locked = false
	ss.user = nil
	s.mu.Unlock()
	s.Updates.Add(1)
	ss.answer("+OK Logging out, messages deleted.")
	return false
}

// msg finds the message an argument names; errText is the -ERR when there is none.
func (ss *session) msg(arg string) (int, *stored, string) {
	f := strings.Fields(arg)
	if len(f) == 0 {
		return 0, nil, "-ERR Message number missing."
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 1 || n > len(ss.msgs) {
		return 0, nil, "-ERR There's no message " + f[0] + "."
	}
	if ss.deleted[n] {
		return 0, nil, "-ERR Message is deleted."
	}
	return n, ss.msgs[n-1], ""
}

// size is a message's size as the server announces it.
func (ss *session) size(m *stored) int64 {
	if f := ss.srv.opts.ListedSize; f != nil {
		return f(Message{UID: m.uid, Raw: m.raw})
	}
	return int64(len(m.raw))
}

// list answers LIST and UIDL, for every message or one.
func (ss *session) list(cmd, arg string) bool {
	item := func(n int, m *stored) string {
		if cmd == "UIDL" {
			return strconv.Itoa(n) + " " + m.uid
		}
		return strconv.Itoa(n) + " " + strconv.FormatInt(ss.size(m), 10)
	}
	if strings.TrimSpace(arg) != "" {
		n, m, errText := ss.msg(arg)
		if m == nil {
			return ss.answer(errText)
		}
		return ss.answer("+OK " + item(n, m))
	}
	var lines []string
	for i, m := range ss.msgs {
		if !ss.deleted[i+1] {
			lines = append(lines, item(i+1, m))
		}
	}
	return ss.multi("+OK", lines)
}

// top answers TOP n lines: the header, the blank line, and the body's first lines.
func (ss *session) top(arg string) bool {
	_, m, errText := ss.msg(arg)
	if m == nil {
		return ss.answer(errText)
	}
	f := strings.Fields(arg)
	lines, err := strconv.Atoi(strings.Join(f[1:], ""))
	if len(f) != 2 || err != nil || lines < 0 {
		return ss.answer("-ERR Invalid number of lines.")
	}
	var out []byte
	rest := m.raw
	inBody, count := false, 0
	for len(rest) > 0 && (!inBody || count < lines) {
		i := bytes.IndexByte(rest, '\n') + 1
		if i == 0 {
			i = len(rest)
		}
		l := rest[:i]
		out, rest = append(out, l...), rest[i:]
		if inBody {
			count++
		} else if len(l) == 2 {
			inBody = true
		}
	}
	return ss.body("+OK", out)
}
