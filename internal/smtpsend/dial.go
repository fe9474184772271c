package smtpsend

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Conn is a connection to a submission server, greeted, past STARTTLS and EHLO. It is not safe
// for concurrent use.
type Conn struct {
	c      *smtp.Client
	wire   *wireConn
	target Target
	report func(Step)
	// broken is set once the connection cannot carry another command (a failure or a timeout
	// in the middle of a step).
	broken bool
}

// Dial connects, reporting each step (DNS, TCP, TLS, greeting, EHLO) to report, which may be
// nil. A failure is an *Error.
func Dial(ctx context.Context, t Target, report func(Step)) (*Conn, error) {
	t = t.withDefaults()
	if report == nil {
		report = func(Step) {}
	}
	ctx, cancel := context.WithTimeout(ctx, t.DialTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()

	start := time.Now()
	addrs, err := net.DefaultResolver.LookupHost(ctx, t.Host)
	if err != nil {
		e := dnsError(t, err)
		report(Step{Kind: StepDNS, Duration: time.Since(start), Err: e})
		return nil, e
	}
	report(Step{Kind: StepDNS, Duration: time.Since(start), Detail: strings.Join(addrs, ", ")})

	start = time.Now()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", t.Addr())
	if err != nil {
		e := tcpError(t, err)
		report(Step{Kind: StepTCP, Duration: time.Since(start), Err: e})
		return nil, e
	}
	report(Step{Kind: StepTCP, Duration: time.Since(start), Detail: raw.RemoteAddr().String()})
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	raw.SetDeadline(deadline)

	wire := &wireConn{Conn: raw}
	tlsConfig := &tls.Config{ServerName: t.Host, RootCAs: t.RootCAs, InsecureSkipVerify: t.SkipVerify, MinVersion: tls.VersionTLS12}
	var conn net.Conn = wire
	if t.Security == TLS {
		start = time.Now()
		tc := tls.Client(wire, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			e := tlsError(ctx, t, err)
			report(Step{Kind: StepTLS, Duration: time.Since(start), Err: e})
			return nil, e
		}
		report(Step{Kind: StepTLS, Duration: time.Since(start), Detail: tlsDetail(tc.ConnectionState())})
		conn = tc
	}

	start = time.Now()
	br := bufio.NewReader(conn)
	tr := textproto.NewReader(br)
	_, greeting, err := tr.ReadResponse(220)
	if err != nil {
		raw.Close()
		e := replyError(ctx, t, StepGreeting, err)
		report(Step{Kind: StepGreeting, Duration: time.Since(start), Err: e})
		return nil, e
	}
	report(Step{Kind: StepGreeting, Duration: time.Since(start), Detail: firstLine(greeting)})

	name := localName(t, raw)
	var pending []byte
	switch t.Security {
	case StartTLS:
		start = time.Now()
		tc, err := startTLS(ctx, t, wire, br, tr, name, tlsConfig)
		if err != nil {
			raw.Close()
			report(Step{Kind: StepTLS, Duration: time.Since(start), Err: err})
			return nil, err
		}
		report(Step{Kind: StepTLS, Duration: time.Since(start), Detail: "STARTTLS, " + tlsDetail(tc.ConnectionState())})
		conn = tc
	case Plaintext:
		report(Step{Kind: StepTLS, Detail: "none (plaintext, as configured)"})
		fallthrough
	default:
		pending, _ = br.Peek(br.Buffered())
	}

	// go-smtp reads a greeting of its own: it gets one made from the real one.
	pending = append([]byte("220 "+firstLine(greeting)+"\r\n"), pending...)
	c := smtp.NewClient(&replayConn{Conn: conn, pending: pending})
	c.CommandTimeout = max(time.Until(deadline), time.Millisecond)
	c.SubmissionTimeout = t.FinalTimeout
	start = time.Now()
	if err := c.Hello(name); err != nil {
		raw.Close()
		e := replyError(ctx, t, StepHello, err)
		report(Step{Kind: StepHello, Duration: time.Since(start), Err: e})
		return nil, e
	}
	c.CommandTimeout = t.CommandTimeout
	report(Step{Kind: StepHello, Duration: time.Since(start), Detail: "EHLO " + name + ": " + extensionsDetail(c)})
	raw.SetDeadline(time.Time{})
	return &Conn{c: c, wire: wire, target: t, report: report}, nil
}

// startTLS says EHLO, checks that STARTTLS is offered, and upgrades the connection. A server
// that does not offer it is refused: credentials and mail would travel in the clear.
func startTLS(ctx context.Context, t Target, wire *wireConn, br *bufio.Reader, tr *textproto.Reader, name string, cfg *tls.Config) (*tls.Conn, error) {
	if _, err := fmt.Fprintf(wire, "EHLO %s\r\n", name); err != nil {
		return nil, connError(ctx, t, StepHello, err)
	}
	_, ehlo, err := tr.ReadResponse(250)
	if err != nil {
		return nil, replyError(ctx, t, StepHello, err)
	}
	if !hasExtension(ehlo, "STARTTLS") {
		return nil, &Error{Kind: Permanent, Step: StepTLS, Explanation: fmt.Sprintf(
			"%s does not offer STARTTLS, so the login and the mail would travel unencrypted; nothing was sent. "+
				"Use security tls (usually port 465) if the server speaks TLS from the start, or check host and port "+
				"(submission with STARTTLS is port 587); security none only for a trusted local relay", t.Addr())}
	}
	if _, err := fmt.Fprintf(wire, "STARTTLS\r\n"); err != nil {
		return nil, connError(ctx, t, StepTLS, err)
	}
	if _, _, err := tr.ReadResponse(220); err != nil {
		return nil, replyError(ctx, t, StepTLS, err)
	}
	if br.Buffered() > 0 {
		return nil, &Error{Kind: Permanent, Step: StepTLS, Explanation: "the server sent data right after agreeing to STARTTLS, " +
			"before encryption started: something on the path may be injecting commands; nothing was sent"}
	}
	tc := tls.Client(wire, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, tlsError(ctx, t, err)
	}
	return tc, nil
}

// hasExtension reports whether an EHLO reply (the lines after the first) names ext.
func hasExtension(ehlo, ext string) bool {
	lines := strings.Split(ehlo, "\n")
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], ext) {
			return true
		}
	}
	return false
}

// localName is the EHLO name: the configured one, this host's name when it is a domain name,
// else the local address as an address literal (RFC 5321 section 4.1.4).
func localName(t Target, c net.Conn) string {
	if t.LocalName != "" {
		return t.LocalName
	}
	if h, err := os.Hostname(); err == nil && strings.Contains(h, ".") && validHostname(h) {
		return h
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		if ip4 := a.IP.To4(); ip4 != nil {
			return "[" + ip4.String() + "]"
		}
		return "[IPv6:" + a.IP.String() + "]"
	}
	return "localhost"
}

func validHostname(h string) bool {
	for _, r := range h {
		if !(r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return !strings.HasPrefix(h, ".") && !strings.HasSuffix(h, ".")
}

// Extension reports whether the server offers an EHLO extension, and its parameters.
func (c *Conn) Extension(name string) (bool, string) { return c.c.Extension(name) }

// Quit ends the session politely and closes the connection.
func (c *Conn) Quit() error {
	if c.broken {
		return c.Close()
	}
	c.c.CommandTimeout = min(c.target.CommandTimeout, 10*time.Second)
	err := c.c.Quit()
	c.Close()
	return err
}

// Close closes the connection. One that failed is closed at once, without TLS's close_notify,
// which would wait for a server that stopped reading.
func (c *Conn) Close() error {
	if c.broken {
		c.wire.Conn.Close()
	}
	return c.c.Close()
}

// guard closes the connection when ctx ends while fn runs.
func (c *Conn) guard(ctx context.Context, fn func() error) error {
	stop := context.AfterFunc(ctx, func() { c.wire.Conn.Close() })
	defer stop()
	return fn()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func extensionsDetail(c *smtp.Client) string {
	var parts []string
	for _, e := range []string{"AUTH", "SIZE", "DSN", "8BITMIME", "SMTPUTF8", "PIPELINING", "CHUNKING", "STARTTLS"} {
		if ok, p := c.Extension(e); ok {
			parts = append(parts, strings.TrimSpace(e+" "+p))
		}
	}
	if len(parts) == 0 {
		return "no extensions"
	}
	return strings.Join(parts, ", ")
}

func tlsDetail(st tls.ConnectionState) string {
	v := map[uint16]string{tls.VersionTLS12: "TLS 1.2", tls.VersionTLS13: "TLS 1.3"}[st.Version]
	if v == "" {
		v = fmt.Sprintf("TLS 0x%x", st.Version)
	}
	if len(st.PeerCertificates) > 0 {
		c := st.PeerCertificates[0]
		names := strings.Join(c.DNSNames, ", ")
		if names == "" {
			names = c.Subject.CommonName
		}
		return fmt.Sprintf("%s, certificate for %s issued by %s, valid until %s", v, names, c.Issuer.CommonName, c.NotAfter.Format("2006-01-02"))
	}
	return v
}

// errBroken is the error of a send on a connection that an earlier failure left unusable.
var errBroken = errors.New("the connection failed earlier and cannot be used again")
