// Package guard hardens the admin web page's HTTP handler before any page runs: a Host
// allowlist against DNS rebinding, refusal of cross-origin state-changing requests (CSRF), and
// the security headers every response carries (a strict Content-Security-Policy without inline
// script, no framing, no referrer, no caching of pages).
package guard

import (
	"fmt"
	"net"
	"net/http"
	"strings"
)

// CSP is the Content-Security-Policy of every response: scripts, styles and requests only
// from the page's own origin (the vendored htmx and the stylesheet, served from the binary), no
// inline script or style, no plugins, no framing, forms posting only to the page itself.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Hosts is the allowlist of Host header values the page answers to. A browser on a page of
// another site can be made to reach a loopback listener by DNS rebinding (a name of the
// attacker's that resolves to 127.0.0.1); its requests then carry the attacker's name as Host,
// which the allowlist refuses.
type Hosts struct {
	port  string          // the listener's port
	names map[string]bool // host names (lower case, IPv6 without brackets) at that port
	// anyPort are names that may also come without a port or with another one: those given
	// by the operator, typically a reverse proxy's public name on 443.
	anyPort map[string]bool
	tls     bool
}

// NewHosts returns the allowlist for a listener at listen (host:port, the address it is bound
// to): its own host, the loopback names when it is a loopback or wildcard address, and the
// extra names (host or host:port) given by the operator.
func NewHosts(listen string, extra []string, tls bool) (*Hosts, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", listen, err)
	}
	h := &Hosts{port: port, names: map[string]bool{}, anyPort: map[string]bool{}, tls: tls}
	ip := net.ParseIP(host)
	switch {
	case host == "localhost" || (ip != nil && ip.IsLoopback()) || host == "" || (ip != nil && ip.IsUnspecified()):
		for _, n := range []string{"localhost", "127.0.0.1", "::1"} {
			h.names[n] = true
		}
		if host != "" && (ip == nil || !ip.IsUnspecified()) {
			h.names[normalize(host)] = true
		}
	default:
		h.names[normalize(host)] = true
	}
	for _, e := range extra {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		name, p, err := net.SplitHostPort(e)
		if err != nil {
			name, p = e, ""
		}
		if !validName(name) || (p != "" && !digits(p)) {
			return nil, fmt.Errorf("host name %q: give a name such as admin.example.com, optionally with a port", e)
		}
		if p != "" && p != port {
			// A name with its own port (a proxy in front): that pair only.
			h.names[normalize(name)+":"+p] = true
			continue
		}
		h.anyPort[normalize(name)] = true
	}
	return h, nil
}

func validName(name string) bool {
	if net.ParseIP(strings.Trim(name, "[]")) != nil {
		return true
	}
	if name == "" || len(name) > 253 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

func normalize(name string) string {
	return strings.TrimSuffix(strings.ToLower(strings.Trim(name, "[]")), ".")
}

// Allowed reports whether a request's Host header names this page.
func (h *Hosts) Allowed(hostHeader string) bool {
	name, port, err := net.SplitHostPort(hostHeader)
	if err != nil {
		name, port = hostHeader, ""
	}
	name = normalize(name)
	if name == "" {
		return false
	}
	if h.anyPort[name] {
		return true
	}
	if h.names[name+":"+port] {
		return true
	}
	if !h.names[name] {
		return false
	}
	switch port {
	case h.port:
		return true
	case "":
		// The browser leaves the scheme's default port out.
		return (h.tls && h.port == "443") || (!h.tls && h.port == "80")
	}
	return false
}

// Options configure Wrap.
type Options struct {
	Hosts *Hosts
	// Refused writes the page for a refused request (status and reason); nil writes plain text.
	Refused func(w http.ResponseWriter, r *http.Request, status int, reason string)
}

// Wrap returns next behind the guards: every response gets the security headers; a request to
// a Host not on the allowlist is answered 421 Misdirected Request, and a cross-origin POST
// (PUT, DELETE, …) 403 Forbidden, before next sees either.
func Wrap(next http.Handler, opts Options) http.Handler {
	cop := http.NewCrossOriginProtection()
	refused := opts.Refused
	if refused == nil {
		refused = func(w http.ResponseWriter, _ *http.Request, status int, reason string) {
			http.Error(w, reason, status)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetHeaders(w.Header())
		if opts.Hosts != nil && !opts.Hosts.Allowed(r.Host) {
			refused(w, r, http.StatusMisdirectedRequest, fmt.Sprintf("This page does not answer to the host name %q. "+
				"Open it at the address the server listens on, or add the name with --http-hosts.", r.Host))
			return
		}
		if err := cop.Check(r); err != nil {
			refused(w, r, http.StatusForbidden, "Refused a cross-origin request: a form of another site cannot act on this page. "+
				"Open the page itself and submit the form there.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SetHeaders sets the security headers of every response.
func SetHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
}
