package pop3test

import (
	"bytes"
	"encoding/base64"
	"slices"
	"strings"
)

// auth answers AUTH (RFC 5034) with PLAIN, LOGIN, XOAUTH2 or OAUTHBEARER.
func (ss *session) auth(arg, line string) bool {
	mech, ir, hasIR := strings.Cut(strings.TrimSpace(arg), " ")
	mech = strings.ToUpper(mech)
	switch {
	case ss.user != nil:
		return ss.answer("-ERR Already logged in.")
	case mech == "":
		return ss.answer("-ERR Mechanism missing.")
	case !slices.Contains(ss.mechanisms(), mech):
		return ss.answer("-ERR Unsupported authentication mechanism.")
	case !ss.authAllowed():
		return ss.answer(plaintextRefused)
	}
	a := AuthAttempt{Mechanism: mech, InitialResponse: hasIR, LineLength: len(line), TLS: ss.tls}
	first := true
	// respond sends a challenge (unless the initial response answers the first) and reads
	// the client's response; false when the client cancelled or the connection is gone (the
	// answer was sent).
	respond := func(challenge string) ([]byte, bool, bool) {
		var enc string
		if first && hasIR {
			enc = ir
			if enc == "=" {
				enc = ""
			}
		} else {
			if !ss.answer("+ " + base64.StdEncoding.EncodeToString([]byte(challenge))) {
				return nil, false, false
			}
			l, err := ss.readLine()
			if err != nil {
				return nil, false, false
			}
			if l == "*" {
				return nil, false, ss.answer("-ERR Authentication aborted by client.")
			}
			enc = l
		}
		first = false
		dec, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return nil, false, ss.answer("-ERR Invalid base64 data in continued response.")
		}
		return dec, true, true
	}
	var user, secret string
	switch mech {
	case "PLAIN":
		resp, ok, open := respond("")
		if !ok {
			return open
		}
		p := bytes.Split(resp, []byte{0})
		if len(p) != 3 {
			return ss.answer("-ERR Invalid PLAIN response.")
		}
		user, secret = string(p[1]), string(p[2])
	case "LOGIN":
		resp, ok, open := respond("Username:")
		if !ok {
			return open
		}
		user = string(resp)
		if resp, ok, open = respond("Password:"); !ok {
			return open
		}
		secret = string(resp)
	case "XOAUTH2", "OAUTHBEARER":
		resp, ok, open := respond("")
		if !ok {
			return open
		}
		user, secret = parseToken(mech, resp)
		a.User = user
		if ss.tokenValid(user, secret) {
			return ss.loggedIn(a, true)
		}
		if !ss.srv.opts.Exchange {
			// Dovecot's error challenge; the client answers it (empty, or 0x01), then fails.
			ch := `{"status":"401","schemes":"bearer","scope":"mail"}`
			if mech == "OAUTHBEARER" {
				ch = `{"status":"invalid_token"}`
			}
			if _, _, open := respond(ch); !open {
				return false
			}
		}
		return ss.loggedIn(a, false)
	}
	a.User = user
	ss.srv.mu.Lock()
	u := ss.srv.users[strings.ToLower(user)]
	ok := u != nil && u.password == secret
	ss.srv.mu.Unlock()
	return ss.loggedIn(a, ok)
}

// tokenValid checks a token for a user that exists.
func (ss *session) tokenValid(user, token string) bool {
	ss.srv.mu.Lock()
	u := ss.srv.users[strings.ToLower(user)]
	ss.srv.mu.Unlock()
	return u != nil && ss.srv.opts.ValidateToken != nil && ss.srv.opts.ValidateToken(token, user)
}

// parseToken reads the user and token of an XOAUTH2 ("user=U\x01auth=Bearer T\x01\x01") or
// OAUTHBEARER ("n,a=U,\x01host=H\x01port=P\x01auth=Bearer T\x01\x01") response.
func parseToken(mech string, resp []byte) (user, token string) {
	parts := strings.Split(string(resp), "\x01")
	if mech == "OAUTHBEARER" && len(parts) > 0 {
		for _, f := range strings.Split(parts[0], ",") {
			if v, ok := strings.CutPrefix(f, "a="); ok {
				user = v
			}
		}
	}
	for _, kv := range parts {
		if v, ok := strings.CutPrefix(kv, "user="); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(kv, "auth=Bearer "); ok {
			token = v
		}
	}
	return user, token
}
