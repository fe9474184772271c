// Package imapconn is mailintake's IMAP client layer: every call into go-imap's imapclient lives
// here, so the library's API churn stays in one place. It dials (implicit TLS, STARTTLS or an
// explicit plaintext), authenticates with a provider's credential (PLAIN, LOGIN, XOAUTH2,
// OAUTHBEARER), selects, searches and fetches by UID with BODY.PEEK[] (never setting \Seen),
// applies after-ack actions, and idles. imapclient takes no context: a context cancels a call by
// closing the connection, and every call has a watchdog, because imapclient waits for a response
// without a deadline.
package imapconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Security is how the connection is protected.
type Security int

// Security modes.
const (
	TLS Security = iota + 1
	StartTLS
	Plaintext
)

// Target is the server to connect to.
type Target struct {
	Host     string
	Port     int
	Security Security
	// RootCAs, when set, replaces the system roots; nil means the system roots.
	RootCAs *x509.CertPool
	// SkipVerify disables certificate verification.
	SkipVerify bool
	// DialTimeout bounds DNS + TCP + TLS + greeting; zero means 30 seconds.
	DialTimeout time.Duration
	// CommandTimeout bounds each command; zero means 2 minutes.
	CommandTimeout time.Duration
	// Budget, when set, is shared by connections to bound the message bodies they hold at once.
	Budget *Budget
	// Allow, when set, is asked right before every command but LOGOUT and an IDLE's DONE is
	// sent: false refuses it with ErrNotAllowed. A replica that may have lost the mailbox's
	// lease (it was paused, or cut off from the database) sends nothing more to the server, even
	// a command it had already decided on before the pause. DONE and LOGOUT only end what is
	// running and change nothing on the server; refusing DONE left an idling connection to wait
	// for its watchdog before LOGOUT, which held a stopping replica's leases for seconds.
	Allow func() bool
}

// ErrNotAllowed is returned for a command that Target.Allow refused.
var ErrNotAllowed = errors.New("command not sent: this replica may no longer own the mailbox")

// Addr returns host:port.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// StepKind names a connection step.
type StepKind int

// Steps, in order.
const (
	StepDNS StepKind = iota + 1
	StepTCP
	StepTLS
	StepGreeting
	StepAuth
	StepSelect
)

// Step is the outcome of one step of Dial (and of the later Authenticate and Select).
type Step struct {
	Kind     StepKind
	Duration time.Duration
	Detail   string
	Err      error
}

// Conn is an IMAP connection.
type Conn struct {
	c        *imapclient.Client
	raw      net.Conn // the TCP connection under c, to abort a command from inside it
	bc       *bufferedConn
	target   Target
	timeout  time.Duration
	updates  chan struct{}
	mu       sync.Mutex
	selected *Selected
	ns       *Namespace // asked once, by Namespace
	// onChange, when set, is called once by the next update or the connection's end (Notify);
	// ended is set once the connection closed.
	onChange atomic.Pointer[func()]
	ended    atomic.Bool
}

// Updates returns a channel that receives a value when the server reports new messages or
// expunges unilaterally (EXISTS, EXPUNGE), e.g. while idling. It holds at most one value: a
// caller about to look at the folder calls DrainUpdates first, so only changes reported after
// its look wake it again.
func (c *Conn) Updates() <-chan struct{} { return c.updates }

// DrainUpdates forgets the updates reported so far.
func (c *Conn) DrainUpdates() {
	select {
	case <-c.updates:
	default:
	}
}

// Caps returns the server's capabilities.
func (c *Conn) Caps() imap.CapSet { return c.c.Caps() }

// Close closes the connection.
func (c *Conn) Close() error {
	return c.c.Close()
}

// Notify arranges for f to be called once when the server reports new messages or expunges
// (one already reported and not drained counts: f is then called at once, on the calling
// goroutine) or when the connection ends, whoever ends it. A caller can so wait for news
// without a goroutine of its own. f must not block: it runs on the library's reading
// goroutine. cancel withdraws f and reports whether it had not been called (and will not be).
func (c *Conn) Notify(f func()) (cancel func() bool) {
	p := &f
	c.onChange.Store(p)
	if (len(c.updates) > 0 || c.ended.Load()) && c.onChange.CompareAndSwap(p, nil) {
		f()
	}
	return func() bool { return c.onChange.CompareAndSwap(p, nil) }
}

// changed calls the function Notify armed, if any.
func (c *Conn) changed() {
	if f := c.onChange.Swap(nil); f != nil {
		(*f)()
	}
}

// connClosed is called when the connection under the client closes: the client's reader
// closes it when it stops, for whatever reason, and so do Close and the watchdogs.
func (c *Conn) connClosed() {
	c.ended.Store(true)
	c.changed()
}

// Done is closed when the connection was closed.
func (c *Conn) Done() <-chan struct{} { return c.c.Closed() }

// guard runs fn, closing the connection if ctx ends or d passes first, and reports which.
func (c *Conn) guard(ctx context.Context, d time.Duration, what string, fn func() error) error {
	if c.target.Allow != nil && what != "LOGOUT" && what != "DONE" && !c.target.Allow() {
		return fmt.Errorf("%s: %w", what, ErrNotAllowed)
	}
	if d == 0 {
		d = c.timeout
	}
	timedOut := make(chan struct{})
	t := time.AfterFunc(d, func() { close(timedOut); c.c.Close() })
	stop := context.AfterFunc(ctx, func() { c.c.Close() })
	err := fn()
	t.Stop()
	stop()
	select {
	case <-timedOut:
		return fmt.Errorf("%s: no answer within %s; connection closed", what, d)
	default:
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (c *Conn) notify() {
	select {
	case c.updates <- struct{}{}:
	default:
	}
	c.changed()
}

// Dial connects, reporting each step to report (which may be nil).
func Dial(ctx context.Context, t Target, report func(Step)) (*Conn, error) {
	if report == nil {
		report = func(Step) {}
	}
	if t.DialTimeout == 0 {
		t.DialTimeout = 30 * time.Second
	}
	if t.CommandTimeout == 0 {
		t.CommandTimeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, t.DialTimeout)
	defer cancel()

	// DNS
	start := time.Now()
	addrs, err := net.DefaultResolver.LookupHost(ctx, t.Host)
	if err != nil {
		err = describeDNS(t.Host, err)
		report(Step{Kind: StepDNS, Duration: time.Since(start), Err: err})
		return nil, err
	}
	report(Step{Kind: StepDNS, Duration: time.Since(start), Detail: strings.Join(addrs, ", ")})

	// TCP
	start = time.Now()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", net.JoinHostPort(t.Host, strconv.Itoa(t.Port)))
	if err != nil {
		err = describeTCP(t, err)
		report(Step{Kind: StepTCP, Duration: time.Since(start), Err: err})
		return nil, err
	}
	report(Step{Kind: StepTCP, Duration: time.Since(start), Detail: raw.RemoteAddr().String()})

	c := &Conn{raw: raw, target: t, timeout: t.CommandTimeout, updates: make(chan struct{}, 1)}
	opts := &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(data *imapclient.UnilateralDataMailbox) {
				if data.NumMessages != nil {
					c.notify()
				}
			},
			Expunge: func(uint32) { c.notify() },
		},
	}
	if t.Security != Plaintext {
		// The client keeps its options for the connection's life: a plaintext one holds none.
		opts.TLSConfig = &tls.Config{ServerName: t.Host, RootCAs: t.RootCAs, InsecureSkipVerify: t.SkipVerify, MinVersion: tls.VersionTLS12}
	}
	stopOnCancel := context.AfterFunc(ctx, func() { raw.Close() })
	defer stopOnCancel()

	// TLS
	c.bc = &bufferedConn{Conn: raw, closed: c.connClosed}
	var conn net.Conn = c.bc
	if t.Security == TLS {
		start = time.Now()
		tc := tls.Client(conn, opts.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			err = describeTLS(t, err)
			report(Step{Kind: StepTLS, Duration: time.Since(start), Err: err})
			return nil, err
		}
		report(Step{Kind: StepTLS, Duration: time.Since(start), Detail: tlsDetail(tc.ConnectionState())})
		conn = tc
	}

	// Greeting (and STARTTLS)
	start = time.Now()
	if t.Security == StartTLS {
		cl, err := imapclient.NewStartTLS(conn, opts)
		if err != nil {
			raw.Close()
			err = describeTLS(t, fmt.Errorf("STARTTLS: %w", err))
			report(Step{Kind: StepTLS, Duration: time.Since(start), Err: err})
			return nil, err
		}
		c.c = cl
		report(Step{Kind: StepTLS, Duration: time.Since(start), Detail: "STARTTLS"})
		start = time.Now()
	} else {
		c.c = imapclient.New(conn, opts)
		if t.Security == Plaintext {
			report(Step{Kind: StepTLS, Detail: "none (plaintext, as configured)"})
		}
	}
	var caps imap.CapSet
	err = c.guard(ctx, t.DialTimeout, "greeting", func() error {
		var err error
		caps, err = c.c.Capability().Wait()
		return err
	})
	if err != nil {
		c.c.Close()
		err = fmt.Errorf("no IMAP greeting from %s: %w", t.Addr(), err)
		report(Step{Kind: StepGreeting, Duration: time.Since(start), Err: err})
		return nil, err
	}
	report(Step{Kind: StepGreeting, Duration: time.Since(start), Detail: capsDetail(caps)})
	return c, nil
}

func capsDetail(caps imap.CapSet) string {
	var names []string
	for _, n := range []imap.Cap{imap.CapIMAP4rev1, imap.CapIMAP4rev2, imap.CapIdle, imap.CapMove, imap.CapUIDPlus} {
		if caps.Has(n) {
			names = append(names, string(n))
		}
	}
	for c := range caps {
		if strings.HasPrefix(string(c), "AUTH=") {
			names = append(names, string(c))
		}
	}
	return strings.Join(names, " ")
}

func tlsDetail(st tls.ConnectionState) string {
	v := map[uint16]string{tls.VersionTLS12: "TLS 1.2", tls.VersionTLS13: "TLS 1.3"}[st.Version]
	if v == "" {
		v = fmt.Sprintf("TLS 0x%x", st.Version)
	}
	if len(st.PeerCertificates) > 0 {
		c := st.PeerCertificates[0]
		return fmt.Sprintf("%s, certificate for %s issued by %s, valid until %s", v, strings.Join(c.DNSNames, ", "), c.Issuer.CommonName, c.NotAfter.Format("2006-01-02"))
	}
	return v
}

func describeDNS(host string, err error) error {
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return fmt.Errorf("the host name %q does not exist (DNS: no such host)", host)
	}
	return fmt.Errorf("resolving %q: %w", host, err)
}

func describeTCP(t Target, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer from %s within %s (a firewall, or the wrong port)", t.Addr(), t.DialTimeout)
	case strings.Contains(err.Error(), "connection refused"):
		return fmt.Errorf("connection to %s refused: nothing listens on port %d (IMAP is 993 with TLS, 143 with STARTTLS)", t.Addr(), t.Port)
	}
	return fmt.Errorf("connecting to %s: %w", t.Addr(), err)
}

// describeTLS names certificate problems in words an admin can act on.
func describeTLS(t Target, err error) error {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &ua):
		return fmt.Errorf("the server's certificate is not signed by a trusted authority (self-signed, or a private CA): give its CA certificate (ca_pem / --ca-file): %w", err)
	case errors.As(err, &he):
		return fmt.Errorf("the server's certificate is not valid for %q: %w", t.Host, err)
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return fmt.Errorf("the server's certificate has expired or is not yet valid: %w", err)
	case errors.As(err, &rh):
		return fmt.Errorf("the server at %s does not speak TLS on this port (try STARTTLS on 143, or TLS on 993): %w", t.Addr(), err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("TLS handshake with %s timed out", t.Addr())
	}
	return fmt.Errorf("TLS with %s failed: %w", t.Addr(), err)
}
