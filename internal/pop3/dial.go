package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"
)

// Dial connects, reporting each step (DNS, TCP, TLS, greeting, CAPA) to report, which may be
// nil. With StartTLS it upgrades with STLS, refusing a server that does not offer it
// (ErrNoSTLS) or that sends anything between its +OK and the handshake. The whole of it is
// bounded by Target.DialTimeout.
func Dial(ctx context.Context, t Target, report func(Step)) (*Conn, error) {
	t = t.withDefaults()
	if report == nil {
		report = func(Step) {}
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, t.DialTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()

	start := time.Now()
	addrs, err := net.DefaultResolver.LookupHost(ctx, t.Host)
	if err != nil {
		err = describeDNS(t.Host, err)
		report(Step{Kind: StepDNS, Duration: time.Since(start), Err: err})
		return nil, err
	}
	report(Step{Kind: StepDNS, Duration: time.Since(start), Detail: strings.Join(addrs, ", ")})

	start = time.Now()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", t.Addr())
	if err != nil {
		err = describeTCP(t, err)
		report(Step{Kind: StepTCP, Duration: time.Since(start), Err: err})
		return nil, err
	}
	report(Step{Kind: StepTCP, Duration: time.Since(start), Detail: raw.RemoteAddr().String()})

	c := &Conn{target: t, raw: raw, report: report}
	c.setStream(raw)
	tlsConfig := &tls.Config{ServerName: t.Host, RootCAs: t.RootCAs, InsecureSkipVerify: t.SkipVerify, MinVersion: tls.VersionTLS12}
	fail := func(kind StepKind, start time.Time, err error) (*Conn, error) {
		c.fail(err)
		err = dialError(parent, t, kind, err)
		report(Step{Kind: kind, Duration: time.Since(start), Err: err})
		return nil, err
	}

	if t.Security == TLS {
		start = time.Now()
		if err := c.handshake(ctx, tlsConfig); err != nil {
			return fail(StepTLS, start, describeTLS(t, err))
		}
		report(Step{Kind: StepTLS, Duration: time.Since(start), Detail: tlsDetail(*c.tls)})
	}

	start = time.Now()
	if err := c.readGreeting(ctx, time.Until(deadline)); err != nil {
		return fail(StepGreeting, start, err)
	}
	report(Step{Kind: StepGreeting, Duration: time.Since(start), Detail: c.greeting})

	start = time.Now()
	if err := c.capa(ctx, time.Until(deadline)); err != nil {
		return fail(StepCapabilities, start, err)
	}
	switch t.Security {
	case StartTLS:
		report(Step{Kind: StepCapabilities, Duration: time.Since(start), Detail: c.caps.String()})
		start = time.Now()
		if err := c.startTLS(ctx, time.Until(deadline), tlsConfig); err != nil {
			return fail(StepTLS, start, err)
		}
		report(Step{Kind: StepTLS, Duration: time.Since(start), Detail: "STLS, " + tlsDetail(*c.tls)})
		start = time.Now()
		if err := c.capa(ctx, time.Until(deadline)); err != nil {
			return fail(StepCapabilities, start, err)
		}
	case Plaintext:
		report(Step{Kind: StepTLS, Detail: "none (plaintext, as configured)"})
	}
	report(Step{Kind: StepCapabilities, Duration: time.Since(start), Detail: c.caps.String()})
	return c, nil
}

// setStream reads and writes nc from now on (the TCP connection, then TLS over it).
func (c *Conn) setStream(nc net.Conn) {
	c.r = newReader(nc, c.target.Limits.MaxLine)
	c.w = textproto.NewWriter(bufio.NewWriter(nc))
}

// handshake starts TLS over the TCP connection.
func (c *Conn) handshake(ctx context.Context, cfg *tls.Config) error {
	tc := tls.Client(c.raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	st := tc.ConnectionState()
	c.tls = &st
	c.setStream(tc)
	return nil
}

// readGreeting reads the server's first line: +OK, or a -ERR (*ServerError) when it will not
// serve (overloaded, or locked out).
func (c *Conn) readGreeting(ctx context.Context, timeout time.Duration) error {
	return c.run(ctx, "greeting", timeout, func() error {
		st, err := c.readStatus()
		if err != nil {
			return err
		}
		if !st.ok {
			return &ServerError{Command: "greeting", Code: st.code, Text: st.text}
		}
		c.greeting = st.text
		return nil
	})
}

// capa asks for the capabilities. A server that answers -ERR does not know CAPA (RFC 1939):
// its capabilities are unknown, which is not a failure.
func (c *Conn) capa(ctx context.Context, timeout time.Duration) error {
	caps := Capabilities{}
	err := c.run(ctx, "CAPA", timeout, func() error {
		st, err := c.command("CAPA")
		if err != nil {
			return err
		}
		if !st.ok {
			return &ServerError{Command: "CAPA", Code: st.code, Text: st.text}
		}
		caps.Known = true
		return c.r.list(c.target.Limits.MaxCapabilities, caps.parseCapaLine)
	})
	if _, ok := IsServerError(err); ok {
		caps, err = Capabilities{}, nil
	}
	if err == nil {
		c.caps = caps
	}
	return err
}

// startTLS upgrades the connection with STLS (RFC 2595) and asks for the capabilities again
// (they may change). A server that does not offer STLS is refused: the login would travel in
// the clear. Data after the +OK, before the handshake, is refused too: it was not encrypted,
// and would be read as if it had been (an injection, as in CVE-2011-0411 for SMTP).
func (c *Conn) startTLS(ctx context.Context, timeout time.Duration, cfg *tls.Config) error {
	if !c.caps.Has("STLS") {
		offered := "its capabilities do not list STLS"
		if !c.caps.Known {
			offered = "it does not even answer CAPA"
		}
		return fmt.Errorf("%w: %s, so the login and the mail would travel unencrypted; nothing was sent. "+
			"Use security tls (usually port 995) if the server speaks TLS from the start, or check host and port "+
			"(POP3 with STLS is port 110); security none only for a trusted local server", ErrNoSTLS, offered)
	}
	err := c.run(ctx, "STLS", timeout, func() error {
		st, err := c.command("STLS")
		if err != nil {
			return err
		}
		if !st.ok {
			return &ServerError{Command: "STLS", Code: st.code, Text: st.text}
		}
		if c.r.pending() {
			return &ProtocolError{Problem: "data right after +OK to STLS, before encryption began: " +
				"something on the path may be injecting commands; nothing was sent"}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := c.handshake(ctx, cfg); err != nil {
		return describeTLS(c.target, err)
	}
	return nil
}
